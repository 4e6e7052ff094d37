"""Objects followed over a time-lapse (halo_seg.tracking): the linking rules on hand-made frames,
the assignment against brute force, whole runs against the true tracks of a procedural time-lapse
of moving, dividing cells, and the output read back (open_volume, Cell Tracking Challenge files)."""
import contextlib
import itertools
import json

import numpy as np
import pytest
import tifffile
import zarr

from halo_seg.io import VolumeError, open_volume
from halo_seg.tracking import Linker, track_objects, write_ctc
from halo_seg.tracking.frames import frame_objects, frame_overlaps
from halo_seg.tracking.link import match
from halo_seg.tracking.phantom import cell_timelapse, link_scores, relabelled


def _ball(shape, centre, r, value=1):
    zz, yy, xx = np.indices(shape)
    return np.where((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r * r, value, 0)


def _step_all(frames, **kw):
    """Track ids of each frame's objects, frame by frame through a Linker (what run.py does)."""
    linker = Linker(**kw)
    prev, out, kept = None, [], {}
    for t, f in enumerate(frames):
        objs = frame_objects(f, t)
        ov = None if prev is None else frame_overlaps(frames[prev], f)
        gaps = {s: (kept[s], frame_overlaps(frames[s], f, only_a=ids)) for s, ids in linker.gap_candidates().items()}
        tracks = linker.step(None if prev is None else kept[prev], objs, ov, gaps)
        out.append(dict(zip(objs.ids.tolist(), tracks.tolist())))
        kept[t] = objs
        prev = t
    return out, linker


def test_match_is_the_best_one_to_one_assignment():
    rng = np.random.default_rng(0)
    for _ in range(40):
        nr, nc = rng.integers(1, 5, size=2)
        edges = [(r, c) for r in range(nr) for c in range(nc) if rng.random() < 0.6]
        if not edges:
            continue
        rows = np.array([e[0] for e in edges]) * 7   # ids need not be 0..n-1
        cols = np.array([e[1] for e in edges]) + 100
        w = rng.uniform(0.1, 1.0, len(edges))
        got = match(rows, cols, w)
        weight = {(r, c): x for r, c, x in zip(rows, cols, w)}
        assert len({r for r, _ in got}) == len(got) == len({c for _, c in got})
        best = 0.0   # brute force over every partial one-to-one assignment
        for k in range(1, min(nr, nc) + 1):
            for rs in itertools.combinations(sorted(set(rows)), k):
                for cs in itertools.permutations(sorted(set(cols)), k):
                    if all((r, c) in weight for r, c in zip(rs, cs)):
                        best = max(best, sum(weight[(r, c)] for r, c in zip(rs, cs)))
        assert sum(weight[p] for p in got) == pytest.approx(best)


def test_ids_follow_overlap_not_numbering():
    shape = (12, 20, 40)
    a = _ball(shape, (6, 10, 10), 4, 1) + _ball(shape, (6, 10, 30), 4, 2)
    b = _ball(shape, (6, 10, 11), 4, 2) + _ball(shape, (6, 10, 29), 4, 1)   # renumbered and moved a voxel
    ids, linker = _step_all([a, b])
    assert ids[0] == {1: 1, 2: 2} and ids[1] == {2: 1, 1: 2}
    assert linker.divisions == 0 and linker.lineage == {1: [0, 1, 0], 2: [0, 1, 0]}


def test_a_division_gives_two_daughters_with_their_mother_as_parent():
    shape = (16, 24, 24)
    mother = _ball(shape, (8, 12, 12), 5)
    daughters = _ball(shape, (8, 12, 9), 3.5, 1) + _ball(shape, (8, 12, 16), 3.5, 2)
    ids, linker = _step_all([mother, daughters, daughters])
    assert ids[0] == {1: 1} and sorted(ids[1].values()) == [2, 3] and ids[2] == ids[1]
    assert linker.divisions == 1
    assert linker.lineage == {1: [0, 0, 0], 2: [1, 2, 1], 3: [1, 2, 1]}
    # a small object beside a cell (under division_overlap of itself in it) is a new cell, not a daughter
    ids, linker = _step_all([mother, daughters], division_overlap=0.95)
    assert linker.divisions == 0 and linker.lineage[1] == [0, 1, 0] and len(linker.lineage) == 2


def test_two_cells_that_touch_and_part_again_keep_their_ids_and_no_one_divides():
    shape = (12, 20, 40)
    apart = _ball(shape, (6, 10, 12), 4, 1) + _ball(shape, (6, 10, 28), 4, 2)
    merged = (_ball(shape, (6, 10, 16), 4) + _ball(shape, (6, 10, 24), 4) > 0).astype(int)   # one object
    ids, linker = _step_all([apart, merged, apart])
    assert ids[2] == ids[0] == {1: 1, 2: 2} and linker.divisions == 0
    # without gap closing the parting reads as a division: what max_gap 1 is for
    ids, linker = _step_all([apart, merged, apart], max_gap=0)
    assert linker.divisions == 1


def test_a_gap_of_one_time_point_is_closed_and_not_two():
    shape = (12, 20, 20)
    cell = _ball(shape, (6, 10, 10), 4)
    empty = np.zeros(shape, int)
    ids, linker = _step_all([cell, empty, cell])
    assert ids[2] == {1: 1} and linker.lineage == {1: [0, 2, 0]}
    ids, linker = _step_all([cell, empty, cell], max_gap=0)
    assert ids[2] == {1: 2}
    ids, linker = _step_all([cell, empty, empty, cell])
    assert ids[3] == {1: 2} and linker.lineage == {1: [0, 0, 0], 2: [3, 3, 0]}
    ids, linker = _step_all([cell, empty, empty, cell], max_gap=2)
    assert ids[3] == {1: 1}


def test_a_cell_that_jumps_is_paired_by_distance_only_when_asked():
    shape = (12, 20, 40)
    a = _ball(shape, (6, 10, 8), 3)
    b = _ball(shape, (6, 10, 20), 3)    # 12 voxels on: no overlap
    assert _step_all([a, b])[0][1] == {1: 2}
    assert _step_all([a, b], max_distance=13.0)[0][1] == {1: 1}
    assert _step_all([a, b], max_distance=11.0)[0][1] == {1: 2}
    # in physical units: 12 voxels of 0.5 are 6
    assert _step_all([a, b], max_distance=7.0, spacing=(1.0, 1.0, 0.5))[0][1] == {1: 1}
    # a point tracker's pairing: by distance alone, the nearest of two cells that both overlap
    c = _ball(shape, (6, 10, 14), 3, 1) + _ball(shape, (6, 10, 26), 3, 2)
    d = _ball(shape, (6, 10, 18), 3, 1) + _ball(shape, (6, 10, 35), 3, 2)   # 1 moved 4 onto 2's side, 2 moved 9
    assert _step_all([c, d])[0][1] == {1: 1, 2: 3}
    assert _step_all([c, d], link="distance", max_distance=10.0)[0][1] == {1: 1, 2: 2}
    with pytest.raises(VolumeError, match="needs max_distance"):
        Linker(link="distance").check()


def _moved(shape, centres, r, shift):
    """Two frames of balls (ids 1..n) at ``centres``, then each moved by ``shift`` voxels."""
    a = sum(_ball(shape, c, r, k + 1) for k, c in enumerate(centres))
    b = sum(_ball(shape, tuple(np.add(c, shift)), r, k + 1) for k, c in enumerate(centres))
    return a, b


def test_motion_is_the_cells_median_step_and_radius():
    from halo_seg.tracking.link import motion
    shape = (12, 40, 80)
    centres = [(6, 10, 8), (6, 30, 8), (6, 10, 40), (6, 30, 40)]
    a, b = _moved(shape, centres, 3, (0, 0, 7))   # each 7 voxels on: no ball overlaps where it was
    pa, pb = frame_objects(a, 0), frame_objects(b, 1)
    radius = np.cbrt(3 * pa.voxels / (4 * np.pi))   # a sphere of each ball's volume (123 voxels: about 3.1)
    assert motion(pa, pb, radius) == pytest.approx((7.0, float(np.median(radius))))
    # in the spacing's unit: 7 voxels of 0.5 along x, radii given in it too
    step, r = motion(pa, pb, radius / 2, spacing=(0.5, 0.5, 0.5))
    assert step == pytest.approx(3.5) and r == pytest.approx(np.median(radius) / 2)
    # one ball further than MOTION_REACH radii (3 x 3.1): three pairs left, the median of theirs
    far = b.copy()
    far[far == 4] = 0
    far += _ball(shape, (6, 30, 70), 3, 4)
    assert motion(pa, frame_objects(far, 1), radius)[0] == pytest.approx(7.0)
    # fewer than three cells paired: it cannot tell
    assert motion(pa, frame_objects(np.where(b <= 2, b, 0), 1), radius) is None
    # classes kept apart: a cell is not paired with one of another class
    pb_cls = frame_objects(b, 1)
    pb_cls.classes = np.array([1, 1, 2, 2])
    assert motion(pa, pb_cls, radius) is None   # pa's are all class 0
    # the Linker's radii: a sphere's of the volume, a disc's of the area where a time point is one plane
    objs = frame_objects(np.zeros((1, 4, 4), np.uint8), 0)
    objs.voxels = np.array([36 * np.pi])
    assert Linker(spacing=(0.5, 1.0, 1.0), planar=True).radii(objs)[0] == pytest.approx(6.0)
    assert Linker(spacing=(0.5, 1.0, 1.0)).radii(objs)[0] == pytest.approx(np.cbrt(3 * 18 * np.pi / (4 * np.pi)))


def test_link_auto_links_by_overlap_or_by_distance_from_the_cells_motion():
    shape = (12, 40, 80)
    centres = [(6, 10, 8), (6, 30, 8), (6, 10, 40), (6, 30, 40)]
    slow_a, slow_b = _moved(shape, centres, 3, (0, 0, 1))   # a third of a radius
    ids, linker = _step_all([slow_a, slow_b], link="auto")
    assert linker.link == "auto" and linker.in_use() == ("overlap", None)
    (run,) = linker.choices
    assert run["link"] == "overlap" and (run["first"], run["last"]) == (1, 1)
    assert run["step"] == pytest.approx([1.0, 1.0]) and run["reach"] is None
    assert ids == _step_all([slow_a, slow_b])[0]
    # 7 voxels on, over twice the radius: linked by distance within twice the step, as asked by hand
    fast = _moved(shape, centres, 3, (0, 0, 7))
    third = sum(_ball(shape, (c[0], c[1], c[2] + 14), 3, k + 1) for k, c in enumerate(centres))
    ids, linker = _step_all([*fast, third], link="auto")
    assert linker.in_use() == ("distance", 14.0) and linker.max_distance is None
    assert [(c["link"], c["first"], c["last"], c["reach"]) for c in linker.choices] == [("distance", 1, 2, [14.0, 14.0])]
    assert ids == _step_all([*fast, third], link="distance", max_distance=14.0)[0]
    assert ids[1] == ids[2] == {1: 1, 2: 2, 3: 3, 4: 4}   # by overlap each would be a new track
    assert _step_all(fast)[0][1] == {1: 5, 2: 6, 3: 7, 4: 8}
    # a max distance given is kept
    assert _step_all(list(fast), link="auto", max_distance=9.0)[1].in_use() == ("distance", 9.0)
    # chosen at each time point: slow cells that speed up are linked by overlap, then by distance
    # (chosen once, overlap would lose every track at the fast steps)
    frames = [sum(_ball(shape, (c[0], c[1], c[2] + x), 3, k + 1) for k, c in enumerate(centres)) for x in (0, 1, 8, 15)]
    ids, linker = _step_all(frames, link="auto")
    assert ids[1:] == [{1: 1, 2: 2, 3: 3, 4: 4}] * 3
    assert [(c["link"], c["first"], c["last"]) for c in linker.choices] == [("overlap", 1, 1), ("distance", 2, 3)]
    assert linker.choices[1]["step"] == pytest.approx([7.0, 7.0]) and linker.choices[1]["reach"] == [14.0, 14.0]
    assert _step_all(frames)[0][2] == {1: 5, 2: 6, 3: 7, 4: 8}
    # and fast cells that slow down by overlap again (a max distance given kept throughout)
    ids, linker = _step_all(frames[::-1] + [frames[0]], link="auto", max_distance=10.0)
    assert [(c["link"], c["first"], c["last"], c["reach"]) for c in linker.choices] == [
        ("distance", 1, 2, [10.0, 10.0]), ("overlap", 3, 4, [10.0, 10.0])]
    assert linker.choices[1]["step"] == pytest.approx([0.0, 1.0])
    # until a time point with enough cells, as the time point before (by overlap before any choice)
    lone = _ball(shape, centres[0], 3)
    ids, linker = _step_all([lone, lone, *fast, lone], link="auto")
    assert ids[1] == {1: 1} and [(c["link"], c["first"], c["last"]) for c in linker.choices] == [("distance", 3, 3)]
    assert linker.in_use() == ("distance", 14.0)   # the lone cell after the fast ones: still by distance
    ids, linker = _step_all([lone, lone], link="auto")
    assert linker.choices == [] and linker.in_use() == ("overlap", None) and ids[1] == {1: 1}
    with pytest.raises(VolumeError, match="'overlap', 'distance' or 'auto'"):
        Linker(link="nearest").check()


def test_a_crawling_cell_is_paired_where_its_steps_predict_it_not_with_a_newcomer_near_where_it_was():
    shape = (8, 16, 44)
    frames = [_ball(shape, (4, 5, x), 2) for x in (5, 13, 21)]
    frames.append(_ball(shape, (4, 5, 29), 2, 1) + _ball(shape, (4, 9, 23), 2, 2))   # a cell appears by 21
    ids, linker = _step_all(frames, link="distance", max_distance=10.0, predict=False)
    assert ids[3] == {1: 2, 2: 1}   # the newcomer, 4.5 from where the cell was, takes its track
    ids, linker = _step_all(frames, link="distance", max_distance=10.0)
    assert ids[3] == {1: 1, 2: 2} and linker.persistence() == pytest.approx(1.0)


def _followed_frames():
    """Three time points whose ids are each one time point's (as the interactive widget commits them):
    cell A jumps further than it overlaps (1 -> 5) and then divides into 7 and 8 lying apart; cell B
    (2, 3, 4) crawls on, overlapping itself."""
    shape = (8, 32, 32)
    lab = np.zeros((3,) + shape, np.uint16)
    lab[0, 2:6, 4:10, 4:10] = 1
    lab[1, 2:6, 20:26, 20:26] = 5
    lab[2, 2:6, 19:23, 20:26] = 7
    lab[2, 2:6, 27:31, 20:26] = 8         # too far from 5 to be told her daughter by overlap
    lab[0, 2:6, 20:26, 4:10] = 2
    lab[1, 2:6, 20:26, 5:11] = 3
    lab[2, 2:6, 20:26, 6:12] = 4
    return lab


def _tracks_of(path, lab):
    """{(time point, object id): track} of a track output made from ``lab``."""
    out = zarr.open_group(str(path))["labels"][...]
    return {(t, int(k)): int(np.unique(out[t][lab[t] == k])[0]) for t in range(len(lab)) for k in np.unique(lab[t]) if k}


def test_links_given_by_the_user_come_before_overlap_and_the_rest_is_linked_as_without(tmp_path):
    """Links made with the interactive widget's Next time point ({id: id carried from}, either way in
    time) are kept whatever the overlap says: a jump no overlap follows, a mother followed into two
    (a division); the objects not followed are linked as without links; a link to an object erased
    since is not used; an object given two objects before it, or links on connected components,
    are refused."""
    lab = _followed_frames()
    plain = track_objects(lab, tmp_path / "plain.zarr", objects_given=True)
    auto = _tracks_of(tmp_path / "plain.zarr", lab)
    assert auto[(1, 5)] != auto[(0, 1)] and plain.divisions == 0   # A's jump is not followed by overlap
    for name, links in (("fwd", {5: 1, 7: 5, 8: 5}), ("back", {1: 5, 7: 5, 8: 5}), ("erased", {5: 1, 7: 5, 8: 5, 6: 1})):
        res = track_objects(lab, tmp_path / f"{name}.zarr", objects_given=True, links=links)
        got = _tracks_of(tmp_path / f"{name}.zarr", lab)
        a = got[(0, 1)]
        assert got[(1, 5)] == a and res.divisions == 1, name
        lineage = {int(k): (int(b), int(e), int(p)) for k, b, e, p in res.lineage}
        assert lineage[a] == (0, 1, 0) and lineage[got[(2, 7)]] == (2, 2, a) == lineage[got[(2, 8)]]
        assert got[(2, 7)] != got[(2, 8)]
        assert got[(0, 2)] == got[(1, 3)] == got[(2, 4)] and lineage[got[(0, 2)]] == (0, 2, 0)   # B as without
        assert res.given_links == 3, name   # 6 is in no time point: not used
        assert zarr.open_group(str(tmp_path / f"{name}.zarr")).attrs["halo_seg_tracks"]["given_links"] == 3
    # stopped after time point 1 and resumed: the same tracks, every link counted once
    state = {"done": 0}
    with pytest.raises(InterruptedError):
        track_objects(lab, tmp_path / "stop.zarr", objects_given=True, links={5: 1, 7: 5, 8: 5},
                      progress=lambda d, n: state.update(done=d), cancel=lambda: state["done"] >= 2)
    with pytest.raises(VolumeError, match="other settings.*links"):
        track_objects(lab, tmp_path / "stop.zarr", objects_given=True, links={5: 1}, resume=True)
    res = track_objects(lab, tmp_path / "stop.zarr", objects_given=True, links={5: 1, 7: 5, 8: 5}, resume=True)
    assert _tracks_of(tmp_path / "stop.zarr", lab) == got and res.given_links == 3
    with pytest.raises(VolumeError, match=r"object 5 at time point 1 is linked to objects 1 and 2 at time point 0"):
        track_objects(lab, tmp_path / "two.zarr", objects_given=True, links={5: 1, 2: 5})
    with pytest.raises(VolumeError, match="objects given"):
        track_objects(lab, tmp_path / "cc.zarr", links={5: 1})
    with pytest.raises(VolumeError, match="whole numbers > 0"):
        track_objects(lab, tmp_path / "bad.zarr", objects_given=True, links={5: 0})
    assert not any((tmp_path / n).exists() for n in ("two.zarr", "cc.zarr", "bad.zarr"))


def test_the_track_command_keeps_the_links_of_the_interactive_objects_kept_on_disk(tmp_path, capsys):
    """The interactive widget's objects as kept on disk (a (T, Z, Y, X) zarr array with the links in
    its carried_from attribute): `track --ids` keeps the links, as track_objects given them does;
    without --ids a note says so."""
    from halo_seg.cli import main
    lab = _followed_frames()
    kept = zarr.open_array(str(tmp_path / "movie.objects.zarr"), mode="w", shape=lab.shape, dtype=lab.dtype,
                           chunks=(1, 8, 32, 32))
    kept[...] = lab
    kept.attrs.update({"labels": True, "spacing": [1.0, 1.0, 1.0], "axes": ["t", "z", "y", "x"],
                       "carried_from": {"5": 1, "7": 5, "8": 5}})
    assert main(["track", str(tmp_path / "movie.objects.zarr"), str(tmp_path / "t.zarr"), "--ids", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "keeping the 3 links of objects followed with Next time point" in err
    assert json.loads(out.strip().splitlines()[-1])["links_kept"] == 3
    ref = track_objects(lab, tmp_path / "ref.zarr", objects_given=True, links={5: 1, 7: 5, 8: 5})
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...],
                                  zarr.open_group(str(tmp_path / "ref.zarr"))["labels"][...])
    assert ref.divisions == 1
    assert main(["track", str(tmp_path / "movie.objects.zarr"), str(tmp_path / "cc.zarr"), "--quiet"]) == 0
    assert "holds 3 links of objects followed with Next time point; --ids keeps them" in capsys.readouterr().err


def test_a_fast_cell_dividing_away_from_where_it_was_is_told_by_its_daughters_sizes_and_places():
    shape = (12, 20, 64)
    mother = [_ball(shape, (6, 10, x), 4) for x in (6, 16, 26)]   # a cell crawling 10 voxels a time point
    # then two daughters of half the volume about where her next step takes her (36): no overlap with 26
    halves = _ball(shape, (6, 10, 33), 3.2, 1) + _ball(shape, (6, 10, 40), 3.2, 2)
    frames = mother + [halves, _ball(shape, (6, 10, 43), 3.2, 1) + _ball(shape, (6, 10, 50), 3.2, 2)]   # moving on
    ids, linker = _step_all(frames, link="distance", max_distance=12.0)
    assert linker.divisions == 1 and linker.lineage == {1: [0, 2, 0], 2: [3, 4, 1], 3: [3, 4, 1]}
    assert sorted(ids[3].values()) == [2, 3] and ids[4] == ids[3]
    # the daughters go on from their mother's last step, the one to their centroid (26 -> 36.5)
    _, linker = _step_all(mother + [halves], link="distance", max_distance=12.0)
    for k in (2, 3):
        np.testing.assert_allclose(linker._velocity[k], [0, 0, 10.5], atol=1e-6)
    # also when overlap linking leaves them to distance pairing
    _, linker = _step_all(frames, max_distance=12.0)
    assert linker.divisions == 1 and linker.lineage[1] == [0, 2, 0]
    # turned off, one daughter continues the track and the other is a new cell, as before
    _, linker = _step_all(frames, link="distance", max_distance=12.0, distance_divisions=False)
    assert linker.divisions == 0 and linker.lineage[1] == [0, 4, 0] and linker.lineage[2][2] == 0
    # a cell continuing at its size, a small newcomer beside it: no division
    grown = _ball(shape, (6, 10, 36), 4, 1) + _ball(shape, (6, 10, 45), 3.2, 2)
    _, linker = _step_all(mother + [grown], link="distance", max_distance=12.0)
    assert linker.divisions == 0 and linker.lineage[1] == [0, 3, 0]
    # two halves far apart (more than 3 of the mother's radii) are no sisters
    apart = _ball(shape, (6, 10, 29), 3.2, 1) + _ball(shape, (6, 10, 43), 3.2, 2)
    _, linker = _step_all(mother + [apart], link="distance", max_distance=12.0)
    assert linker.divisions == 0


def test_divisions_of_cells_moving_further_than_their_radius_are_found_against_the_truth(tmp_path):
    tl = cell_timelapse(shape=(32, 96, 96), cells=16, timepoints=10, radius=4.5, divisions=4, speed=5.0, seed=2)
    scores = {}
    for on in (True, False):
        res = track_objects(relabelled(tl.ids, 2), tmp_path / "t.zarr", objects_given=True, link="distance",
                            max_distance=8.0, distance_divisions=on)
        found = zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...]
        scores[on] = link_scores(tl.ids, found, tl.lineage, res.lineage)
        assert zarr.open_group(str(tmp_path / "t.zarr")).attrs["halo_seg_tracks"]["distance_divisions"] is on
    assert scores[False]["divisions"] == 0.0 and scores[True]["true_divisions"] == 4
    assert scores[True]["divisions"] >= 0.75 and scores[True]["divisions_right"] == 1.0
    assert scores[True]["links"] > scores[False]["links"]
    assert scores[True]["whole_tracks"] >= scores[False]["whole_tracks"]


