import re
import tracemalloc
from pathlib import Path

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
import tifffile
import zarr

from halo_seg.io import VolumeError, open_volume, write_labels


@pytest.fixture
def vol():
    return np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)


def test_numpy_and_dask_arrays(vol):
    v = open_volume(vol)
    assert isinstance(v.data, da.Array) and v.shape == (4, 5, 6)
    np.testing.assert_array_equal(v.data.compute(), vol)
    v2 = open_volume(da.from_array(vol, chunks=2), spacing=(2, 1, 0.5))
    assert v2.spacing == (2.0, 1.0, 0.5)


def test_npy_is_memory_mapped(tmp_path, vol):
    np.save(tmp_path / "v.npy", vol)
    v = open_volume(tmp_path / "v.npy")
    np.testing.assert_array_equal(np.asarray(v.data), vol)


def test_nifti_orientation_and_spacing(tmp_path, vol):
    # NIfTI stores (X, Y, Z): the reader must hand back (Z, Y, X) with the zooms reordered
    img = nib.Nifti1Image(vol.transpose(2, 1, 0), np.diag([0.5, 0.7, 3.0, 1]))
    nib.save(img, tmp_path / "v.nii.gz")
    v = open_volume(tmp_path / "v.nii.gz")
    assert v.shape == (4, 5, 6)
    np.testing.assert_allclose(v.spacing, (3.0, 0.7, 0.5))
    np.testing.assert_array_equal(v.data.compute(), vol)


def test_a_cut_short_or_scaled_nifti(tmp_path):
    """A NIfTI cut short (an interrupted download) is refused when opened (uncompressed: its length
    is known) or named when read (.nii.gz: where its stream ends); a scaled one (scl_slope, PET and
    many MR files) says the floats it reads, not the integers it stores."""
    import os
    arr = np.arange(20 * 30 * 40, dtype=np.int16).reshape(20, 30, 40)
    for name in ("cut.nii", "cut.nii.gz"):
        nib.save(nib.Nifti1Image(arr.T, np.eye(4)), tmp_path / name)
        os.truncate(tmp_path / name, (tmp_path / name).stat().st_size - 1000)
    with pytest.raises(VolumeError, match=r"cut.nii is truncated: its header says 48000 bytes of voxels, cut.nii "
                                          r"holds 47000 \(an interrupted copy or download\?\)"):
        open_volume(tmp_path / "cut.nii")
    with pytest.raises(VolumeError, match=r"cut.nii.gz is truncated: its compressed stream ends in slice \d+ of 20 "
                                          r"\(an interrupted copy or download\?\)"):
        np.asarray(open_volume(tmp_path / "cut.nii.gz").data)
    # scaled: floats (float32 for 16-bit values: float64, nibabel's, would take 4 times the stored bytes),
    # integers where slope and intercept are (a CT as dcm2niix writes it), compressed or not
    for slope, inter, dtype in ((0.5, 10, np.float32), (1, -1024, np.int32), (3, 7, np.int32)):
        img = nib.Nifti1Image(arr.T, np.eye(4))
        img.header.set_slope_inter(slope, inter)
        for name in ("scaled.nii.gz", "scaled.nii"):
            nib.save(img, tmp_path / name)
            v = open_volume(tmp_path / name)
            got = v.data.compute()
            assert v.data.dtype == got.dtype == dtype, (name, slope, inter)
            np.testing.assert_array_equal(got, arr.astype(np.float64) * slope + inter)   # exact, in either
    assert open_volume(tmp_path / "cut.nii.gz").data.dtype == np.int16   # unscaled: as stored


