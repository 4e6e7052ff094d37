"""Partitioned training's augmentation: each rank's block of an augmented patch is that block of the
patch augmented whole, image and labels move together, and an identity draw reads the patch as is."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from halo_seg.engine.partition import PartitionPlan
from halo_seg.train import block_augment
from halo_seg.train.partitioned import step_inputs


def _volume(shape=(40, 36, 30), seed=0):
    g = np.random.default_rng(seed)
    labels = (ndi.gaussian_filter(g.standard_normal(shape), 3) > 0.02).astype(np.int16)
    labels[ndi.gaussian_filter(g.standard_normal(shape), 3) > 0.05] = 2
    image = (labels + 0.3 * g.standard_normal(shape)).astype(np.float32)
    weights = g.uniform(0.5, 2, shape).astype(np.float32)
    return image, labels, weights


@pytest.fixture
def always(monkeypatch):
    for name in ("P_SPATIAL", "P_CONTRAST", "P_NOISE"):
        monkeypatch.setattr(block_augment, name, 1.0)


@pytest.mark.parametrize("grid", [(2, 2, 2), (1, 3, 1)])
def test_blocks_put_together_equal_the_whole_patch(always, grid):
    image, labels, weights = _volume()
    patch = (22, 20, 14)                                   # padded to (24, 20, 16) on a multiple of 4
    plan = PartitionPlan(patch, grid, 4)
    for seed in range(4):
        whole = step_inputs(image, labels, weights, patch, plan, None, np.random.default_rng(seed), augment=True)
        plain = step_inputs(image, labels, weights, patch, plan, None, np.random.default_rng(seed))
        assert not np.allclose(whole[0].numpy(), plain[0].numpy())   # the draw did augment
        for rank in plan.ranks():
            part = step_inputs(image, labels, weights, patch, plan, rank, np.random.default_rng(seed), augment=True)
            sl = (slice(None),) + plan.block(rank)
            for a, b in zip(part, whole):
                assert np.array_equal(a.numpy(), b.numpy()[(slice(None),) * (b.ndim - 3) + plan.block(rank)]), \
                    (seed, rank, sl)
        w = whole[2].numpy()[0]
        assert (w[22:] == 0).all() and (w[:, :, 14:] == 0).all() and (w[:22, :, :14] > 0).all()   # padding


def test_image_and_labels_move_together(always):
    _, labels, weights = _volume(seed=1)
    image = labels.astype(np.float32)                      # an image that is its labels
    patch = (24, 24, 24)
    plan = PartitionPlan(patch, (1, 1, 1), 4)
    agree = []
    for seed in range(6):
        x, y, _ = step_inputs(image, labels, weights, patch, plan, None, np.random.default_rng(seed), augment=True)
        _, y0, _ = step_inputs(image, labels, weights, patch, plan, None, np.random.default_rng(seed))
        assert not np.array_equal(y.numpy(), y0.numpy())   # the labels were moved
        # contrast and noise are small beside the label steps of 1
        agree.append(np.mean(np.abs(x.numpy()[0, 0] - y.numpy()[0]) < 0.5))
    assert min(agree) > 0.9, agree


def test_an_identity_draw_reads_the_patch_as_it_is():
    image, labels, weights = _volume(seed=2)
    patch, origin = (16, 12, 8), (5, 7, 9)
    d = block_augment.Draw((False, False, False), 1.0, 1.0, np.zeros((3, 4, 4, 4)), 1.0, None)
    ranges = [(0, p) for p in patch]
    x, y, w = block_augment.spatial_block([image, labels, weights], d, origin, patch, ranges)
    sl = tuple(slice(o, o + p) for o, p in zip(origin, patch))
    assert np.array_equal(x, image[sl]) and np.array_equal(y, labels[sl]) and np.array_equal(w, weights[sl])
    flipped = block_augment.Draw((True, False, True), 1.0, 1.0, d.control, 1.0, None)
    x = block_augment.spatial_block([image], flipped, origin, patch, ranges)[0]
    assert np.array_equal(x, image[sl][::-1, :, ::-1])
    # a displacement of one voxel along z at every control point moves every voxel by one (the spline's
    # weights sum to one)
    shift = np.zeros((3, 4, 4, 4))
    shift[0] = 1.0
    x = block_augment.spatial_block([image], block_augment.Draw((False,) * 3, 1.0, 1.0, shift), origin, patch,
                                    ranges)[0]
    assert np.allclose(x, image[5 + 1:5 + 1 + 16, 7:19, 9:17], atol=1e-5)


@pytest.mark.parametrize("grid", [(1, 1, 1), (2, 1, 2)])
def test_each_channel_draws_its_own_intensity_and_moves_with_the_others(always, grid):
    """Two copies of one image as two channels: the first comes out exactly as the image alone would
    (its draws come first), the second moved alike but with intensity draws of its own; blocks agree."""
    image, labels, weights = _volume(seed=2)
    patch = (20, 20, 20)
    plan = PartitionPlan(patch, grid, 4)
    two = np.stack([image, image])
    for seed in range(5):
        alone = step_inputs(image, labels, weights, patch, plan, None, np.random.default_rng(seed), augment=True)
        both = step_inputs(two, labels, weights, patch, plan, None, np.random.default_rng(seed), augment=True)
        x1, x2 = alone[0].numpy()[0], both[0].numpy()[0]
        assert np.array_equal(x2[0], x1[0]) and np.array_equal(both[1].numpy(), alone[1].numpy())
        assert not np.allclose(x2[1], x2[0], atol=1e-3), seed        # not the first channel's intensity
        # the same voxels (moved alike): the second channel keeps the first's order of brightness
        assert np.corrcoef(x2[0].ravel(), x2[1].ravel())[0, 1] > 0.8
        for rank in plan.ranks():
            part = step_inputs(two, labels, weights, patch, plan, rank, np.random.default_rng(seed), augment=True)
            assert np.array_equal(part[0].numpy(), both[0].numpy()[(slice(None), slice(None)) + plan.block(rank)])
