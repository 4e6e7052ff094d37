"""`halo-seg convert`: a volume as an OME-Zarr image with a pyramid, checked against the arrays it
was made from, by hand-computed block means and by ome-zarr's own reader; what it refuses leaves
what was there."""
import subprocess
import sys

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
import zarr

from halo_seg.io import open_volume
from halo_seg.io.convert import convert, pyramid_factors
from halo_seg.io.geometry import KEY
from halo_seg.io.volume import Volume, VolumeError

# stored with x reversed and shifted: an orientation OME's scale and translation do not hold
AFF = np.array([[-0.8, 0, 0, 40.0], [0, 0.8, 0, -20.0], [0, 0, 2.0, 7.5], [0, 0, 0, 1]])


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "halo_seg.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_the_pyramid_halves_the_finer_axes_first():
    assert pyramid_factors((20, 512, 512), (5.0, 0.5, 0.5)) == [(1, 2, 2), (1, 2, 2), (1, 2, 2)]
    assert pyramid_factors((20, 512, 512), (5.0, 0.5, 0.5), levels=4) == [(1, 2, 2)] * 3 + [(2, 2, 2)]
    assert pyramid_factors((181, 217, 181), (1.0, 1.0, 1.0)) == [(2, 2, 2)]   # 91 x 109 x 91 next: above 64
    assert pyramid_factors((40, 40, 40), (1.0, 1.0, 1.0)) == []
    assert pyramid_factors((3, 4, 1), (1.0, 1.0, 1.0), levels=2) == [(2, 2, 1)]   # an axis of 1 voxel stays


def test_an_image_converts_with_its_place_and_a_pyramid_of_block_means(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(-1000, 1000, (10, 36, 30)).astype(np.int16)              # (z, y, x)
    nii = nib.Nifti1Image(img.transpose(2, 1, 0), AFF)
    nii.header.set_xyzt_units("mm")
    nib.save(nii, str(tmp_path / "ct.nii.gz"))
    src = open_volume(tmp_path / "ct.nii.gz")
    r = _cli("convert", tmp_path / "ct.nii.gz", tmp_path / "ct.zarr", "--chunks", "16", "--levels", "2")
    assert r.returncode == 0, r.stderr
    assert "an OME-Zarr image of 3 level(s) (10 x 36 x 30, 10 x 18 x 15, 5 x 9 x 7), chunks of 16^3" in r.stdout
    out = open_volume(tmp_path / "ct.zarr")
    assert out.meta["format"] == "ome-zarr 0.5" and out.spacing == src.spacing and out.meta["unit"] == "mm"
    np.testing.assert_array_equal(np.asarray(out.data), img)
    assert out.meta[KEY] == src.meta[KEY] and not out.meta["labels"]   # the orientation too
    grp = zarr.open_group(str(tmp_path / "ct.zarr"), mode="r")
    assert grp["0"].chunks == (10, 16, 16) and grp["0"].dtype == np.int16
    # level 1 halves y and x (2 mm slices against 0.8 mm rows); level 2 all three: block means, rounded
    one = np.round(img.reshape(10, 18, 2, 15, 2).astype(np.float32).mean((2, 4))).astype(np.int16)
    np.testing.assert_array_equal(grp["1"][...], one)
    two = np.round(one[:, :18, :14].reshape(5, 2, 9, 2, 7, 2).astype(np.float32).mean((1, 3, 5))).astype(np.int16)
    np.testing.assert_array_equal(grp["2"][...], two)
    # ome-zarr's reader: three levels, each a block's centre where the full resolution puts it
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader
    node = next(n for n in Reader(parse_url(str(tmp_path / "ct.zarr")))() if n.load(Multiscales))
    assert len(node.data) == 3 and [a["unit"] for a in node.metadata["axes"]] == ["millimeter"] * 3
    ts = node.metadata["coordinateTransformations"]
    at = np.array(ts[0][1]["translation"])
    from halo_seg.io.geometry import axes_position
    np.testing.assert_allclose(at, axes_position(src.meta[KEY]))
    np.testing.assert_allclose(ts[1][0]["scale"], [2.0, 1.6, 1.6])
    np.testing.assert_allclose(ts[1][1]["translation"], at + [0, 0.4, 0.4])       # half a level-0 voxel on
    np.testing.assert_allclose(ts[2][1]["translation"], at + [1.0, 1.2, 1.2])     # 1.5 voxels on y, x; 0.5 on z
    # moved by another tool (its translation changed): placed by its OME transformations, not the kept geometry
    attrs = grp.attrs.asdict()
    attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]["translation"] = [0.0, 5.0, 0.0]
    zarr.open_group(str(tmp_path / "ct.zarr"), mode="a").attrs.update(attrs)
    moved = open_volume(tmp_path / "ct.zarr")
    assert moved.meta[KEY] != src.meta[KEY] and np.allclose(axes_position(moved.meta[KEY]), [0.0, 5.0, 0.0])


