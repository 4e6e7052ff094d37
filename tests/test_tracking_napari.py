"""napari under Xvfb: the Objects widget follows a time-lapse's objects over time (halo_seg.tracking)
into a Labels layer of track ids and a Tracks layer, and the reader opens a `track` output as both."""
import numpy as np
import pytest

pytest.importorskip("napari")

from napari_halo_seg._objects_series import tracking_text  # noqa: E402


def test_objects_widget_tracks_a_time_lapse(make_napari_viewer, qtbot, tmp_path):
    from halo_seg.tracking import track_objects
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._objects_widget import ObjectsWidget
    tl = cell_timelapse(cells=6, timepoints=5, divisions=1, seed=11)
    masks = (tl.ids > 0).astype(np.uint8)
    viewer = make_napari_viewer()
    viewer.add_image(tl.image, name="movie", scale=(1, 2.0, 1.0, 1.0))
    viewer.add_labels(masks, name="cells", scale=(1, 2.0, 1.0, 1.0), metadata={"unit": "µm"})
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("cells")
    w.image.setCurrentText("movie")
    w.split.setChecked(True)
    w.track.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    # the engine's own tracking of the same masks is the reference
    ref = track_objects(masks, tmp_path / "ref.zarr", split=0.25, spacing=(2.0, 1.0, 1.0), image=tl.image)
    assert tracking_text(ref.tracks, ref.divisions) in w.status.text(), w.status.text()
    # slow cells: overlap chosen from their motion, and no suggestion to link otherwise
    assert "linked by overlap at time points 1-" in w.status.text() and "chosen at each time point" in w.status.text()
    assert "by distance alone with" not in w.status.text()
    tracked, paths = viewer.layers["cells tracked"], viewer.layers["cells tracks"]
    import zarr
    np.testing.assert_array_equal(np.asarray(tracked.data), zarr.open_group(str(tmp_path / "ref.zarr"))["labels"][...])
    assert tuple(tracked.scale) == (1, 2.0, 1.0, 1.0) and tuple(paths.scale) == (1, 2.0, 1.0, 1.0)
    assert len(paths.data) == len(ref.table["track"])
    assert paths.graph == {int(k): [int(p)] for k, _, _, p in ref.lineage if p}
    # under the cursor: each track's parent and when it was seen; Save table: a row per object and time point
    feats = tracked.features.set_index("index")
    for k, first, last, parent in ref.lineage:
        assert (feats.loc[k, "first"], feats.loc[k, "last"], feats.loc[k, "parent"]) == (first, last, parent)
    assert "mean volume (µm³)" in tracked.features.columns
    np.testing.assert_allclose(w.table["mean"], ref.table["mean"])
    w.save_table(str(tmp_path / "objects.csv"))
    assert (tmp_path / "objects.csv").read_text().splitlines()[0].startswith("timepoint,track,parent,")
    # labels without time points: said, nothing started
    n = len(viewer.layers)
    viewer.add_labels(masks[0], name="one")
    w.labels.setCurrentText("one")
    w.image.setCurrentText("(none)")
    w.run()
    assert w.worker is None and "no time points to follow" in w.status.text() and len(viewer.layers) == n + 1


def test_objects_widget_links_fast_cells_by_distance(make_napari_viewer, qtbot, tmp_path):
    """The max distance and linking fields reach the engine: the layer equals the engine's tracking
    with the same settings, which differs from overlap linking's on cells moving further than their
    radius; by default the linking is chosen from the cells' motion, and said."""
    import zarr

    from halo_seg.tracking import track_objects
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._objects_widget import ObjectsWidget
    tl = cell_timelapse(shape=(32, 96, 96), cells=16, timepoints=10, radius=4.5, divisions=4, speed=5.0, seed=2)
    viewer = make_napari_viewer()
    masks = (tl.ids > 0).astype(np.uint8)
    viewer.add_labels(masks, name="cells")
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("cells")
    w.track.setChecked(True)
    w.split.setChecked(True)   # daughters touch at birth
    assert w.linking.currentText() == "chosen from the cells' motion"
    w.linking.setCurrentText("by overlap")
    w.run()   # by overlap: linking by distance suggested
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "cells moved over 0.5 of their radius a time point at time points 1-9" in w.status.text()
    assert "by distance alone with a max distance of about" in w.status.text()
    for name in ("cells tracked", "cells tracks"):
        viewer.layers.remove(name)
    w.linking.setCurrentText("chosen from the cells' motion")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    auto = track_objects(masks, tmp_path / "auto.zarr", link="auto", split=0.25)
    assert [c["link"] for c in auto.choices] == ["distance"]
    assert f"linked by distance within {auto.choices[0]['reach'][0]:g}" in w.status.text()
    np.testing.assert_array_equal(np.asarray(viewer.layers["cells tracked"].data),
                                  zarr.open_group(str(tmp_path / "auto.zarr"))["labels"][...])
    for name in ("cells tracked", "cells tracks"):
        viewer.layers.remove(name)
    w.linking.setCurrentText("by distance alone (fast cells)")
    w.run()   # no max distance: said, nothing started
    assert w.worker is None and "needs a max distance" in w.status.text()
    w.max_distance.setValue(8.0)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    ref = track_objects(masks, tmp_path / "ref.zarr", link="distance", max_distance=8.0, split=0.25)
    track_objects(masks, tmp_path / "overlap.zarr", split=0.25)
    assert tracking_text(ref.tracks, ref.divisions) in w.status.text(), w.status.text()
    assert "cells moved over" not in w.status.text()
    want = zarr.open_group(str(tmp_path / "ref.zarr"))["labels"][...]
    np.testing.assert_array_equal(np.asarray(viewer.layers["cells tracked"].data), want)
    assert not np.array_equal(want, zarr.open_group(str(tmp_path / "overlap.zarr"))["labels"][...])