def test_cells_moving_over_half_their_radius_are_said_to_want_linking_by_distance(tmp_path):
    from halo_seg.tracking.summary import fast_motion, fast_reach, motion_text
    for speed, spacing, fast in ((1.5, (1.0, 1.0, 1.0), False), (5.0, (1.0, 1.0, 1.0), True),
                                 (5.0, (2.0, 2.0, 2.0), True)):
        tl = cell_timelapse(shape=(32, 96, 96), cells=16, timepoints=10, radius=4.5, divisions=4, speed=speed, seed=1)
        res = track_objects(relabelled(tl.ids, 1), tmp_path / "t.zarr", objects_given=True, spacing=spacing)
        got = fast_motion(res.table, spacing=res.spacing)
        assert bool(got) == fast, (speed, got)
        if fast:   # against the phantom's own speed and radius, in the spacing's unit, at every step
            (run,) = got
            assert (run["first"], run["last"]) == (1, 9)
            assert run["step"] == pytest.approx([5.0 * spacing[0]] * 2, rel=0.1)
            assert run["radius"] == pytest.approx([4.5 * spacing[0]] * 2, rel=0.05)
            assert fast_reach(got) == pytest.approx(2 * run["step"][1], rel=0.05)
            text = motion_text(got, "µm")
            assert text.startswith("cells moved over 0.5 of their radius a time point at time points 1-9 (the cells' "
                                   "median step ") and "overlap may pair a cell" in text
            # linking by distance already, or with a max distance: nothing to suggest
            assert fast_motion(res.table, "distance", 9.0) == [] and fast_motion(res.table, "overlap", 9.0) == []
    # cells that speed up half-way: said where (read off the objects, not off the tracks overlap made)
    tl = cell_timelapse(shape=(32, 96, 96), cells=16, timepoints=10, radius=4.5, divisions=0,
                        speed=[1.5] * 4 + [5.0] * 5, seed=1)
    res = track_objects(relabelled(tl.ids, 1), tmp_path / "t.zarr", objects_given=True)
    assert [(c["first"], c["last"]) for c in fast_motion(res.table)] == [(5, 9)]
    # on a time-lapse of one plane, a cell's radius is a disc's of its area (0.5 thick here)
    disc = {"timepoint": np.repeat([0, 1], 3), "voxels": np.full(6, 36 * np.pi),
            "centroid_z": np.zeros(6), "centroid_y": np.tile([10.0, 40.0, 70.0], 2),
            "centroid_x": np.repeat([10.0, 14.0], 3)}
    (run,) = fast_motion(disc, shape=(1, 80, 80), spacing=(0.5, 1.0, 1.0))
    assert run["radius"] == pytest.approx([6.0, 6.0]) and run["step"] == pytest.approx([4.0, 4.0])
    assert fast_motion(disc)[0]["radius"] == pytest.approx([3.0, 3.0])   # as balls: 36 pi voxels, radius 3
    # a time point without objects between two: no step measured across it (two steps are not one)
    gap = {"timepoint": np.repeat([0, 1, 3], 3), "voxels": np.full(9, 36 * np.pi),
           "centroid_z": np.zeros(9), "centroid_y": np.tile([10.0, 40.0, 70.0], 3),
           "centroid_x": np.repeat([10.0, 11.0, 13.0], 3)}
    assert fast_motion(gap) == []
    gap["timepoint"] = np.repeat([0, 1, 2], 3)   # the same steps without the gap: 2 voxels, over half of 3
    assert [(c["first"], c["last"], c["step"]) for c in fast_motion(gap)] == [(2, 2, [2.0, 2.0])]


