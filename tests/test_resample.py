"""Running the network at the voxel size its weights were trained at (engine/resample.py,
engine/resampled_run.py): the interpolation against PyTorch's, block-wise against whole, the policy,
and `segment` end to end against an independent reference."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr

from halo_seg.engine import resample as rs
from halo_seg.engine.resampled_run import work_path
from halo_seg.engine.runner import Cancelled, EngineError, segment
from halo_seg.engine.unet import UNet3D
from halo_seg.engine.weights import load_unet, save_unet
from halo_seg.io import open_volume
from halo_seg.io.volume import Volume, VolumeError


def _torch_resize(x: np.ndarray, shape) -> np.ndarray:
    """PyTorch's trilinear resize (align_corners=False) of (Z, Y, X) or (C, Z, Y, X)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t[None, None] if x.ndim == 3 else t[None]
    out = F.interpolate(t, size=tuple(shape), mode="trilinear", align_corners=False)[0]
    return (out[0] if x.ndim == 3 else out).numpy()


@pytest.mark.parametrize("src,dst", [((10, 13, 7), (20, 26, 14)), ((21, 17, 30), (10, 9, 15)),
                                     ((9, 9, 9), (13, 5, 22))])
def test_interpolation_is_torch_trilinear_and_blockwise_equals_whole(src, dst):
    x = np.random.default_rng(0).normal(size=src).astype(np.float32)
    whole = rs.resample_block(lambda r: x[r], src, dst, tuple(slice(0, n) for n in dst))
    np.testing.assert_allclose(whole, _torch_resize(x, dst), atol=1e-5)
    lazy = rs.lazy_resample(rs.ArrayReader(x), dst, chunks=4).compute()
    assert np.array_equal(lazy, whole)   # the same arithmetic per voxel, whatever the block
    # leading (class) axes are carried along
    c = np.stack([x, 2 * x + 1])
    both = rs.resample_block(lambda r: c[(slice(None),) + r], src, dst, tuple(slice(0, n) for n in dst))
    assert np.array_equal(both[0], whole)
    np.testing.assert_allclose(both[1], 2 * whole + 1, atol=1e-5)


def test_a_block_reads_only_its_source_region():
    x = np.arange(40 * 40 * 40, dtype=np.float32).reshape(40, 40, 40)
    asked = []

    def read(region):
        asked.append(region)
        return x[region]
    rs.resample_block(read, x.shape, (80, 80, 80), (slice(0, 10), slice(70, 80), slice(30, 40)))
    (region,) = asked
    assert [(s.start, s.stop) for s in region] == [(0, 6), (34, 40), (14, 21)]


def test_policy():
    two = ((2.0, 2.0, 2.0), "mm")
    assert rs.target_spacing((1.0, 1.0, 1.0), "mm", *two) == (2.0, 2.0, 2.0)
    assert rs.target_spacing((2.1, 1.95, 2.0), "mm", *two) is None            # within 10 %
    assert rs.target_spacing((2.1, 1.95, 2.0), "mm", *two, policy="on") == (2.0, 2.0, 2.0)
    assert rs.target_spacing((2.0, 2.0, 2.0), "mm", *two, policy="on") is None
    assert rs.target_spacing((1.0, 1.0, 1.0), "mm", *two, policy="off") is None
    assert rs.target_spacing(None, None, *two) is None                         # unknown: run as is
    assert rs.target_spacing((1.0, 1.0, 1.0), "mm", None, None) is None        # older weights: as is
    # lengths, not numbers: 2000 µm voxels are the model's 2 mm
    assert rs.target_spacing((2000.0, 2000.0, 2000.0), "µm", *two) is None
    assert rs.target_spacing((1000.0, 2000.0, 2000.0), "µm", *two) == pytest.approx((2000.0, 2000.0, 2000.0))
    with pytest.raises(rs.ResampleError, match="voxel size is unknown"):
        rs.target_spacing(None, None, *two, policy="on")
    with pytest.raises(rs.ResampleError, match="do not record the voxel size"):
        rs.target_spacing((1.0, 1.0, 1.0), "mm", None, None, policy="on")
    with pytest.raises(rs.ResampleError, match="unknown resample policy"):
        rs.target_spacing((1.0, 1.0, 1.0), "mm", *two, policy="always")
    assert rs.resampled_shape((181, 217, 60), (1.0, 1.0, 3.0), (2.0, 2.0, 2.0)) == (90, 108, 90)
    assert rs.grid_spacing((181, 217, 60), (1.0, 1.0, 3.0), (90, 108, 90)) == pytest.approx((181 / 90, 217 / 108, 2.0))


