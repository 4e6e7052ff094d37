"""napari under Xvfb: a Cell Tracking Challenge folder opens as the time-lapse it is: raw frames as
one (T, Z, Y, X) image layer, masks as one Labels layer over time with their lineage as a Tracks
layer; a 2D movie's frames as planes (T, 1, Y, X), as `track` takes them."""
import numpy as np
import pytest
import tifffile

from halo_seg.io.track_output import ctc_lineage
from halo_seg.tracking.phantom import cell_timelapse

pytest.importorskip("napari")


@pytest.fixture(scope="module")
def tl():
    return cell_timelapse(shape=(12, 40, 40), cells=4, timepoints=4, radius=4.0, divisions=1, seed=3)


def _folder(path, frames, name, lineage=None, text="man_track.txt"):
    path.mkdir(parents=True)
    for t, f in enumerate(frames):
        tifffile.imwrite(path / f"{name}{t:03d}.tif", f)
    if lineage is not None:
        (path / text).write_text(ctc_lineage(lineage))
    return path


def test_a_ctc_dataset_opens_as_image_labels_and_tracks(make_napari_viewer, tmp_path, tl):
    viewer = make_napari_viewer()
    raw = _folder(tmp_path / "01", [(f > 0).astype(np.uint16) * 50 for f in tl.ids], "t")
    gt = _folder(tmp_path / "01_GT" / "TRA", [f.astype(np.uint16) for f in tl.ids], "man_track", tl.lineage)
    image = viewer.open(str(raw), plugin="napari-halo-seg")[0]
    assert image.data.shape == tl.ids.shape and image.metadata["series_source"] == str(raw)
    labels, tracks = viewer.open(str(gt.parent), plugin="napari-halo-seg")   # 01_GT: its TRA
    assert labels.name == "01_GT TRA" and tracks.name == "01_GT TRA tracks"
    assert type(labels).__name__ == "Labels" and type(tracks).__name__ == "Tracks"
    np.testing.assert_array_equal(np.asarray(labels.data), tl.ids)
    # a track's path through its centroids, the daughters' from their mother's
    first = tracks.data[(tracks.data[:, 0] == 1) & (tracks.data[:, 1] == 0)][0, 2:]
    np.testing.assert_allclose(first, np.argwhere(tl.ids[0] == 1).mean(0))
    mothers = {int(k): int(p) for k, _, _, p in tl.lineage.tolist() if p}
    assert {k: v[0] for k, v in tracks.graph.items()} == mothers
    assert viewer.dims.ndim == 4 and viewer.dims.nsteps[0] == 4


def test_a_2d_result_opens_as_planes_over_its_movie(make_napari_viewer, tmp_path, tl):
    viewer = make_napari_viewer()
    movie = _folder(tmp_path / "02", [(f[6] > 0).astype(np.uint8) * 200 for f in tl.ids], "t")
    res = _folder(tmp_path / "02_RES", [f[6].astype(np.uint16) for f in tl.ids], "mask", tl.lineage, "res_track.txt")
    image = viewer.open(str(movie), plugin="napari-halo-seg")[0]
    labels, tracks = viewer.open(str(res), plugin="napari-halo-seg")
    assert image.data.shape == labels.data.shape == (4, 1, 40, 40)
    assert "series_source" not in image.metadata   # its file's time points are 2D: read from the layer
    assert np.all(tracks.data[:, 2] == 0)
    np.testing.assert_array_equal(np.asarray(labels.data)[:, 0], tl.ids[:, 6])