def test_the_persistence_predicted_is_fitted_to_the_cells_steps():
    for persistence, lo, hi in ((0.8, 0.5, 1.0), (0.0, 0.0, 0.15)):
        tl = cell_timelapse(shape=(32, 96, 96), cells=16, timepoints=10, radius=4.5, speed=5.0, seed=3,
                            persistence=persistence)
        _, linker = _step_all(list(tl.ids), link="distance", max_distance=8.0)
        assert lo <= linker.persistence() <= hi, (persistence, linker.persistence())
        assert set(linker._velocity) <= set(linker._last[1].tolist()) | set(linker._ended)   # no ended track's


def test_frames_are_read_in_slabs_the_same_as_whole(monkeypatch):
    from halo_seg.tracking import frames
    tl = cell_timelapse(shape=(20, 40, 40), cells=6, timepoints=2, seed=3)
    a, b = tl.ids
    whole_objs, whole_ov = frame_objects(a, 0), frame_overlaps(a, b)
    monkeypatch.setattr(frames, "SLAB_VOXELS", 40 * 40 * 3)   # 7 slabs
    objs, ov = frame_objects(a, 0), frame_overlaps(a, b)
    np.testing.assert_array_equal(objs.ids, whole_objs.ids)
    np.testing.assert_allclose(objs.centroids, whole_objs.centroids)
    np.testing.assert_array_equal(ov, whole_ov)
    # against a direct count
    for k in objs.ids:
        assert objs.voxels[objs.index([k])[0]] == (a == k).sum()
        np.testing.assert_allclose(objs.centroids[objs.index([k])[0]], np.argwhere(a == k).mean(0))
    for i, j, n in ov:
        assert n == ((a == i) & (b == j)).sum()
    assert len(ov) == len({(i, j) for i, j in zip(a[(a > 0) & (b > 0)], b[(a > 0) & (b > 0)])})


