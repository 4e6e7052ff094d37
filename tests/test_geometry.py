"""Labels saved for a NIfTI scan must lie where the scan lies: its affines, codes and voxel order,
through the engine, the command line and the napari reader/writer."""
import json
import warnings

import nibabel as nib
import numpy as np
import pytest
import zarr

from halo_seg.cli import main
from halo_seg.io import VolumeError, open_volume, write_labels
from halo_seg.io.geometry import KEY, check, orientation

SHAPE_XYZ = (20, 24, 16)   # NIfTI order; the engine sees (16, 24, 20)


def _oblique_affine():
    """LPS-like, rotated 20 degrees about z, 0.8 x 0.9 x 2.5 mm voxels, origin far from 0."""
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    rot = np.array([[-c, s, 0], [-s, -c, 0], [0, 0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.8, 0.9, 2.5])
    aff[:3, 3] = [101.5, 87.0, -64.0]
    return aff


@pytest.fixture
def scan(tmp_path):
    """A scanner-space NIfTI (sform and qform both coded 'scanner') with a bright block in it."""
    rng = np.random.default_rng(0)
    data = rng.normal(100, 5, SHAPE_XYZ).astype(np.float32)
    data[4:12, 6:15, 3:9] += 80          # x 4..11, y 6..14, z 3..8
    img = nib.Nifti1Image(data, None)
    img.set_sform(_oblique_affine(), code="scanner")
    img.set_qform(_oblique_affine(), code="scanner")
    p = tmp_path / "scan.nii.gz"
    nib.save(img, p)
    return p, data


def _same_place(written, source):
    a, b = nib.load(str(written)), nib.load(str(source))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
    for coded in ("get_sform", "get_qform"):
        (ma, ca), (mb, cb) = getattr(a.header, coded)(coded=True), getattr(b.header, coded)(coded=True)
        assert int(ca) == int(cb)
        np.testing.assert_allclose(ma, mb, atol=1e-5)
    assert a.shape == b.shape


def test_labels_written_for_a_scan_lie_where_it_lies(tmp_path, scan):
    path, data = scan
    vol = open_volume(path)
    assert vol.shape == SHAPE_XYZ[::-1] and vol.meta[KEY]["sform_code"] == 1
    labels = (np.asarray(vol.data) > 140).astype(np.uint8)       # (Z, Y, X), computed on the grid
    out = write_labels(labels, tmp_path / "lab.nii.gz", spacing=vol.spacing, geometry=vol.meta[KEY])
    _same_place(out, path)
    img = nib.load(str(out))
    assert img.header.get_intent()[0] == "label"
    # voxel for voxel on the scan: the label file's (x, y, z) voxels are the block's
    np.testing.assert_array_equal(np.asarray(img.dataobj), (data > 140).astype(np.uint8))
    # the world position of the block's first voxel is the same in both files
    np.testing.assert_allclose(img.affine @ [4, 6, 3, 1], nib.load(str(path)).affine @ [4, 6, 3, 1])
    back = open_volume(out)
    assert back.meta["labels"] and not vol.meta["labels"]
    assert orientation(back.meta[KEY]) == orientation(vol.meta[KEY]) == "".join(nib.aff2axcodes(_oblique_affine()))


def test_without_geometry_the_voxel_size_alone_as_before(tmp_path):
    out = write_labels(np.ones((3, 4, 5), np.uint8), tmp_path / "l.nii.gz", spacing=(2.0, 1.0, 0.5))
    np.testing.assert_allclose(nib.load(str(out)).affine, np.diag([0.5, 1.0, 2.0, 1.0]))


def test_a_geometry_for_another_grid_is_refused_naming_both_shapes(tmp_path, scan):
    g = open_volume(scan[0]).meta[KEY]
    with pytest.raises(VolumeError, match=r"shape \(16, 24, 20\), not \(16, 24, 21\)"):
        write_labels(np.zeros((16, 24, 21), np.uint8), tmp_path / "l.nii.gz", geometry=g)
    assert not (tmp_path / "l.nii.gz").exists()
    bad = dict(g, sform=[[0] * 4] * 4)
    with pytest.raises(VolumeError, match="invertible"):
        check(bad)


def test_zarr_keeps_the_geometry_and_exports_it(tmp_path, scan):
    path, _ = scan
    vol = open_volume(path)
    labels = (np.asarray(vol.data) > 140).astype(np.uint8)
    write_labels(labels, tmp_path / "lab.zarr", spacing=vol.spacing, geometry=vol.meta[KEY])
    z = open_volume(tmp_path / "lab.zarr")
    assert check(z.meta[KEY]) == check(vol.meta[KEY])
    assert main(["export", str(tmp_path / "lab.zarr"), str(tmp_path / "lab.nii.gz")]) == 0
    _same_place(tmp_path / "lab.nii.gz", path)


def test_segment_then_export_places_labels_on_the_scan(tmp_path, scan, tiny_weights, capsys):
    path, _ = scan
    assert main(["segment", str(path), str(tmp_path / "seg.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole"]) == 0
    assert open_volume(tmp_path / "seg.zarr").meta["unit"] == "mm"   # the scan's, for `measure`
    assert main(["export", str(tmp_path / "seg.zarr"), str(tmp_path / "seg.nii.gz")]) == 0
    _same_place(tmp_path / "seg.nii.gz", path)
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "seg.nii.gz")).dataobj).transpose(2, 1, 0),
                                  zarr.open_group(str(tmp_path / "seg.zarr"))["labels"][...])
    # an unplaced label volume takes its place from --like; one of another shape is refused
    np.save(tmp_path / "lab.npy", np.ones(SHAPE_XYZ[::-1], np.uint8))
    assert main(["export", str(tmp_path / "lab.npy"), str(tmp_path / "like.nii.gz"), "--like", str(path)]) == 0
    _same_place(tmp_path / "like.nii.gz", path)
    np.save(tmp_path / "other.npy", np.ones((5, 6, 7), np.uint8))
    capsys.readouterr()
    assert main(["export", str(tmp_path / "other.npy"), str(tmp_path / "x.nii.gz"), "--like", str(path)]) == 2
    assert "not on that image's grid" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "lab.npy"), str(tmp_path / "y.nii.gz"), "--like",
                 str(tmp_path / "other.npy")]) == 2
    assert "carries no scan geometry" in capsys.readouterr().err
    # the scan is never written over: not as --like, not as the scan segment ran on, not the labels
    before = path.read_bytes()
    for args, what in (([str(tmp_path / "lab.npy"), str(path), "--like", str(path)], "the scan given with --like"),
                       ([str(tmp_path / "seg.zarr"), str(path)], "the scan they were computed on"),
                       ([str(tmp_path / "seg.nii.gz"), str(tmp_path / "seg.nii.gz")], "the labels")):
        assert main(["export", *args]) == 2
        assert f"is {what}; write to a new path" in capsys.readouterr().err
    assert path.read_bytes() == before
    np.save(tmp_path / "float.npy", np.full(SHAPE_XYZ[::-1], 0.5, np.float32))   # a probability map
    assert main(["export", str(tmp_path / "float.npy"), str(tmp_path / "z.nii.gz")]) == 2
    assert "not labels" in capsys.readouterr().err and not (tmp_path / "z.nii.gz").exists()
    assert main(["export", str(tmp_path / "lab.npy"), str(tmp_path / "lab.xyz")]) == 2
    assert "use .nii.gz, .nii, .nrrd, .mha, .tif or .zarr (labels), .dcm (DICOM SEG), .rtstruct.dcm (RT structure set), .stl, .ply, .obj" in capsys.readouterr().err
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["origin_mm"] == [101.5, 87.0, -64.0] and info["orientation"] == orientation(open_volume(path).meta[KEY])