def test_objects_widget_tracks_a_2d_movie_opened_from_folders(make_napari_viewer, qtbot, tmp_path, tl):
    """A 2D movie's masks folder (StarDist's, say: no lineage) tracked in the Objects widget equals
    `track` given the same folder."""
    import zarr

    from halo_seg.tracking import track_objects
    from napari_halo_seg._objects_widget import ObjectsWidget
    viewer = make_napari_viewer()
    movie = _folder(tmp_path / "01", [(f[6] > 0).astype(np.uint16) * (t + 1) for t, f in enumerate(tl.ids)], "t")
    masks = _folder(tmp_path / "01_SEG", [f[6].astype(np.uint16) for f in tl.ids], "mask")
    viewer.open(str(movie), plugin="napari-halo-seg")
    assert [type(x).__name__ for x in viewer.open(str(masks), plugin="napari-halo-seg")] == ["Labels"]
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("01_SEG")
    w.image.setCurrentText("01")
    w.track.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    ref = track_objects(str(masks), tmp_path / "ref.zarr", image=str(movie))
    assert f"{ref.tracks} tracks" in w.status.text(), w.status.text()
    np.testing.assert_array_equal(np.asarray(viewer.layers["01_SEG tracked"].data),
                                  zarr.open_group(str(tmp_path / "ref.zarr"))["labels"][...])
    np.testing.assert_allclose(w.table["mean"], ref.table["mean"])


def test_edit_tracks_corrects_a_ctc_ground_truth_opened_from_its_folder(make_napari_viewer, qtbot, tmp_path, tl):
    """A CTC tracking opened in napari is listed by Edit tracks; its first edit makes it a `track`
    output (the folder untouched), equal to track-import then the same edit; Save tracking writes a
    CTC result that track-score finds one link short of the ground truth."""
    import zarr

    from halo_seg.io.ctc_tracking import open_tracking
    from halo_seg.tracking.ctc_import import import_ctc
    from halo_seg.tracking.edit import edit_tracks
    from halo_seg.tracking.score import score_tracking
    from napari_halo_seg._objects_series import TRACK_OUTPUT
    from napari_halo_seg._track_edit_widget import CUT, TrackEditWidget
    gt = _folder(tmp_path / "01_GT" / "TRA", [f.astype(np.uint16) for f in tl.ids], "man_track", tl.lineage)
    before = {p.name: p.read_bytes() for p in gt.iterdir()}
    viewer = make_napari_viewer()
    labels, paths = viewer.open(str(gt), plugin="napari-halo-seg")
    w = TrackEditWidget(viewer)
    assert w.tracked.currentText() == labels.name
    k = int(tl.lineage[(tl.lineage[:, 1] == 0) & (tl.lineage[:, 2] >= 2)][0, 0])
    assert k in w._rows   # the lineage file read before any edit
    w.track.setValue(k)
    w.op.setCurrentText(CUT)
    viewer.dims.set_point(0, 2)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "is track" in w.status.text(), w.status.text()
    made = labels.metadata[TRACK_OUTPUT]
    assert paths.metadata[TRACK_OUTPUT] == made
    ref = import_ctc(gt, tmp_path / "ref.zarr").output
    edit_tracks(ref, "cut", k, 2)
    want = zarr.open_group(str(ref))["labels"][...]
    np.testing.assert_array_equal(zarr.open_group(made)["labels"][...], want)
    np.testing.assert_array_equal(np.asarray(labels.data), want)
    assert {p.name: p.read_bytes() for p in gt.iterdir()} == before
    w.save(str(tmp_path / "01_RES"))
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    s = score_tracking(open_tracking(tmp_path / "01_RES"), open_tracking(gt))
    assert s.links_found == s.reference_links - 1


def test_edit_tracks_says_a_tracking_behind_a_layer_is_gone(make_napari_viewer, tmp_path, tl):
    """A tracked layer whose `track` output was deleted: the status names it, not a missing key."""
    import shutil

    from halo_seg.tracking import track_objects
    from napari_halo_seg._track_edit_widget import TrackEditWidget
    out = track_objects(tl.ids, tmp_path / "t.zarr", objects_given=True).output
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-halo-seg")
    shutil.rmtree(out)
    w = TrackEditWidget(viewer)
    assert "is gone: track again or open it" in w.status.text(), w.status.text()