def test_which_files_know_their_voxel_size(tmp_path):
    x = np.zeros((8, 9, 10), np.float32)
    nib.save(nib.Nifti1Image(x, np.diag([0.5, 0.5, 3.0, 1.0])), str(tmp_path / "a.nii.gz"))
    v = open_volume(tmp_path / "a.nii.gz")
    assert v.spacing_known and v.spacing == (3.0, 0.5, 0.5)
    np.save(tmp_path / "b.npy", x)
    assert not open_volume(tmp_path / "b.npy").spacing_known
    assert open_volume(tmp_path / "b.npy", spacing=(1, 1, 1)).spacing_known   # given by the caller
    z = zarr.open_array(str(tmp_path / "c.zarr"), mode="w", shape=x.shape, dtype="f4")
    assert not open_volume(tmp_path / "c.zarr").spacing_known
    z.attrs["spacing"] = [1.0, 2.0, 2.0]
    assert open_volume(tmp_path / "c.zarr").spacing_known


def test_training_spacing_records_the_median_and_says_when_volumes_differ():
    def vol(sp, known=True, unit="mm"):
        return Volume(np.zeros((8, 8, 8)), spacing=sp, spacing_known=known, meta={"unit": unit})
    said = []
    assert rs.training_spacing([vol((1, 1, 1), known=False)]) == {}
    assert rs.training_spacing([vol((2, 2, 2)), vol((2, 2, 2.1))], log=said.append) == \
        {"spacing": [2.0, 2.0, 2.05], "unit": "mm"} and not said
    out = rs.training_spacing([vol((1, 1, 1)), vol((3, 1, 1)), vol((3, 1, 1))], log=said.append)
    assert out["spacing"] == [3.0, 1.0, 1.0] and "differ in voxel size" in said[0]


@pytest.fixture(scope="module")
def two_mm_weights(tmp_path_factory):
    """A random 3D U-Net that says it was trained at 2 mm."""
    torch.manual_seed(0)
    net = UNet3D(1, 3, base=4, depth=2)
    p = tmp_path_factory.mktemp("w2") / "two_mm.safetensors"
    save_unet(net, p, normalization={"kind": "zscore"}, training={"spacing": [2.0, 2.0, 2.0], "unit": "mm"})
    return p


def _smooth_volume(shape, seed=0):
    from scipy.ndimage import gaussian_filter
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return gaussian_filter(x, 2) * 10 + 3


def _reference(x, small_shape, weights, tmp_path):
    """Independently: PyTorch's resize to the model's grid, the whole-volume network there, and
    PyTorch's resize of its probabilities back."""
    small = _torch_resize(x, small_shape)
    segment(small, tmp_path / "ref.zarr", weights=weights, mode="whole", save_probabilities=True, resample="off")
    p = zarr.open_group(str(tmp_path / "ref.zarr"), mode="r")["probabilities"][...]
    return _torch_resize(p, x.shape)


def test_segment_runs_the_network_at_the_models_voxel_size(tmp_path, two_mm_weights):
    x = _smooth_volume((40, 48, 44))
    nib.save(nib.Nifti1Image(x.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "scan.nii.gz"))   # 1 mm
    res = segment(tmp_path / "scan.nii.gz", tmp_path / "out.zarr", weights=two_mm_weights, grid=(2, 1, 1),
                  save_probabilities=True)
    assert res.resampled["shape"] == [20, 24, 22] and res.resampled["spacing"] == [2.0, 2.0, 2.0]
    assert len(res.ranks) == 2 and all("back_seconds" in r for r in res.ranks)   # the ranks shared the way back
    ref = _reference(x, (20, 24, 22), two_mm_weights, tmp_path)
    grp = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    got = grp["probabilities"][...]
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4
    sure = np.sort(ref, 0)[-1] - np.sort(ref, 0)[-2] > 1e-3   # where two classes tie, rounding may pick either
    assert (grp["labels"][...] == ref.argmax(0))[sure].all()
    assert grp["labels"].shape == x.shape and list(grp.attrs["spacing"]) == [1.0, 1.0, 1.0]
    assert np.array_equal(grp["uncertainty"][...], np.rint(100 * (1 - got.max(0))).astype(np.uint8))
    assert not work_path(tmp_path / "out.zarr").exists()   # the model-grid run is removed once done
    # off: the network on the voxels as they are, as before
    off = segment(tmp_path / "scan.nii.gz", tmp_path / "off.zarr", weights=two_mm_weights, grid=(2, 1, 1),
                  resample="off")
    assert off.resampled is None
    assert not np.array_equal(zarr.open_group(str(tmp_path / "off.zarr"))["labels"][...], grp["labels"][...])


