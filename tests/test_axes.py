"""Multi-channel and time-lapse volumes: one 3D volume is chosen by channel and time point."""
import nibabel as nib
import numpy as np
import pytest
import tifffile
import zarr

from halo_seg.io import VolumeError, open_volume


@pytest.fixture
def tczyx():
    # every voxel's value says where it came from: 1000 t + 100 c + position
    t, c, z, y, x = np.meshgrid(*[np.arange(n) for n in (3, 2, 4, 5, 6)], indexing="ij")
    return (1000 * t + 100 * c + (z * 30 + y * 6 + x)).astype(np.int32)


def _ome_zarr(path, arr, axes="tczyx", names=("DAPI", "GFP")):
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.create_array("0", shape=arr.shape, chunks=arr.shape, dtype=arr.dtype)[...] = arr
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": a} for a in axes],
                               "datasets": [{"path": "0", "coordinateTransformations": [
                                   {"type": "scale", "scale": [1.0] * (len(axes) - 3) + [2.0, 0.5, 0.5]}]}]}]
    if names:
        g.attrs["omero"] = {"channels": [{"label": n} for n in names]}
    return path


def test_ome_zarr_channel_and_timepoint(tmp_path, tczyx):
    p = _ome_zarr(tmp_path / "cells.ome.zarr", tczyx)
    with pytest.raises(VolumeError, match=r"3 timepoints.*--timepoint"):
        open_volume(p, channel=1)
    with pytest.raises(VolumeError, match=r"2 channels \(DAPI, GFP\).*--channel"):
        open_volume(p, timepoint=0)
    v = open_volume(p, channel=1, timepoint=2)
    np.testing.assert_array_equal(np.asarray(v.data), tczyx[2, 1])
    assert v.spacing == (2.0, 0.5, 0.5)
    assert v.meta["channel"] == 1 and v.meta["channel_name"] == "GFP" and v.meta["timepoint"] == 2
    assert v.meta["file_axes"] == "(t=3, c=2, z=4, y=5, x=6)"
    by_name = open_volume(p, channel="DAPI", timepoint="1")   # the command line passes strings
    np.testing.assert_array_equal(np.asarray(by_name.data), tczyx[1, 0])
    with pytest.raises(VolumeError, match="no channel named 'RFP'.*DAPI, GFP"):
        open_volume(p, channel="RFP", timepoint=0)
    with pytest.raises(VolumeError, match=r"timepoint 3 is out of range.*0 to 2"):
        open_volume(p, channel=0, timepoint=3)
    with pytest.raises(VolumeError, match="channel -1 is out of range"):
        open_volume(p, channel=-1, timepoint=0)


def test_a_choice_the_volume_cannot_take_is_refused(tmp_path, tczyx):
    with pytest.raises(VolumeError, match="has no channel axis"):
        open_volume(tczyx[0, 0], channel=0)
    p = _ome_zarr(tmp_path / "one.ome.zarr", tczyx[:1, :1], names=None)
    v = open_volume(p)   # axes of length 1 need no choice
    np.testing.assert_array_equal(np.asarray(v.data), tczyx[0, 0])
    assert "channel" not in v.meta
    with pytest.raises(VolumeError, match="names no channels"):
        open_volume(p, channel="DAPI")


def test_imagej_hyperstack_puts_z_first(tmp_path, tczyx):
    # ImageJ orders a hyperstack T, Z, C, Y, X: the channel sits between z and y
    tifffile.imwrite(tmp_path / "h.tif", tczyx.transpose(0, 2, 1, 3, 4).astype(np.uint16), imagej=True,
                     metadata={"axes": "TZCYX"})
    v = open_volume(tmp_path / "h.tif", channel=1, timepoint=2)
    np.testing.assert_array_equal(np.asarray(v.data), tczyx[2, 1])


