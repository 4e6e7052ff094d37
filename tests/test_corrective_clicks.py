"""Corrective clicks: the simulated clicking user, and what a click after a box asks of the network.

The box-then-click behaviour is checked on what the network is given (guidance and memory, recorded
from its forward call) with an untrained network, and on the result's direction (a positive click
never removes, a negative never adds); benchmarks/clicks.py measures how much the clicks fix.
"""
import itertools

import numpy as np
import pytest

from halo_seg import InteractiveSegmenter
from halo_seg.interactive import segmenter
from halo_seg.interactive.simulate import corrective_click, corrective_scribble, extreme_points


def _miss_and_leak():
    """(truth, a mask whose largest error is a 20 x 8 miss, one whose largest is an 8 x 30 leak)."""
    truth = np.zeros((40, 40), bool)
    truth[10:30, 10:30] = True
    missed = truth.copy()
    missed[10:30, 22:30] = False
    missed[2:5, 2:5] = True               # a small false positive
    leaked = truth.copy()
    leaked[30:38, 5:35] = True
    leaked[10:14, 10:14] = False          # a small miss
    return truth, missed, leaked


def test_corrective_click_goes_deep_into_the_largest_error():
    truth, missed, leaked = _miss_and_leak()
    y, x, positive = corrective_click(missed, truth)
    assert positive and 10 <= y < 30 and 22 <= x < 30
    assert min(y - 10, 29 - y, x - 22, 29 - x) >= 3   # inside the miss, not on its rim
    y, x, positive = corrective_click(leaked, truth)
    assert not positive and 30 <= y < 38 and 5 <= x < 35
    assert corrective_click(truth, truth) is None


def test_corrective_scribble_runs_along_the_middle_of_the_largest_error():
    truth, missed, leaked = _miss_and_leak()
    stroke, positive = corrective_scribble(missed, truth)
    ys, xs = np.nonzero(stroke)
    assert positive and (stroke <= (truth & ~missed)).all()      # only on the miss
    assert ys.max() - ys.min() >= 10 and xs.min() >= 24 and xs.max() <= 27   # its length, near its middle
    stroke, positive = corrective_scribble(leaked, truth)
    assert not positive and (stroke <= (leaked & ~truth)).all() and np.ptp(np.nonzero(stroke)[1]) >= 20
    assert corrective_scribble(truth, truth) is None


def test_extreme_points_are_the_masks_outermost_points():
    m = np.zeros((30, 30), bool)
    yy, xx = np.mgrid[:30, :30]
    m[(yy - 14) ** 2 / 64 + (xx - 12) ** 2 / 25 <= 1] = True   # an ellipse, taller than wide
    pts = extreme_points(m)
    ys, xs = np.nonzero(m)
    assert all(m[p] for p in pts)
    assert [pts[0][0], pts[1][0], pts[2][1], pts[3][1]] == [ys.min(), ys.max(), xs.min(), xs.max()]
    with pytest.raises(ValueError, match="empty"):
        extreme_points(np.zeros((4, 4), bool))


class _Recorder:
    """Wraps a network's forward and keeps, per call, the guidance sums (pos, neg, box channels)
    and the number of memory entries."""

    def __init__(self, net):
        self.calls, self._fwd = [], net.forward
        net.forward = self

    def __call__(self, query, guidance, mem_images, mem_masks, mem_valid, prev=None):
        self.calls.append((guidance[0].sum((1, 2)).tolist(), int(mem_valid.shape[1])))
        return self._fwd(query, guidance, mem_images, mem_masks, mem_valid, prev)


def _session(weights):
    vol = np.random.default_rng(3).normal(size=(9, 48, 48)).astype(np.float32)
    seg = InteractiveSegmenter(vol, device="cpu", weights=weights, tta=False)
    return seg, _Recorder(seg.net)


def test_clicks_after_a_box_refine_its_mask_and_a_new_box_starts_afresh(random_weights):
    seg, rec = _session(random_weights)
    seg.add_box(4, 12, 12, 30, 32)
    first = seg.segment_slice(4)
    assert first.any()                                # a mask to refine, even from random weights
    (pos, neg, box), k = rec.calls[-1]
    assert box > 0 and k == 0                         # the box alone, no memory
    seg.add_click(4, 20, 20, positive=False)
    seg.segment_slice(4)
    (pos, neg, box), k = rec.calls[-1]
    assert box == 0 and neg > 0 and k == 1            # the click guides; the box's mask is in memory
    assert seg._s.prompts[4].box is not None          # spent, not forgotten: undo and re-segmenting keep it
    seg.add_box(4, 14, 14, 28, 30)                    # a new box redefines the slice: the clicks go
    seg.segment_slice(4)
    (pos, neg, box), k = rec.calls[-1]
    assert box > 0 and neg == 0 and k == 0
    for _ in range(4):
        seg.undo()
    assert np.array_equal(seg.annotation(4), first) and seg._s.prompts[4].neg == []
    seg.segment_slice(4)                              # again from the box alone: the same mask
    assert np.array_equal(seg.annotation(4), first)


def test_the_old_way_adds_clicks_to_the_box(random_weights, monkeypatch):
    monkeypatch.setattr(segmenter, "BOX_SPENT", False)
    seg, rec = _session(random_weights)
    seg.add_box(4, 12, 12, 30, 32)
    seg.segment_slice(4)
    seg.add_click(4, 20, 20, positive=False)
    seg.segment_slice(4)
    (pos, neg, box), k = rec.calls[-1]
    assert box > 0 and neg > 0 and k == 0


