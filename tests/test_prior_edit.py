"""Correcting an existing segmentation (InteractiveSegmenter.start_from, interactive/prior.py).

The merge rule is checked against hand-made masks; the session with the shipped weights against
the ground truth of a phantom the network never saw, starting from a prior with a known error.
"""
import numpy as np
import pytest
import torch

from halo_seg import InteractiveError, InteractiveSegmenter
from halo_seg.interactive.memnet import MemSegNet
from halo_seg.interactive.model_io import default_memnet_installed, save_memnet
from halo_seg.interactive.prior import keep_prior
from halo_seg.interactive.segmenter import LabelMissing
from halo_seg.metrics import dice

needs_default = pytest.mark.skipif(not default_memnet_installed(), reason="no shipped interactive weights")


def _square(n, y0, x0, size):
    m = np.zeros((n, n), bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def test_keep_prior_replaces_outward_until_the_propagation_agrees():
    prior = np.stack([_square(20, 2, 2, 8)] * 10)
    prop = prior.copy()
    for z in (4, 6, 7):                    # the propagation disagrees on 4, 6 and 7, agrees on 5 and 8
        prop[z] = _square(20, 10, 10, 8)
    ann = {5: _square(20, 10, 10, 8)}       # the user corrected slice 5 (prior wrong there)
    out, taken = keep_prior(prior, prop, reached=range(10), annotated=ann, agree=0.8)
    # upward from 5: 6 and 7 disagree and are taken, 8 agrees and stops; downward: 4 taken, 3 stops
    assert taken == {4, 6, 7}
    for z in range(10):
        want = ann[5] if z == 5 else (prop[z] if z in taken else prior[z])
        assert np.array_equal(out[z], want), z
    # a slice the propagation did not reach keeps the prior, and the walk stops there
    out, taken = keep_prior(prior, prop, reached={4, 5, 7}, annotated=ann, agree=0.8)
    assert taken == {4} and np.array_equal(out[6], prior[6]) and np.array_equal(out[7], prior[7])
    # agreement 1.0 takes every reached slice the propagation does not match exactly
    _, taken = keep_prior(prior, prop, reached=range(10), annotated=ann, agree=1.0)
    assert taken == {4, 6, 7}


def test_start_from_is_validated_and_leaves_the_session_unchanged(random_weights):
    vol = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights)
    good = np.zeros(vol.shape, np.uint8)
    good[2:4, 8:20, 8:20] = 3
    for bad, msg in ((np.ones((6, 32, 31), bool), "has shape"), (good * np.float32(0.5), "not labels"),
                     (np.zeros(vol.shape, bool), "is empty")):
        with pytest.raises(InteractiveError, match=msg):
            seg.start_from(bad)
        assert seg.prior is None and not seg.prediction.any() and not seg.can_undo
    seg.add_box(2, 8, 8, 19, 19)
    with pytest.raises(InteractiveError, match="reset it"):
        seg.start_from(good)
    seg.reset()
    seg.start_from(good)
    assert np.array_equal(seg.prediction, good > 0) and np.array_equal(seg.prior, good > 0)
    seg.undo()
    assert seg.prior is None and not seg.prediction.any()
    # labels stored as floats (an FSL or SPM mask) are labels: label 3 picked out as from the integers
    seg.start_from(good.astype(np.float32), label=3)
    assert np.array_equal(seg.prior, good == 3)


def _corrected_prior(weights, seed, z):
    """A session started from a block-shaped prior on a noise volume, slice z corrected to empty."""
    vol = np.random.default_rng(seed).random((8, 32, 32)).astype(np.float32)
    prior = np.zeros(vol.shape, bool)
    prior[1:7, 8:20, 8:20] = True
    seg = InteractiveSegmenter(vol, device="cpu", weights=weights)
    seg.start_from(prior)
    seg.set_slice_mask(z, np.zeros((32, 32), bool))
    return vol, prior, seg


def test_only_empty_corrections_empty_those_slices_and_nothing_else(random_weights, tmp_path):
    vol, prior, seg = _corrected_prior(random_weights, 1, 6)   # "not here": the prior leaked onto slice 6
    out = seg.propagate()
    want = prior.copy()
    want[6] = False
    assert np.array_equal(out, want)
    assert seg.quality[6] == 1.0 and np.isnan(np.delete(seg.quality, 6)).all()
    with pytest.raises(InteractiveError, match="does not judge"):
        seg.recommend_slice()
    # the prior survives a session file, and the next propagation still starts from it
    path = seg.save_session(tmp_path / "s.npz")
    back = InteractiveSegmenter.from_session(path, vol, device="cpu", weights=random_weights)
    assert np.array_equal(back.prior, prior) and np.array_equal(back.prediction, want)
    assert np.array_equal(back.propagate(), want)