def test_a_nii_gz_is_read_box_by_box(tmp_path, monkeypatch):
    """Python's GzipFile reaches a box of a .nii.gz by decompressing all before it, 1 KiB at a time
    (a halo rank's last block, napari's slice: 3 to 5 times slower, benchmarks/nifti_gz_reading.py).
    A 3D .nii.gz is decompressed from checkpoints in its stream (small ones here, so that boxes
    start from several): every box equals nibabel's own read, in either byte order and any type,
    scaled as nibabel scales it (a CT as dcm2niix writes it: stored integers, RescaleIntercept in
    scl_inter; a PET's float slope), of the type its read gives, 4D and 5D files too, and no
    GzipFile is opened."""
    import gzip
    from halo_seg.io import nrrd_boxes
    monkeypatch.setattr(nrrd_boxes.ZlibStream, "SPACING", 3000)
    monkeypatch.setattr(nrrd_boxes.ZlibStream, "IN", 500)
    rng = np.random.default_rng(0)
    files = {"int16": rng.integers(-1000, 1000, (40, 24, 20)).astype(np.int16),
             "big-endian": rng.integers(-1000, 1000, (17, 9, 11)).astype(">i2"),
             "uint8": rng.integers(0, 255, (13, 10, 7)).astype(np.uint8),
             "float32": rng.random((12, 11, 9)).astype(np.float32)}
    scaled = {"CT, dcm2niix": (files["int16"], 1.0, -1024.0), "PET": (files["uint8"], 0.37, 2.5),
              "float, scaled": (files["float32"], 2.0, 0.0)}
    for name, arr in files.items():
        hdr = nib.Nifti1Header(endianness=">" if name == "big-endian" else "<")
        hdr.set_data_dtype(arr.dtype)
        nib.save(nib.Nifti1Image(arr.T, np.eye(4), header=hdr), tmp_path / f"{name}.nii.gz")
    for name, (arr, slope, inter) in scaled.items():
        img = nib.Nifti1Image(arr.T, np.eye(4))
        img.header.set_slope_inter(slope, inter)
        nib.save(img, tmp_path / f"{name}.nii.gz")
        files[name] = np.asarray(nib.load(tmp_path / f"{name}.nii.gz").dataobj).T   # nibabel's read: the reference
    assert files["CT, dcm2niix"].dtype == np.float64 and files["CT, dcm2niix"].min() < -1024
    from halo_seg.io.volume import scaled_dtype   # read in a smaller type than nibabel's float64, values kept
    for name, (arr, slope, inter) in scaled.items():
        files[name] = files[name].astype(scaled_dtype(arr.dtype, slope, inter))
    assert [files[k].dtype for k in scaled] == [np.int32, np.float32, np.float32]
    opened, boxes = [], []
    real = gzip.GzipFile.__init__
    monkeypatch.setattr(gzip.GzipFile, "__init__", lambda self, *a, **k: opened.append(a) or real(self, *a, **k))
    real_box = nrrd_boxes.GzipBoxes.__getitem__
    monkeypatch.setattr(nrrd_boxes.GzipBoxes, "__getitem__",
                        lambda self, key: boxes.append(Path(self.path).name) or real_box(self, key))
    for name, arr in files.items():
        v = open_volume(tmp_path / f"{name}.nii.gz")
        assert v.data.dtype == arr.dtype.newbyteorder("=") and v.shape == arr.shape, name
        for sl in (np.s_[:], np.s_[-3:], np.s_[5], np.s_[2:9, 3:, 1:6:2], np.s_[:, 4], np.s_[::-1, 2]):
            got = np.asarray(v.data[sl])
            assert got.dtype.isnative, name
            np.testing.assert_array_equal(got, arr[sl], err_msg=name)
    assert not opened and set(boxes) == {f"{name}.nii.gz" for name in files}   # each read through its boxes
    # a time series (4D) and a file of time points and components (5D; the Decathlon's modalities are
    # its 4th axis): each volume from where it starts in the one stream, equal to nibabel's read
    arr = files["int16"]
    series = np.stack([arr.T, -arr.T, 2 * arr.T], -1)                                  # (X, Y, Z, T)
    nib.save(nib.Nifti1Image(series, np.eye(4)), tmp_path / "series.nii.gz")
    five = np.stack([series, series + 7], -1)                                            # (X, Y, Z, T, U)
    img = nib.Nifti1Image(five, np.eye(4))
    img.header.set_slope_inter(0.5, -3.0)
    nib.save(img, tmp_path / "five.nii.gz")
    want = np.asarray(nib.load(tmp_path / "five.nii.gz").dataobj).astype(np.float32)   # 16-bit x 0.5: float32
    opened.clear()   # the writes and the reference read above
    boxes.clear()
    for t in range(3):
        got = np.asarray(open_volume(tmp_path / "series.nii.gz", timepoint=t).data[3:30])
        np.testing.assert_array_equal(got, series[..., t].T[3:30])
        for u in range(2):
            v = open_volume(tmp_path / "five.nii.gz", timepoint=t, channel=u)
            assert v.data.dtype == want.dtype
            np.testing.assert_array_equal(np.asarray(v.data[::2, 5]), want[..., t, u].T[::2, 5])
    assert not opened and set(boxes) == {"series.nii.gz", "five.nii.gz"}


