"""The Resample onto an image widget: layers stored in another orientation or at another resolution
come onto an image's voxel grid, checked against the arrays they were made from; what it refuses
leaves the layers as they were. Refusals to pair two grids point to it only where it would help."""
import nibabel as nib
import numpy as np
import pytest

from halo_seg.io import open_volume

SCAN = np.array([[1.5, 0, 0, -30.0], [0, 1.25, 0, 12.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])   # RAS, voxel (x, y, z)


def _wait(qtbot, w):
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)


def _widget(viewer, source, target, labels=None):
    from napari_halo_seg._resample_widget import ResampleWidget
    w = ResampleWidget(viewer)
    w.source.setCurrentText(source)
    w.target.setCurrentText(target)
    if labels is not None:
        w.as_labels.setChecked(labels)
    return w


@pytest.fixture
def flipped(tmp_path):
    """A scan and its labels, the labels stored with x and y reversed (LPS-ordered voxels, as DICOM
    and ITK write them, against the scan's RAS): one world, two voxel orders."""
    rng = np.random.default_rng(5)
    scan = rng.normal(size=(10, 12, 14)).astype(np.float32)            # (z, y, x)
    lab = np.zeros(scan.shape, np.uint8)
    lab[2:7, 1:5, 3:11] = 1
    lab[5:9, 7:11, 1:4] = 3
    nx, ny = scan.shape[2], scan.shape[1]
    flip = np.array([[-1.0, 0, 0, nx - 1], [0, -1.0, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]])   # stored voxel -> scan's
    nib.save(nib.Nifti1Image(scan.transpose(2, 1, 0), SCAN), str(tmp_path / "scan.nii.gz"))
    img = nib.Nifti1Image(np.ascontiguousarray(lab[:, ::-1, ::-1]).transpose(2, 1, 0), SCAN @ flip)
    img.header.set_intent("label")
    nib.save(img, str(tmp_path / "lps_labels.nii.gz"))
    return scan, lab, tmp_path


def test_labels_stored_in_another_orientation_come_onto_the_scan(make_napari_viewer, qtbot, flipped):
    from napari_halo_seg._writer import write_labels
    scan, lab, tmp = flipped
    viewer = make_napari_viewer()
    ct, = viewer.open(str(tmp / "scan.nii.gz"), plugin="napari-halo-seg")
    seg, = viewer.open(str(tmp / "lps_labels.nii.gz"), plugin="napari-halo-seg")
    # napari places each along its own axes: voxel (0, 0, 0) of the two is not one place
    assert not np.allclose(seg.data_to_world((0, 0, 0)), ct.data_to_world((0, 0, 0)))
    w = _widget(viewer, "lps_labels", "scan")
    assert w.as_labels.isChecked()   # a Labels layer: the nearest voxel's id
    w.run()
    _wait(qtbot, w)
    new = viewer.layers["lps_labels on scan"]
    assert new.__class__.__name__ == "Labels" and "each voxel from its world position" in w.status.text()
    np.testing.assert_array_equal(new.data, lab)
    assert new.data.dtype == np.uint8
    np.testing.assert_allclose(new.scale, ct.scale)
    np.testing.assert_allclose(new.translate, ct.translate)
    np.testing.assert_array_equal(seg.data, np.ascontiguousarray(lab[:, ::-1, ::-1]))   # the layer resampled: as it was
    # saved, it lies where the scan lies
    write_labels(str(tmp / "back.nii.gz"), new.data, {"scale": tuple(new.scale), "metadata": new.metadata})
    back = nib.load(str(tmp / "back.nii.gz"))
    np.testing.assert_allclose(back.affine, SCAN, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(back.dataobj).transpose(2, 1, 0), lab)
    # the other way: the scan onto the labels' voxels, as an image, exact on voxel centres
    w = _widget(viewer, "scan", "lps_labels")
    assert not w.as_labels.isChecked()
    w.run()
    _wait(qtbot, w)
    img = viewer.layers["scan on lps_labels"]
    assert img.__class__.__name__ == "Image" and img.data.dtype == np.float32
    np.testing.assert_allclose(img.data, scan[:, ::-1, ::-1], atol=1e-5)
    assert tuple(img.contrast_limits) == tuple(ct.contrast_limits)
    # already on one grid: nothing added
    n = len(viewer.layers)
    w = _widget(viewer, "lps_labels on scan", "scan")
    w.run()
    assert w.worker is None and "already lies on the grid of scan" in w.status.text() and len(viewer.layers) == n