def test_tracks_of_a_procedural_time_lapse_are_its_true_tracks(tmp_path):
    tl = cell_timelapse(cells=10, timepoints=8, divisions=2, seed=4)
    res = track_objects(relabelled(tl.ids, seed=1), tmp_path / "t.zarr", objects_given=True, spacing=(2.0, 1.0, 1.0))
    found = zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...]
    s = link_scores(tl.ids, found, tl.lineage, res.lineage)
    assert s["links"] == 1.0 and s["precision"] == 1.0 and s["divisions"] == 1.0 and s["true_divisions"] == 2
    # one found id per true id at every time point, the same one all along its track
    for k in np.unique(tl.ids[tl.ids > 0]):
        assert len(np.unique(found[tl.ids == k])) == 1
    assert res.tracks == len(tl.lineage) and res.divisions == 2
    # the table: a row per object and time point, its track's parent beside it
    tab = res.table
    assert len(tab["track"]) == sum(len(np.unique(f[f > 0])) for f in tl.ids)
    parent = {int(r[0]): int(r[3]) for r in res.lineage}
    assert all(parent[int(k)] == int(p) for k, p in zip(tab["track"], tab["parent"]))
    for t, k, v in zip(tab["timepoint"], tab["track"], tab["volume"]):
        assert v == pytest.approx(2.0 * (found[t] == k).sum())