def test_a_damaged_zarr_chunk_or_tiff_names_the_file_and_the_box(tmp_path):
    """A zarr chunk cut short (an interrupted copy of a large dataset) or a TIFF strip missing came up
    as the codec's bare error ("Zstd decompression error: invalid input data"), naming neither the
    file nor where: now a VolumeError says both, so the one chunk can be copied again."""
    import os
    arr = np.arange(20 * 30 * 40, dtype=np.int16).reshape(20, 30, 40) + 1
    z = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=arr.shape, chunks=(8, 30, 40), dtype=arr.dtype)
    z[:] = arr
    chunk = next(p for p in (tmp_path / "v.zarr").rglob("*")   # the second chunk: zarr 3's c/1/0/0, 2's 1.0.0
                 if p.is_file() and (p.parts[-3:] == ("1", "0", "0") or p.name == "1.0.0"))
    os.truncate(chunk, chunk.stat().st_size // 2)
    v = open_volume(tmp_path / "v.zarr")
    np.testing.assert_array_equal(np.asarray(v.data[:8]), arr[:8])   # the other chunks read as before
    with pytest.raises(VolumeError, match=r"cannot read the voxels \[8:16, 0:30, 0:40\] of .*v.zarr "
                                          r"\(damaged or cut short\?\): "):
        np.asarray(v.data[4:])
    tifffile.imwrite(tmp_path / "cut.tif", arr)
    os.truncate(tmp_path / "cut.tif", int((tmp_path / "cut.tif").stat().st_size * 0.6))
    with pytest.raises(VolumeError, match=r"cannot read the voxels \[.*\] of .*cut.tif \(damaged or cut short"):
        np.asarray(open_volume(tmp_path / "cut.tif").data)


def test_tiff(tmp_path, vol):
    tifffile.imwrite(tmp_path / "v.tif", vol)
    v = open_volume(tmp_path / "v.tif")
    np.testing.assert_array_equal(v.data.compute(), vol)


def test_imagej_tiff_spacing_and_unit(tmp_path, vol):
    tifffile.imwrite(tmp_path / "ij.tif", vol, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"spacing": 2.0, "unit": "micron", "axes": "ZYX"})
    v = open_volume(tmp_path / "ij.tif")
    assert v.spacing == pytest.approx((2.0, 0.25, 0.25)) and v.meta["unit"] == "µm"


def test_ome_tiff_physical_size(tmp_path, vol):
    # a microscope's OME-TIFF (Bio-Formats, bfconvert): each axis's size in its own unit
    tifffile.imwrite(tmp_path / "o.ome.tif", vol, metadata={
        "axes": "ZYX", "PhysicalSizeZ": 1500, "PhysicalSizeZUnit": "nm", "PhysicalSizeY": 0.2,
        "PhysicalSizeYUnit": "µm", "PhysicalSizeX": 0.2})   # X's unit left to OME's default, µm
    v = open_volume(tmp_path / "o.ome.tif")
    assert v.spacing == pytest.approx((1.5, 0.2, 0.2)) and v.spacing_known and v.meta["unit"] == "µm"
    tifffile.imwrite(tmp_path / "flat.ome.tif", vol, metadata={"axes": "ZYX", "PhysicalSizeY": 0.2, "PhysicalSizeX": 0.2})
    assert not open_volume(tmp_path / "flat.ome.tif").spacing_known   # no slice spacing: not known


