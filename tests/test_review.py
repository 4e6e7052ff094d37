import numpy as np
import pytest
import zarr

from halo_seg.cli import main
from halo_seg.engine.runner import segment
from halo_seg.io import VolumeError
from halo_seg.review import expected_errors, open_uncertainty, parse_axis, review_order


def _group(path):
    return zarr.open_group(str(path), mode="r")


def test_uncertainty_is_the_percent_chance_the_label_is_wrong(tmp_path, phantom_npy, tiny_weights):
    segment(phantom_npy, tmp_path / "w.zarr", tiny_weights, mode="whole", save_probabilities=True)
    g = _group(tmp_path / "w.zarr")
    p = g["probabilities"][...]
    u = g["uncertainty"][...]
    assert u.dtype == np.uint8 and u.shape == g["labels"].shape
    np.testing.assert_array_equal(u, np.rint(100 * (1 - p.max(0))).astype(np.uint8))
    assert u.max() > 0   # a random network is unsure somewhere: the test can fail
    segment(phantom_npy, tmp_path / "h.zarr", tiny_weights, grid=(2, 1, 2))
    # the halo run's probabilities differ by ~1e-6, which can move a value across a rounding edge
    assert np.abs(_group(tmp_path / "h.zarr")["uncertainty"][...].astype(int) - u).max() <= 1


def test_expected_errors_per_slice_along_each_axis():
    rng = np.random.default_rng(0)
    u = rng.integers(0, 101, (7, 5, 6)).astype(np.uint8)
    u[3] = 0
    sums = expected_errors(u, slab_voxels=40)   # slabs of one slice: the sums cross slabs
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        np.testing.assert_allclose(sums[axis], u.sum(other) / 100.0)
    fsums = expected_errors(u.astype(np.float32) + 0.25, slab_voxels=40)   # percents as floats stay floats
    np.testing.assert_allclose(fsums[0], (u.astype(float) + 0.25).sum((1, 2)) / 100.0, rtol=1e-6)
    order = review_order(sums[0])
    assert order == sorted((z for z in range(7) if z != 3), key=lambda z: -u[z].sum(dtype=int))
    assert review_order(sums[0], top=2) == order[:2]
    assert review_order(np.array([0.0, 2.0, 2.0, 1.0])) == [1, 2, 3]
    with pytest.raises(VolumeError, match="3D"):
        expected_errors(np.zeros((4, 4), np.uint8))
    assert parse_axis("x") == 2 and parse_axis(1) == 1
    with pytest.raises(VolumeError, match="axis"):
        parse_axis("w")


def test_cli_review_lists_the_slices_with_most_expected_errors(tmp_path, phantom_npy, tiny_weights, capsys):
    out = tmp_path / "o.zarr"
    segment(phantom_npy, out, tiny_weights, grid=(2, 1, 1))
    u = _group(out)["uncertainty"][...].astype(float) / 100
    assert main(["review", str(out), "--axis", "y", "--top", "3"]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines()[2:]]
    per_y = u.sum((0, 2))
    assert [int(r[1]) for r in rows] == list(np.argsort(-per_y, kind="stable")[:3])
    assert float(rows[0][2]) == pytest.approx(per_y.max(), abs=0.0501)   # printed to 0.1: off by up to 0.05
    assert f"about {u.sum():.0f} voxels expected wrong" in text


def test_review_refuses_what_it_cannot_rank(tmp_path, phantom_npy, tiny_weights, capsys):
    with pytest.raises(VolumeError, match="not a zarr group"):
        open_uncertainty(tmp_path / "nothing.zarr")
    out = tmp_path / "o.zarr"
    segment(phantom_npy, out, tiny_weights, mode="whole")
    g = zarr.open_group(str(out), mode="a")
    g["done"][0, 0, 0] = 0   # as if the run stopped before its block was written
    with pytest.raises(VolumeError, match="never written"):
        open_uncertainty(out)
    del g["uncertainty"]     # an output of an older version
    assert main(["review", str(out)]) != 0
    assert "older version" in capsys.readouterr().err
    assert main(["review", str(out), "--axis", "q"]) != 0
