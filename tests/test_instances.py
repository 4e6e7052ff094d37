"""Connected objects of a label volume, labelled in slabs, against scipy.ndimage.label on the whole array."""
import json

import dask.array as da
import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from halo_seg import cli, instances
from halo_seg.instances import label_instances
from halo_seg.io import VolumeError, open_volume
from halo_seg.measure import measure_labels


def _volume(seed=0, shape=(30, 41, 37)):
    """Two classes (left / right half) of random blobs, so that components cross every slab face."""
    rng = np.random.default_rng(seed)
    m = ndi.gaussian_filter(rng.random(shape), 1.5) > 0.52
    cls = np.where(np.arange(shape[2])[None, None, :] < shape[2] // 2, 1, 2)
    return np.where(m, cls, 0).astype(np.uint8)


def _same_partition(out, ref, fg):
    """out and ref split the foreground into the same sets of voxels (ids may differ)."""
    pairs = set(zip(out[fg].tolist(), ref[fg].tolist()))
    return len(pairs) == len(np.unique(ref[fg])) == len(np.unique(out[fg])) and not out[~fg].any()


@pytest.mark.parametrize("connectivity", [1, 2, 3])
@pytest.mark.parametrize("slab_slices", [None, 4, 1])   # one slab; slabs of 4 slices; one slice each
def test_equals_scipy_label_on_the_whole_array(tmp_path, monkeypatch, connectivity, slab_slices):
    lab = _volume()
    if slab_slices:
        monkeypatch.setattr(instances, "SLAB_VOXELS", slab_slices * 41 * 37)
    st = ndi.generate_binary_structure(3, connectivity)
    res = label_instances(da.from_array(lab, chunks=(7, 41, 37)), tmp_path / "o.zarr", connectivity=connectivity)
    out = zarr.open_array(str(tmp_path / "o.zarr"))[...]
    ref, n = ndi.label(lab > 0, st)
    assert res.objects == n and _same_partition(out, ref, lab > 0)
    assert res.per_class == {"foreground": n}
    # ids 1..n, numbered in the order objects first appear in raster order
    ids, first = np.unique(out, return_index=True)
    assert ids.tolist() == list(range(n + 1)) and np.all(np.diff(first[1:]) > 0)
    # each class apart: a component never spans the two touching halves
    res2 = label_instances(lab, tmp_path / "c.zarr", classes=[1, 2], connectivity=connectivity)
    out2 = zarr.open_array(str(tmp_path / "c.zarr"))[...]
    refs = [ndi.label(lab == c, st) for c in (1, 2)]
    both = np.where(lab == 1, refs[0][0], np.where(lab == 2, refs[1][0] + refs[0][1], 0))
    assert res2.per_class == {1: refs[0][1], 2: refs[1][1]} and _same_partition(out2, both, lab > 0)


def test_small_objects_dropped_and_geometry_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(instances, "SLAB_VOXELS", 3 * 41 * 37)
    lab = _volume(1)
    ref, n = ndi.label(lab > 0)
    sizes = np.bincount(ref.ravel())
    big = np.isin(ref, np.flatnonzero(sizes >= 20)) & (ref > 0)
    geometry = {"shape": list(lab.shape), "sform": np.diag([0.5, 0.5, 2.0, 1.0]).tolist(), "sform_code": 1,
                "qform": np.diag([0.5, 0.5, 2.0, 1.0]).tolist(), "qform_code": 1}
    res = label_instances(lab, tmp_path / "o.zarr", min_voxels=20, spacing=(2.0, 0.5, 0.5), geometry=geometry,
                          unit="µm")
    out = zarr.open_array(str(tmp_path / "o.zarr"))[...]
    assert res.removed == int((sizes[1:] < 20).sum()) and res.objects == n - res.removed
    assert _same_partition(out, np.where(big, ref, 0), big)
    back = open_volume(tmp_path / "o.zarr")
    assert back.spacing == (2.0, 0.5, 0.5) and back.meta["unit"] == "µm" and back.meta["geometry"]["sform_code"] == 1
    assert back.meta["labels"]                          # napari's reader opens it as a Labels layer
    t = measure_labels(back.data, back.spacing, unit="µm")
    assert len(t["label"]) == res.objects and t["voxels"].min() >= 20


def test_refusals():
    with pytest.raises(VolumeError, match="not labels"):
        label_instances(np.zeros((3, 4, 5), np.float32), "x.zarr")
    with pytest.raises(VolumeError, match="3D"):
        label_instances(np.zeros((4, 5), np.uint8), "x.zarr")
    with pytest.raises(VolumeError, match="connectivity"):
        label_instances(np.zeros((3, 4, 5), np.uint8), "x.zarr", connectivity=4)
    with pytest.raises(VolumeError, match="classes"):
        label_instances(np.zeros((3, 4, 5), np.uint8), "x.zarr", classes=[0])
    with pytest.raises(VolumeError, match="instances writes a zarr label array, not x.nii.gz"):
        label_instances(np.ones((3, 4, 5), np.uint8), "x.nii.gz")


def test_cli_instances_then_measure(tmp_path, capsys):
    lab = _volume(2)
    np.save(tmp_path / "lab.npy", lab)
    assert cli.main(["instances", str(tmp_path / "lab.npy"), str(tmp_path / "o.zarr"), "--classes", "2",
                     "--min-voxels", "5", "--quiet"]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ref, n = ndi.label(lab == 2)
    small = int((np.bincount(ref.ravel())[1:] < 5).sum())
    assert rep["objects"] == n - small and rep["per_class"] == {"2": n - small}
    assert cli.main(["measure", str(tmp_path / "o.zarr")]) == 0
    assert f"{n - small} objects" in capsys.readouterr().out
    assert cli.main(["instances", str(tmp_path / "lab.npy"), str(tmp_path / "p.zarr"), "--classes", "0"]) == 2
    assert "classes" in capsys.readouterr().err
    # a class that is not there (a typo) gave 0 objects and no word of why
    assert cli.main(["instances", str(tmp_path / "lab.npy"), str(tmp_path / "q.zarr"), "--classes", "2", "99",
                     "--quiet"]) == 0
    got = capsys.readouterr()
    assert json.loads(got.out.strip().splitlines()[-1])["per_class"] == {"2": n, "99": 0}
    assert "no object of class 99: the labels hold none of it" in got.err
    # a user's volume is never written over; an earlier output is
    assert cli.main(["instances", str(tmp_path / "o.zarr"), str(tmp_path / "o.zarr")]) == 2
    assert "must not be the input" in capsys.readouterr().err
    zarr.open_array(str(tmp_path / "mine.zarr"), mode="w", shape=(2, 2, 2), dtype="u1")[...] = 7
    assert cli.main(["instances", str(tmp_path / "lab.npy"), str(tmp_path / "mine.zarr"), "--quiet"]) == 2
    assert "not an earlier output" in capsys.readouterr().err
    assert zarr.open_array(str(tmp_path / "mine.zarr"))[...].tolist() == np.full((2, 2, 2), 7).tolist()
    assert cli.main(["instances", str(tmp_path / "lab.npy"), str(tmp_path / "o.zarr"), "--quiet"]) == 0


def _balls(centres_radii, shape=(24, 60, 80), spacing=(2.0, 1.0, 1.0)):
    grid = np.indices(shape)
    m = np.zeros(shape, bool)
    for c, r in centres_radii:
        m |= sum(((g - cc) * s) ** 2 for g, cc, s in zip(grid, c, spacing)) <= r * r
    return m


def test_split_touching_separates_touching_balls_and_keeps_single_ones(tmp_path):
    from halo_seg.instances import split_touching
    spacing = (2.0, 1.0, 1.0)
    a, b = ((12, 30, 22), 9.0), ((12, 30, 38), 9.0)          # overlapping: one component
    lone = ((12, 30, 66), 7.0)
    m = _balls([a, b, lone])
    zz, yy, xx = np.indices(m.shape)
    cigar = ((zz - 5) * 2.0) ** 2 / 9 + (yy - 8) ** 2 / 36 + (xx - 40) ** 2 / 900 <= 1   # 3:1 elongated, alone
    m |= cigar & ~_balls([a, b, lone], spacing=spacing)
    res = label_instances(m, tmp_path / "o.zarr", spacing=spacing, dtype=np.uint32)
    assert res.objects == 3                                     # the two balls touch
    assert split_touching(tmp_path / "o.zarr", 0.25, spacing) == 4
    out = zarr.open_array(str(tmp_path / "o.zarr"))[...]
    ids_a, ids_b = out[12, 30, 22], out[12, 30, 38]
    assert ids_a != ids_b and ids_a > 0 and ids_b > 0
    # the middle of each ball is its own object
    near_a, near_b = _balls([a]) & (np.abs(xx - 22) < 5), _balls([b]) & (np.abs(xx - 38) < 5)
    assert (out[near_a] == ids_a).all() and (out[near_b] == ids_b).all()
    assert len(np.unique(out[cigar & m])) == 1 and len(np.unique(out[_balls([lone])])) == 1   # not cut
    with pytest.raises(VolumeError, match="depth"):
        split_touching(tmp_path / "o.zarr", 0)


def test_cli_split(tmp_path, capsys):
    m = _balls([((12, 30, 22), 9.0), ((12, 30, 38), 9.0)])
    np.save(tmp_path / "m.npy", m.astype(np.uint8))
    assert cli.main(["instances", str(tmp_path / "m.npy"), str(tmp_path / "o.zarr"), "--split", "--quiet"]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["objects"] == 1 and rep["objects_after_split"] == 2