def test_labels_convert_to_a_label_image_by_nearest_voxel(tmp_path, make_napari_viewer):
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 6, (16, 20, 24)).astype(np.uint16)
    nii = nib.Nifti1Image(lab.transpose(2, 1, 0), AFF)
    nii.header.set_intent("label")
    nib.save(nii, str(tmp_path / "organs.nii.gz"))
    r = _cli("convert", tmp_path / "organs.nii.gz", tmp_path / "organs.zarr", "--levels", "1")
    assert r.returncode == 0 and "an OME-Zarr label image of 2 level(s)" in r.stdout, r.stderr
    grp = zarr.open_group(str(tmp_path / "organs.zarr"), mode="r")
    np.testing.assert_array_equal(grp["1"][...], lab[:, ::2, ::2])   # 2 mm slices kept, 0.8 mm rows halved
    out = open_volume(tmp_path / "organs.zarr")
    assert out.meta["labels"] and out.data.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(out.data), lab)
    # stored as floats (FSL, SPM): whole ids as integers; a fraction refused by value
    flt = nib.Nifti1Image(lab.transpose(2, 1, 0).astype(np.float32), AFF)
    flt.header.set_intent("label")
    nib.save(flt, str(tmp_path / "fsl.nii.gz"))
    assert _cli("convert", tmp_path / "fsl.nii.gz", tmp_path / "fsl.zarr").returncode == 0
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "fsl.zarr").data), lab)
    flt = nib.Nifti1Image(lab.transpose(2, 1, 0) + np.float32(0.5), AFF)
    flt.header.set_intent("label")
    nib.save(flt, str(tmp_path / "prob.nii.gz"))
    r = _cli("convert", tmp_path / "prob.nii.gz", tmp_path / "prob.zarr")
    assert r.returncode != 0 and "values that are not labels (e.g. " in r.stderr and not (tmp_path / "prob.zarr").exists()
    # napari: a multiscale Labels layer, placed where the NIfTI is
    viewer = make_napari_viewer()
    conv, = viewer.open(str(tmp_path / "organs.zarr"), plugin="napari-halo-seg")
    orig, = viewer.open(str(tmp_path / "organs.nii.gz"), plugin="napari-halo-seg")
    assert conv.__class__.__name__ == orig.__class__.__name__ == "Labels"
    np.testing.assert_allclose(conv.translate, orig.translate)
    np.testing.assert_allclose(conv.scale, orig.scale)