def test_cells_that_change_shape_are_ellipsoids_of_their_axes_and_tracked_all_the_same(tmp_path):
    """deform: each cell an axis-aligned ellipsoid whose axes drift (balls at the first time point),
    its voxels those of the ellipsoid of its extent (where it touches no other); the tracks still
    the true ones."""
    tl = cell_timelapse(shape=(32, 64, 64), cells=6, timepoints=5, radius=5.0, divisions=1, seed=2, deform=0.2)
    still = cell_timelapse(shape=(32, 64, 64), cells=6, timepoints=5, radius=5.0, divisions=1, seed=2)
    assert np.array_equal(tl.ids[0], still.ids[0]) and not np.array_equal(tl.ids[1:], still.ids[1:])
    sizes, checked = {}, 0
    for t in range(5):
        for k in np.unique(tl.ids[t])[1:]:
            m = tl.ids[t] == k
            sizes.setdefault(int(k), []).append(int(m.sum()))
            idx = np.nonzero(m)
            lo, hi = [i.min() for i in idx], [i.max() for i in idx]
            c, half = (np.add(lo, hi)) / 2, (np.subtract(hi, lo) + 1) / 2
            if any(a == 0 or b == n - 1 for a, b, n in zip(lo, hi, m.shape)):
                continue   # cut by the border
            zz, yy, xx = np.indices(m.shape)
            inside = ((zz - c[0]) / half[0]) ** 2 + ((yy - c[1]) / half[1]) ** 2 + ((xx - c[2]) / half[2]) ** 2 <= 1
            overlap = (m & inside).sum() / max(m.sum(), inside.sum())
            other = tl.ids[t][inside]
            assert overlap > 0.7 or ((other != 0) & (other != k)).any(), (t, k, overlap)   # or cut by a neighbour
            checked += 1
    assert checked > 10 and max(max(v) / min(v) for v in sizes.values() if len(v) > 2) > 1.3   # they grow and shrink
    res = track_objects(relabelled(tl.ids, seed=1), tmp_path / "t.zarr", objects_given=True)
    found = zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...]
    s = link_scores(tl.ids, found, tl.lineage, res.lineage)
    assert s["links"] == 1.0 and s["precision"] == 1.0, s


def test_connected_components_with_split_find_the_same_tracks(tmp_path):
    """From masks alone (touching daughters split by `split`), as from a segmentation."""
    tl = cell_timelapse(cells=8, timepoints=6, divisions=1, seed=5)
    res = track_objects((tl.ids > 0).astype(np.uint8), tmp_path / "t.zarr", split=0.25)
    found = zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...]
    s = link_scores(tl.ids, found, tl.lineage, res.lineage)
    assert s["links"] >= 0.97 and s["precision"] >= 0.97
    plain = track_objects((tl.ids > 0).astype(np.uint8), tmp_path / "p.zarr")
    assert plain.divisions == 0   # without the split, the touching daughters are one object


def test_ids_in_the_billions_are_tracked(tmp_path):
    """A tool's ids may be hashes: tracked without a lookup table as long as the largest id."""
    tl = cell_timelapse(shape=(16, 32, 32), cells=3, radius=3.0, timepoints=3, divisions=0, seed=10)
    small = relabelled(tl.ids, seed=2)
    # past float64's 2**53: ids that differ by 1 must stay apart
    big = np.where(small > 0, small.astype(np.uint64) + np.uint64(2 ** 62), 0).astype(np.uint64)
    a = track_objects(small, tmp_path / "a.zarr", objects_given=True)
    b = track_objects(big, tmp_path / "b.zarr", objects_given=True)
    assert a.lineage.tolist() == b.lineage.tolist()
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "a.zarr"))["labels"][...],
                                  zarr.open_group(str(tmp_path / "b.zarr"))["labels"][...])


def test_classes_are_tracked_apart(tmp_path):
    shape = (12, 20, 20)
    a = _ball(shape, (6, 10, 10), 4, 1)
    b = _ball(shape, (6, 10, 10), 4, 2)   # the same place, another class
    res = track_objects(np.stack([a, b, b]).astype(np.uint8), tmp_path / "t.zarr", classes=[1, 2])
    assert res.lineage.tolist() == [[1, 0, 0, 0], [2, 1, 2, 0]]
    res = track_objects(np.stack([a, b, b]).astype(np.uint8), tmp_path / "t.zarr")   # one foreground: one track
    assert res.lineage.tolist() == [[1, 0, 2, 0]]


def test_the_output_reads_back_and_exports_for_the_cell_tracking_challenge(tmp_path):
    tl = cell_timelapse(cells=6, timepoints=5, divisions=1, seed=6)
    tifffile.imwrite(tmp_path / "ids.tif", relabelled(tl.ids)[:, :, None], imagej=True, metadata={"axes": "TZCYX"})
    res = track_objects(tmp_path / "ids.tif", tmp_path / "t.zarr", objects_given=True)
    grp = zarr.open_group(str(tmp_path / "t.zarr"))
    labels = grp["labels"][...]
    for t in range(5):
        np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "t.zarr", timepoint=t).data), labels[t])
    with pytest.raises(VolumeError, match="tracked objects of 5 time points"):
        open_volume(tmp_path / "t.zarr")
    # the Tracks layer data: each object's centroid at its time point
    pts = grp["tracks"][...]
    for k, t, z, y, x in pts[:12]:
        np.testing.assert_allclose([z, y, x], np.argwhere(labels[int(t)] == k).mean(0))
    # lineage: first and last time point where each track's id is present
    for k, first, last, _ in res.lineage:
        present = [t for t in range(5) if (labels[t] == k).any()]
        assert (present[0], present[-1]) == (first, last)
    out = write_ctc(tmp_path / "t.zarr", tmp_path / "ctc")
    for t in range(5):
        np.testing.assert_array_equal(tifffile.imread(out / f"mask{t:03d}.tif"), labels[t])
    lines = [list(map(int, line.split())) for line in (out / "res_track.txt").read_text().splitlines()]
    assert lines == res.lineage.tolist()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(VolumeError, match="holds other files"):
        write_ctc(tmp_path / "t.zarr", tmp_path / "other")


def test_a_2d_time_lapse_is_tracked_as_planes_and_exported_as_2d_ctc_masks(tmp_path, capsys):
    """A (T, Y, X) movie (most widefield and phase-contrast time-lapses, and the Cell Tracking
    Challenge's 2D datasets): each frame a plane, one cell dividing, one crossing the field."""
    from skimage.draw import disk

    from halo_seg.cli import main
    T = 6
    truth = np.zeros((T, 80, 80), np.uint16)
    for t in range(T):
        truth[t][disk((20, 10 + 4 * t), 6, shape=(80, 80))] = 1   # crawling right
        if t < 3:
            truth[t][disk((55, 40), 7, shape=(80, 80))] = 2       # then divides into 3 and 4
        else:
            truth[t][disk((53 - t, 40), 5, shape=(80, 80))] = 3   # apart by a gap of a pixel or more
            truth[t][disk((58 + t, 40), 5, shape=(80, 80))] = 4
    tifffile.imwrite(tmp_path / "masks.tif", (truth > 0).astype(np.uint8), imagej=True, metadata={"axes": "TYX"})
    movie = (truth > 0).astype(np.float32) * 100 + 10
    tifffile.imwrite(tmp_path / "movie.tif", movie, imagej=True, metadata={"axes": "TYX"})
    assert main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "t.zarr"), "--image",
                 str(tmp_path / "movie.tif"), "--ctc", str(tmp_path / "ctc"), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    grp = zarr.open_group(str(tmp_path / "t.zarr"))
    labels = grp["labels"][...]
    assert labels.shape == (T, 1, 80, 80) and report["divisions"] == 1
    for k in (1, 2, 3, 4):   # one found track per true cell, all along
        assert len(np.unique(labels[:, 0][truth == k])) == 1 and 0 not in labels[:, 0][truth == k]
    lineage = {int(r[0]): int(r[3]) for r in grp["lineage"][...]}
    mother = int(labels[0, 0][truth[0] == 2][0])
    assert [lineage[int(labels[3, 0][truth[3] == k][0])] for k in (3, 4)] == [mother, mother]
    for t in range(T):   # 2D masks, as the challenge's 2D datasets have
        mask = tifffile.imread(tmp_path / "ctc" / f"mask{t:03d}.tif")
        assert mask.shape == (80, 80) and mask.dtype == np.uint16
        np.testing.assert_array_equal(mask, labels[t, 0])