def test_coarse_labels_take_the_fine_image_grid_by_nearest_voxel(make_napari_viewer, qtbot):
    """Labels drawn at 2 mm over a 1 mm image of one extent (nothing records where either lies):
    each fine voxel takes the id of the coarse voxel it lies in."""
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 4, size=(5, 6, 7)).astype(np.uint16)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((10, 12, 14), np.float32), name="fine", scale=(1.0, 1.0, 1.0),
                     metadata={"spacing_known": True, "unit": "mm"})
    viewer.add_labels(coarse, name="coarse", scale=(2.0, 2.0, 2.0), metadata={"spacing_known": True, "unit": "mm"},
                      features={"index": [1, 2, 3], "name": ["liver", "spleen", "kidney"], "voxels": [9, 9, 9]})
    w = _widget(viewer, "coarse", "fine")
    w.run()
    _wait(qtbot, w)
    new = viewer.layers["coarse on fine"]
    expected = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    np.testing.assert_array_equal(new.data, expected)
    assert "over coarse's extent" in w.status.text()
    assert list(new.features["name"]) == ["liver", "spleen", "kidney"]   # the ids keep their names
    assert "voxels" not in new.features   # sizes of the old grid are not carried over
    assert tuple(new.scale) == (1.0, 1.0, 1.0) and new.metadata["spacing_known"]


def test_a_time_lapse_takes_the_grid_time_point_by_time_point(make_napari_viewer, qtbot):
    """Labels of a time-lapse drawn at 2 µm over a 1 µm image: each time point takes the fine grid
    (as a 3D layer does), the time axis kept; onto a time-lapse of as many time points, the grid of
    its time points; of another number, refused. Before, a time-lapse was refused ("Split Stack")."""
    rng = np.random.default_rng(2)
    coarse = rng.integers(0, 4, size=(3, 5, 6, 7)).astype(np.uint16)
    viewer = make_napari_viewer()
    known = {"spacing_known": True, "unit": "µm"}
    viewer.add_image(np.zeros((10, 12, 14), np.float32), name="fine", metadata=known)
    viewer.add_image(np.zeros((3, 10, 12, 14), np.float32), name="fine movie", scale=(5.0, 1.0, 1.0, 1.0),
                     metadata=known)
    viewer.add_image(np.zeros((2, 10, 12, 14), np.float32), name="short movie", metadata=known)
    viewer.add_labels(coarse, name="cells", scale=(5.0, 2.0, 2.0, 2.0), translate=(10.0, 0, 0, 0), metadata=known)
    expected = coarse.repeat(2, 1).repeat(2, 2).repeat(2, 3)
    for target in ("fine", "fine movie"):
        w = _widget(viewer, "cells", target)
        w.run()
        _wait(qtbot, w)
        new = viewer.layers[f"cells on {target}"]
        np.testing.assert_array_equal(new.data, expected)
        assert tuple(new.scale) == (5.0, 1.0, 1.0, 1.0) and tuple(new.translate) == (10.0, 0, 0, 0), w.status.text()
        assert "added 'cells on" in w.status.text()
    w = _widget(viewer, "cells", "short movie")
    w.run()
    assert w.worker is None and "'cells' has 3 time points and 'short movie' 2" in w.status.text(), w.status.text()
    w = _widget(viewer, "fine", "cells", labels=False)   # a 3D image onto a time-lapse's grid: one volume
    w.run()
    _wait(qtbot, w)
    assert viewer.layers["fine on cells"].data.shape == (5, 6, 7), w.status.text()


