"""InteractiveSegmenter: prompts, propagation, recommendation, undo and bad input.

Behaviour is checked with the shipped weights against the ground truth of a procedural phantom
that training never saw (training phantoms use seeds >= 1000); validation and state handling with
an untrained network, which is quick and needs nothing installed.
"""
import copy

import numpy as np
import pytest
import torch

from halo_seg import InteractiveError, InteractiveSegmenter
from halo_seg.engine.weights import WeightsError, save_unet
from halo_seg.engine.unet import UNet3D
from halo_seg.interactive.model_io import default_memnet_installed
from halo_seg.interactive.roi import mask_bbox
from halo_seg.interactive.simulate import run_session, thick_slices
from halo_seg.metrics import dice

needs_default = pytest.mark.skipif(not default_memnet_installed(), reason="no shipped interactive weights")


def _state(seg):
    s = seg._s
    return (copy.deepcopy(s.prompts), {z: m.copy() for z, m in s.annotations.items()}, set(s.pending),
            None if s.prediction is None else s.prediction.copy(), None if s.quality is None else s.quality.copy(),
            set(s.painted))


def _same(a, b):
    if a[0].keys() != b[0].keys() or a[1].keys() != b[1].keys() or a[2] != b[2] or a[5] != b[5]:
        return False
    for z in a[0]:
        pa, pb = a[0][z], b[0][z]
        if (pa.pos, pa.neg, pa.box, pa.extreme) != (pb.pos, pb.neg, pb.box, pb.extreme):
            return False
    if any(not np.array_equal(a[1][z], b[1][z]) for z in a[1]):
        return False
    for x, y in ((a[3], b[3]), (a[4], b[4])):
        if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y, equal_nan=True)):
            return False
    return True


@pytest.mark.parametrize("vol, msg", [
    (np.zeros((8, 8)), "3D"), (np.zeros((2, 8, 8, 8)), "3D"), (np.zeros((0, 8, 8)), "empty"),
    (np.full((4, 8, 8), np.nan, np.float32), "NaN"), (np.zeros((4, 8, 8), np.complex64), "real numeric"),
    (np.array([["a"]]), "3D"),
])
def test_bad_volumes_are_refused(vol, msg, random_weights):
    with pytest.raises(InteractiveError, match=msg):
        InteractiveSegmenter(vol, device="cpu", weights=random_weights)


@pytest.mark.parametrize("kw, msg", [
    ({"spacing": (np.nan, 1, 1)}, "spacing must be 3 positive"), ({"spacing": (1, np.inf, 1)}, "spacing must be 3 positive"),
    ({"spacing": (0, 1, 1)}, "spacing must be 3 positive"), ({"device": "tpu"}, "device must be 'auto', 'cpu'"),
    ({"device": "cuda:7"}, "device 'cuda:7' requested but"),
])
def test_bad_spacing_and_devices_are_refused(kw, msg, random_weights):
    """A NaN slice spacing made every distance feature NaN; an unknown device was torch's own error."""
    with pytest.raises(InteractiveError, match=msg):
        InteractiveSegmenter(np.zeros((4, 8, 8), np.float32), weights=random_weights, **{"device": "cpu", **kw})


def test_bad_weights_are_refused(tmp_path, random_weights):
    vol = np.zeros((4, 32, 32), np.float32)
    with pytest.raises(WeightsError, match="not found"):
        InteractiveSegmenter(vol, device="cpu", weights=tmp_path / "missing.safetensors")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="corrupt"):
        InteractiveSegmenter(vol, device="cpu", weights=bad)
    unet = save_unet(UNet3D(1, 2, 4, 1), tmp_path / "unet.safetensors")
    with pytest.raises(WeightsError, match="not the interactive network"):
        InteractiveSegmenter(vol, device="cpu", weights=unet)
    from halo_seg.engine.weights import load_unet
    with pytest.raises(WeightsError, match="not the 3D U-Net"):
        load_unet(random_weights)
    pkl = tmp_path / "w.pt"
    pkl.write_bytes(b"x")
    with pytest.raises(WeightsError, match="safetensors"):
        InteractiveSegmenter(vol, device="cpu", weights=pkl)


