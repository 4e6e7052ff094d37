"""napari under Xvfb: the Edit tracks widget corrects a tracking opened from a `track` output, the
file and the layers (labels, Tracks, what the cursor shows) against the engine's own edit of a copy."""
import shutil

import numpy as np
import pytest
import zarr

pytest.importorskip("napari")


def _opened(viewer, path):
    from napari_halo_seg._reader import get_reader
    for data, kw, kind in get_reader(str(path))(str(path)):
        getattr(viewer, f"add_{kind}")(data, **kw)


def _apply(w, qtbot, undo=False):
    (w.undo if undo else w.run)()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)


def test_edit_tracks_widget_cuts_joins_and_undoes(make_napari_viewer, qtbot, tmp_path):
    from halo_seg.tracking import track_objects
    from halo_seg.tracking.edit import edit_tracks
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._track_edit_widget import CUT, JOIN, NO_MOTHER, SWAP, TrackEditWidget
    tl = cell_timelapse(seed=1)
    out = track_objects(tl.ids, tmp_path / "cells.zarr", objects_given=True, spacing=(2.0, 1.0, 1.0)).output
    ref = tmp_path / "ref.zarr"
    shutil.copytree(out, ref)
    viewer = make_napari_viewer()
    _opened(viewer, out)
    labels, paths = viewer.layers["cells tracked"], viewer.layers["cells tracks"]
    original = np.asarray(labels.data).copy()
    lineage = np.asarray(zarr.open_group(str(out), mode="r")["lineage"][...])
    labels.data[4, 0, 0, 0] = 77   # a paint stroke where no track is: no edit touches it
    w = TrackEditWidget(viewer)
    assert w.tracked.currentText() == "cells tracked"
    labels.selected_label = 3   # the colour picker's choice
    assert w.track.value() == 3 and "track 3: time points 0 to 5" in w.about.text()
    viewer.dims.set_current_step(0, 2)
    w.op.setCurrentText(CUT)
    _apply(w, qtbot)
    edit_tracks(ref, "cut", 3, 2)
    assert "track 3 from time point 2 on is track 13" in w.status.text(), w.status.text()
    grp, want = zarr.open_group(str(out), mode="r"), zarr.open_group(str(ref), mode="r")
    np.testing.assert_array_equal(grp["labels"][...], want["labels"][...])
    shown = np.asarray(labels.data)
    assert shown[4, 0, 0, 0] == 77
    shown = shown.copy()
    shown[4, 0, 0, 0] = 0
    np.testing.assert_array_equal(shown, want["labels"][...])
    rows = np.asarray(want["tracks"][...])
    np.testing.assert_array_equal(paths.data, rows[np.lexsort((rows[:, 1], rows[:, 0]))])   # napari's order
    feats = labels.features.set_index("index")
    assert (feats.loc[3, "last"], feats.loc[13, "first"], feats.loc[13, "last"]) == (1, 2, 5)
    # join the pieces back: as tracked
    w.other.setValue(13)
    w.op.setCurrentText(JOIN)
    _apply(w, qtbot)
    assert "track 13 continues track 3" in w.status.text()
    shown = np.asarray(labels.data).copy()
    shown[4, 0, 0, 0] = 0
    np.testing.assert_array_equal(shown, original)
    # a refused edit changes nothing and says why
    w.other.setValue(9)
    _apply(w, qtbot)
    assert w.status.text().startswith("failed: track 9 (time points 1 to 5) begins before track 3 ends")
    # an id switch where two cells crossed, swapped back from the time point shown
    w.op.setCurrentText(SWAP)
    w.other.setValue(2)
    viewer.dims.set_current_step(0, 4)
    _apply(w, qtbot)
    assert w.status.text().startswith("tracks 3 and 2 swapped from time point 4 on")
    shown = np.asarray(labels.data).copy()
    shown[4, 0, 0, 0] = 0
    want_swap = original.copy()
    want_swap[4:][original[4:] == 3], want_swap[4:][original[4:] == 2] = 2, 3
    np.testing.assert_array_equal(shown, want_swap)
    _apply(w, qtbot, undo=True)
    w.other.setValue(9)
    # a division taken away, then every edit undone
    w.op.setCurrentText(NO_MOTHER)
    _apply(w, qtbot)
    assert paths.graph.get(9) is None and "track 9 has no mother (was 4)" in w.status.text()
    for _ in range(3):
        _apply(w, qtbot, undo=True)
    assert w.status.text().startswith("undone: track 3 from time point 2 on is track 13")
    np.testing.assert_array_equal(grp["lineage"][...], lineage)
    shown = np.asarray(labels.data).copy()
    shown[4, 0, 0, 0] = 0
    np.testing.assert_array_equal(shown, original)
    assert paths.graph[9] == [4]
    _apply(w, qtbot, undo=True)
    assert w.status.text() == "failed: " + f"{out} has no edit to undo"
    # the stroke painted at the start written into the tracking: a track of its own, then undone
    w.write_strokes()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert w.status.text() == "painted 1 voxels at time points 4 to 4; new track 77; 13 tracks, 2 divisions"
    assert grp["labels"][4, 0, 0, 0] == 77 and [77, 4, 0, 0, 0] in paths.data.tolist()
    assert labels.features.set_index("index").loc[77, "first"] == 4
    _apply(w, qtbot, undo=True)
    assert grp["labels"][4, 0, 0, 0] == 0 and labels.data[4, 0, 0, 0] == 0 and 77 not in paths.data[:, 0]
    # saving what the layer shows: strokes not yet written are written first
    labels.data[3, 0, 0, 0] = 3
    w.save(str(tmp_path / "kept.zarr"))
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert w.status.text().startswith("the strokes painted written into the tracking, then saved")
    assert zarr.open_group(str(tmp_path / "kept.zarr"), mode="r")["labels"][3, 0, 0, 0] == 3