def test_objects_widget_follows_the_ids_as_they_are_when_asked(make_napari_viewer, qtbot, tmp_path):
    """Objects numbered already (touching cells with ids of their own, as StarDist or the interactive
    widget's commits give): 'follow the ids as they are' tracks them as track --ids does; without
    it they are connected components, touching cells one object."""
    import zarr

    from halo_seg.tracking import track_objects
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._objects_widget import ObjectsWidget
    tl = cell_timelapse(cells=8, timepoints=4, divisions=1, seed=11)
    ids = tl.ids.astype(np.uint16)
    from scipy import ndimage as ndi
    merged = sum(ndi.label(ids[t] > 0)[1] < len(np.unique(ids[t])) - 1 for t in range(len(ids)))
    assert merged, "no touching cells: the test would not test it"
    viewer = make_napari_viewer()
    viewer.add_labels(ids, name="nuclei")
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("nuclei")
    w.track.setChecked(True)
    w.as_numbered.setChecked(True)
    w.split.setChecked(True)
    w.run()   # split applies to connected components only: said, nothing started
    assert w.worker is None and "is followed with its ids as they are; clear classes, min voxels and split" in \
        w.status.text(), w.status.text()
    w.split.setChecked(False)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    track_objects(ids, tmp_path / "ids.zarr", objects_given=True)
    track_objects(ids, tmp_path / "cc.zarr")
    want = zarr.open_group(str(tmp_path / "ids.zarr"))["labels"][...]
    np.testing.assert_array_equal(np.asarray(viewer.layers["nuclei tracked"].data), want)
    assert not np.array_equal(want, zarr.open_group(str(tmp_path / "cc.zarr"))["labels"][...])


def test_objects_widget_tracking_cancelled_adds_nothing(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._objects_widget import ObjectsWidget
    tl = cell_timelapse(cells=6, timepoints=6, divisions=0, seed=12)
    viewer = make_napari_viewer()
    viewer.add_labels((tl.ids > 0).astype(np.uint8), name="cells")
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("cells")
    w.track.setChecked(True)
    shown = w.progress_callback

    def press_cancel_after_the_first_time_point(done, total, msg=""):
        shown(done, total, msg)
        w._cancel.set()   # what Cancel does, from the worker's side of the queue
    w.progress_callback = press_cancel_after_the_first_time_point
    import tempfile
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: str(tmp_path))   # the widget's work folder, to look in
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert w.status.text().startswith("cancelled"), w.status.text()
    assert [layer.name for layer in viewer.layers] == ["cells"]
    assert list(tmp_path.iterdir()) == []   # no time points kept to resume from: the widget never resumes


def test_reader_opens_a_track_output_as_labels_and_tracks(tmp_path):
    from halo_seg.tracking import track_objects
    from halo_seg.tracking.phantom import cell_timelapse, relabelled
    from napari_halo_seg._reader import get_reader
    tl = cell_timelapse(cells=5, timepoints=4, divisions=1, seed=13)
    res = track_objects(relabelled(tl.ids), tmp_path / "cells.zarr", objects_given=True, spacing=(2.0, 1.0, 1.0))
    layers = get_reader(str(tmp_path / "cells.zarr"))(str(tmp_path / "cells.zarr"))
    assert [kind for _, _, kind in layers] == ["labels", "tracks"]
    (labels, kw, _), (points, tkw, _) = layers
    import zarr
    np.testing.assert_array_equal(np.asarray(labels), zarr.open_group(str(tmp_path / "cells.zarr"))["labels"][...])
    assert tuple(kw["scale"]) == (1.0, 2.0, 1.0, 1.0) and tuple(tkw["scale"]) == (1.0, 2.0, 1.0, 1.0)
    assert points.shape == (len(res.table["track"]), 5)
    assert tkw["graph"] == {int(k): [int(p)] for k, _, _, p in res.lineage if p} and tkw["graph"]


def test_the_dividing_cells_sample_opens_as_a_time_lapse_and_its_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-halo-seg", "dividing_cells")
    image, labels = viewer.layers["dividing cells"], viewer.layers["dividing cells mask"]
    assert image.data.shape == labels.data.shape == (12, 32, 96, 96)
    assert tuple(labels.scale) == (1.0, 0.5, 0.5, 0.5) and labels.metadata["unit"] == "µm"
    # the labels mark the bright cells: their mean intensity far above the background's
    assert image.data[labels.data > 0].mean() > image.data[labels.data == 0].mean() + 0.5


def test_labels_with_no_object_at_any_time_point_are_said_and_add_nothing(make_napari_viewer, qtbot, tmp_path):
    """napari's Tracks layer fails on no point at all (it aborted the process): neither the widget
    nor the reader makes one then."""
    from halo_seg.tracking import track_objects
    from napari_halo_seg._objects_widget import ObjectsWidget
    from napari_halo_seg._reader import read_volume
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((3, 8, 16, 16), np.uint8), name="none")
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("none")
    w.track.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "no objects at any of the 3 time points" in w.status.text() and len(viewer.layers) == 1
    track_objects(np.zeros((3, 8, 16, 16), np.uint8), tmp_path / "none.zarr")
    assert [kind for _, _, kind in read_volume(str(tmp_path / "none.zarr"))] == ["labels"]