def test_bad_prompts_leave_the_session_unchanged(random_weights):
    vol = np.random.default_rng(0).normal(size=(12, 40, 48)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights)
    with pytest.raises(InteractiveError, match="propagate needs"):
        seg.propagate()
    with pytest.raises(InteractiveError, match="nothing to recommend"):
        seg.recommend_slice()
    with pytest.raises(InteractiveError, match="nothing to undo"):
        seg.undo()
    seg.add_box(5, 10, 10, 20, 24)
    seg.add_click(5, 15, 15, positive=False)
    before = _state(seg)
    bad = [
        lambda: seg.add_click(12, 5, 5),                       # slice outside
        lambda: seg.add_click(-1, 5, 5),
        lambda: seg.add_click(2.5, 5, 5),                      # not a slice index
        lambda: seg.add_click(3, 40, 5),                       # y outside
        lambda: seg.add_click(3, 5, np.nan),
        lambda: seg.add_box(3, 20, 10, 10, 20),                # y0 > y1
        lambda: seg.add_box(3, 0, 0, 45, 10),                  # outside
        lambda: seg.add_extreme_points(3, [(1, 1), (2, 2), (3, 3)]),
        lambda: seg.add_extreme_points(3, [(4, 4)] * 4),
        lambda: seg.add_scribble(3, np.zeros((40, 48), bool)),
        lambda: seg.add_scribble(3, np.ones((40, 40), bool)),
        lambda: seg.set_slice_mask(3, np.ones((48, 40), bool)),
        lambda: seg.set_slice_mask(3, np.full((40, 48), 0.3)),  # a probability, not a mask
        lambda: seg.add_scribble(3, np.full((40, 48), np.nan)),
        lambda: seg.segment_slice(4),                          # no prompt there
    ]
    for f in bad:
        with pytest.raises(InteractiveError):
            f()
        assert _same(_state(seg), before)
    with pytest.raises(InteractiveError, match=r"the mask holds float64 values that are not labels \(e.g. 0.3\)"):
        seg.set_slice_mask(3, np.full((40, 48), 0.3))
    m = np.zeros((40, 48))
    m[8:20, 9:30] = 1.0   # a float mask of 0 and 1 is a mask
    seg.set_slice_mask(3, m)
    assert np.array_equal(seg.annotation(3), m > 0) and seg.painted_slices == [3]
    neg = InteractiveSegmenter(vol, device="cpu", weights=random_weights)
    neg.add_click(7, 10, 10, positive=False)   # only a negative click and nothing to correct
    before = _state(neg)
    with pytest.raises(InteractiveError, match="only negative"):
        neg.propagate()
    assert _same(_state(neg), before)


def test_cancel_leaves_the_session_unchanged(random_weights):
    vol = np.random.default_rng(1).normal(size=(10, 32, 32)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights)
    m = np.zeros((32, 32), bool)
    m[10:20, 10:20] = True
    seg.set_slice_mask(4, m)
    before = _state(seg)
    with pytest.raises(InterruptedError):
        seg.propagate(cancel=lambda: True)
    assert _same(_state(seg), before)


def test_the_session_reports_the_prompts_it_holds(random_weights):
    vol = np.random.default_rng(3).normal(size=(10, 32, 32)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights)
    stroke = np.zeros((32, 32), bool)
    stroke[12, 8:20] = True
    seg.add_box(4, 8, 6, 20, 18)
    seg.add_click(4, 10.4, 9.6, positive=False)
    seg.add_scribble(4, stroke)
    seg.add_extreme_points(7, [(3, 9), (20, 10), (11, 2), (12, 25)])
    held = seg.prompts
    assert sorted(held) == [4, 7] and held[4]["box"] == (8, 6, 20, 18) and held[4]["neg"] == [(10, 10)]
    assert held[4]["pos"] == [] and np.array_equal(held[4]["pos_mask"], stroke) and held[4]["neg_mask"] is None
    assert held[7]["extreme"] == [(3, 9), (20, 10), (11, 2), (12, 25)] and held[7]["box"] is None
    held[4]["pos_mask"][:] = True                    # a copy: the session is not changed through it
    assert np.array_equal(seg.prompts[4]["pos_mask"], stroke)
    seg.segment_slice(4)
    seg.add_box(4, 9, 7, 21, 19)                     # a new box after the slice was segmented replaces
    assert seg.prompts[4]["box"] == (9, 7, 21, 19) and seg.prompts[4]["neg"] == [] and seg.prompts[4]["pos_mask"] is None
    seg.undo()
    seg.undo()
    assert seg.prompts[4]["neg"] == [(10, 10)]
    seg.reset()
    assert seg.prompts == {}