def test_an_array_with_a_given_spacing_and_a_stopped_run_resumed(tmp_path, two_mm_weights):
    x = _smooth_volume((24, 80, 72), seed=1)   # 1 x 1 x 1 mm given; 3 mm slices would be 8 x 40 x 36 at 2 mm
    ref = _reference(x, (12, 40, 36), two_mm_weights, tmp_path)
    stop = threading.Event()

    def progress(done, total, what):
        if what.startswith("back to") and done == 2:
            stop.set()   # a user pressing Cancel while the probabilities come back
    out = tmp_path / "out.zarr"
    with pytest.raises(Cancelled):   # whole mode: the way back runs here (in halo mode, in the ranks)
        segment(x, out, weights=two_mm_weights, mode="whole", spacing=(1, 1, 1), progress=progress, cancel=stop)
    assert work_path(out).exists()   # kept for resume
    assert 0 < zarr.open_group(str(out))["done"][...].sum() < zarr.open_group(str(out))["done"].size
    res = segment(x, out, weights=two_mm_weights, mode="whole", spacing=(1, 1, 1), resume=True)
    assert res.resampled and not res.skipped and not work_path(out).exists()
    lab = zarr.open_group(str(out), mode="r")["labels"][...]
    sure = np.sort(ref, 0)[-1] - np.sort(ref, 0)[-2] > 1e-3
    assert (lab == ref.argmax(0))[sure].all()
    again = segment(x, out, weights=two_mm_weights, mode="whole", spacing=(1, 1, 1), resume=True)
    assert again.skipped
    with pytest.raises(VolumeError, match="different job"):   # refused before the network runs
        segment(x, out, weights=two_mm_weights, grid=(1, 2, 1), spacing=(1, 1, 1), resume=True)
    assert not work_path(out).exists()
    # no spacing given: a bare array's voxel size is unknown, so it runs as it is
    assert segment(x, tmp_path / "bare.zarr", weights=two_mm_weights, grid=(1, 2, 1)).resampled is None


def test_what_cannot_be_resampled_is_refused(tmp_path, two_mm_weights, tiny_weights):
    x = _smooth_volume((24, 24, 24))
    with pytest.raises(EngineError, match="do not record the voxel size"):
        segment(x, tmp_path / "a.zarr", weights=tiny_weights, spacing=(1, 1, 1), resample="on")
    with pytest.raises(EngineError, match="voxel size is unknown"):
        segment(x, tmp_path / "b.zarr", weights=two_mm_weights, resample="on")
    with pytest.raises(EngineError, match="fewer than the network's 4"):   # 0.1 mm voxels: 1 to 2 voxels at 2 mm
        segment(x, tmp_path / "c.zarr", weights=two_mm_weights, spacing=(0.1, 0.1, 0.1))
    with pytest.raises(EngineError, match="not enough memory"):   # refused by the run at 2 mm: nothing left
        segment(x, tmp_path / "e.zarr", weights=two_mm_weights, spacing=(400, 400, 400))
    assert not (tmp_path / "e.zarr").exists()


