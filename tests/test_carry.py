"""halo_seg.interactive.carry: what Next time point carries of an object, against hand-made masks."""
import numpy as np
import pytest

from halo_seg.interactive.carry import carried_box, carry_record


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