def test_redo_goes_forward_again_until_a_new_step(random_weights):
    vol = np.random.default_rng(4).normal(size=(10, 32, 32)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights)
    with pytest.raises(InteractiveError, match="nothing to redo"):
        seg.redo()
    m = np.zeros((32, 32), bool)
    m[8:20, 6:18] = True
    seg.set_slice_mask(3, m)
    seg.propagate()
    states = [_state(seg)]
    seg.add_click(6, 12, 12)
    seg.segment_slice(6)
    states.append(_state(seg))
    seg.propagate()
    states.append(_state(seg))
    seg.reset()
    states.append(_state(seg))
    seg.undo()                                       # the reset
    assert _same(_state(seg), states[2]) and seg.can_redo
    seg.undo()                                       # the propagation
    assert _same(_state(seg), states[1])
    seg.undo()                                       # the segmentation and the click
    seg.undo()
    assert _same(_state(seg), states[0])
    seg.redo()
    seg.redo()
    assert _same(_state(seg), states[1])
    seg.redo()
    assert _same(_state(seg), states[2])
    seg.redo()
    assert _same(_state(seg), states[3])
    assert not seg.can_redo
    seg.undo()
    seg.undo()
    assert _same(_state(seg), states[1]) and seg.can_redo
    seg.add_click(7, 12, 12, positive=False)         # a new step: nothing to redo any more
    assert not seg.can_redo
    with pytest.raises(InteractiveError, match="nothing to redo"):
        seg.redo()
    seg.undo()
    assert _same(_state(seg), states[1])
    seg.clear_redo()
    assert not seg.can_redo and _same(_state(seg), states[1])


def test_set_slice_mask_is_trusted_and_undo_restores(random_weights):
    vol = np.random.default_rng(2).normal(size=(10, 32, 32)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights)
    m = np.zeros((32, 32), bool)
    m[8:20, 6:18] = True
    seg.set_slice_mask(3, m)
    p1 = seg.propagate().copy()
    assert np.array_equal(p1[3], m)                  # annotated slices are the user's, not the network's
    assert seg.quality[3] == 1.0
    seg.set_slice_mask(6, np.zeros((32, 32), bool))
    p2 = seg.propagate()
    assert not p2[6].any()
    seg.undo()                                       # undo the propagation
    seg.undo()                                       # undo the empty mask
    assert np.array_equal(seg.prediction, p1)
    seg.reset()
    assert seg.annotated_slices == [] and not seg.prediction.any() and np.isnan(seg.quality).all()
    seg.undo()
    assert np.array_equal(seg.prediction, p1)


def test_close_annotated_slices_are_filled_between_and_far_ones_are_not(random_weights):
    """Painted slices up to PAINTED_GAP_MM apart, and any annotated slices (segmented from prompts,
    carried over) up to FILL_SEGMENTED_MM apart, are filled between by shape interpolation; farther
    ones, and an empty slice, are left to the network."""
    from halo_seg.interactive import segmenter
    from halo_seg.interactive.baseline import interpolate_masks
    assert segmenter.FILL_SEGMENTED_MM < segmenter.PAINTED_GAP_MM
    vol = np.random.default_rng(4).normal(size=(12, 40, 40)).astype(np.float32)
    a, b = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    a[8:20, 6:18] = True
    b[14:32, 12:30] = True
    fill = interpolate_masks({2: a, 7: b}, vol.shape)

    def session(spacing=(1.0, 1.0, 1.0), painted=True):
        seg = InteractiveSegmenter(vol, spacing=spacing, device="cpu", weights=random_weights)
        seg.set_slice_mask(2, a, painted=painted)
        seg.set_slice_mask(7, b, painted=painted)
        return seg

    seg = session()
    assert seg.painted_slices == [2, 7]
    pred = seg.propagate()
    assert np.array_equal(pred[2:8], fill[2:8])               # 5 mm apart: "fill between slices"
    assert np.array_equal(session(painted=False).propagate()[2:8], fill[2:8])   # within 8 mm: the same
    gap = 10.0 / 5                                            # 10 mm apart: painted ones only
    assert np.array_equal(session((gap, 1.0, 1.0)).propagate()[3:7], fill[3:7])
    assert not np.array_equal(session((gap, 1.0, 1.0), painted=False).propagate()[3:7], fill[3:7])
    far = session(spacing=(3.0, 1.0, 1.0)).propagate()        # 15 mm apart: the network's
    assert not np.array_equal(far[3:7], fill[3:7])
    seg = session()
    seg.add_box(4, 10, 8, 26, 24)                             # a segmented slice between them
    seg.segment_slice(4)
    assert seg.painted_slices == [2, 7]
    m4 = seg.annotation(4)
    pred = seg.propagate()
    assert np.array_equal(pred[2:5], interpolate_masks({0: a, 2: m4}, (3, 40, 40)))   # through it
    assert np.array_equal(pred[4:8], interpolate_masks({0: m4, 3: b}, (4, 40, 40)))
    seg.strict_ends = True                                    # objects a few slices deep: painted ones only
    pred = seg.propagate()
    assert not np.array_equal(pred[3], interpolate_masks({0: a, 2: m4}, (3, 40, 40))[1])
    strict = session(painted=False)
    strict.strict_ends = True
    assert not np.array_equal(strict.propagate()[3:7], fill[3:7])
    strict = session()
    strict.strict_ends = True
    assert np.array_equal(strict.propagate()[2:8], fill[2:8])
    seg.set_slice_mask(4, seg.annotation(4), painted=False)   # carried over, not drawn
    assert seg.painted_slices == [2, 7] and 4 in seg.annotated_slices
    seg = session()
    seg.set_slice_mask(7, np.zeros((40, 40), bool))           # "not here": the network finds the end
    assert not np.array_equal(seg.propagate()[3:7], fill[3:7])
    seg = session()
    seg.add_box(7, 14, 12, 31, 29)                            # a box redraws a painted slice
    seg.propagate()
    assert seg.painted_slices == [2]
    seg.undo()
    assert seg.painted_slices == [2, 7]