def test_zarr_array_with_spacing(tmp_path, vol):
    z = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=vol.shape, chunks=(2, 5, 6), dtype=vol.dtype)
    z[...] = vol
    z.attrs["spacing"] = [2.0, 1.0, 1.0]
    v = open_volume(tmp_path / "v.zarr")
    assert v.spacing == (2.0, 1.0, 1.0) and v.data.chunks[0] == (2, 2)
    np.testing.assert_array_equal(v.data.compute(), vol)


def _ome(tmp_path, vol, version):
    fmt = 2 if version == "0.4" else 3
    g = zarr.open_group(str(tmp_path / f"v{version}.ome.zarr"), mode="w", zarr_format=fmt)
    g.create_array("0", shape=(1, 1) + vol.shape, chunks=(1, 1, 2, 5, 6), dtype=vol.dtype)[...] = vol[None, None]
    ms = [{"version": version, "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
                                        {"name": "z", "type": "space", "unit": "micrometer"},
                                        {"name": "y", "type": "space", "unit": "micrometer"},
                                        {"name": "x", "type": "space", "unit": "micrometer"}],
           "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale",
                                                                      "scale": [1, 1, 4.0, 0.5, 0.25]}]}]}]
    if version == "0.4":
        g.attrs["multiscales"] = ms
    else:
        for m in ms:
            m.pop("version")
        g.attrs["ome"] = {"version": "0.5", "multiscales": ms}
    return tmp_path / f"v{version}.ome.zarr"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr(tmp_path, vol, version):
    v = open_volume(_ome(tmp_path, vol, version))
    assert v.shape == (4, 5, 6)
    assert v.spacing == (4.0, 0.5, 0.25)
    assert v.meta["format"] == f"ome-zarr {version}" and v.meta["unit"] == "µm"
    np.testing.assert_array_equal(v.data.compute(), vol)


def test_zarr_open_is_lazy(tmp_path):
    # a 1 GiB zarr volume (chunks never written read as fill value): opening it and reading one
    # block must not allocate anything near the volume's size
    z = zarr.open_array(str(tmp_path / "big.zarr"), mode="w", shape=(1024, 1024, 1024), chunks=(64, 64, 64),
                        dtype=np.uint8, fill_value=0)
    z[64:128, 0:64, 0:64] = 7
    tracemalloc.start()
    v = open_volume(tmp_path / "big.zarr")
    block = np.asarray(v.data[64:96, 0:32, 0:32])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert v.shape == (1024, 1024, 1024)
    assert (block == 7).all()
    assert peak < 32 * 2 ** 20, f"opening + one block read allocated {peak / 2**20:.0f} MiB"


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        open_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "v.xyz").write_text("x")
    with pytest.raises(VolumeError, match="unsupported volume format"):
        open_volume(tmp_path / "v.xyz")
    np.save(tmp_path / "flat.npy", np.zeros((5, 5)))
    with pytest.raises(VolumeError, match="expected a 3D"):
        open_volume(tmp_path / "flat.npy")
    with pytest.raises(VolumeError, match="expected a 3D"):
        open_volume(np.zeros((2, 3, 4, 5)))
    with pytest.raises(VolumeError, match="empty"):
        open_volume(np.zeros((0, 3, 4)))
    with pytest.raises(VolumeError, match="dtype"):
        open_volume(np.array([[["a"]]]))
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(VolumeError, match="cannot read NIfTI"):
        open_volume(tmp_path / "bad.nii.gz")
    with pytest.raises(VolumeError, match="spacing"):
        open_volume(np.zeros((2, 2, 2)), spacing=(1, 0, 1))
    with pytest.raises(VolumeError, match="dtype complex"):   # was opened; the engine then took a real part
        open_volume(np.ones((2, 3, 4), np.complex64))
    np.save(tmp_path / "obj.npy", np.array([[[None]]], dtype=object), allow_pickle=True)
    with pytest.raises(VolumeError, match="cannot read .*obj.npy as a volume"):
        open_volume(tmp_path / "obj.npy")