def test_a_segment_time_series_output_is_tracked_as_its_labels(tmp_path, tiny_weights):
    from halo_seg.engine.series import segment_series
    tl = cell_timelapse(shape=(16, 24, 24), cells=3, radius=3.0, timepoints=3, divisions=0, seed=7)
    segment_series(tl.image, tmp_path / "seg.zarr", weights=tiny_weights, mode="whole")
    res = track_objects(tmp_path / "seg.zarr", tmp_path / "t.zarr")
    stacked = np.stack([np.asarray(open_volume(tmp_path / "seg.zarr", timepoint=t).data) for t in range(3)])
    ref = track_objects(stacked, tmp_path / "ref.zarr")
    assert res.lineage.tolist() == ref.lineage.tolist()
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...],
                                  zarr.open_group(str(tmp_path / "ref.zarr"))["labels"][...])


def test_bad_input_is_refused_and_an_earlier_output_kept(tmp_path):
    tl = cell_timelapse(shape=(12, 24, 24), cells=3, radius=3.0, timepoints=3, divisions=0, seed=8)
    masks = (tl.ids > 0).astype(np.uint8)
    with pytest.raises(VolumeError, match="4D"):
        track_objects(masks[0], tmp_path / "a.zarr")
    tifffile.imwrite(tmp_path / "one.tif", masks[0])
    with pytest.raises(VolumeError, match="no time points.*tracking follows objects over time"):
        track_objects(tmp_path / "one.tif", tmp_path / "a.zarr")
    with pytest.raises(VolumeError, match="at least 2 time points"):
        track_objects(masks, tmp_path / "a.zarr", timepoints="1")
    with pytest.raises(VolumeError, match="ids are taken as the objects"):
        track_objects(masks, tmp_path / "a.zarr", objects_given=True, min_voxels=5)
    for kw, what in (({"min_iou": 0}, "min_iou"), ({"division_overlap": 1.5}, "division_overlap"),
                     ({"max_distance": -1}, "max_distance"), ({"max_gap": -1}, "max_gap")):
        with pytest.raises(VolumeError, match=what):
            track_objects(masks, tmp_path / "a.zarr", **kw)
    with pytest.raises(VolumeError, match="float|label"):
        track_objects(tl.image, tmp_path / "a.zarr")   # an image, not labels
    (tmp_path / "mine.zarr").mkdir()
    with pytest.raises(VolumeError, match="not an earlier output of track"):
        track_objects(masks, tmp_path / "mine.zarr")
    assert not list(tmp_path.glob("a.zarr")) and not list(tmp_path.glob(".a.zarr*"))
    # a run stopped half-way leaves the earlier output whole, and its work only where --resume finds it
    track_objects(masks, tmp_path / "t.zarr")
    before = zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 6
    with pytest.raises(InterruptedError):
        track_objects(masks[::-1].copy(), tmp_path / "t.zarr", cancel=cancel)
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...], before)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".t.zarr.partial", "mine.zarr", "one.tif", "t.zarr"]
    # stopped before the first time point was done: nothing kept
    with pytest.raises(InterruptedError):
        track_objects(masks, tmp_path / "u.zarr", cancel=lambda: True)
    assert not list(tmp_path.glob("*u.zarr*"))


@contextlib.contextmanager
def _measuring_fails(call: int, exc: Exception):
    """halo_seg.measure.measure_labels raising ``exc`` at its ``call``-th call (a time point's
    table, after its labels were written), as a full disk would."""
    import halo_seg.measure as measure
    real, calls = measure.measure_labels, []

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == call:
            raise exc
        return real(*args, **kw)
    measure.measure_labels = failing
    try:
        yield
    finally:
        measure.measure_labels = real