def test_recommend_refuses_an_emptied_object(random_weights):
    vol = np.random.default_rng(3).normal(size=(8, 32, 32)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights)
    m = np.zeros((32, 32), bool)
    m[8:20, 6:18] = True
    seg.set_slice_mask(3, m)
    seg.propagate()
    for z in np.flatnonzero(seg.prediction.any((1, 2))):   # the user erases every slice of it
        seg.set_slice_mask(z, np.zeros((32, 32), bool))
    assert not seg.prediction.any()
    with pytest.raises(InteractiveError, match="current mask is empty"):
        seg.recommend_slice()


@needs_default
def test_box_then_rounds_follow_the_phantom_object(phantom):
    image, truth = phantom
    seg = InteractiveSegmenter(image, device="cpu")
    recs = run_session(seg, truth, rounds=3)
    d = [r["dice"] for r in recs]
    assert d[0] >= 0.7, d
    assert d[-1] >= d[0] - 0.02, d
    zs = np.flatnonzero(truth.any((1, 2)))
    q = seg.quality
    pred_z = np.flatnonzero(seg.prediction.any((1, 2)))
    assert np.isfinite(q[pred_z]).all()
    assert np.all((q[np.isfinite(q)] >= 0) & (q[np.isfinite(q)] <= 1))
    z = seg.recommend_slice()
    assert z not in seg.annotated_slices
    assert zs.min() - 2 <= z <= zs.max() + 2
    with pytest.raises(InteractiveError, match=f"slice {z} is not annotated"):
        seg.annotation(z)
    a = seg.annotated_slices[0]
    m = seg.annotation(a)
    assert m.dtype == bool and m.any() and np.array_equal(m, seg.prediction[a])
    m[:] = False                                             # a copy: the session keeps its own
    assert seg.annotation(a).any()


@needs_default
def test_the_intensity_unit_does_not_matter(phantom):
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    results = []
    for scale in (1.0, 1e-6, 1e30):
        seg = InteractiveSegmenter(image.astype(np.float64) * scale, device="cpu")
        seg.add_box(z, *mask_bbox(truth[z]))
        results.append(seg.propagate())
    assert dice(results[0], truth) > 0.8
    assert dice(results[1], results[0]) > 0.99 and dice(results[2], results[0]) > 0.99


def test_crops_past_the_slice_are_filled_with_the_windows_mean():
    from halo_seg.interactive.roi import ROI, crop_stack
    img = np.zeros((2, 10, 10), np.float32)
    img[:, :4, :4] = 1.0                     # an object in the corner
    img[1] *= 3
    crop = crop_stack(img, ROI(-4, -4, 10))
    inner = img[:, :6, :6]
    assert np.array_equal(crop[:, 4:, 4:], inner)
    for c, a in zip(crop, inner):            # not the object's edge values smeared outward
        assert np.allclose(c[:4], a.mean()) and np.allclose(c[:, :4], a.mean())
    assert np.array_equal(crop_stack(img, ROI(-4, -4, 10), 0)[:, :4], np.zeros((2, 4, 10)))


