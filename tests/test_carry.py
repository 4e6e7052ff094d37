"""halo_seg.interactive.carry: what Next time point carries of an object, against hand-made masks."""
import numpy as np
import pytest

from halo_seg.interactive.carry import carried_box, carry_record, part_sources
from halo_seg.interactive.roi import mask_bbox


def _ball(shape, centre, radius, stretch=(1, 1, 1)):
    """A ball (an ellipsoid, ``stretch`` times as long along each axis)."""
    zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / s) ** 2 for g, c, s in zip((zz, yy, xx), centre, stretch)) <= radius ** 2


def _box(mask):
    return tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))


def test_the_largest_slice_its_box_and_the_step_from_the_object_carried_before():
    shape = (20, 30, 40)
    a = _ball(shape, (8, 10, 12), 4)
    rec = carry_record(a, 3, None, label=5, box=_box(a))
    assert rec["t"] == 3 and rec["label"] == 5 and rec["z"] == 8 and rec["step"] is None
    assert carry_record(a, 3)["box"] == rec["box"]               # the same, its box found
    with pytest.raises(ValueError, match="the object is empty: nothing to carry"):
        carry_record(np.zeros(shape, bool), 3)
    assert rec["box"] == (6, 8, 14, 16)                          # the ball's widest slice: radius 4 around (10, 12)
    np.testing.assert_allclose(rec["centroid"], (8, 10, 12), atol=1e-9)
    b = _ball(shape, (9, 13, 17), 4)                            # one time point later, moved (1, 3, 5)
    rec2 = carry_record(b, 4, rec, label=6)                      # its box found
    np.testing.assert_allclose(rec2["step"], (1, 3, 5), atol=1e-9)
    assert carried_box(rec2, shape) == (10, (12, 18, 20, 26))   # its box (9, 13, 17, 21) moved on by the step
    assert carry_record(b, 6, rec)["step"] is None               # not the time point before: no step
    # against a border the box is cut to the volume
    edge = dict(rec2, step=np.array([20.0, 0.0, 30.0]))
    assert carried_box(edge, shape) == (19, (9, 39, 17, 39))


def test_across_another_axis_the_record_is_in_the_sessions_axes():
    shape = (20, 30, 40)
    a = _ball(shape, (8, 10, 12), 3)
    rec = carry_record(a, 0, axis=1, box=_box(a))                # coronal slices: (y, z, x) for the session
    assert rec["axis"] == 1 and rec["z"] == 10 and rec["box"] == (5, 9, 11, 15)
    np.testing.assert_allclose(rec["centroid"], (10, 8, 12), atol=1e-9)


def test_carried_backward_the_step_is_still_per_time_point_forward():
    shape = (20, 30, 40)
    late, early = _ball(shape, (9, 13, 17), 4), _ball(shape, (8, 10, 12), 4)   # at t=5, then t=4
    rec5 = carry_record(late, 5)
    rec4 = carry_record(early, 4, rec5)
    np.testing.assert_allclose(rec4["step"], (1, 3, 5), atol=1e-9)              # it moves (1, 3, 5) forward
    assert carried_box(rec4, shape, direction=-1) == (7, (3, 3, 11, 11))       # so at t=3 it was further back
    assert carried_box(rec4, shape) == (9, (9, 13, 17, 21))                    # and at t=5 where it was