def test_a_voxel_size_the_file_records_wrong_is_refused_unless_given(tmp_path, capsys):
    """A NaN zoom in a NIfTI header or a negative OME-Zarr scale was taken as the spacing: measured
    volumes, resampling and the model's voxel size came out NaN or negative."""
    img = nib.Nifti1Image(np.ones((6, 5, 4), np.float32), np.eye(4))
    img.header.set_zooms((1.0, np.nan, 2.0))
    nib.save(img, tmp_path / "nan.nii.gz")
    with pytest.raises(VolumeError, match=r"nan.nii.gz records the voxel size \(2.0, nan, 1.0\).*--spacing"):
        open_volume(tmp_path / "nan.nii.gz")
    assert open_volume(tmp_path / "nan.nii.gz", spacing=(2, 1, 1)).spacing == (2.0, 1.0, 1.0)
    import json
    from halo_seg.cli import main
    assert main(["info", str(tmp_path / "nan.nii.gz")]) == 0   # info says what the file holds, and what is wrong
    info = json.loads(capsys.readouterr().out)
    assert info["axes"] == "(z=4, y=5, x=6)" and "records the voxel size" in info["problem"]
    g = zarr.open_group(str(tmp_path / "neg.zarr"), mode="w")
    g.create_array("0", shape=(4, 5, 6), dtype="u2")
    axes = [{"name": n, "type": "space"} for n in "zyx"]
    scale = {"type": "scale", "scale": [-1.0, 0.5, 0.5]}
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [scale]}]}]}
    with pytest.raises(VolumeError, match=r"records the voxel size \(-1.0, 0.5, 0.5\)"):
        open_volume(tmp_path / "neg.zarr")
    from napari_halo_seg._reader import read_volume
    with pytest.raises(VolumeError, match="records the voxel size"):
        read_volume(str(tmp_path / "neg.zarr"))
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "1", "coordinateTransformations": [scale]}]}]}
    with pytest.raises(VolumeError, match="names the array '1', which is not in it"):
        open_volume(tmp_path / "neg.zarr", spacing=(1, 1, 1))


def test_write_labels_roundtrip(tmp_path):
    lab = np.zeros((10, 12, 14), np.uint16)
    lab[2:5, 3:9, 4:6] = 300
    p = write_labels(da.from_array(lab, chunks=5), tmp_path / "l.zarr", spacing=(2, 1, 1), chunks=(5, 6, 7))
    z = zarr.open_array(str(p), mode="r")
    assert z.chunks == (5, 6, 7) and z.attrs["spacing"] == [2.0, 1.0, 1.0]
    np.testing.assert_array_equal(z[...], lab)
    write_labels(lab, tmp_path / "l.nii.gz", spacing=(2, 1, 1))
    v = open_volume(tmp_path / "l.nii.gz")
    np.testing.assert_array_equal(v.data.compute(), lab)
    assert v.spacing == (2.0, 1.0, 1.0)
    with pytest.raises(VolumeError, match="integer"):
        write_labels(lab.astype(float), tmp_path / "f.zarr")
    with pytest.raises(VolumeError, match="use a .zarr"):
        write_labels(lab, tmp_path / "l.png")


def test_label_ids_are_np_unique_read_slab_by_slab(tmp_path):
    from halo_seg.io.labels import label_ids
    rng = np.random.default_rng(0)
    lab = np.zeros((9, 20, 24), np.uint16)
    where = rng.random(lab.shape) < 0.02
    lab[where] = rng.integers(1, 3000, int(where.sum()))
    lab[-1, -1, -1] = 65535
    expect = [int(v) for v in np.unique(lab) if v]
    z = zarr.open(str(tmp_path / "l.zarr"), mode="w", shape=lab.shape, chunks=(2, 20, 24), dtype=lab.dtype)
    z[:] = lab
    for arr in (lab, da.from_array(lab, chunks=(3, 20, 24)), z):
        assert label_ids(arr, slab_voxels=2 * 20 * 24) == expect          # slabs of 2 slices
    assert label_ids(lab > 0) == [1] and label_ids(np.zeros((2, 3, 3), np.int8)) == []
    with pytest.raises(VolumeError, match="negative"):
        label_ids(np.full((2, 3, 3), -1, np.int16))
    with pytest.raises(VolumeError, match="not labels"):
        label_ids(lab.astype(np.float32))
    with pytest.raises(VolumeError, match="3D"):
        label_ids(lab[0])
    with pytest.raises(InterruptedError):
        label_ids(lab, cancel=lambda: True)


