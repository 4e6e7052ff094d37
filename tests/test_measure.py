"""Per-object measurements, against scikit-image's regionprops as the independent reference."""

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from skimage.measure import regionprops_table

from halo_seg import cli, measure
from halo_seg.io import VolumeError, open_volume
from halo_seg.measure import measure_labels, measure_mask, volume_text


def _scene(seed=0, shape=(23, 40, 37)):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint16)
    for k in (3, 7, 300, 12):   # ids need not be consecutive
        z, y, x = (int(rng.integers(0, s - 6)) for s in shape)
        d, h, w = (int(v) for v in rng.integers(2, 9, 3))
        lab[z:z + d, y:y + h, x:x + w] = k   # later boxes cut into earlier ones
    img = rng.normal(100, 20, shape).astype(np.float32)
    return lab, img


def _reference(lab, img):
    return regionprops_table(lab.astype(np.int64), intensity_image=img,
                             properties=("label", "area", "centroid", "bbox", "intensity_mean", "intensity_min",
                                         "intensity_max"))


@pytest.mark.parametrize("slab", [1 << 23, 40 * 37 * 2, 1])   # one slab; slabs of 2 slices; one slice each
def test_measure_labels_matches_regionprops(monkeypatch, slab):
    lab, img = _scene()
    monkeypatch.setattr(measure, "SLAB_VOXELS", slab)
    t = measure_labels(da.from_array(lab, chunks=(5, 40, 37)), spacing=(2.0, 0.5, 0.5), image=img, unit="mm")
    ref = _reference(lab, img)
    np.testing.assert_array_equal(t["label"], ref["label"])
    np.testing.assert_array_equal(t["voxels"], ref["area"])
    np.testing.assert_allclose(t["volume"], ref["area"] * 0.5)
    np.testing.assert_allclose(t["volume_ml"], ref["area"] * 0.5e-3)
    for i, a in enumerate("zyx"):
        np.testing.assert_allclose(t["centroid_" + a], ref[f"centroid-{i}"], atol=1e-9)
        np.testing.assert_array_equal(t[f"bbox_{a}0"], ref[f"bbox-{i}"])
        np.testing.assert_array_equal(t[f"bbox_{a}1"], ref[f"bbox-{i + 3}"] - 1)   # inclusive here
    np.testing.assert_allclose(t["mean"], ref["intensity_mean"], rtol=1e-6)
    np.testing.assert_allclose(t["min"], ref["intensity_min"])
    np.testing.assert_allclose(t["max"], ref["intensity_max"])
    k = int(np.flatnonzero(t["label"] == 7)[0])
    np.testing.assert_allclose(t["std"][k], img[lab == 7].astype(np.float64).std(), rtol=1e-6)
    np.testing.assert_allclose(t["equivalent_diameter"], np.cbrt(6 * t["volume"] / np.pi))