def test_two_touching_cells_are_told_from_one_and_split_between_them():
    """A division's daughters taken in by one object: two balls touching (or apart) come back as two
    parts, each its ball; one ball, elongated cells (up to 4:1) and a ball with a bump do not."""
    from halo_seg.interactive.carry import two_cells
    from halo_seg.metrics import dice
    shape = (32, 48, 64)
    for (c1, r1), (c2, r2) in [(((16, 24, 26), 4.5), ((16, 24, 34), 4.5)), (((16, 24, 20), 9), ((16, 24, 36), 9)),
                               (((14, 22, 20), 4), ((18, 26, 40), 4))]:
        a, b = _ball(shape, c1, r1), _ball(shape, c2, r2)
        parts = two_cells(a | b)
        assert parts is not None
        first, second = sorted(parts, key=lambda p: np.argwhere(p)[:, 2].mean())
        assert not (first & second).any() and np.array_equal(first | second, a | b)
        assert dice(first, a) > 0.95 and dice(second, b) > 0.95
    for one in (_ball(shape, (16, 24, 30), 5), _ball(shape, (16, 24, 30), 12),
                _ball(shape, (16, 24, 30), 5, (1, 1, 2)), _ball(shape, (16, 24, 30), 4, (1, 1, 3)),
                _ball(shape, (16, 24, 30), 3, (1, 1, 4)), _ball(shape, (16, 24, 30), 6) | _ball(shape, (16, 24, 37), 2.5)):
        assert two_cells(one) is None
    assert two_cells(np.zeros(shape, bool)) is None
    # slices 4 times as far apart as the pixels: two cells 2 slices high are told apart in the voxels'
    # sizes (in voxels their distance map is flat, and they were not); one such cell stays one
    flat = _ball(shape, (16.5, 24, 26), 4.5, (0.25, 1, 1)) | _ball(shape, (16.5, 24, 34), 4.5, (0.25, 1, 1))
    assert list(np.flatnonzero(flat.any((1, 2)))) == [16, 17]
    assert two_cells(flat, (4.0, 1.0, 1.0)) is not None and two_cells(flat) is None
    for one in (_ball(shape, (16.5, 24, 30), 6, (0.25, 1, 1)), _ball(shape, (16.5, 24, 30), 4, (0.25, 1, 3))):
        assert two_cells(one, (4.0, 1.0, 1.0)) is None
    # in one plane (a 2D image, a volume of one plane; or an object one slice thick): told apart in 2D
    plane = (1, 48, 64)
    pair = _ball(plane, (0, 24, 26), 4.5) | _ball(plane, (0, 24, 34), 4.5)
    parts = two_cells(pair)
    assert parts is not None and parts[0].shape == plane and np.array_equal(parts[0] | parts[1], pair)
    assert abs(int(parts[0].sum()) - int(parts[1].sum())) <= 0.1 * pair.sum()
    assert two_cells(_ball(plane, (0, 24, 30), 6)) is None
    assert two_cells(np.moveaxis(pair, 0, 1)) is not None   # an (x, z) plane of a volume


def test_three_cells_in_one_object_split_at_the_lowest_neck_into_one_and_two_none_lost():
    """Three nuclei in a row merged into one object: at_neck (Commit as two), split into one and two
    at the lower of the two necks, never through the middle nucleus (the two split again come
    apart, each a nucleus). Three pieces apart: split in two with every voxel kept, each piece
    whole in one part, either way."""
    from halo_seg.interactive.carry import two_cells
    from halo_seg.metrics import dice
    shape = (24, 48, 96)
    a, b, c = (_ball(shape, (12, 24, x), 6) for x in (26, 36, 48))   # b and c further apart: a lower neck
    parts = two_cells(a | b | c, at_neck=True)
    assert parts is not None and not (parts[0] & parts[1]).any() and np.array_equal(parts[0] | parts[1], a | b | c)
    two, one = sorted(parts, key=lambda p: -int(p.sum()))
    assert dice(one, c) > 0.97 and dice(two, a | b) > 0.97
    again = two_cells(two, at_neck=True)
    assert again is not None
    first, second = sorted(again, key=lambda p: np.argwhere(p)[:, 2].mean())
    assert dice(first, a) > 0.95 and dice(second, b & ~c) > 0.95
    cut = two_cells(a | b | c)   # between the two largest parts: every voxel in one of them too
    assert cut is not None and np.array_equal(cut[0] | cut[1], a | b | c) and not (cut[0] & cut[1]).any()
    apart = [_ball(shape, (12, 24, x), 6) for x in (14, 48, 80)]
    for at_neck in (True, False):
        parts = two_cells(apart[0] | apart[1] | apart[2], at_neck=at_neck)
        assert parts is not None and np.array_equal(parts[0] | parts[1], apart[0] | apart[1] | apart[2])
        assert all(any(np.array_equal(p & q, q) for p in parts) for q in apart)


def _cells_volume(shape, centres, radius=5.0, seed=0):
    """Bright balls on a noisy background, as the procedural time-lapses' cells."""
    rng = np.random.default_rng(seed)
    inside = np.zeros(shape, bool)
    for c in centres:
        inside |= _ball(shape, c, radius)
    return (inside * 1.0 + rng.normal(0, 0.2, shape)).astype(np.float32), inside