def test_a_second_run_on_an_output_being_written_is_refused_and_a_dead_ones_work_taken_over(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from halo_seg.tracking.checkpoint import LOCK
    tl = cell_timelapse(shape=(12, 24, 24), cells=3, radius=3.0, timepoints=3, divisions=0, seed=8)
    masks = (tl.ids > 0).astype(np.uint8)
    partial = tmp_path / ".t.zarr.partial"
    partial.mkdir()
    (partial / "t1.npz").write_bytes(b"the other run's")
    (partial / LOCK).write_text(f"{socket.gethostname()} {os.getppid()}")   # a live process, not this one
    with pytest.raises(VolumeError, match=rf"another `track` run \(process {os.getppid()}\) is writing"):
        track_objects(masks, tmp_path / "t.zarr")
    assert (partial / "t1.npz").read_bytes() == b"the other run's" and not (tmp_path / "t.zarr").exists()
    (partial / LOCK).write_text("elsewhere 12345")   # on another machine sharing the disk: cannot be asked
    with pytest.raises(VolumeError, match=f"run on elsewhere .*delete {partial / LOCK}"):
        track_objects(masks, tmp_path / "t.zarr")
    (partial / LOCK).write_text("")   # created by a run starting this instant, not yet written: it owns it
    with pytest.raises(VolumeError, match=f"another `track` run is starting to write .*delete {partial / LOCK}"):
        track_objects(masks, tmp_path / "t.zarr")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (partial / LOCK).write_text(f"{socket.gethostname()} {gone.stdout.strip()}")   # killed: its work taken over
    track_objects(masks, tmp_path / "t.zarr")
    assert not partial.exists() and zarr.open_group(str(tmp_path / "t.zarr"))["labels"].shape == masks.shape


def test_track_auto_is_the_tracking_it_chose_and_resumes_to_it(tmp_path):
    """link "auto" on slow cells is overlap linking's tracking, on fast ones distance linking's within
    the max distance it chose (about twice the phantom's step), recorded in the output; on cells that
    speed up, overlap's up to then and distance's after; a run stopped before and after a choice
    goes on with --resume to what one run gives."""
    for speed, chosen in ((1.5, "overlap"), (5.0, "distance")):
        tl = cell_timelapse(shape=(32, 96, 96), cells=16, timepoints=5, radius=4.5, divisions=2, speed=speed, seed=4)
        src = relabelled(tl.ids, 4)
        res = track_objects(src, tmp_path / "auto.zarr", objects_given=True, link="auto")
        (run,) = res.choices
        assert run["link"] == chosen and (run["first"], run["last"]) == (1, 4)
        assert np.all(np.abs(np.array(run["radius"]) / 4.5 - 1) < 0.05)
        assert np.all(np.abs(np.array(run["step"]) / speed - 1) < 0.15)
        attrs = zarr.open_group(str(tmp_path / "auto.zarr")).attrs["halo_seg_tracks"]
        assert attrs["link"] == "auto" and attrs["choices"] == res.choices
        kw = {"link": "distance", "max_distance": run["reach"][1]} if chosen == "distance" else {}
        if kw:   # two of each step's median (alike here: the same tracking as the most of them)
            assert run["reach"] == pytest.approx([2 * speed] * 2, rel=0.15)
        track_objects(src, tmp_path / "ref.zarr", objects_given=True, **kw)
        want = _tracked(tmp_path / "ref.zarr")
        for got, exp in zip(_tracked(tmp_path / "auto.zarr"), want):
            np.testing.assert_array_equal(got, exp)
    other = track_objects(src, tmp_path / "overlap.zarr", objects_given=True)
    assert not np.array_equal(_tracked(tmp_path / "overlap.zarr")[0], want[0]) and other.choices == []
    # cells that speed up after the second time point: as overlap linking up to it, by distance after
    tl = cell_timelapse(shape=(32, 96, 96), cells=16, timepoints=6, radius=4.5, divisions=0, speed=[1.5, 1.5, 5, 5, 5],
                        seed=4)
    src = relabelled(tl.ids, 4)
    res = track_objects(src, tmp_path / "auto.zarr", objects_given=True, link="auto")
    assert [(c["link"], c["first"], c["last"]) for c in res.choices] == [("overlap", 1, 2), ("distance", 3, 5)]
    track_objects(src[:3], tmp_path / "slow.zarr", objects_given=True)
    np.testing.assert_array_equal(_tracked(tmp_path / "auto.zarr")[0][:3], _tracked(tmp_path / "slow.zarr")[0])
    once = track_objects(src, tmp_path / "once.zarr", objects_given=True)   # what choosing once gave
    assert res.tracks == 16 < once.tracks
    want = _tracked(tmp_path / "auto.zarr")
    out = tmp_path / "t.zarr"
    for stop in (1, 2, 4):   # after the first time point (nothing chosen yet), after the first choice and the second
        state = {"done": 0}
        with pytest.raises(InterruptedError):
            track_objects(src, out, objects_given=True, link="auto", progress=lambda d, n: state.update(done=d),
                          cancel=lambda: state["done"] >= stop)
        got = track_objects(src, out, objects_given=True, link="auto", resume=True)
        assert got.choices == res.choices
        for g, exp in zip(_tracked(out), want):
            np.testing.assert_array_equal(g, exp)
    # a partial run made when "auto" chose once (its state holds the link chosen and no choices) goes on
    # as it chose: here overlap throughout, as it then was
    from halo_seg.tracking.checkpoint import STATE, partial_dir
    state = {"done": 0}
    with pytest.raises(InterruptedError):
        track_objects(src, out, objects_given=True, link="auto", progress=lambda d, n: state.update(done=d),
                      cancel=lambda: state["done"] >= 2)
    path = partial_dir(out) / STATE
    saved = json.loads(path.read_text())
    saved["linker"].pop("choices")
    saved["linker"].update(link="overlap", max_distance=None,
                           motion={"step": 1.5, "radius": 4.5, "link": "overlap", "max_distance": None})
    path.write_text(json.dumps(saved))
    got = track_objects(src, out, objects_given=True, link="auto", resume=True)
    assert got.choices == [] and got.tracks == once.tracks
    for g, exp in zip(_tracked(out), _tracked(tmp_path / "once.zarr")):
        np.testing.assert_array_equal(g, exp)


def _tracked(path):
    g = zarr.open_group(str(path))
    return g["labels"][...], g["tracks"][...], g["lineage"][...]


@pytest.mark.parametrize("given", [True, False])
def test_a_stopped_tracking_goes_on_with_resume_to_the_same_result(tmp_path, given):
    """Stopped after each possible time point (cancelled mid-way through the next, or failing after
    its labels were written), --resume gives what one uninterrupted run gives: labels, Tracks rows,
    lineage (divisions, a gap closed across the stop) and table."""
    tl = cell_timelapse(shape=(20, 48, 48), cells=6, timepoints=7, radius=4.0, divisions=2, seed=5)
    ids = relabelled(tl.ids, 5)
    ids[3][ids[3] == ids[3].max()] = 0   # a cell missed at time point 3: a gap closed at 4
    src = ids if given else (ids > 0).astype(np.uint8)
    kw = dict(objects_given=True) if given else dict(split=0.25)
    ref = track_objects(src, tmp_path / "ref.zarr", image=tl.image, **kw)
    want = _tracked(tmp_path / "ref.zarr")
    rows = want[1]
    seen = {t: set(rows[rows[:, 1] == t, 0].astype(int)) for t in range(7)}
    assert ref.divisions == 2 and (seen[2] & seen[4]) - seen[3], "no gap closed: the test would not test it"
    out = tmp_path / "t.zarr"
    for stop in range(1, 7):
        state = {"done": 0}
        with pytest.raises(InterruptedError):
            track_objects(src, out, image=tl.image, progress=lambda d, n: state.update(done=d),
                          cancel=lambda: state["done"] >= stop, **kw)
        assert json.loads((tmp_path / ".t.zarr.partial" / "state.json").read_text())["done"] == stop
        res = track_objects(src, out, image=tl.image, resume=True, **kw)
        for got, exp in zip(_tracked(out), want):
            np.testing.assert_array_equal(got, exp)
        assert res.objects == ref.objects and res.divisions == ref.divisions
        assert res.table.keys() == ref.table.keys()
        for k in ref.table:
            np.testing.assert_array_equal(res.table[k], ref.table[k])
        assert not (tmp_path / ".t.zarr.partial").exists()
    # a failure after a time point's labels were written and before it was noted: written again
    with pytest.raises(OSError, match="disk full"), _measuring_fails(3, OSError("disk full")):
        track_objects(src, out, image=tl.image, **kw)
    assert 1 <= json.loads((tmp_path / ".t.zarr.partial" / "state.json").read_text())["done"] <= 2
    # other settings are refused, naming them, and the partial kept
    with pytest.raises(VolumeError, match="other settings.*max_gap"):
        track_objects(src, out, image=tl.image, max_gap=2, resume=True, **kw)
    track_objects(src, out, image=tl.image, resume=True, **kw)
    for got, exp in zip(_tracked(out), want):
        np.testing.assert_array_equal(got, exp)
    # killed before its first time point was done: labels begun, no state; --resume starts afresh
    partial = tmp_path / ".t.zarr.partial"
    zarr.open_group(str(partial / "tracks.zarr"), mode="w").create_array("labels", data=np.full((2, 2), 9, np.uint32))
    track_objects(src, out, image=tl.image, resume=True, **kw)
    for got, exp in zip(_tracked(out), want):
        np.testing.assert_array_equal(got, exp)
    # --resume with nothing to go on from: tracked from the start
    res = track_objects(src, tmp_path / "fresh.zarr", image=tl.image, resume=True, **kw)
    np.testing.assert_array_equal(_tracked(tmp_path / "fresh.zarr")[0], want[0])


def test_the_track_command(tmp_path, capsys):
    from halo_seg.cli import main
    tl = cell_timelapse(cells=6, timepoints=4, divisions=1, seed=9)
    tifffile.imwrite(tmp_path / "masks.tif", (tl.ids > 0).astype(np.uint8)[:, :, None], imagej=True,
                     metadata={"axes": "TZCYX"})
    tifffile.imwrite(tmp_path / "movie.tif", tl.image[:, :, None], imagej=True, metadata={"axes": "TZCYX"})
    rc = main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "t.zarr"), "--split", "--image",
               str(tmp_path / "movie.tif"), "--csv", str(tmp_path / "objects.csv"), "--summary",
               str(tmp_path / "tracks.csv"), "--ctc", str(tmp_path / "ctc"), "--quiet"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    labels = zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...]
    assert report["tracks"] == int(labels.max()) and report["timepoints"] == 4
    import csv
    rows = list(csv.DictReader(open(tmp_path / "objects.csv")))
    assert len(rows) == sum(len(np.unique(f[f > 0])) for f in labels)
    r = rows[0]
    inside = tl.image[int(r["timepoint"])][labels[int(r["timepoint"])] == int(r["track"])]
    assert float(r["mean"]) == pytest.approx(float(inside.mean()), rel=1e-5)
    per = list(csv.DictReader(open(tmp_path / "tracks.csv")))
    assert len(per) == report["tracks"] and {"speed", "displacement", "parent"} <= set(per[0])
    assert (tmp_path / "ctc" / "res_track.txt").exists() and len(list((tmp_path / "ctc").glob("mask*.tif"))) == 4
    assert main(["info", str(tmp_path / "t.zarr")]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["tracked"]["tracks"] == report["tracks"] and "give one time point" in info["choose"]
    for flag, on in (([], True), (["--no-distance-divisions"], False)):
        assert main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "v.zarr"), "--link", "distance",
                     "--max-distance", "8", "--quiet"] + flag) == 0
        assert zarr.open_group(str(tmp_path / "v.zarr")).attrs["halo_seg_tracks"]["distance_divisions"] is on
    capsys.readouterr()
    # cells moving over half their radius: linking by distance suggested, with a max distance
    fast = cell_timelapse(shape=(32, 96, 96), cells=16, timepoints=6, radius=4.5, divisions=0, speed=5.0, seed=1)
    tifffile.imwrite(tmp_path / "fast.tif", relabelled(fast.ids, 1)[:, :, None], imagej=True,
                     metadata={"axes": "TZCYX"})
    assert main(["track", str(tmp_path / "fast.tif"), str(tmp_path / "f.zarr"), "--ids", "--quiet", "--link",
                 "overlap"]) == 0
    err = capsys.readouterr().err
    assert "note: cells moved over 0.5 of their radius a time point at time points 1-5" in err and "--link auto" in err
    # by default the linking is chosen from the motion: by distance here, and said
    assert main(["track", str(tmp_path / "fast.tif"), str(tmp_path / "f.zarr"), "--ids", "--quiet"]) == 0
    err = capsys.readouterr().err
    (chosen,) = zarr.open_group(str(tmp_path / "f.zarr")).attrs["halo_seg_tracks"]["choices"]
    assert f"linked by distance within {chosen['reach'][0]:g}" in err and "note:" not in err
    assert main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "s.zarr"), "--quiet"]) == 0
    assert "linked by overlap at time points 1-" in capsys.readouterr().err
    assert main(["track", str(tmp_path / "fast.tif"), str(tmp_path / "f.zarr"), "--ids", "--quiet", "--link",
                 "distance", "--max-distance", "10"]) == 0
    assert "note:" not in capsys.readouterr().err
    # stopped by an error after a time point: said where the work is kept; --resume finishes it as one run would
    with _measuring_fails(2, VolumeError("the disk is full")):
        assert main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "w.zarr"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and ".w.zarr.partial: the same command with --resume goes on" in err
    # resumed with other settings: refused, without pointing to --resume
    assert main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "w.zarr"), "--quiet", "--resume",
                 "--max-gap", "2"]) == 2
    err = capsys.readouterr().err
    assert "other settings (max_gap: 1 then, 2 now)" in err and "goes on from there" not in err
    assert main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "w.zarr"), "--quiet", "--resume"]) == 0
    assert main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "x.zarr"), "--quiet", "--resume"]) == 0
    assert "no stopped tracking of" in capsys.readouterr().err
    assert main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "ref.zarr"), "--quiet"]) == 0
    capsys.readouterr()
    for name in ("w.zarr", "x.zarr"):
        for key in ("labels", "tracks", "lineage"):
            np.testing.assert_array_equal(zarr.open_group(str(tmp_path / name))[key][...],
                                          zarr.open_group(str(tmp_path / "ref.zarr"))[key][...])
    assert main(["track", str(tmp_path / "masks.tif"), str(tmp_path / "u.zarr"), "--ids", "--classes", "1"]) == 2
    assert "ids are taken as the objects" in capsys.readouterr().err