@needs_default
@pytest.mark.parametrize("where", ["middle", "corner", "edge"])
def test_objects_touching_the_volume_border_are_segmented_whole(where):
    rng = np.random.default_rng(0)
    truth = np.zeros((10, 40, 40), bool)
    ys, xs = {"middle": (slice(10, 30), slice(8, 33)), "corner": (slice(0, 20), slice(0, 25)),
              "edge": (slice(10, 30), slice(0, 25))}[where]
    truth[:, ys, xs] = True
    image = truth + rng.normal(0, 0.05, truth.shape).astype(np.float32)
    seg = InteractiveSegmenter(image, device="cpu")
    seg.add_box(5, *mask_bbox(truth[5]))
    assert dice(seg.propagate(), truth) > 0.93     # 0.83 in the corner when crops were edge-padded


@needs_default
def test_low_predicted_quality_ends_sweeps_past_the_annotations(phantom):
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    extents = {}
    for bias in (20.0, -20.0):   # the quality head forced to predict Dice ~1, then ~0
        seg = InteractiveSegmenter(image, device="cpu", tta=False, quality_model=None)
        with torch.no_grad():
            seg.net.quality[-1].bias.fill_(bias)
        seg.add_box(z, *mask_bbox(truth[z]))
        extents[bias] = np.flatnonzero(seg.propagate().any((1, 2)))
    zs = np.flatnonzero(truth.any((1, 2)))
    assert len(extents[20.0]) >= 0.8 * len(zs)       # trusted sweeps follow the object
    assert extents[-20.0].tolist() == [z]            # distrusted ones stop at once
    # only the annotated slice is left: the recommendation looks beyond it, then gives up
    first = seg.recommend_slice()
    assert first in (z - 1, z + 1)
    seg.set_slice_mask(first, np.zeros(truth.shape[1:], bool))
    assert seg.recommend_slice() == 2 * z - first
    seg.set_slice_mask(2 * z - first, np.zeros(truth.shape[1:], bool))
    with pytest.raises(InteractiveError, match="nothing left to recommend"):
        seg.recommend_slice()


@needs_default
def test_prompt_kinds_segment_a_slice(phantom):
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    m = truth[z]
    y0, x0, y1, x1 = mask_bbox(m)
    seg = InteractiveSegmenter(image, device="cpu")
    seg.add_box(z, y0, x0, y1, x1)
    assert dice(seg.segment_slice(z), m) >= 0.8
    seg.reset()
    ys, xs = np.nonzero(m)
    pts = [(ys.min(), xs[ys.argmin()]), (ys.max(), xs[ys.argmax()]), (ys[xs.argmin()], xs.min()),
           (ys[xs.argmax()], xs.max())]
    seg.add_extreme_points(z, pts)
    assert dice(seg.segment_slice(z), m) >= 0.8
    seg.reset()
    cy, cx = np.argwhere(m).mean(0).round().astype(int)
    seg.add_click(z, cy, cx)
    assert dice(seg.segment_slice(z), m) >= 0.5