def test_world_centroid_and_one_mask():
    lab, img = _scene(1)
    affine = np.array([[-0.5, 0, 0.1, 90], [0, 0.5, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
    t = measure_labels(lab, (2.0, 0.5, 0.5), unit="mm", affine=affine)
    k = int(np.flatnonzero(t["label"] == 300)[0])
    zz, yy, xx = np.nonzero(lab == 300)
    world = affine @ np.array([xx.mean(), yy.mean(), zz.mean(), 1.0])   # NIfTI: voxel (x, y, z)
    np.testing.assert_allclose([t["centroid_world_" + a][k] for a in "xyz"], world[:3])
    one = measure_mask(lab == 300, label=5, spacing=(2.0, 0.5, 0.5), image=da.from_array(img), unit="mm",
                       affine=affine)
    assert one["label"].tolist() == [5]
    full = measure_labels(lab, (2.0, 0.5, 0.5), image=img, unit="mm", affine=affine)
    for col in full:
        if col != "label":
            np.testing.assert_allclose(one[col], full[col][k:k + 1], err_msg=col)
    assert len(measure_mask(np.zeros((3, 4, 5), bool))["label"]) == 0
    # the object given as a crop with the box it covers (wider than the object): the same row
    zz, yy, xx = np.nonzero(lab == 300)
    box = (slice(max(zz.min() - 1, 0), zz.max() + 1), slice(max(yy.min() - 2, 0), yy.max() + 3),
           slice(xx.min(), xx.max() + 1))
    crop = measure_mask((lab == 300)[box], label=5, spacing=(2.0, 0.5, 0.5), image=da.from_array(img), unit="mm",
                        affine=affine, box=box)
    for col in one:
        np.testing.assert_allclose(crop[col], one[col], err_msg=col)
    with pytest.raises(VolumeError, match="box"):
        measure_mask((lab == 300)[box], box=(box[0], box[1], slice(0, 1)))
    with pytest.raises(VolumeError, match="does not fit"):
        measure_mask(np.ones((2, 2, 2), bool), image=img, box=(slice(0, 2), slice(0, 2), slice(img.shape[2], img.shape[2] + 2)))


def test_units_and_refusals():
    assert volume_text(8000.0, "mm") == "8 mL"
    assert volume_text(8.0, "µm") == "8 µm³"
    t = measure_labels(np.ones((2, 2, 2), bool), (1, 1, 1), unit="µm")
    assert t["voxels"].tolist() == [8] and "volume_ml" not in t
    with pytest.raises(VolumeError, match="not labels"):
        measure_labels(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(VolumeError, match="3D"):
        measure_labels(np.zeros((2, 2), np.uint8))
    with pytest.raises(VolumeError, match="negative"):
        measure_labels(-np.ones((2, 2, 2), np.int8))
    huge = np.zeros((2, 2, 2), np.uint64)
    huge[0, 0, 0] = 2 ** 63 + 5   # measured as a negative id before
    with pytest.raises(VolumeError, match="holds the id 9223372036854775813, above 2\\*\\*63 - 1"):
        measure_labels(huge)
    huge[0, 0, 0] = 2 ** 63 - 1
    assert measure_labels(huge)["label"].tolist() == [2 ** 63 - 1]
    with pytest.raises(VolumeError, match="one voxel grid"):
        measure_labels(np.zeros((2, 2, 2), np.uint8), image=np.zeros((2, 2, 3)))
    with pytest.raises(VolumeError, match="spacing"):
        measure_labels(np.zeros((2, 2, 2), np.uint8), spacing=(1, 0, 1))


def test_cli_measure_nifti(tmp_path, capsys):
    lab, img = _scene(2)
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    nib.save(nib.Nifti1Image(lab.transpose(2, 1, 0), affine), tmp_path / "lab.nii.gz")
    nib.save(nib.Nifti1Image(img.transpose(2, 1, 0), affine), tmp_path / "img.nii.gz")
    np.save(tmp_path / "lab.npy", lab)
    assert open_volume(tmp_path / "img.nii.gz").meta["unit"] == "mm"   # NIfTI "unknown" is read as mm
    assert cli.main(["measure", str(tmp_path / "lab.nii.gz"), "--image", str(tmp_path / "img.nii.gz"),
                     "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "mL" in out and f"{len(np.unique(lab)) - 1} objects" in out
    rows = (tmp_path / "t.csv").read_text().splitlines()
    ref = _reference(lab, img)
    assert rows[0].split(",")[:3] == ["label", "voxels", "volume"] and len(rows) == len(ref["label"]) + 1
    first = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert int(first["label"]) == ref["label"][0] and int(first["voxels"]) == ref["area"][0]
    assert float(first["volume_ml"]) == pytest.approx(ref["area"][0] * 0.5e-3, rel=1e-5)
    # a .npy has no spacing: the image's is used
    assert cli.main(["measure", str(tmp_path / "lab.npy"), "--image", str(tmp_path / "img.nii.gz")]) == 0
    assert f"{ref['area'].sum() * 0.5e-3:.4g} mL in all" in capsys.readouterr().out
    assert cli.main(["measure", str(tmp_path / "img.nii.gz")]) == 2
    assert "not labels" in capsys.readouterr().err
    assert cli.main(["measure", str(tmp_path / "lab.nii.gz"), "--spacing", "1,x,1"]) == 2
    assert "--spacing" in capsys.readouterr().err
    # the same labels stored as float32 (as FSL writes masks) measure the same
    nib.save(nib.Nifti1Image(lab.transpose(2, 1, 0).astype(np.float32), affine), tmp_path / "labf.nii.gz")
    assert cli.main(["measure", str(tmp_path / "labf.nii.gz"), "--image", str(tmp_path / "img.nii.gz"),
                     "--csv", str(tmp_path / "tf.csv")]) == 0
    assert (tmp_path / "tf.csv").read_text() == (tmp_path / "t.csv").read_text()


@pytest.mark.parametrize("name", ["lab.nii.gz", "lab.zarr"])
def test_written_labels_keep_their_unit(tmp_path, name):
    from halo_seg.io import write_labels
    lab, _ = _scene(3)
    write_labels(lab, tmp_path / name, spacing=(2.0, 0.25, 0.25), unit="µm")
    back = open_volume(tmp_path / name)
    assert back.meta["unit"] == "µm" and back.spacing == pytest.approx((2.0, 0.25, 0.25))
    t = measure_labels(back.data, back.spacing, unit=back.meta["unit"])
    assert "volume_ml" not in t and t["volume"].sum() == pytest.approx((lab > 0).sum() * 0.125)


def test_surface_area_and_sphericity_of_known_shapes():
    """Marching cubes on a voxel mask, as radiomics computes them: a smooth surface comes out about
    9 % larger with cubic voxels (the staircase), more with slices four times thicker than pixels."""
    from halo_seg.measure import add_shape
    zz, yy, xx = np.indices((40, 40, 40))
    lab = (((zz - 19.5) ** 2 + (yy - 19.5) ** 2 + (xx - 19.5) ** 2) <= 15.0 ** 2).astype(np.uint8)
    cube = np.zeros((30, 30, 30), np.uint8)
    cube[5:25, 5:25, 5:25] = 2
    t = add_shape(measure_labels(lab, unit="mm"), lab)
    ratio = t["surface_area"][0] / (4 * np.pi * (3 * t["volume"][0] / (4 * np.pi)) ** (2 / 3))
    assert 1.0 < ratio < 1.12 and 0.88 < t["sphericity"][0] < 0.98
    tc = add_shape(measure_labels(cube), cube)
    # a cube: pi^(1/3) 6^(2/3) / 6 = 0.806 with sharp edges; marching cubes bevels them a little
    assert tc["sphericity"][0] == pytest.approx(0.806, abs=0.05) and tc["sphericity"][0] < t["sphericity"][0]
    assert tc["surface_area"][0] == pytest.approx(6 * 20.0 ** 2, rel=0.05)
    # physical spacing: the same ball sampled in 2 x 0.5 x 0.5 mm voxels keeps its area within 20 %
    zz, yy, xx = np.indices((20, 80, 80))
    aniso = ((((zz - 9.5) * 2) ** 2 + ((yy - 39.5) * 0.5) ** 2 + ((xx - 39.5) * 0.5) ** 2) <= 15.0 ** 2)
    ta = add_shape(measure_labels(aniso, (2.0, 0.5, 0.5)), aniso, (2.0, 0.5, 0.5))
    assert ta["surface_area"][0] == pytest.approx(4 * np.pi * 15.0 ** 2, rel=0.2)


def test_a_table_is_never_written_over_a_volume(tmp_path, capsys):
    """`measure lab.npy --csv lab.npy` (or evaluate's --csv naming a scan) wrote the table over the
    volume; an earlier table is still replaced."""
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[1:3, 1:3, 1:3] = 1
    np.save(tmp_path / "lab.npy", lab)
    nib.save(nib.Nifti1Image(lab.T.astype(np.float32), np.eye(4)), tmp_path / "scan.nii.gz")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for args in (["measure", "lab.npy", "--csv", "lab.npy"], ["evaluate", "lab.npy", "lab.npy", "--csv", "scan.nii.gz"]):
        assert cli.main([str(tmp_path / a) if a.endswith((".npy", ".gz")) else a for a in args]) == 2
        assert "is not a text table" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    (tmp_path / "t.csv").write_text("label,voxels\n9,9\n")
    assert cli.main(["measure", str(tmp_path / "lab.npy"), "--csv", str(tmp_path / "t.csv")]) == 0
    assert (tmp_path / "t.csv").read_text().splitlines()[1].startswith("1,8,")
    with pytest.raises(VolumeError, match="is a folder"):
        measure.write_csv({"a": np.zeros(1)}, tmp_path)