def test_what_convert_refuses_leaves_what_was_there(tmp_path):
    vol = np.random.default_rng(2).random((6, 7, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", vol)
    r = _cli("convert", tmp_path / "v.npy", tmp_path / "v.nii.gz")
    assert r.returncode != 0 and "a path ending in .zarr" in r.stderr
    mine = zarr.open_group(str(tmp_path / "mine.zarr"), mode="w")
    mine.create_array("data", shape=(2,), dtype="u1")
    r = _cli("convert", tmp_path / "v.npy", tmp_path / "mine.zarr")
    assert r.returncode != 0 and "mine.zarr exists and is not an output of halo-seg convert" in r.stderr
    assert list(zarr.open_group(str(tmp_path / "mine.zarr"), mode="r").array_keys()) == ["data"]
    r = _cli("convert", tmp_path / "v.npy", tmp_path / "v.zarr", "--chunks", "0")
    assert r.returncode != 0 and "--chunks must be at least 1" in r.stderr
    # a .npy records no voxel size: none is made up; converted again, the earlier output is replaced
    for _ in range(2):
        assert _cli("convert", tmp_path / "v.npy", tmp_path / "v.zarr").returncode == 0
    out = open_volume(tmp_path / "v.zarr")
    assert not out.spacing_known and KEY not in out.meta
    np.testing.assert_array_equal(np.asarray(out.data), vol)
    five = Volume(np.zeros((2, 2, 3, 4, 5), np.float32))   # a file's contents before a time point is chosen
    with pytest.raises(VolumeError, match=r"one 3D volume, a time-lapse of them, or their channels; this one is "
                                          r"\(2, 2, 3, 4, 5\) \(name its axes before z, y, x: axes=\['t', 'c'\]\)"):
        convert(five, tmp_path / "four.zarr")
    with pytest.raises(VolumeError, match="is the input"):
        convert(open_volume(tmp_path / "v.zarr"), tmp_path / "v.zarr")
    assert not (tmp_path / "four.zarr").exists()


def test_the_channels_of_a_stack_convert_together(tmp_path):
    """A two-channel TIFF stack (ImageJ hyperstack: z, c, y, x) becomes one OME-Zarr image of
    (C, Z, Y, X), its pyramid on z, y, x alone, a chunk per channel; --channel takes one; names a
    file gives its channels stay."""
    import tifffile
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 4000, (8, 2, 40, 36)).astype(np.uint16)              # (z, c, y, x)
    tifffile.imwrite(tmp_path / "cells.tif", stack, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "ZCYX", "spacing": 0.5, "unit": "um"})
    r = _cli("convert", tmp_path / "cells.tif", tmp_path / "cells.zarr", "--levels", "1")
    assert r.returncode == 0, r.stderr
    grp = zarr.open_group(str(tmp_path / "cells.zarr"), mode="r")
    assert grp["0"].shape == (2, 8, 40, 36) and grp["0"].chunks[0] == 1
    np.testing.assert_array_equal(grp["0"][...], stack.transpose(1, 0, 2, 3))
    half = np.round(stack.transpose(1, 0, 2, 3).reshape(2, 8, 20, 2, 18, 2).astype(np.float32).mean((3, 5)))
    np.testing.assert_array_equal(grp["1"][...], half.astype(np.uint16))       # 0.5 µm slices kept, 0.25 µm rows halved
    for c in range(2):
        v = open_volume(tmp_path / "cells.zarr", channel=c)
        assert v.spacing == (0.5, 0.25, 0.25) and v.meta["unit"] == "µm"
        np.testing.assert_array_equal(np.asarray(v.data), stack[:, c])
    # channels a file names keep their names (OME's omero labels), where the reader finds them
    named = Volume(da.from_array(stack.transpose(1, 0, 2, 3)), spacing=(0.5, 0.25, 0.25), spacing_known=True,
                   meta={"unit": "µm", "channel_names": ["DAPI", "GFP"]})
    convert(named, tmp_path / "named.zarr", levels=0)
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "named.zarr", channel="GFP").data), stack[:, 1])
    r = _cli("convert", tmp_path / "cells.tif", tmp_path / "gfp.zarr", "--channel", "1")
    assert r.returncode == 0 and zarr.open_group(str(tmp_path / "gfp.zarr"), mode="r")["0"].shape == (8, 40, 36)
    with pytest.raises(VolumeError, match=r"one 3D volume, a time-lapse of them, or their channels; .* of labels "
                                          "with axes c before z, y, x"):
        convert(Volume(np.zeros((2, 3, 4, 5), np.uint8)), tmp_path / "l.zarr", labels=True)


