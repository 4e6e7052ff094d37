"""halo_seg.interactive.carry: what Next time point carries of an object, against hand-made masks."""
import numpy as np
import pytest

from halo_seg.interactive.carry import carried_box, carry_record


def _ball(shape, centre, r):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r * r


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