def test_try_box_segments_a_slice_from_a_box_and_leaves_the_session_as_it_was():
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.model_io import default_memnet_installed
    from halo_seg.metrics import dice
    if not default_memnet_installed():
        pytest.skip("no shipped interactive weights")
    volume, cell = _cells_volume((16, 48, 48), [(8, 24, 24)])
    seg = InteractiveSegmenter(volume, device="cpu")
    seg.add_box(8, 19, 19, 29, 29)
    mask, q = seg.try_box(8, (19, 19, 29, 29))
    assert dice(mask, cell[8]) > 0.8 and 0.5 < q <= 1.0
    assert np.array_equal(seg.segment_slice(8), mask)   # what the session then segments from that box
    before = (seg.prompts, seg.annotated_slices, seg.can_undo)
    empty, q_empty = seg.try_box(3, (2, 2, 10, 10))     # where nothing is: a lower Dice predicted
    assert not (empty & cell[3]).any() and q_empty < q - 0.1, (q, q_empty)
    assert (seg.prompts, seg.annotated_slices, seg.can_undo) == before
    assert np.array_equal(seg.annotation(8), mask)
    with pytest.raises(Exception, match="must have y0 <= y1"):
        seg.try_box(8, (29, 19, 19, 29))
    with pytest.raises(Exception, match="outside"):
        seg.try_box(8, (19, 19, 29, 90))


