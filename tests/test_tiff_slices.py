"""A folder of 2D TIFF slices (one file per z) opens as one volume, everywhere a volume is read."""
import numpy as np
import pytest
import tifffile
import zarr

from halo_seg.batch import find_cases
from halo_seg.engine.runner import segment
from halo_seg.io import VolumeError, open_volume


def _write(folder, vol, name="img_{:d}.tif", **kw):
    folder.mkdir(parents=True, exist_ok=True)
    for i, sl in enumerate(vol):
        tifffile.imwrite(folder / name.format(i), sl, **kw)
    return folder


@pytest.fixture
def vol():
    return np.random.default_rng(0).integers(0, 4000, (12, 9, 7)).astype(np.uint16)


def test_slices_stack_in_natural_order_lazily_with_their_calibration(tmp_path, vol):
    # img_2 before img_10 (not the alphabetical img_10, img_11, img_2): each slice where it lies
    f = _write(tmp_path / "stack", vol, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
               metadata={"spacing": 2.5, "unit": "micron"})
    (f / "notes.txt").write_text("acquisition notes")   # not a slice
    (f / "._img_3.tif").write_bytes(b"\0" * 10)         # macOS resource twin, not a slice
    v = open_volume(f)
    assert v.shape == vol.shape and v.data.chunks[0] == (1,) * len(vol)   # a file per chunk: read as needed
    np.testing.assert_array_equal(v.data.compute(), vol)
    assert v.spacing == pytest.approx((2.5, 0.4, 0.4)) and v.spacing_known and v.meta["unit"] == "µm"
    # an uncalibrated export: the voxel size is unknown, not the (1, 1, 1) taken as known
    v = open_volume(_write(tmp_path / "plain", vol, name="z{:05d}.tiff"))
    np.testing.assert_array_equal(v.data.compute(), vol)
    assert not v.spacing_known


def test_numbering_by_position_or_without_numbers_is_accepted(tmp_path, vol):
    f = tmp_path / "pos"
    f.mkdir()
    for i, sl in enumerate(vol[:4]):   # numbered by depth in µm, in steps of 5, plus a fixed run number
        tifffile.imwrite(f / f"run7_z{i * 5:04d}.tif", sl)
    np.testing.assert_array_equal(open_volume(f).data.compute(), vol[:4])
    f = tmp_path / "letters"
    f.mkdir()
    for c, sl in zip("abc", vol[:3]):
        tifffile.imwrite(f / f"slice_{c}.tif", sl)
    np.testing.assert_array_equal(open_volume(f).data.compute(), vol[:3])


def test_a_missing_slice_a_mixed_folder_or_unlike_slices_are_refused(tmp_path, vol):
    f = _write(tmp_path / "gap", vol)
    (f / "img_5.tif").unlink()
    (f / "img_6.tif").unlink()
    with pytest.raises(VolumeError, match=r"slice numbers 5, 6 missing between img_0.tif and img_11.tif"):
        open_volume(f)
    f = _write(tmp_path / "mixed", vol[:3])
    _write(f, vol[:3] > 2000, name="mask_{:d}.tif")
    with pytest.raises(VolumeError, match=r"TIFF files of 2 series \(3 like img_0.tif; 3 like mask_0.tif\)"):
        open_volume(f)
    f = _write(tmp_path / "sizes", vol)
    tifffile.imwrite(f / "img_4.tif", vol[4, :8])
    with pytest.raises(VolumeError, match=r"img_4.tif is \(8, 7\) uint16 but img_0.tif is \(9, 7\) uint16"):
        open_volume(f)
    f = _write(tmp_path / "types", vol)
    tifffile.imwrite(f / "img_7.tif", vol[7].astype(np.float32))
    with pytest.raises(VolumeError, match=r"img_7.tif is \(9, 7\) float32"):
        open_volume(f)
    f = _write(tmp_path / "bad", vol)
    (f / "img_3.tif").write_bytes(b"II*\0garbage")
    with pytest.raises(VolumeError, match=r"cannot read TIFF slice .*img_3.tif"):
        open_volume(f)
    f = _write(tmp_path / "grid", vol[:4], name="tile_x0_y{:d}.tif")
    _write(f, vol[4:8], name="tile_x1_y{:d}.tif")
    # tiles: two numbers vary and neither steps evenly (x 0,0,0,0,1,1,1,1; y 0,1,2,3,0,1,2,3)
    with pytest.raises(VolumeError, match="number several things"):
        open_volume(f)