def test_float_stored_labels_are_labels_and_fractions_are_refused(tmp_path):
    """FSL and SPM write masks as float32: whole values are read as the ids they are (lazily for a
    lazy volume); a fraction, NaN or a negative value is refused naming it, never truncated to an id."""
    from halo_seg.io.labels import open_labels, whole_labels
    lab = np.zeros((6, 7, 8), np.uint16)
    lab[1:4, 2:5, 3:7] = 2
    lab[4, 0, 0] = 70000 % 65536 + 300
    ints = lab.astype(np.int32)
    assert whole_labels(ints) is ints and whole_labels(lab > 0).dtype == bool
    for arr in (lab.astype(np.float32), da.from_array(lab.astype(np.float64), chunks=(2, 7, 8))):
        out = whole_labels(arr, slab_voxels=56)
        assert out.dtype == np.uint32 and isinstance(out, type(arr))
        np.testing.assert_array_equal(np.asarray(out), lab)
    z = zarr.open(str(tmp_path / "f.zarr"), mode="w", shape=lab.shape, chunks=(3, 7, 8), dtype=np.float32)
    z[:] = lab
    np.testing.assert_array_equal(np.asarray(whole_labels(z)), lab)
    for value, shown in ((0.5, "0.5"), (np.nan, "nan"), (-1.0, "-1"), (2.0 ** 40, "1.09951e+12")):
        bad = lab.astype(np.float64)
        bad[5, 6, 7] = value
        with pytest.raises(VolumeError, match=re.escape(f"the mask holds float64 values that are not labels (e.g. {shown})")):
            whole_labels(bad, "the mask", slab_voxels=56)
    with pytest.raises(VolumeError, match="not labels"):
        whole_labels(lab.astype(np.complex64))
    nib.save(nib.Nifti1Image(lab.astype(np.float32).transpose(2, 1, 0), np.eye(4)), tmp_path / "m.nii.gz")
    v = open_labels(tmp_path / "m.nii.gz")
    assert v.data.dtype == np.uint32
    np.testing.assert_array_equal(v.data.compute(), lab)
    nib.save(nib.Nifti1Image((lab * 0.3).astype(np.float32).transpose(2, 1, 0), np.eye(4)), tmp_path / "p.nii.gz")
    with pytest.raises(VolumeError, match=r"p.nii.gz holds float32 values that are not labels \(e.g. 0.6\)"):
        open_labels(tmp_path / "p.nii.gz")


def test_labels_saved_back_onto_the_store_they_were_read_from_are_kept(tmp_path):
    """A Labels layer opened from a zarr is a lazy view of it; saving it back to the same path wiped
    the store before reading it (all zeros). An error while writing leaves the old labels whole, and
    only labels written here are ever replaced."""
    lab = np.zeros((6, 10, 12), np.uint8)
    lab[1:5, 2:8, 3:9] = 4
    path = tmp_path / "l.zarr"
    write_labels(lab, path, chunks=(2, 10, 12))
    write_labels(open_volume(path).data + 1, path)            # read lazily from the store it replaces
    np.testing.assert_array_equal(np.asarray(open_volume(path).data), lab + 1)

    def fail(block):
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        write_labels(da.from_array(lab, chunks=(2, 10, 12)).map_blocks(fail, dtype=lab.dtype), path)
    np.testing.assert_array_equal(np.asarray(open_volume(path).data), lab + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.zarr"]   # no temporary left
    img = zarr.open(str(tmp_path / "img.zarr"), mode="w", shape=lab.shape, dtype=np.float32)
    img[:] = 3.5
    grp = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    grp.create_array("x", shape=(2,), dtype=np.uint8)
    (tmp_path / "f.zarr").write_text("not a store")
    for name, msg in (("img.zarr", "holds a float32 zarr array not marked as labels"),
                      ("g.zarr", "holds a zarr group"), ("f.zarr", "is not a zarr store of labels")):
        with pytest.raises(VolumeError, match=msg):
            write_labels(lab, tmp_path / name)
    assert (np.asarray(img) == 3.5).all() and list(zarr.open_group(str(tmp_path / "g.zarr")).keys()) == ["x"]