def test_the_object_is_looked_for_where_it_was_and_where_its_step_takes_it():
    """find_again keeps the carried box where the object is found: the box where it was for a cell
    that stayed (its last step points away), the box moved by the step for one that went on, the
    tight box of what it found there; where neither finds anything the moved box is the prompt."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import carried_boxes, find_again
    from halo_seg.interactive.model_io import default_memnet_installed
    if not default_memnet_installed():
        pytest.skip("no shipped interactive weights")
    shape = (16, 48, 64)
    before = _ball(shape, (8, 24, 20), 5)
    rec = carry_record(before, 3, carry_record(_ball(shape, (8, 24, 6), 5), 2))   # it went 14 along x
    np.testing.assert_allclose(rec["step"], (0, 0, 14), atol=1e-9)
    boxes = carried_boxes(rec, shape)
    assert boxes == [(8, (19, 15, 29, 25)), (8, (19, 29, 29, 39))]
    for centre, which in (((8, 24, 20), 0), ((8, 24, 34), 1)):   # it stayed; it went on
        volume, cell = _cells_volume(shape, [centre])
        seg = InteractiveSegmenter(volume, device="cpu")
        z, box, chosen, widened = find_again(seg, boxes, grow=False)
        assert (z, chosen, widened) == (8, which, False)   # no area: nothing to widen against
        assert box == mask_bbox(seg.try_box(z, boxes[which][1])[0])
        assert seg.prompts[8]["box"] == box                     # the prompt the session propagates from
        from halo_seg.metrics import dice
        assert dice(seg.propagate(), cell) > 0.8
    nothing = InteractiveSegmenter(volume, device="cpu")   # a slice segmentation that finds nothing in either box
    nothing.try_box = lambda z, box: (np.zeros(shape[1:], bool), 0.9)
    assert find_again(nothing, boxes) is None
    assert nothing.prompts[8]["box"] == boxes[1][1]              # the moved box stays the prompt
    assert carried_boxes(dict(rec, step=None), shape) == boxes[:1]


def test_a_box_the_object_grew_out_of_is_widened_where_the_object_reaches_it():
    """A cell that was a ball and is now twice as long along x: the carried box clips what the
    slice's segmentation finds, and its tight box stays inside it (the cell is then followed in
    part, and lost in a few time points); widened where the found object reaches its sides, the
    box becomes the cell's own, and the propagation takes in the whole cell."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import find_again
    from halo_seg.interactive.model_io import default_memnet_installed
    from halo_seg.metrics import dice
    if not default_memnet_installed():
        pytest.skip("no shipped interactive weights")
    shape = (16, 48, 64)
    cell = _ball(shape, (8, 24, 32), 5, (1, 1, 2))
    volume = (cell * 1.0 + np.random.default_rng(0).normal(0, 0.2, shape)).astype(np.float32)
    carried = (19, 27, 29, 37)                                   # the ball's box: x 27-37; the cell's 22-42
    found = {}
    for grow in (False, True):
        seg = InteractiveSegmenter(volume, device="cpu")
        z, box, _, widened = find_again(seg, [(8, carried)], grow=grow)
        assert widened == grow                                   # as the status line says
        found[grow] = (box, dice(seg.propagate(), cell))
    (plain, d_plain), (wide, d_wide) = found[False], found[True]
    assert 27 <= plain[1] and plain[3] <= 37                     # clipped: inside the carried box
    assert wide == mask_bbox(cell[8])                            # the cell's own box
    assert d_wide > 0.95 and d_wide > d_plain + 0.1, (d_plain, d_wide)
    # widen: the box chosen alone, where it finds under WIDEN_BELOW of the object's area (the ball's,
    # carried: the cell grew out of its box); where it finds as much, it is not widened
    from halo_seg.interactive.carry import WIDEN_BELOW
    ball = int(_ball(shape, (8, 24, 32), 5)[8].sum())
    for area, expected in ((2 * ball, wide), (ball // 2, plain)):
        seg = InteractiveSegmenter(volume, device="cpu")
        found = find_again(seg, [(8, carried)], area=area, widen=WIDEN_BELOW)
        assert found.box == expected and found.widened == (expected == wide), area


def test_each_part_is_carried_from_the_object_it_lies_in_at_the_time_point_before():
    """Commit as two's links: a part lying mostly where another object was at the time point before
    is that object's; parts lying where the followed object was, or in nothing (a cell that moved
    further than its size), or barely in another, are the followed object's."""
    before = np.zeros((4, 10, 20), np.uint16)
    before[:, :, :8] = 3                             # the followed object
    before[:, :, 12:] = 2                            # her sister next to her
    box = (slice(0, 4), slice(0, 10), slice(0, 20))
    left, right = np.zeros(before.shape, bool), np.zeros(before.shape, bool)
    left[:, :, :10], right[:, :, 10:] = True, True
    assert part_sources([left, right], box, before, 3) == [3, 2]
    assert part_sources([right, left], box, before, 3) == [2, 3]
    mother = np.where(before > 0, 1, 0)              # a mother covering both: a division
    assert part_sources([left, right], box, mother, 1) == [1, 1]
    assert part_sources([left, right], box, np.zeros_like(before), 3) == [3, 3]   # moved off: none
    barely = np.zeros(before.shape, bool)
    barely[:, :, 11:13] = True                       # 5 % of it in the sister, the rest in nothing
    before2 = before.copy()
    before2[:, :9, 12] = 0
    assert part_sources([barely], box, before2, 3) == [3]


def test_a_mask_known_in_its_box_is_carried_as_the_whole_volume_holding_it():
    """carry.InBox: what Commit and carry_all pass to carry_record instead of a whole volume of zeros
    around the object; any other box read is refused, not read as empty."""
    from halo_seg.interactive.carry import InBox, carry_record
    whole = np.zeros((12, 30, 40), bool)
    whole[3:8, 5:20, 10:18] = True
    whole[5, 5:9, 10:12] = False
    box = (slice(2, 9), slice(4, 22), slice(9, 20))
    source = {"t": 2, "axis": 0, "centroid": np.array([5.0, 12.0, 14.0])}
    for axis in (0, 1):
        want = carry_record(whole, 3, source if axis == 0 else None, axis, 7, box=box)
        got = carry_record(InBox(box, whole[box]), 3, source if axis == 0 else None, axis, 7, box=box)
        assert got.keys() == want.keys() and got["bounds"] == want["bounds"] == box
        for k in ("t", "label", "axis", "z", "area", "box", "centroid", "step"):
            np.testing.assert_array_equal(np.asarray(got[k], float), np.asarray(want[k], float))
        assert (got["source"] is None) == (want["source"] is None) == (axis == 1)
    with pytest.raises(IndexError, match="known in"):
        InBox(box, whole[box])[(slice(0, 12), slice(0, 30), slice(0, 40))]
