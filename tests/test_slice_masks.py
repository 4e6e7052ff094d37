"""SliceMasks: a session's 3D mask kept slice by slice (interactive/slice_masks.py)."""
import numpy as np
import pytest

from halo_seg.interactive.slice_masks import SliceMasks, slice_areas


def _random_mask(rng, shape=(9, 23, 31)):
    vol = rng.random(shape) < 0.2
    vol[[0, 4, 5]] = False             # empty slices, at an end and inside
    vol[6] = False
    vol[6, 3:5, 29:31] = True          # one against the border
    return vol


def test_a_mask_read_back_is_the_mask_written():
    rng = np.random.default_rng(0)
    vol = _random_mask(rng)
    m = SliceMasks.from_dense(vol)
    assert m.shape == vol.shape and len(m) == 9
    assert np.array_equal(m.dense(), vol)
    assert all(np.array_equal(m[z], vol[z]) for z in range(9))
    assert m.nonempty() == [z for z in range(9) if vol[z].any()]
    assert np.array_equal(m.areas(), vol.sum((1, 2))) and np.array_equal(slice_areas(m), slice_areas(vol))
    zs, ys, xs = np.nonzero(vol)
    assert m.bbox() == (slice(zs.min(), zs.max() + 1), slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    assert m.nbytes <= vol.size // 8 + 9


def test_copies_share_slices_and_never_change_each_other():
    rng = np.random.default_rng(1)
    vol = _random_mask(rng)
    a = SliceMasks.from_dense(vol)
    b = a.copy()
    b[2] = np.zeros(vol.shape[1:], bool)       # emptied: dropped
    b[4] = vol[1]
    assert np.array_equal(a.dense(), vol)      # the original is untouched
    expected = vol.copy()
    expected[2], expected[4] = False, vol[1]
    assert np.array_equal(b.dense(), expected) and 2 not in b.nonempty()
    assert a._slices[3] is b._slices[3]         # unchanged slices are shared, not copied
    read = a[3]
    read[:] = False                             # a slice read is the caller's own array
    assert np.array_equal(a[3], vol[3])


def test_empty_and_wrong_shapes():
    m = SliceMasks((3, 4, 5))
    assert not m.any() and m.bbox() is None and m.nonempty() == [] and not m.dense().any()
    with pytest.raises(ValueError, match="slice of this mask has shape"):
        m[0] = np.ones((4, 4), bool)
    with pytest.raises(IndexError, match="outside"):
        m[3]
    with pytest.raises(ValueError, match="3D"):
        SliceMasks((4, 5))


@pytest.mark.parametrize("axis", [0, 2])
def test_a_sessions_mask_box_is_the_box_of_its_prediction_in_the_volumes_orientation(random_weights, axis):
    from halo_seg import InteractiveSegmenter
    vol = np.random.default_rng(2).normal(size=(14, 30, 36)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights, tta=False, axis=axis)
    assert seg.mask_box() is None and seg.mask_box(prior=True) is None
    n, h, w = seg.shape
    for z, (y0, x0) in ((2, (4, 5)), (n - 3, (9, 1))):
        m = np.zeros((h, w), bool)
        m[y0:y0 + 6, x0:x0 + 3] = True
        seg.set_slice_mask(z, m)
        pred = seg.prediction
        idx = np.nonzero(pred)
        assert seg.mask_box() == tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
        for box in (seg.mask_box(), (slice(1, 9), slice(3, 20), slice(0, 7))):   # any box reads as the dense mask's
            np.testing.assert_array_equal(seg.prediction_in(box), pred[box])

    prior = np.zeros(vol.shape, bool)
    prior[3:6, 7:9, 10:20] = True
    seg.reset()
    seg.start_from(prior)
    seg.set_slice_mask(n - 1, np.zeros((h, w), bool))
    assert seg.mask_box(prior=True) == (slice(3, 6), slice(7, 9), slice(10, 20)) == seg.mask_box()