def test_a_time_lapse_converts_whole_with_its_time_axis(tmp_path):
    """Every time point of a (T, Z, Y, X) TIFF goes into one OME-Zarr image of axes t, z, y, x (OME's
    time axis), its pyramid on z, y, x of each time point, a chunk per time point; each time point
    opens as the file's; (T, C, Z, Y, X) keeps both; a time-lapse of masks becomes a label image;
    --timepoint takes one. Before, convert refused a time-lapse unless one time point was chosen."""
    import tifffile
    from halo_seg.io.volume import file_contents
    rng = np.random.default_rng(5)
    movie = rng.integers(0, 4000, (3, 6, 40, 36)).astype(np.uint16)                # (t, z, y, x)
    tifffile.imwrite(tmp_path / "movie.tif", movie, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "TZYX", "spacing": 0.5, "unit": "um"})
    r = _cli("convert", tmp_path / "movie.tif", tmp_path / "movie.zarr", "--levels", "1")
    assert r.returncode == 0, r.stderr
    grp = zarr.open_group(str(tmp_path / "movie.zarr"), mode="r")
    assert grp["0"].shape == movie.shape and grp["0"].chunks[0] == 1
    np.testing.assert_array_equal(grp["0"][...], movie)
    half = np.round(movie.reshape(3, 6, 20, 2, 18, 2).astype(np.float32).mean((3, 5))).astype(np.uint16)
    np.testing.assert_array_equal(grp["1"][...], half)                          # no mean across time points
    axes = grp.attrs["ome"]["multiscales"][0]["axes"]
    assert [(a["name"], a["type"]) for a in axes] == [("t", "time"), ("z", "space"), ("y", "space"), ("x", "space")]
    assert file_contents(tmp_path / "movie.zarr").meta["axes"] == ["t", "z", "y", "x"]
    for t in range(3):
        v = open_volume(tmp_path / "movie.zarr", timepoint=t)
        assert v.spacing == (0.5, 0.25, 0.25) and v.meta["unit"] == "µm"
        np.testing.assert_array_equal(np.asarray(v.data), movie[t])
    r = _cli("convert", tmp_path / "movie.tif", tmp_path / "t1.zarr", "--timepoint", "1")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "t1.zarr"), mode="r")["0"][...], movie[1])

    both = rng.integers(0, 4000, (2, 4, 2, 20, 18)).astype(np.uint16)             # (t, z, c, y, x)
    tifffile.imwrite(tmp_path / "both.tif", both, imagej=True, metadata={"axes": "TZCYX"})
    r = _cli("convert", tmp_path / "both.tif", tmp_path / "both.zarr")
    assert r.returncode == 0, r.stderr
    grp = zarr.open_group(str(tmp_path / "both.zarr"), mode="r")
    np.testing.assert_array_equal(grp["0"][...], both.transpose(0, 2, 1, 3, 4))
    assert [a["name"] for a in grp.attrs["ome"]["multiscales"][0]["axes"]] == list("tczyx")
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "both.zarr", timepoint=1, channel=1).data),
                                  both[1, :, 1])

    masks = np.zeros((3, 4, 16, 16), np.uint16)                                  # a folder of masks over time
    for t in range(3):
        masks[t, 1:3, 2 + t:6 + t, 3:7] = 7
        tifffile.imwrite(tmp_path / f"mask{t:03d}.tif", masks[t])
    (tmp_path / "masks").mkdir()
    for t in range(3):
        (tmp_path / f"mask{t:03d}.tif").rename(tmp_path / "masks" / f"mask{t:03d}.tif")
    r = _cli("convert", tmp_path / "masks", tmp_path / "masks.zarr", "--labels", "--levels", "1")
    assert r.returncode == 0, r.stderr
    grp = zarr.open_group(str(tmp_path / "masks.zarr"), mode="r")
    assert "image-label" in grp.attrs["ome"] and grp["0"].shape == masks.shape
    np.testing.assert_array_equal(grp["0"][...], masks)
    np.testing.assert_array_equal(grp["1"][...], masks[:, ::2, ::2, ::2])       # nearest voxel, per time point


def test_info_suggests_converting_a_large_compressed_input_once(tmp_path, capsys, monkeypatch):
    import json
    from halo_seg.cli import main, volumes
    img = np.arange(8 * 10 * 12, dtype=np.int16).reshape(8, 10, 12)
    nib.save(nib.Nifti1Image(img.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "v.nii.gz"))
    nib.save(nib.Nifti1Image(img.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "v.nii"))
    monkeypatch.setattr(volumes, "CONVERT_ABOVE", img.nbytes - 1)   # "large": above this many bytes of voxels

    def info(name):
        assert main(["info", str(tmp_path / name)]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "halo-seg convert" in info("v.nii.gz")["hint"]
    assert "hint" not in info("v.nii")                                  # read in place already
    monkeypatch.setattr(volumes, "CONVERT_ABOVE", img.nbytes)
    assert "hint" not in info("v.nii.gz")                               # small: decompressing it costs little
    # an NRRD whose header says its voxels are gzipped (3D Slicer's default)
    head = ("NRRD0004\ntype: short\ndimension: 3\nsizes: 12 10 8\nencoding: gzip\nendian: little\n\n")
    import gzip
    (tmp_path / "v.nrrd").write_bytes(head.encode() + gzip.compress(img.tobytes()))
    monkeypatch.setattr(volumes, "CONVERT_ABOVE", img.nbytes - 1)
    assert "halo-seg convert" in info("v.nrrd")["hint"]