def test_what_cannot_be_resampled_leaves_the_layers(make_napari_viewer, qtbot, monkeypatch):
    import napari_halo_seg._resample_widget as rw
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((10, 12, 14), np.float32), name="image", metadata={"spacing_known": True})
    viewer.add_labels(np.ones((4, 5, 6), np.uint8), name="small", scale=(1.0, 1.0, 1.0),
                      metadata={"spacing_known": True})
    viewer.add_image(np.full((5, 6, 7), 0.5, np.float32), name="halves", scale=(2.0, 2.0, 2.0),
                     metadata={"spacing_known": True})
    n = len(viewer.layers)
    w = _widget(viewer, "image", "image")
    w.run()
    assert "same layer" in w.status.text()
    w = _widget(viewer, "small", "image")   # another extent, and nothing says where either lies
    w.run()
    assert w.worker is None and "not the same extent, and without a scan geometry in both" in w.status.text()
    w = _widget(viewer, "halves", "image", labels=True)   # fractions are not label ids
    w.run()
    _wait(qtbot, w)
    assert w.status.text().startswith("failed") and "values that are not labels (e.g. 0.5)" in w.status.text()
    monkeypatch.setattr(rw, "room", lambda: 1000)   # 1680 float32 voxels: more than a quarter of 1000 bytes
    w = _widget(viewer, "halves", "image", labels=False)
    w.run()
    assert w.worker is None and "more than a quarter of the memory available" in w.status.text() \
        and "halo-seg resample FILE OUT.zarr --like IMAGE_FILE" in w.status.text()
    monkeypatch.undo()
    w._cancel.set()   # cancelled before the first slab
    monkeypatch.setattr(w._cancel, "clear", lambda: None)
    w.run()
    _wait(qtbot, w)
    assert w.status.text().startswith("cancelled") and len(viewer.layers) == n
    w = _widget(viewer, "halves", "image", labels=False)   # and then it works
    w.run()
    _wait(qtbot, w)
    np.testing.assert_allclose(viewer.layers["halves on image"].data, 0.5)


def test_a_refusal_points_to_resampling_only_where_it_would_help(make_napari_viewer, flipped, capsys):
    """One scan stored in two voxel orders lies 'apart' voxel by voxel but in one place in the world:
    a resampling (the widget in napari, `resample --like` on the command line) brings them together;
    two scans that barely overlap need a registration, which no resampling replaces."""
    from halo_seg.cli import main
    from halo_seg.io.geometry import world_overlap
    from napari_halo_seg._compare_widget import CompareWidget
    scan, lab, tmp = flipped
    moved = SCAN.copy()
    moved[0, 3] += 18.0   # 18 mm along a 21 mm wide scan: a seventh of it overlaps
    for name, aff in (("ras_labels", SCAN), ("moved", moved)):
        img = nib.Nifti1Image(lab.transpose(2, 1, 0), aff)
        img.header.set_intent("label")
        nib.save(img, str(tmp / f"{name}.nii.gz"))
    a, b, c = (open_volume(tmp / f"{n}.nii.gz") for n in ("ras_labels", "lps_labels", "moved"))
    assert world_overlap(a, b) == pytest.approx(1.0) and world_overlap(a, c) == pytest.approx(3 / 21)
    for other, fix in (("ras_labels", "resample one onto the other's grid first (halo-seg resample IN OUT --like"),
                       ("moved", "register one to the other first")):
        assert main(["evaluate", str(tmp / "lps_labels.nii.gz"), str(tmp / f"{other}.nii.gz")]) == 2
        assert fix in capsys.readouterr().err
    viewer = make_napari_viewer()
    for name in ("ras_labels", "lps_labels", "moved"):
        viewer.open(str(tmp / f"{name}.nii.gz"), plugin="napari-halo-seg")
    w = CompareWidget(viewer)
    w.labels.setCurrentText("lps_labels")
    for ref, fix in (("ras_labels", "resample one onto the other's grid first (Plugins > Halo Seg > Resample onto "
                                    "an image)"),
                     ("moved", "they barely overlap in the world, as two scans do: register one to the other")):
        w.reference.setCurrentText(ref)
        w.run()
        assert w.worker is None and "apart in the world" in w.status.text() and fix in w.status.text(), w.status.text()