def test_ome_tiff_channel_names(tmp_path, tczyx):
    tifffile.imwrite(tmp_path / "c.ome.tif", tczyx[0], metadata={"axes": "CZYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    v = open_volume(tmp_path / "c.ome.tif", channel="GFP")
    np.testing.assert_array_equal(np.asarray(v.data), tczyx[0, 1])


def test_rgb_stack_and_plain_stacks(tmp_path, tczyx):
    rgb = np.stack([tczyx[0, 0] % 256, tczyx[0, 1] % 256, tczyx[1, 0] % 256], axis=-1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(VolumeError, match="3 channels"):
        open_volume(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "rgb.tif", channel=2).data), rgb[..., 2])
    # tifffile guesses "planar samples" for a plain stack of 3 or 4 pages: still slices
    tifffile.imwrite(tmp_path / "four.tif", tczyx[0, 0].astype(np.uint16))
    assert open_volume(tmp_path / "four.tif").shape == (4, 5, 6)


def test_unnamed_arrays_are_read_in_ome_order(tczyx):
    np.testing.assert_array_equal(np.asarray(open_volume(tczyx[1], channel=1).data), tczyx[1, 1])
    np.testing.assert_array_equal(np.asarray(open_volume(tczyx, channel=0, timepoint=2).data), tczyx[2, 0])
    with pytest.raises(VolumeError, match=r"expected a 3D.*\(c=2, z=4, y=5, x=6\).*2 channels"):
        open_volume(tczyx[0])


def test_nifti_time_series(tmp_path, tczyx):
    xyzt = tczyx[:, 0].transpose(3, 2, 1, 0)
    nib.save(nib.Nifti1Image(xyzt, np.diag([0.5, 0.5, 2.0, 1])), tmp_path / "fmri.nii.gz")
    with pytest.raises(VolumeError, match="3 timepoints"):
        open_volume(tmp_path / "fmri.nii.gz")
    v = open_volume(tmp_path / "fmri.nii.gz", timepoint=1)
    np.testing.assert_array_equal(np.asarray(v.data), tczyx[1, 0])
    assert v.spacing == (2.0, 0.5, 0.5) and v.meta["geometry"]["shape"] == [4, 5, 6]


def test_segment_one_channel_of_a_stack_in_halo_mode(tmp_path, phantom_npy, tiny_weights, capsys):
    """The engine segments the chosen channel exactly as that channel saved alone; each rank reads
    its block of that channel only; resuming with another channel is refused."""
    import json

    from halo_seg.cli import main
    from halo_seg.engine.runner import segment
    img = np.load(phantom_npy)
    other = np.random.default_rng(0).normal(size=img.shape).astype(img.dtype)
    stack = _ome_zarr(tmp_path / "two.ome.zarr", np.stack([other, img])[None], names=("noise", "cells"))
    segment(phantom_npy, tmp_path / "alone.zarr", tiny_weights, mode="whole", save_probabilities=True)
    assert main(["segment", str(stack), str(tmp_path / "chosen.zarr"), "--weights", str(tiny_weights),
                 "--grid", "2,1,1", "--channel", "cells", "--save-probabilities"]) == 0
    alone, chosen = zarr.open_group(str(tmp_path / "alone.zarr")), zarr.open_group(str(tmp_path / "chosen.zarr"))
    np.testing.assert_array_equal(chosen["labels"][...], alone["labels"][...])
    assert np.abs(chosen["probabilities"][...] - alone["probabilities"][...]).max() <= 1e-4
    assert chosen.attrs["halo_seg"]["signature"]["channel"] == 1
    capsys.readouterr()
    assert main(["segment", str(stack), str(tmp_path / "chosen.zarr"), "--weights", str(tiny_weights),
                 "--grid", "2,1,1", "--channel", "1", "--resume"]) == 0          # the same channel by index
    assert "already done" in capsys.readouterr().out
    assert main(["segment", str(stack), str(tmp_path / "chosen.zarr"), "--weights", str(tiny_weights),
                 "--grid", "2,1,1", "--channel", "0", "--resume"]) == 2
    assert "different job" in capsys.readouterr().err
    assert main(["segment", str(stack), str(tmp_path / "none.zarr"), "--weights", str(tiny_weights)]) == 2
    assert "2 channels (noise, cells); choose one with channel= (--channel" in capsys.readouterr().err
    assert not (tmp_path / "none.zarr").exists()
    assert main(["info", str(stack)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["axes"] == f"(t=1, c=2, z={img.shape[0]}, y={img.shape[1]}, x={img.shape[2]})"
    assert info["channels"] == ["noise", "cells"] and "choose one" in info["choose"]
    assert main(["info", str(stack), "--channel", "cells"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == list(img.shape) and info["channel"] == 1 and info["channel_name"] == "cells"


def test_choosing_stays_lazy(tmp_path):
    # a 2.4 GiB (t, c, z, y, x) zarr, chunks never written: choosing a channel and time point and
    # reading one block must not touch the rest
    import tracemalloc
    z = zarr.open_array(str(tmp_path / "big.zarr"), mode="w", shape=(3, 2, 512, 768, 512), chunks=(1, 1, 64, 64, 64),
                        dtype=np.uint8, fill_value=0)
    z[2, 1, 64:128, 0:64, 0:64] = 9
    tracemalloc.start()
    v = open_volume(tmp_path / "big.zarr", channel=1, timepoint=2)
    block = np.asarray(v.data[64:96, 0:32, 0:32])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert v.shape == (512, 768, 512) and (block == 9).all()
    assert peak < 32 * 2 ** 20, f"choosing + one block read allocated {peak / 2**20:.0f} MiB"


def test_measure_and_training_pairs_read_the_chosen_channel(tmp_path, tczyx, capsys):
    import argparse

    from halo_seg.cli import _read_pair, main
    p = _ome_zarr(tmp_path / "cells.ome.zarr", tczyx)
    labels = np.zeros(tczyx.shape[2:], np.uint8)
    labels[1:3, 2:4, 1:5] = 1
    np.save(tmp_path / "lab.npy", labels)
    assert main(["measure", str(tmp_path / "lab.npy"), "--image", str(p), "--channel", "GFP", "--timepoint", "2",
                 "--csv", str(tmp_path / "m.csv")]) == 0
    import csv
    row = next(csv.DictReader(open(tmp_path / "m.csv")))
    assert float(row["mean"]) == pytest.approx(tczyx[2, 1][labels == 1].mean())
    capsys.readouterr()
    assert main(["measure", str(tmp_path / "lab.npy"), "--image", str(p)]) == 2
    assert "choose one with" in capsys.readouterr().err
    image, lab, spacing = _read_pair(p, tmp_path / "lab.npy", argparse.Namespace(channel="0", timepoint=1))
    np.testing.assert_array_equal(image, tczyx[1, 0])
    assert spacing == (2.0, 0.5, 0.5)


def test_arrange_keeps_every_channel_and_time_point_in_ome_order(tczyx):
    """What a viewer shows: nothing chosen, axes of length 1 dropped, (t, c, z, y, x) order."""
    import dask.array as da

    from halo_seg.io.axes import AxisChoiceError, arrange
    tzcyx = da.from_array(tczyx.transpose(0, 2, 1, 3, 4)[None])   # a singleton in front, ImageJ's order
    arr, names = arrange(tzcyx, ["q", "t", "z", "c", "y", "x"], "h")
    assert names == ["t", "c", "z", "y", "x"]
    np.testing.assert_array_equal(np.asarray(arr), tczyx)
    arr, names = arrange(da.from_array(tczyx[:1]), None, "one")
    assert names == ["c", "z", "y", "x"] and arr.shape == tczyx.shape[1:]
    with pytest.raises(AxisChoiceError, match="expected"):
        arrange(da.from_array(tczyx[:, :, 0]), ["t", "c", "y", "x"], "flat")