def test_the_prior_survives_a_session_opened_with_other_weights(random_weights, tmp_path):
    vol, prior, seg = _corrected_prior(random_weights, 2, 2)
    path = seg.save_session(tmp_path / "s.npz")
    torch.manual_seed(5)
    other = save_memnet(MemSegNet(), tmp_path / "other.safetensors")
    back = InteractiveSegmenter.from_session(path, vol, device="cpu", weights=other)
    assert not back.restored_propagation
    want = prior.copy()
    want[2] = False
    assert np.array_equal(back.prior, prior) and np.array_equal(back.prediction, want)


@needs_default
def test_a_correction_carries_through_a_wrong_stretch_of_the_prior_and_keeps_the_rest(phantom):
    image, truth = phantom
    zs = np.flatnonzero(truth.any((1, 2)))
    # an automatic result that missed the object's upper third; elsewhere it is the truth
    cut = zs[0] + 2 * len(zs) // 3
    prior = truth.copy()
    prior[cut:] = False
    seg = InteractiveSegmenter(image, device="cpu")
    seg.start_from(prior)
    z = cut + 1
    seg.set_slice_mask(z, truth[z])           # the user paints one slice of the missed part
    out = seg.propagate()
    changed = np.flatnonzero((out != prior).any((1, 2)))
    # the correction carried on into the missed slices beyond the painted one and made them better ...
    assert {z + 1, z + 2} <= set(changed)
    missed = slice(cut, zs[-1] + 1)
    assert dice(out[missed], truth[missed]) > dice(seg.prior[missed], truth[missed]) + 0.3
    # ... and the prior stands where the propagation agrees with it: far below the correction every
    # slice is the prior's exactly
    far = zs[0] + len(zs) // 3
    assert np.array_equal(out[:far], prior[:far])
    assert dice(out, truth) > dice(prior, truth) + 0.05
    # the slices it changed are judged; a recommendation comes from them
    q = seg.quality
    assert np.isfinite(q[[c for c in changed if c != z]]).all()
    assert np.isnan(q[:far][prior[:far].any((1, 2))]).all()
    assert seg.recommend_slice() in set(changed) - {z}


def test_a_prior_on_a_session_across_another_axis_stays_in_the_volumes_orientation(random_weights):
    vol = np.random.default_rng(3).random((10, 12, 14)).astype(np.float32)
    prior = np.zeros(vol.shape, bool)
    prior[2:8, 3:9, 4:11] = True
    prior[2:8, 5, 4:11] = False          # a hole in one coronal slice, so orientation matters
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights, axis=1)
    seg.start_from(prior)
    assert seg.shape == (12, 10, 14)
    assert np.array_equal(seg.prior, prior) and np.array_equal(seg.prediction, prior)
    seg.set_slice_mask(4, np.zeros((10, 14), bool))   # coronal slice 4: "not here"
    want = prior.copy()
    want[:, 4, :] = False
    assert np.array_equal(seg.propagate(), want)


def test_a_label_is_taken_from_a_lazy_label_volume_a_slab_at_a_time(random_weights):
    import dask.array as da
    from halo_seg.interactive.slice_masks import SliceMasks
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, (9, 20, 24)).astype(np.uint16)
    labels[:, :5] = 0
    reads = []

    class Recording:                                  # an array-like recording what is read
        shape, dtype, ndim = labels.shape, labels.dtype, 3

        def __getitem__(self, key):
            reads.append(labels[key].nbytes)
            return labels[key]

    plane = 9 * 24 * 2                                # bytes of one slice across axis 1
    m = SliceMasks.from_volume(Recording(), axis=1, label=2, slab_bytes=3 * plane)
    assert np.array_equal(m.dense(), np.moveaxis(labels == 2, 1, 0)) and max(reads) <= 3 * plane
    vol = rng.random(labels.shape).astype(np.float32)
    for axis in (0, 1):
        seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights, axis=axis)
        n = seg.start_from(da.from_array(labels, chunks=(4, 7, 8)), label=2)
        assert n == int((labels == 2).sum()) and np.array_equal(seg.prior, labels == 2)
        assert np.array_equal(seg.prediction, labels == 2)
        with pytest.raises(LabelMissing, match="label 7 is not in the mask"):
            seg.start_from(labels, label=7)             # the label taken before stays
        with pytest.raises(InterruptedError):
            seg.start_from(labels, label=1, cancel=lambda: True)
        assert np.array_equal(seg.prior, labels == 2)
        seg.start_from(labels, label=3)                  # another label replaces it; Undo brings it back
        assert np.array_equal(seg.prior, labels == 3)
        seg.undo()
        assert np.array_equal(seg.prior, labels == 2)