def test_rgb_slices_give_their_channels(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (5, 6, 8, 3)).astype(np.uint8)
    f = _write(tmp_path / "rgb", rgb, photometric="rgb")
    with pytest.raises(VolumeError, match="3 channels"):
        open_volume(f)
    np.testing.assert_array_equal(open_volume(f, channel=1).data.compute(), rgb[..., 1])


def test_batch_takes_a_slice_folder_as_one_case_and_a_folder_of_stacks_as_cases(tmp_path, vol):
    cohort = tmp_path / "cohort"
    _write(cohort / "mouse1", vol)
    _write(cohort / "mouse2", vol[::-1])
    tifffile.imwrite(cohort / "mouse3.tif", vol)
    assert [p.name for p in find_cases(cohort)] == ["mouse1", "mouse2", "mouse3.tif"]
    with pytest.raises(VolumeError, match="not a folder of volumes"):
        find_cases(cohort / "mouse3.tif")
    stacks = tmp_path / "stacks"   # 3D files: each a case, and the folder is no volume
    stacks.mkdir()
    for i in range(3):
        tifffile.imwrite(stacks / f"s{i}.tif", vol)
    assert len(find_cases(stacks)) == 3
    with pytest.raises(VolumeError, match="holds 3 TIFF stacks .* `halo-seg batch` segments each.*t000.tif"):
        open_volume(stacks)


def test_segmenting_a_slice_folder_equals_segmenting_the_stack(tmp_path, phantom_npy, tiny_weights):
    img = np.load(phantom_npy)
    f = _write(tmp_path / "slices", img.astype(np.float32))
    a = segment(f, tmp_path / "a.zarr", weights=tiny_weights, mode="whole")
    b = segment(phantom_npy, tmp_path / "b.zarr", weights=tiny_weights, mode="whole")
    la = zarr.open_group(str(a.output), mode="r")["labels"][...]
    np.testing.assert_array_equal(la, zarr.open_group(str(b.output), mode="r")["labels"][...])
    assert la.any()


def test_napari_reader_opens_a_slice_folder(tmp_path, vol):
    from napari_halo_seg._reader import get_reader
    f = _write(tmp_path / "stack", vol)
    assert get_reader(str(tmp_path / "nothing_here")) is None
    (data, kw, kind), = get_reader(str(f))(str(f))
    assert kind == "image" and kw["name"] == "stack" and kw["metadata"]["source"] == str(f)
    np.testing.assert_array_equal(np.asarray(data), vol)


def test_batch_segments_slice_folders_and_exports_tiff(tmp_path, phantom_npy, tiny_weights):
    from halo_seg.cli import main
    img = np.load(phantom_npy).astype(np.float32)
    cohort = tmp_path / "cohort"
    _write(cohort / "m1", img, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata={"spacing": 2.0, "unit": "um"})
    _write(cohort / "m2", img[:, ::-1].copy())
    out = tmp_path / "out"
    assert main(["batch", str(cohort), str(out), "--weights", str(tiny_weights), "--mode", "whole",
                 "--export", ".tif", "--resample", "off"]) == 0
    for case in ("m1", "m2"):
        labels = zarr.open_group(str(out / f"{case}.zarr"), mode="r")["labels"][...]
        np.testing.assert_array_equal(tifffile.imread(out / f"{case}.tif"), labels)
    assert open_volume(out / "m1.tif").spacing == pytest.approx((2.0, 0.5, 0.5))