def test_extreme_points_are_not_spent(random_weights):
    seg, rec = _session(random_weights)
    seg.add_extreme_points(4, [(12, 22), (30, 22), (20, 12), (20, 32)])
    seg.segment_slice(4)
    seg.add_click(4, 20, 20, positive=False)
    seg.segment_slice(4)
    (pos, neg, box), k = rec.calls[-1]
    assert box > 0 and pos > 0 and neg > 0 and k == 0


@pytest.mark.parametrize("monotone", [True, False])
def test_a_click_only_moves_the_mask_its_way(random_weights, monkeypatch, monotone):
    monkeypatch.setattr(segmenter, "MONOTONE_CLICKS", monotone)
    seg, _ = _session(random_weights)
    base = np.zeros((48, 48), bool)
    base[14:34, 10:30] = True
    moved = {"grew": 0, "shrank": 0}
    for (positive, (y, x)), scribble in itertools.product(((True, (24, 36)), (False, (24, 20))), (False, True)):
        seg.reset()
        seg.set_slice_mask(4, base)
        if scribble:   # a short stroke, corrected as a click is (a negative one alone once failed)
            stroke = np.zeros_like(base)
            stroke[y - 3:y + 4, x] = True
            seg.add_scribble(4, stroke, positive=positive)
        else:
            seg.add_click(4, y, x, positive=positive)
        m = seg.segment_slice(4)
        if scribble:   # what was stroked is kept, whatever the network says
            assert (m[stroke] == positive).all()
        moved["grew"] += int((m & ~base).sum()) if not positive else 0      # added by a negative click
        moved["shrank"] += int((base & ~m).sum()) if positive else 0        # removed by a positive one
    if monotone:
        assert moved == {"grew": 0, "shrank": 0}
    else:   # the untrained network redraws the slice: the check above is not vacuous
        assert moved["grew"] + moved["shrank"] > 0


def test_the_simulated_user_clicks_until_the_slice_is_good_enough(random_weights):
    from halo_seg.interactive.simulate import prompt_slice
    from halo_seg.metrics import dice
    seg, rec = _session(random_weights)
    truth = np.zeros((48, 48), bool)
    truth[14:34, 10:30] = True
    assert prompt_slice(seg, 4, truth, "box") == 0 and seg.annotated_slices == []   # waits for propagate
    seg.reset()
    assert prompt_slice(seg, 4, truth, "box", clicks=3, stop=0.0) == 0 and seg.annotated_slices == [4]
    seg.reset()
    made = prompt_slice(seg, 4, truth, "extreme", clicks=3, stop=1.01)
    p = seg._s.prompts[4]
    assert p.extreme is not None and p.box is None
    assert 1 <= made <= 3 and len(p.pos) + len(p.neg) == made
    seg.reset()
    made = prompt_slice(seg, 4, truth, "box", clicks=4, stop=0.5)
    assert made == 4 or dice(seg.annotation(4), truth) >= 0.5
    seg.reset()
    made = prompt_slice(seg, 4, truth, "box", clicks=2, stop=1.01, scribble=True)
    p = seg._s.prompts[4]
    assert 1 <= made <= 2 and not p.pos and not p.neg and (p.pos_mask is not None or p.neg_mask is not None)
    with pytest.raises(ValueError, match="prompt"):
        prompt_slice(seg, 4, truth, "lasso")
    seg.reset()
    assert prompt_slice(seg, 5, np.zeros((48, 48), bool), "box", clicks=3) == 0
    assert not seg.annotation(5).any()                # "not here": an empty painted slice


def test_sessions_record_the_clicks_of_each_round(random_weights):
    from halo_seg.interactive.simulate import run_session
    vol = np.random.default_rng(4).normal(size=(12, 40, 40)).astype(np.float32)
    truth = np.zeros(vol.shape, bool)
    truth[3:9, 12:28, 10:30] = True
    vol[truth] += 3
    seg = InteractiveSegmenter(vol, device="cpu", weights=random_weights, tta=False)
    recs = run_session(seg, truth, rounds=3, prompt="extreme", clicks=2)
    assert [r["round"] for r in recs] == [1, 2, 3]
    assert all(0 <= r["clicks"] <= 2 for r in recs)
    assert set(seg.annotated_slices) >= {r["slice"] for r in recs if r["slice"] is not None}


def test_clicks_of_both_signs_at_once_keep_the_networks_answer_and_nothing_new_changes_nothing(random_weights):
    seg, rec = _session(random_weights)
    base = np.zeros((48, 48), bool)
    base[14:34, 10:30] = True
    seg.set_slice_mask(4, base)
    seg.add_click(4, 24, 36, positive=True)
    seg.add_click(4, 24, 20, positive=False)
    both = seg.segment_slice(4)
    assert (both & ~base).any() and (base & ~both).any()   # the untrained network's redraw, both ways
    n = len(rec.calls)
    assert np.array_equal(seg.segment_slice(4), both) and len(rec.calls) == n   # no new click: no rerun
    seg.add_click(4, 30, 12, positive=False)
    third = seg.segment_slice(4)
    assert not (third & ~both).any()                       # one sign again: only removes