def test_cli_segment_info_and_train_record_the_voxel_size(tmp_path):
    x = _smooth_volume((24, 32, 32))
    nib.save(nib.Nifti1Image(x.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "scan.nii.gz"))   # 1 mm
    run = lambda *args: subprocess.run([sys.executable, "-m", "halo_seg.cli", *map(str, args)],   # noqa: E731
                                       capture_output=True, text=True, timeout=300)
    r = run("info", tmp_path / "scan.nii.gz")
    info = json.loads(r.stdout)
    assert info["model_spacing"] == [2.0, 2.0, 2.0] and info["resampled_to"]["shape"] == [12, 16, 16]
    r = run("segment", tmp_path / "scan.nii.gz", tmp_path / "out.zarr", "--grid", "1,1,1")
    assert r.returncode == 0, r.stderr
    assert "resampled to 2 x 2 x 2 mm (12 x 16 x 16 voxels)" in r.stdout
    assert zarr.open_group(str(tmp_path / "out.zarr"))["labels"].shape == x.shape
    for cmd in ("segment", "info", "measure"):   # one parser of --spacing, one message
        r = run(cmd, tmp_path / "scan.nii.gz", *(["out2.zarr"] if cmd == "segment" else []), "--spacing", "1,nan")
        assert r.returncode == 2 and "error: --spacing must be three positive numbers z,y,x, got '1,nan'" in r.stderr
    # a model trained here records its volumes' voxel size, and segment then runs at it
    lab = (x > 3).astype(np.uint8)
    nib.save(nib.Nifti1Image(x.transpose(2, 1, 0), np.diag([0.5, 0.5, 3.0, 1.0])), str(tmp_path / "img.nii.gz"))
    nib.save(nib.Nifti1Image(lab.transpose(2, 1, 0), np.diag([0.5, 0.5, 3.0, 1.0])), str(tmp_path / "lab.nii.gz"))
    out = tmp_path / "m.safetensors"
    r = run("train", "--image", tmp_path / "img.nii.gz", "--labels", tmp_path / "lab.nii.gz", "--out", out,
            "--patch", "16", "16", "16", "--iterations", "2", "--base", "4", "--depth", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    training = load_unet(out)[1]["training"]
    assert training["spacing"] == [3.0, 0.5, 0.5] and training["unit"] == "mm"
    r = run("train", "--image", tmp_path / "img.nii.gz", "--labels", tmp_path / "lab.nii.gz", "--out", out,
            "--patch", "16", "16", "16", "--iterations", "2", "--base", "4", "--depth", "2", "--quiet",
            "--grid", "2,1,1")   # partitioned training records it too
    assert r.returncode == 0, r.stderr
    training = load_unet(out)[1]["training"]
    assert training["partitioned"] and training["spacing"] == [3.0, 0.5, 0.5] and training["unit"] == "mm"


def test_batch_resamples_each_case_as_it_needs(tmp_path, two_mm_weights):
    from halo_seg.batch import segment_folder
    scans = tmp_path / "scans"
    scans.mkdir()
    x = _smooth_volume((24, 32, 32))
    nib.save(nib.Nifti1Image(x.transpose(2, 1, 0), np.eye(4)), str(scans / "fine.nii.gz"))
    nib.save(nib.Nifti1Image(x.transpose(2, 1, 0), np.diag([2.0, 2.0, 2.0, 1.0])), str(scans / "model.nii.gz"))
    rows = {r["case"]: r for r in segment_folder(scans, tmp_path / "out", weights=two_mm_weights, grid=(1, 1, 1),
                                                 log=lambda *_: None)}
    assert rows["fine"]["status"] == "done" and rows["fine"]["resampled"] == "1x1x1 -> 2x2x2"
    assert rows["model"]["status"] == "done" and rows["model"]["resampled"] == ""
    assert zarr.open_group(str(tmp_path / "out" / "fine.zarr"))["labels"].shape == x.shape


def test_cli_resample_places_the_new_grid_where_the_scan_lies(tmp_path):
    from halo_seg.io import geometry as geo
    run = lambda *args: subprocess.run([sys.executable, "-m", "halo_seg.cli", *map(str, args)],   # noqa: E731
                                       capture_output=True, text=True, timeout=300)
    rng = np.random.default_rng(0)
    img = rng.normal(size=(12, 14, 10)).astype(np.float32)
    lab = rng.integers(0, 4, size=img.shape).astype(np.uint8)
    aff = np.array([[0, 0, -2.0, 40], [1.5, 0, 0, -20], [0, 3.0, 0, 7], [0, 0, 0, 1]])   # oblique axes, shifted
    for name, arr in (("img", img), ("lab", lab)):
        nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0), aff), str(tmp_path / f"{name}.nii.gz"))
    r = run("resample", tmp_path / "img.nii.gz", tmp_path / "fine.zarr", "--spacing", "1,1.2,0.75")
    assert r.returncode == 0, r.stderr
    src, fine = open_volume(tmp_path / "img.nii.gz"), open_volume(tmp_path / "fine.zarr")
    assert src.spacing == (2.0, 3.0, 1.5) and fine.shape == (24, 35, 20) and fine.spacing_known
    assert fine.meta["unit"] == "mm" and np.allclose(fine.spacing, (1.0, 1.2, 0.75))
    # a voxel of the new grid lies in the world where its centre lies in the old grid's voxels
    a_old, a_new = geo.best_affine(src.meta[geo.KEY]), geo.best_affine(fine.meta[geo.KEY])
    j = np.array([5, 7, 11])                                       # (x, y, z) index in the new grid
    f = np.array([10 / 20, 14 / 35, 12 / 24])
    np.testing.assert_allclose(a_new[:3] @ np.r_[j, 1], a_old[:3] @ np.r_[(j + 0.5) * f - 0.5, 1])
    np.testing.assert_allclose(np.asarray(fine.data), _torch_resize(img, (24, 35, 20)), atol=1e-5)
    # labels: nearest voxel, and there and back by a factor of 2 gives them back exactly
    r = run("resample", tmp_path / "lab.nii.gz", tmp_path / "lab2.nii.gz", "--spacing", "1,1.5,0.75", "--labels")
    assert r.returncode == 0, r.stderr
    r = run("resample", tmp_path / "lab2.nii.gz", tmp_path / "back.zarr", "--like", tmp_path / "lab.nii.gz",
            "--labels")
    assert r.returncode == 0, r.stderr
    back = open_volume(tmp_path / "back.zarr")
    assert np.array_equal(np.asarray(back.data), lab) and back.meta["labels"] is True   # napari opens it as labels
    np.testing.assert_allclose(geo.best_affine(back.meta[geo.KEY]), aff)
    r = run("resample", tmp_path / "lab.nii.gz", tmp_path / "x.zarr")
    assert r.returncode != 0 and "give one of --spacing, --weights or --like" in r.stderr
    r = run("resample", tmp_path / "lab.nii.gz", tmp_path / "x.zarr", "--like", tmp_path / "fine.zarr", "--labels")
    assert r.returncode == 0   # the same extent on another grid
    nib.save(nib.Nifti1Image(lab[:6].transpose(2, 1, 0), aff), str(tmp_path / "half.nii.gz"))
    # another extent, both placed in the world: the part that lies on the other's grid, 0 beyond
    r = run("resample", tmp_path / "lab.nii.gz", tmp_path / "y.zarr", "--like", tmp_path / "half.nii.gz", "--labels")
    assert r.returncode == 0 and "each from its world position" in r.stdout, r.stderr
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "y.zarr").data), lab[:6])
    r = run("resample", tmp_path / "half.nii.gz", tmp_path / "z.zarr", "--like", tmp_path / "lab.nii.gz", "--labels")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "z.zarr").data), np.r_[lab[:6], 0 * lab[6:]])
    np.save(tmp_path / "lab.npy", lab)                             # where a .npy lies is not known: refused
    r = run("resample", tmp_path / "lab.npy", tmp_path / "n.zarr", "--like", tmp_path / "half.nii.gz", "--labels",
            "--input-spacing", "3,1.5,2")
    assert r.returncode != 0 and "not the same extent, and without a scan geometry in both" in r.stderr
    from halo_seg.engine.unet import UNet3D
    save_unet(UNet3D(1, 2, base=4, depth=2), tmp_path / "old.safetensors")   # weights from before the spacing
    r = run("resample", tmp_path / "img.nii.gz", tmp_path / "w.zarr", "--weights", tmp_path / "old.safetensors")
    assert r.returncode != 0 and "does not record the voxel size it was trained at; give --spacing" in r.stderr
    np.save(tmp_path / "bare.npy", img)
    r = run("resample", tmp_path / "bare.npy", tmp_path / "z.zarr", "--spacing", "1,1,1")
    assert r.returncode != 0 and "records no voxel size; give it with --input-spacing" in r.stderr
    # only its own earlier output is replaced: another image (here the labels written above) never
    r = run("resample", tmp_path / "img.nii.gz", tmp_path / "fine.zarr", "--spacing", "2,1.5,1.5")
    assert r.returncode == 0, r.stderr
    assert open_volume(tmp_path / "fine.zarr").shape == (12, 28, 10)
    r = run("resample", tmp_path / "img.nii.gz", tmp_path / "back.zarr", "--spacing", "1,1,1")
    assert r.returncode != 0 and "back.zarr exists and is not an output of halo-seg resample" in r.stderr
    assert np.array_equal(np.asarray(open_volume(tmp_path / "back.zarr").data), lab)