def test_the_benchmark_scores_count_swaps_and_not_borders():
    """link_scores (benchmarks/tracking.py's yardstick): the truth scores 1; two cells swapping ids
    at a time point break their two tracks; a border moved by a voxel breaks none."""
    tl = cell_timelapse(shape=(28, 64, 64), cells=5, timepoints=4, radius=6.0, divisions=0, seed=14)
    s = link_scores(tl.ids, tl.ids, tl.lineage, tl.lineage)
    assert s["links"] == s["precision"] == s["whole_tracks"] == s["cells_matched"] == 1.0
    swapped = tl.ids.copy()
    a, b = (tl.ids[3] == 1), (tl.ids[3] == 2)
    swapped[3][a], swapped[3][b] = 2, 1
    s = link_scores(tl.ids, swapped, tl.lineage, tl.lineage)
    assert s["whole_tracks"] == pytest.approx(3 / 5) and s["links"] < 1.0 and s["cells_matched"] == 1.0
    shifted = tl.ids.copy()
    from scipy import ndimage as ndi
    for t in range(4):
        for k in range(1, 6):
            cell = tl.ids[t] == k
            rim = cell & ~ndi.binary_erosion(cell)
            shifted[t][tuple(np.argwhere(rim)[:3].T)] = k % 5 + 1   # 3 voxels given to another cell
    assert link_scores(tl.ids, shifted, tl.lineage, tl.lineage)["whole_tracks"] == 1.0


def test_chosen_text_says_each_run_of_time_points_linked_alike():
    from halo_seg.tracking.summary import chosen_text
    slow = {"link": "overlap", "first": 1, "last": 4, "step": [1.4, 1.6], "radius": [4.4, 4.6],
            "of_radius": [0.31, 0.35], "max_distance": None, "reach": None}
    fast = {"link": "distance", "first": 5, "last": 5, "step": [5.0, 5.0], "radius": [4.5, 4.5],
            "of_radius": [1.11, 1.11], "max_distance": 10.0, "reach": [10.0, 10.0]}
    text = chosen_text([slow, fast], "µm")
    assert text.startswith("linked by overlap at time points 1-4 (the cells' median step 1.4-1.6 µm a time point, "
                           "0.31-0.35 of their radius (4.4-4.6 µm)); by distance within 10 µm at time point 5 (")
    assert "over 0.5 of their radius" in text and "chosen at each time point" in text
    # many changes: the first four and the last said, the others counted
    many = [dict(c, first=t, last=t) for t, c in enumerate([slow, fast] * 4, 1)]
    text = chosen_text(many, None)
    assert text.count("at time point ") == 5 and "... 3 more changes; by distance within 10 voxel units at time point 8" in text
    assert chosen_text([], None).startswith("linked by overlap: too few objects")


def test_the_phantom_cells_step_as_asked_at_each_time_point():
    """cell_timelapse with a speed per step: the cells' median step between consecutive time points is
    that step; one speed for all is the time-lapse it always was; a wrong schedule is refused."""
    from scipy import ndimage as ndi
    steps = [1.5, 1.5, 4.0, 4.0, 0.5]
    tl = cell_timelapse(shape=(32, 96, 96), cells=12, timepoints=6, radius=4.0, divisions=0, speed=steps, seed=5)
    for t, want in enumerate(steps):
        ids = np.intersect1d(np.unique(tl.ids[t]), np.unique(tl.ids[t + 1]))
        ids = ids[ids > 0]
        at = [np.array(ndi.center_of_mass(tl.ids[s] > 0, tl.ids[s], ids)) for s in (t, t + 1)]
        assert np.median(np.linalg.norm(at[1] - at[0], axis=1)) == pytest.approx(want, abs=0.35)
    same = cell_timelapse(shape=(24, 64, 64), timepoints=5, seed=3, speed=[1.5] * 4)
    np.testing.assert_array_equal(same.ids, cell_timelapse(shape=(24, 64, 64), timepoints=5, seed=3).ids)
    for bad in ([1.5, 1.5], [1.5, -1.0, 1.0, 1.0], [[1.5]]):
        with pytest.raises(ValueError, match="speed must be"):
            cell_timelapse(timepoints=5, speed=bad)