def _disks(radii, side=200, gap=10):
    """Bright disks of the given radii in noise, one per slice ``gap`` slices apart, and their masks."""
    rng = np.random.default_rng(3)
    yy, xx = np.indices((side, side))
    truth = np.zeros((gap * len(radii), side, side), bool)
    for i, r in enumerate(radii):
        truth[gap * i] = (yy - side // 2) ** 2 + (xx - side // 2) ** 2 < r * r
    return (truth * 100 + rng.normal(0, 10, truth.shape)).astype(np.float32), truth


@needs_default
def test_one_click_finds_small_and_large_objects(monkeypatch):
    """A click alone does not say how big the object is; the crop scale search finds a disk 120
    pixels across as well as one 16 across (without it, a fixed 32-pixel crop found a blob)."""
    from halo_seg.interactive import segmenter
    image, truth = _disks((8, 60))
    for gain, big_ok in ((segmenter.CLICK_SCALE_GAIN, True), (0.0, False)):
        monkeypatch.setattr(segmenter, "CLICK_SCALE_GAIN", gain)
        seg = InteractiveSegmenter(image, device="cpu")
        found = []
        for z in (0, 10):
            seg.add_click(z, 100, 100)
            found.append(dice(seg.segment_slice(z), truth[z]))
            seg.reset()
        assert found[0] >= 0.9
        assert (found[1] >= 0.9) == big_ok, (gain, found)


def test_the_click_scale_search_runs_only_for_clicks_alone(monkeypatch, random_weights):
    """A box, or an annotated slice of the object, sizes the crop: the network then runs once."""
    from halo_seg.interactive import segmenter
    image, truth = _disks((20, 20), gap=3)
    seg = InteractiveSegmenter(image, device="cpu", weights=random_weights, tta=False)
    calls = []
    forward = seg.net.forward
    monkeypatch.setattr(seg.net, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    seg.add_click(0, 100, 100)
    seg.segment_slice(0)
    assert len(calls) == len(segmenter._click_halves(segmenter.CLICK_HALF, (200, 200))) > 3
    calls.clear()
    seg.set_slice_mask(0, truth[0])
    seg.add_click(3, 100, 100)
    seg.segment_slice(3)
    assert len(calls) == 1
    calls.clear()
    seg.add_box(5, 80, 80, 120, 120)
    seg.segment_slice(5)
    assert len(calls) == 1


def test_click_crops_grow_until_one_holds_the_slice():
    from halo_seg.interactive.segmenter import CLICK_SCALE_STEP, _click_halves
    halves = _click_halves(16, (100, 300))
    assert halves[0] == 16 and halves[-1] == 150 > halves[-2]   # the last: an object as wide as the slice
    assert np.allclose(np.diff(np.log(halves[:-1])), np.log(CLICK_SCALE_STEP))
    assert halves[-1] / halves[-2] <= CLICK_SCALE_STEP
    assert _click_halves(40, (60, 60)) == [40.0]


@needs_default
def test_lazy_and_integer_volumes_give_the_same_result(phantom):
    import dask.array as da
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    box = mask_bbox(truth[z])
    ints = np.round(image * 1000).astype(np.int16)
    out = []
    for vol in (ints, da.from_array(ints, chunks=(8, 32, 32))):
        seg = InteractiveSegmenter(vol, device="cpu")
        seg.add_box(z, *box)
        out.append(seg.propagate())
    assert np.array_equal(out[0], out[1])
    seg = InteractiveSegmenter(image, device="cpu")
    seg.add_box(z, *box)
    assert dice(seg.propagate(), out[0]) > 0.95    # z-scoring makes the dtype and scale irrelevant


def test_train_interactive_saves_and_resumes(tmp_path):
    from halo_seg.interactive.model_io import load_memnet
    from halo_seg.train.interactive_train import train_interactive
    out = tmp_path / "m.safetensors"
    seen = []
    res = train_interactive(out, iterations=3, batch=4, shared=False, n_phantoms=2, workers=0,
                            log=lambda *a: None, progress=lambda i, n: seen.append(i))
    assert seen == [1, 2, 3] and res["history"][-1]["iteration"] == 3
    net, meta = load_memnet(out)
    assert meta["iterations"] == 3 and meta["held_out_aal"]
    seen.clear()
    train_interactive(out, iterations=5, batch=4, shared=False, n_phantoms=2, workers=0, resume=out,
                      log=lambda *a: None, progress=lambda i, n: seen.append(i))
    assert seen == [4, 5] and load_memnet(out)[1]["iterations"] == 5


def test_a_session_on_a_thin_object_ends_when_every_slice_is_annotated(random_weights):
    # two slices of object in a 4-slice volume: after a few rounds nothing is left to correct, and
    # the simulated user stops instead of the session raising
    truth = np.zeros((4, 32, 32), bool)
    truth[1:3, 10:20, 12:22] = True
    image = truth.astype(np.float32) + np.random.default_rng(0).normal(0, 0.1, truth.shape).astype(np.float32)
    seg = InteractiveSegmenter(image, device="cpu", weights=random_weights, tta=False)
    recs = run_session(seg, truth, rounds=6)
    assert [r["round"] for r in recs] == [1, 2, 3, 4, 5, 6]
    done = [r for r in recs if r["slice"] is None]
    assert done and len(seg.annotated_slices) == 4
    assert all(r["dice"] == done[0]["dice"] and r["seconds"] is None and not r["pairs"] for r in done)
    worked = [r for r in recs if r["slice"] is not None]
    assert len(worked) == 4 and done[0]["dice"] == worked[-1]["dice"]


def test_thick_slices_average_runs_and_keep_the_middle_label():
    image = np.arange(7 * 2 * 2, dtype=np.uint8).reshape(7, 2, 2)
    labels = np.arange(7)[:, None, None] * np.ones((1, 2, 2), int)
    img, lab, spacing = thick_slices(image, labels, 3, (1.5, 0.5, 0.5))
    assert img.shape == lab.shape == (2, 2, 2) and spacing == (4.5, 0.5, 0.5)
    np.testing.assert_allclose(img[1], image[3:6].mean(0))          # the 7th slice, a partial run, is dropped
    assert (lab[:, 0, 0] == [1, 4]).all()
    for k, msg in ((0, "whole number"), (1.5, "whole number"), (8, "no run")):
        with pytest.raises(ValueError, match=msg):
            thick_slices(image, labels, k)


def _blob_and_lobe(neck: float, lobe_brightness: float):
    """A bright ellipsoid (the object, slices 3 to 11) with a second lobe touching it from above:
    joined by a neck ``neck`` x its radius wide (slices 11 to 13), ``lobe_brightness`` as bright."""
    z, y, x = np.mgrid[:30, :40, :40].astype(np.float32)
    r = np.hypot(y - 20, x - 20)
    blob = ((z - 7) / 4.5) ** 2 + (r / 9) ** 2 <= 1
    lobe = (z >= 11) & (r <= 9 * np.where(z < 14, neck, 1.0)) & ~blob
    rng = np.random.default_rng(0)
    image = blob + lobe * lobe_brightness + rng.normal(0, 0.1, blob.shape)
    return image.astype(np.float32), blob, lobe


@needs_default
@pytest.mark.parametrize("neck, brightness", [(0.8, 1.0), (1.0, 0.45)])
def test_strict_ends_stop_sweeps_leaking_into_a_touching_lobe(neck, brightness):
    image, blob, lobe = _blob_and_lobe(neck, brightness)
    z = int(blob.sum((1, 2)).argmax())
    pred = {}
    for strict in (False, True):
        seg = InteractiveSegmenter(image, device="cpu", strict_ends=strict)
        seg.add_box(z, *mask_bbox(blob[z]))
        pred[strict] = seg.propagate()
    # the lobe narrows in then widens again (first case) or is darker than the object (second):
    # either way the strict rules end the sweep at the object's end
    assert (pred[True] & lobe).sum() < 0.04 * lobe.sum(), (pred[True] & lobe).sum()   # the default: 0.10
    assert dice(pred[True], blob) > 0.95
    assert dice(pred[True], blob) >= dice(pred[False], blob)


def test_object_contrast_is_the_mean_inside_and_in_a_ring_around():
    from halo_seg.interactive.propagation import _object_contrast
    img = torch.zeros(20, 20)
    mask = torch.zeros(20, 20, dtype=torch.bool)
    mask[8:12, 8:12] = True
    img[mask] = 3.0
    img[5:15, 5:15][~mask[5:15, 5:15]] = 1.0     # a 3-pixel ring (square: max-pool dilation)
    assert _object_contrast(img, mask) == (3.0, 1.0)
    assert _object_contrast(img, torch.zeros_like(mask)) == (0.0, 0.0)


@needs_default
@pytest.mark.parametrize("axis", [1, 2])
def test_slicing_along_another_axis_equals_the_transposed_volume(phantom, axis, tmp_path):
    """A session along axis 1 or 2 is the same computation as one along axis 0 of the volume with
    that axis moved first, for numpy and for zarr (read through AxisView), and it answers in the
    volume's own orientation."""
    import zarr
    image, truth = phantom
    moved, moved_truth = np.moveaxis(image, axis, 0), np.moveaxis(truth, axis, 0)
    z = int(moved_truth.sum((1, 2)).argmax())
    box = mask_bbox(moved_truth[z])
    ref = InteractiveSegmenter(np.ascontiguousarray(moved), spacing=(1.0, 1.0, 1.0), device="cpu")
    ref.add_box(z, *box)
    expected = ref.propagate()
    rec = ref.recommend_slice()
    assert dice(expected, moved_truth) > 0.8
    stored = zarr.open(str(tmp_path / "v.zarr"), mode="w", shape=image.shape, chunks=(8, 32, 32),
                       dtype=image.dtype)
    stored[:] = image
    for vol in (image, stored):
        seg = InteractiveSegmenter(vol, device="cpu", axis=axis)
        assert seg.shape == moved.shape and seg.volume_shape == image.shape
        seg.add_box(z, *box)
        pred = seg.propagate()
        assert pred.shape == image.shape
        assert np.array_equal(pred, np.moveaxis(expected, 0, axis))
        assert np.array_equal(seg.prediction, pred)
        assert np.allclose(seg.quality, ref.quality, equal_nan=True)
        assert seg.recommend_slice() == rec
        assert np.array_equal(seg.annotation(z), ref.annotation(z))
    # the simulated user works in the session's slices and scores in the volume's orientation
    moved_recs = run_session(InteractiveSegmenter(np.ascontiguousarray(moved), device="cpu"), moved_truth, rounds=2)
    recs = run_session(InteractiveSegmenter(image, device="cpu", axis=axis), truth, rounds=2)
    assert [(r["slice"], r["dice"]) for r in recs] == [(r["slice"], r["dice"]) for r in moved_recs]


def test_axis_view_reads_blocks_in_the_sessions_order():
    from halo_seg.interactive.segmenter import AxisView
    a = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    for axis in (0, 1, 2):
        view, ref = AxisView(a, axis), np.moveaxis(a, axis, 0)
        assert view.shape == ref.shape
        for key in [(slice(None),) * 3, (1, slice(1, 3), slice(0, 4)), (slice(0, 2), 2, slice(None)),
                    (slice(1, 3), slice(None), 0), (2,)]:
            assert np.array_equal(view[key], ref[key]), (axis, key)


def test_a_bad_axis_is_refused_and_spacing_follows_the_axis(random_weights):
    vol = np.zeros((4, 6, 8), np.float32)
    for bad in (3, -4, 1.0, True, "z"):
        with pytest.raises(InteractiveError, match="axis must be 0, 1 or 2"):
            InteractiveSegmenter(vol, device="cpu", weights=random_weights, axis=bad)
    seg = InteractiveSegmenter(vol, spacing=(3.0, 1.0, 0.5), device="cpu", weights=random_weights, axis=-1)
    assert seg.axis == 2 and seg.shape == (8, 4, 6) and seg.spacing == (0.5, 3.0, 1.0)
    with pytest.raises(InteractiveError, match="slice 8 is outside the volume"):
        seg.add_box(8, 0, 0, 1, 1)
    with pytest.raises(InteractiveError, match="outside the 4x6 slice"):
        seg.add_box(0, 0, 0, 4, 1)
    seg.set_slice_mask(7, np.ones((4, 6), bool))
    assert seg.prediction.shape == vol.shape and seg.prediction[:, :, 7].all() and seg.prediction.sum() == 24


def test_the_undo_history_shares_unchanged_slices_and_gives_them_back_exactly(random_weights):
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(12, 40, 48)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights, tta=False)
    seen = [seg.prediction.copy()]
    for z in (3, 7, 9):
        m = np.zeros((40, 48), bool)
        m[5 + z:20 + z, 10:30 - z] = True
        seg.set_slice_mask(z, m)
        seen.append(seg.prediction.copy())
    seg.propagate()
    seen.append(seg.prediction.copy())
    seg.set_slice_mask(7, np.zeros((40, 48), bool))
    seen.append(seg.prediction.copy())
    # a painted slice after a propagation: the state before it keeps the very same bits for every
    # other slice (a step costs the slices it changes, not the volume)
    before, now = seg._history[-1].prediction, seg._s.prediction
    shared = [z for z in before.nonempty() if z != 7]
    assert len(shared) >= 3 and 7 in before.nonempty() and 7 not in now.nonempty()
    assert all(before._slices[z][4] is now._slices[z][4] for z in shared)
    for expected in reversed(seen[:-1]):
        seg.undo()
        assert np.array_equal(seg.prediction, expected)


@pytest.mark.parametrize("shape,dtype,scale", [((3, 700, 500), np.float32, 1e19), ((2, 40, 30), np.uint16, 1.0),
                                               ((1000,), np.float64, 1e-6), ((5, 1, 1), np.int16, 1.0)])
def test_crop_statistics_equal_numpys_in_float64(shape, dtype, scale):
    from halo_seg.interactive.roi import zscore_stats
    a = (np.random.default_rng(1).normal(300, 50, shape) * scale).astype(dtype)
    mu, sd = zscore_stats(a)
    ref = a.astype(np.float64)
    assert mu == pytest.approx(ref.mean(), rel=1e-12)
    assert sd == pytest.approx(max(ref.std(), 1e-6 * abs(ref.mean())), rel=1e-9)