def test_a_voxel_size_in_the_wrong_unit_is_refused_with_the_numbers(tmp_path):
    """--spacing 0.001 (µm meant, the scan in mm) asked for 2e13 voxels: the process was killed for
    memory while dask built the graph, and nothing said why."""
    from halo_seg.io.resampled import write_resampled
    vol = open_volume(np.zeros((20, 22, 24), np.float32), spacing=(2.5, 0.9, 0.8))
    for out, room in (("r.zarr", "the free disk at"), ("r.nii.gz", "the memory available")):
        with pytest.raises(VolumeError, match=f"would be 50000 x 19800 x 19200 voxels .*more than {room}"):
            write_resampled(vol, tmp_path / out, rs.resampled_shape(vol.shape, vol.spacing, (1e-3,) * 3))
        assert not (tmp_path / out).exists()
    write_resampled(vol, tmp_path / "ok.zarr", (10, 11, 12))
    assert open_volume(tmp_path / "ok.zarr").shape == (10, 11, 12)


def test_torchrun_ranks_share_the_way_back(tmp_path, two_mm_weights):
    import os
    from halo_seg.engine.runner import _free_port
    x = _smooth_volume((40, 48, 44))
    nib.save(nib.Nifti1Image(x.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "scan.nii.gz"))   # 1 mm
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                        str(_free_port()), "-m", "halo_seg.cli", "segment", str(tmp_path / "scan.nii.gz"),
                        str(tmp_path / "t.zarr"), "--weights", str(two_mm_weights), "--grid", "2,1,1"],
                       env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resampled to 2 x 2 x 2 mm (20 x 24 x 22 voxels)" in r.stdout
    assert not work_path(tmp_path / "t.zarr").exists()
    segment(tmp_path / "scan.nii.gz", tmp_path / "s.zarr", two_mm_weights, grid=(2, 1, 1))   # spawned ranks
    t, s = (zarr.open_group(str(tmp_path / n), mode="r") for n in ("t.zarr", "s.zarr"))
    assert t["done"][...].all() and np.array_equal(t["labels"][...], s["labels"][...])
    assert np.array_equal(t["uncertainty"][...], s["uncertainty"][...])