def test_napari_reader_and_writer_carry_the_scan_geometry(tmp_path, scan):
    from napari_halo_seg._reader import get_reader
    from napari_halo_seg._writer import write_labels as napari_write
    path, data = scan
    [(img, meta, kind)] = get_reader(str(path))(str(path))
    assert kind == "image" and KEY in meta["metadata"] and meta["metadata"]["unit"] == "mm"
    # a labels layer made over that image (as the widgets make them) is saved on the scan
    labels = (np.asarray(img) > 140).astype(np.uint16)
    layer_meta = {"scale": meta["scale"], "metadata": {KEY: meta["metadata"][KEY]}}
    napari_write(str(tmp_path / "objects.nii.gz"), labels, layer_meta)
    _same_place(tmp_path / "objects.nii.gz", path)
    # and opens again as a Labels layer, still placed
    [(back, bmeta, bkind)] = get_reader(str(tmp_path / "objects.nii.gz"))(str(tmp_path / "objects.nii.gz"))
    assert bkind == "labels" and KEY in bmeta["metadata"]
    np.testing.assert_array_equal(np.asarray(back), labels)
    # a layer that no longer fits its scan's grid is still saved (nothing the user drew is lost), with a warning
    with pytest.warns(UserWarning, match="voxel size alone"):
        napari_write(str(tmp_path / "cut.nii.gz"), labels[:-1], layer_meta)
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "cut.nii.gz")).dataobj).transpose(2, 1, 0),
                                  labels[:-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        napari_write(str(tmp_path / "plain.zarr"), labels, {"scale": meta["scale"]})


def test_widgets_labels_save_onto_the_scan(make_napari_viewer, qtbot, tmp_path, scan, tiny_weights):
    """In napari: the interactive widget's objects and the automatic widget's labels, saved as NIfTI
    through the plugin, lie where the scan opened through it lies."""
    pytest.importorskip("napari")
    from napari_halo_seg._auto_widget import AutoSegmentWidget
    from napari_halo_seg._interactive_widget import InteractiveWidget
    path, data = scan
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-halo-seg")
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("scan")
    w.ensure_prompt_layers()
    objects = viewer.layers["objects"]
    objects.data = (np.asarray(viewer.layers["scan"].data) > 140).astype(np.uint16) * 3
    objects.save(str(tmp_path / "objects.nii.gz"), plugin="napari-halo-seg")
    _same_place(tmp_path / "objects.nii.gz", path)
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "objects.nii.gz")).dataobj),
                                  (data > 140).astype(np.uint16) * 3)

    a = AutoSegmentWidget(viewer)
    a.image.setCurrentText("scan")
    a.weights.setCurrentText(str(tiny_weights))
    a.output.setText(str(tmp_path / "auto.zarr"))
    a.grid.setText("2,1,1")
    a.run()
    qtbot.waitUntil(lambda: a.worker is None, timeout=120_000)
    assert "done" in a.status.text(), a.status.text()
    auto = viewer.layers[-1]
    auto.save(str(tmp_path / "auto.nii.gz"), plugin="napari-halo-seg")
    _same_place(tmp_path / "auto.nii.gz", path)