def test_edit_tracks_widget_follows_the_objects_widget_tracking(make_napari_viewer, qtbot):
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._objects_widget import ObjectsWidget
    from napari_halo_seg._track_edit_widget import DELETE, TrackEditWidget
    tl = cell_timelapse(cells=5, timepoints=4, divisions=0, seed=3)
    viewer = make_napari_viewer()
    viewer.add_labels(tl.ids, name="cells")
    w = TrackEditWidget(viewer)
    assert w.tracked.count() == 0
    w.run()
    assert w.worker is None and "no tracked labels" in w.status.text()
    o = ObjectsWidget(viewer)
    o.labels.setCurrentText("cells")
    o.track.setChecked(True)
    o.run()
    qtbot.waitUntil(lambda: o.worker is None, timeout=60_000)
    assert w.tracked.currentText() == "cells tracked"
    layer = viewer.layers["cells tracked"]
    n = len(viewer.layers["cells tracks"].data)
    w.track.setValue(2)
    w.op.setCurrentText(DELETE)
    _apply(w, qtbot)
    assert not (np.asarray(layer.data) == 2).any() and 2 not in set(layer.features["index"])
    assert len(viewer.layers["cells tracks"].data) == n - 4
    viewer.layers.remove("cells tracks")   # closed by the user: the next edit shows the paths again
    _apply(w, qtbot, undo=True)
    assert len(viewer.layers["cells tracked paths"].data) == n


def test_edit_tracks_on_labels_shown_from_file_and_saving(make_napari_viewer, qtbot, tmp_path):
    import dask.array as da

    from halo_seg.tracking import track_objects
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._track_edit_widget import DELETE, TrackEditWidget
    tl = cell_timelapse(seed=2)
    out = track_objects(tl.ids, tmp_path / "cells.zarr", objects_given=True).output
    viewer = make_napari_viewer()
    _opened(viewer, out)
    labels = viewer.layers["cells tracked"]
    feats = labels.features.set_index("index")   # the reader gives what the cursor shows, as the widget does
    lineage = np.asarray(zarr.open_group(str(out), mode="r")["lineage"][...])
    for k, first, last, parent in lineage:
        assert (feats.loc[k, "first"], feats.loc[k, "last"], feats.loc[k, "parent"]) == (first, last, parent)
    # too large for memory: shown from the file (as paintable leaves it), then read again after an edit
    labels.data = da.from_zarr(zarr.open_group(str(out), mode="r")["labels"])
    viewer.dims.set_current_step(0, 0)
    viewer.dims.set_current_step(1, int(np.argwhere(tl.ids[0] == 1)[0][0]))
    assert (labels._slice.image.raw == 1).any()   # what napari draws (its dask cache keeps such slices)
    w = TrackEditWidget(viewer)
    w.track.setValue(1)
    w.op.setCurrentText(DELETE)
    _apply(w, qtbot)
    assert "track 1 deleted" in w.status.text()
    assert not (np.asarray(labels.data) == 1).any() and not (labels._slice.image.raw == 1).any()
    np.testing.assert_array_equal(np.asarray(labels.data), zarr.open_group(str(out), mode="r")["labels"][...])
    # saved as a copy: edits from then on go there, the first output keeps what it had
    w.save(str(tmp_path / "kept.zarr"))
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert w.status.text() == f"saved {tmp_path / 'kept.zarr'}; edits from now on go into it"
    _apply(w, qtbot, undo=True)
    assert (zarr.open_group(str(tmp_path / "kept.zarr"), mode="r")["labels"][...] == 1).any()
    assert not (zarr.open_group(str(out), mode="r")["labels"][...] == 1).any()
    # as a Cell Tracking Challenge result
    w.save(str(tmp_path / "ctc"))
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert sorted(f.name for f in (tmp_path / "ctc").iterdir())[-1] == "res_track.txt"
    # never over the output itself, nor over a file that is not a tracking
    w.save(str(tmp_path / "kept.zarr"))
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert w.status.text().startswith("failed: the output must not be the input")
    (tmp_path / "scan.zarr").mkdir()
    w.save(str(tmp_path / "scan.zarr"))
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert w.status.text().startswith("failed:") and (tmp_path / "scan.zarr").exists(), w.status.text()
    w.write_strokes()   # shown from the file: napari's brush wrote nothing to take
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert w.status.text().startswith("failed: the labels are shown from their file")


def test_the_reader_finishes_an_edit_that_stopped_half_way(tmp_path):
    from halo_seg.tracking import track_objects
    from halo_seg.tracking.edit import edit_tracks
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._reader import get_reader
    tl = cell_timelapse(seed=1)
    out = track_objects(tl.ids, tmp_path / "cells.zarr", objects_given=True).output
    whole = tmp_path / "whole.zarr"
    shutil.copytree(out, whole)
    edit_tracks(whole, "cut", 3, 2)
    calls = []
    with pytest.raises(InterruptedError):
        edit_tracks(out, "cut", 3, 2, cancel=lambda: calls.append(1) or len(calls) > 2)   # napari killed mid-edit
    with pytest.warns(UserWarning, match="finished an edit that had stopped half way: track 3 from time point 2"):
        layers = get_reader(str(out))(str(out))
    np.testing.assert_array_equal(np.asarray(layers[0][0]), zarr.open_group(str(whole), mode="r")["labels"][...])