def test_labels_saved_cropped_to_their_objects_go_back_onto_their_scan(tmp_path):
    """3D Slicer can save a segmentation cropped to its segments' extent, its own grid placed in the
    scan's world (here also stored with x reversed): `resample --like SCAN` puts each label back on
    the scan's voxels, 0 elsewhere, checked against slicing the whole-grid labels; an image too."""
    from halo_seg.cli import main
    rng = np.random.default_rng(3)
    aff = np.array([[0, 0, -2.0, 40], [1.5, 0, 0, -20], [0, 3.0, 0, 7], [0, 0, 0, 1]])   # oblique axes, shifted
    full = rng.integers(0, 5, size=(12, 14, 10)).astype(np.uint8)      # (z, y, x) on the scan's grid
    scan = rng.normal(size=full.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(scan.transpose(2, 1, 0), aff), str(tmp_path / "scan.nii.gz"))
    z0, y0, x0, nz, ny, nx = 2, 3, 1, 7, 9, 7
    crop = full[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx][:, :, ::-1]
    to_scan = np.eye(4)                                                # cropped voxel (x, y, z) -> the scan's
    to_scan[:3, :3] = np.diag([-1.0, 1.0, 1.0])
    to_scan[:3, 3] = [x0 + nx - 1, y0, z0]
    img = nib.Nifti1Image(crop.transpose(2, 1, 0), aff @ to_scan)
    img.header.set_intent("label")
    nib.save(img, str(tmp_path / "cropped.nii.gz"))
    assert main(["resample", str(tmp_path / "cropped.nii.gz"), str(tmp_path / "back.nii.gz"),
                 "--like", str(tmp_path / "scan.nii.gz")]) == 0
    expected = np.zeros_like(full)
    expected[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx] = full[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx]
    back = nib.load(str(tmp_path / "back.nii.gz"))
    np.testing.assert_array_equal(np.asarray(back.dataobj).transpose(2, 1, 0), expected)
    np.testing.assert_allclose(back.affine, aff)
    cropped_scan = scan[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx][:, :, ::-1]   # an image: trilinear, exact on voxels
    nib.save(nib.Nifti1Image(np.ascontiguousarray(cropped_scan).transpose(2, 1, 0), aff @ to_scan),
             str(tmp_path / "cropped_scan.nii.gz"))
    assert main(["resample", str(tmp_path / "cropped_scan.nii.gz"), str(tmp_path / "img.zarr"),
                 "--like", str(tmp_path / "scan.nii.gz")]) == 0
    inside = np.zeros(full.shape, bool)
    inside[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx] = True
    np.testing.assert_allclose(np.asarray(open_volume(tmp_path / "img.zarr").data), scan * inside, atol=1e-5)


def test_a_segment_output_resamples_as_labels_without_being_told(tmp_path, phantom_npy, tiny_weights):
    """An output of `segment` holds class ids: resampled without --labels it was interpolated as an
    image (fractions of ids); it takes the nearest voxel's label, as --labels does."""
    from halo_seg.cli import main
    from halo_seg.engine.runner import segment
    segment(phantom_npy, tmp_path / "out.zarr", tiny_weights, mode="whole")
    ids = set(np.unique(np.asarray(open_volume(tmp_path / "out.zarr").data)).tolist())
    assert main(["resample", str(tmp_path / "out.zarr"), str(tmp_path / "half.zarr"), "--spacing", "2,2,2"]) == 0
    assert main(["resample", str(tmp_path / "out.zarr"), str(tmp_path / "told.zarr"), "--spacing", "2,2,2",
                 "--labels"]) == 0
    half, told = open_volume(tmp_path / "half.zarr"), open_volume(tmp_path / "told.zarr")
    assert half.meta["labels"] and np.issubdtype(half.data.dtype, np.integer)
    assert set(np.unique(np.asarray(half.data)).tolist()) <= ids
    np.testing.assert_array_equal(np.asarray(half.data), np.asarray(told.data))


def test_an_odd_grid_at_half_the_resolution_is_placed_not_stretched(tmp_path):
    """A 2 mm grid of 91 voxels made of 2x2x2 blocks of a 1 mm grid of 181 (Colin27's) spans 182 mm
    against 181: resampling its extent onto the 1 mm grid stretched it (half a percent a voxel,
    which the per-voxel tolerance let through, but a voxel off at the far end); placed by world
    position, each 1 mm voxel takes the 2 mm voxel whose block holds it."""
    from halo_seg.cli import main
    rng = np.random.default_rng(4)
    fine_aff = np.diag([1.0, 1.0, 1.0, 1.0])
    fine_aff[:3, 3] = [-8.0, 5.0, -3.0]
    block = np.array([[2.0, 0, 0, 0.5], [0, 2.0, 0, 0.5], [0, 0, 2.0, 0.5], [0, 0, 0, 1]])
    coarse = rng.integers(0, 5, size=(91, 3, 4)).astype(np.uint8)
    for name, arr, aff in (("coarse", coarse, fine_aff @ block), ("fine", np.zeros((181, 6, 8), np.uint8), fine_aff)):
        img = nib.Nifti1Image(arr.transpose(2, 1, 0), aff)
        img.header.set_intent("label")
        nib.save(img, str(tmp_path / f"{name}.nii.gz"))
    assert main(["resample", str(tmp_path / "coarse.nii.gz"), str(tmp_path / "out.nii.gz"),
                 "--like", str(tmp_path / "fine.nii.gz")]) == 0
    out = np.asarray(nib.load(str(tmp_path / "out.nii.gz")).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(out, coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)[:181])
