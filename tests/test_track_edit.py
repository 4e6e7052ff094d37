"""A tracking corrected by hand (halo_seg.tracking.edit, `halo-seg track-edit`): each edit against
the true tracks of a procedural time-lapse or a hand-made expectation (the labels relabelled with
numpy), the lineage against what the voxels say, every edit undone back to the exact output, an
edit stopped half way finished by the next, bad edits refused with nothing changed."""
import re
import json
import shutil

import numpy as np
import pytest
import zarr

from halo_seg.cli import main
from halo_seg.io import VolumeError, open_volume
from halo_seg.tracking import track_objects, write_ctc
from halo_seg.io.track_output import PENDING
from halo_seg.tracking.edit import TrackOutput, edit_tracks
from halo_seg.tracking.phantom import cell_timelapse, link_scores


def _state(path):
    grp = zarr.open_group(str(path), mode="r")
    return np.asarray(grp["labels"][...]), np.asarray(grp["tracks"][...]), np.asarray(grp["lineage"][...])


def _spans_from_voxels(labels) -> dict:
    """Each id's first and last time point, read off the voxels alone."""
    spans = {}
    for t in range(len(labels)):
        for k in np.unique(labels[t]).tolist():
            if k:
                first, _ = spans.get(k, (t, t))
                spans[k] = (first, t)
    return spans


def _check_lineage(path):
    """The lineage agrees with the voxels (first and last time points), and every mother ends before
    her daughters begin (the Cell Tracking Challenge's rule)."""
    labels, points, lineage = _state(path)
    rows = {int(k): (int(b), int(e), int(p)) for k, b, e, p in lineage.reshape(-1, 4)}
    spans = _spans_from_voxels(labels)
    assert {k: (b, e) for k, (b, e, _) in rows.items()} == spans
    for k, (b, _, p) in rows.items():
        if p:
            assert rows[p][1] < b
    assert sorted(set(points[:, 0].astype(int).tolist())) == sorted(rows)
    return rows


@pytest.fixture
def tracked(tmp_path):
    tl = cell_timelapse(seed=1)
    res = track_objects(tl.ids, tmp_path / "t.zarr", objects_given=True)
    labels, _, lineage = _state(res.output)
    assert link_scores(tl.ids, labels, tl.lineage, lineage)["whole_tracks"] == 1.0   # tracked right to begin with
    return tl, res.output


def test_a_broken_track_is_joined_into_the_true_one(tmp_path):
    tl = cell_timelapse(seed=1)
    ids = tl.ids.copy()
    cell = 1   # seen at every time point, never divides
    assert tl.lineage[0].tolist() == [cell, 0, 5, 0]
    ids[2][ids[2] == cell] = 0
    ids[3][ids[3] == cell] = 0   # missed twice: longer than the gap closing's one time point
    out = track_objects(ids, tmp_path / "t.zarr", objects_given=True).output
    labels, _, lineage = _state(out)
    before = link_scores(ids, labels, tl.lineage, lineage)
    a, b = int(labels[1][ids[1] == cell][0]), int(labels[4][ids[4] == cell][0])
    assert a != b and before["whole_tracks"] < 1.0
    done = edit_tracks(out, "join", a, b)
    assert done.span == (4, 5) and done.tracks == len(lineage) - 1
    labels, _, lineage = _state(out)
    assert link_scores(ids, labels, tl.lineage, lineage)["whole_tracks"] == 1.0
    for t in (0, 1, 4, 5):
        assert set(np.unique(labels[t][ids[t] == cell]).tolist()) == {a}
    rows = _check_lineage(out)
    assert rows[a] == (0, 5, 0) and b not in rows
    write_ctc(out, tmp_path / "ctc")   # the challenge's files say so too, its way: the piece after the gap a's child
    text = (tmp_path / "ctc" / "res_track.txt").read_text()
    assert f"{a} 0 1 0\n" in text and re.search(rf"^\d+ 4 5 {a}$", text, re.M)


def test_two_swapped_tracks_are_cut_and_joined_back(tracked):
    _, out = tracked
    labels0, _, lineage0 = _state(out)
    p, q = 1, 2
    assert lineage0[0].tolist() == [1, 0, 5, 0] and lineage0[1].tolist() == [2, 0, 5, 0]
    swapped = labels0.copy()   # what the edits must give, by numpy alone
    swapped[3:][labels0[3:] == p] = q
    swapped[3:][labels0[3:] == q] = p
    p2 = edit_tracks(out, "cut", p, 3)
    q2 = edit_tracks(out, "cut", q, 3)
    assert "is track 13" in p2.text and "is track 14" in q2.text
    edit_tracks(out, "join", p, 14)
    edit_tracks(out, "join", q, 13)
    labels, _, _ = _state(out)
    assert np.array_equal(labels, swapped)
    rows = _check_lineage(out)
    assert rows[p] == (0, 5, 0) and rows[q] == (0, 5, 0) and 13 not in rows and 14 not in rows


def test_a_division_named_cleared_and_every_edit_undone_exactly(tracked):
    tl, out = tracked
    before = _state(out)
    rows = _check_lineage(out)
    mother, daughter = 10, 11
    assert rows[daughter][2] == mother
    assert "has no mother (was 10)" in edit_tracks(out, "mother", 0, daughter).text
    assert _check_lineage(out)[daughter][2] == 0
    edit_tracks(out, "mother", mother, daughter)
    assert _check_lineage(out)[daughter][2] == mother
    # a false division: the mother goes on as one daughter, the other is a cell of her own
    done = edit_tracks(out, "join", mother, daughter)
    assert "track 12 no longer has a mother" in done.text
    rows = _check_lineage(out)
    assert rows[mother][1] == 5 and rows[12][2] == 0
    done = edit_tracks(out, "delete", 12)
    labels = _state(out)[0]
    assert not (labels == 12).any() and 12 not in _check_lineage(out)
    assert zarr.open_group(str(out), mode="r").attrs["halo_seg_tracks"]["tracks"] == done.tracks
    mirror = labels.copy()   # napari's layer in memory repeats each change
    for _ in range(4):
        edit_tracks(out, "undo", 0).repeat_on(mirror)
        assert np.array_equal(mirror, _state(out)[0])
    after = _state(out)
    for x, y in zip(before, after):
        assert np.array_equal(x, y)
    with pytest.raises(VolumeError, match="no edit to undo"):
        edit_tracks(out, "undo", 0)
    assert "deleted_3" not in zarr.open_group(str(out), mode="r")   # the deleted voxels kept only while undoable


def test_an_edit_stopped_half_way_is_finished_by_the_next(tracked, tmp_path, monkeypatch):
    _, out = tracked
    whole = tmp_path / "whole.zarr"
    shutil.copytree(out, whole)
    edit_tracks(whole, "cut", 3, 2)
    import halo_seg.tracking.voxel_edits as voxel_edits
    monkeypatch.setattr(voxel_edits, "SLAB_VOXELS", 64 * 64 * 4)   # several slabs a time point
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 7   # past the first time points, not the last
    with pytest.raises(InterruptedError):
        edit_tracks(out, "cut", 3, 2, cancel=stop)
    grp = zarr.open_group(str(out), mode="r")
    assert PENDING in grp.attrs
    half = np.asarray(grp["labels"][...])
    assert (half == 13).any() and (half[2:] == 3).any()   # half relabelled
    with pytest.raises(VolumeError, match="holds an edit that stopped half way .track 3 from time point 2"):
        open_volume(str(out), timepoint=2)   # never read half relabelled
    assert TrackOutput(out).finish_pending() == "track 3 from time point 2 on is track 13"
    assert PENDING not in zarr.open_group(str(out), mode="r").attrs
    for x, y in zip(_state(out), _state(whole)):
        assert np.array_equal(x, y)
    edit_tracks(out, "undo", 0)   # and undone once, as if never stopped
    edit_tracks(whole, "undo", 0)
    for x, y in zip(_state(out), _state(whole)):
        assert np.array_equal(x, y)
    assert len(TrackOutput(out).history) == 0


def test_an_edit_stopped_after_its_history_was_written_is_recorded_once(tracked, monkeypatch):
    _, out = tracked
    import halo_seg.tracking.edit as edit
    real = edit.TrackOutput._apply

    def dies_at_the_end(self, job, cancel=None):
        real(self, job, cancel)
        self.grp.attrs[PENDING] = job   # as if killed before the pending edit was crossed out
    monkeypatch.setattr(edit.TrackOutput, "_apply", dies_at_the_end)
    edit_tracks(out, "delete", 5)
    monkeypatch.setattr(edit.TrackOutput, "_apply", real)
    assert TrackOutput(out).finish_pending() == "track 5 deleted (time points 0 to 5)"
    assert len(TrackOutput(out).history) == 1 and 5 not in _check_lineage(out)
    edit_tracks(out, "undo", 0)
    assert 5 in _check_lineage(out) and TrackOutput(out).history == []


def test_bad_edits_are_refused_and_change_nothing(tracked, tmp_path):
    _, out = tracked
    before = _state(out)
    bad = [(("join", 1, 1), "cannot continue itself"), (("join", 1, 9), "begins before track 1 ends"),
           (("cut", 4, 1), "one time point"), (("cut", 1, 0), "must fall after its first"),
           (("cut", 1, 6), "must fall after"), (("mother", 1, 9), "does not end before"),
           (("mother", 9, 9), "its own mother"), (("delete", 99), "no track 99"), (("mother", 99, 9), "no mother track 99"),
           (("split", 1, 2), "unknown edit")]
    for args, msg in bad:
        with pytest.raises(VolumeError, match=msg):
            edit_tracks(out, *args)
    for x, y in zip(before, _state(out)):
        assert np.array_equal(x, y)
    assert TrackOutput(out).history == []
    with pytest.raises(VolumeError, match="does not exist"):
        edit_tracks(tmp_path / "none.zarr", "undo", 0)
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").create_array("labels", data=np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(VolumeError, match="not a `halo-seg track` output"):
        edit_tracks(tmp_path / "other.zarr", "undo", 0)


def test_the_track_edit_command(tracked, capsys):
    _, out = tracked
    assert main(["track-edit", str(out), "--cut", "1", "3", "--show", "1"]) == 0
    got = capsys.readouterr()
    assert json.loads(got.out.strip().splitlines()[-1])["tracks"] == 13
    assert "track 1: time points 0 to 2; mother none; daughters none" in got.out
    assert main(["track-edit", str(out), "--join", "1", "13", "--history"]) == 0
    got = capsys.readouterr().out
    assert "1. track 1 from time point 3 on is track 13\n2. track 13 continues track 1" in got
    assert main(["track-edit", str(out), "--join", "1", "9"]) == 2
    assert "track-edit: error: track 9 (time points 1 to 5) begins before track 1 ends" in capsys.readouterr().err
    assert main(["track-edit", str(out), "--undo"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["edits"] == 1
    assert main(["track-edit", str(out), "--swap", "1", "2", "4"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["edit"] == "tracks 1 and 2 swapped from time point 4 on"
    assert main(["track-edit", str(out), "--undo"]) == 0
    capsys.readouterr()
    assert open_volume(str(out), timepoint=4).data.max() == 13   # the output reads back as edited
    # labels corrected in another tool, written back
    import tifffile
    labels = np.asarray(zarr.open_group(str(out), mode="r")["labels"][...])
    labels[2, :2, :2, :2] = 50
    tifffile.imwrite(out.parent / "fixed.tif", labels.astype(np.uint16), imagej=True, metadata={"axes": "TZYX"})
    assert main(["track-edit", str(out), "--paint", str(out.parent / "fixed.tif")]) == 0
    assert "new track 50" in capsys.readouterr().out
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["labels"][...], labels)
    tifffile.imwrite(out.parent / "one.tif", labels[0])
    assert main(["track-edit", str(out), "--paint", str(out.parent / "one.tif")]) == 2
    assert "is 3D; the corrected labels of every time point" in capsys.readouterr().err


def test_per_track_rows_read_back_from_an_output_are_the_trackings_own(tmp_path):
    from halo_seg.tracking.summary import per_track, track_table
    tl = cell_timelapse(seed=1)
    res = track_objects(tl.ids, tmp_path / "t.zarr", objects_given=True, spacing=(2.0, 1.0, 0.5))
    grp = zarr.open_group(str(res.output), mode="r")
    want = per_track(res.table, res.lineage, res.spacing)
    got = per_track(track_table(grp["labels"], grp["tracks"][...], res.spacing), res.lineage, res.spacing)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], err_msg=key)


def test_a_missed_cell_painted_back_and_joined_is_the_whole_true_track(tmp_path):
    tl = cell_timelapse(seed=1)
    ids = tl.ids.copy()
    cell = 1
    for t in (2, 3):   # the segmentation missed it twice
        ids[t][ids[t] == cell] = 0
    out = track_objects(ids, tmp_path / "t.zarr", objects_given=True).output
    labels0, points0, lineage0 = _state(out)
    a, b = int(labels0[1][ids[1] == cell][0]), int(labels0[4][ids[4] == cell][0])
    painted = labels0.copy()   # napari's brush: the cell's voxels at t 2 and 3, in track a's colour
    for t in (2, 3):
        painted[t][tl.ids[t] == cell] = a
    done = TrackOutput(out).paint(painted)
    assert done.text == f"painted {int((tl.ids[2:4] == cell).sum())} voxels at time points 2 to 3"
    np.testing.assert_array_equal(_state(out)[0], painted)
    rows = _check_lineage(out)
    assert rows[a] == (0, 3, 0)
    edit_tracks(out, "join", a, b)
    labels, points, lineage = _state(out)
    scores = link_scores(tl.ids, labels, tl.lineage, lineage)
    assert scores["whole_tracks"] == 1.0 and scores["links"] == 1.0   # against the cell's true track, every link
    # the painted cell's centroids, counted again, are where the true cell is
    row = points[(points[:, 0] == a) & (points[:, 1] == 2)][0]
    np.testing.assert_allclose(row[2:], np.argwhere(tl.ids[2] == cell).mean(0))
    edit_tracks(out, "undo", 0)   # the join
    mirror = _state(out)[0]
    edit_tracks(out, "undo", 0).repeat_on(mirror)   # the strokes; a copy in memory put back as the file is
    labels1, points1, lineage1 = _state(out)
    np.testing.assert_array_equal(labels1, labels0)
    np.testing.assert_array_equal(mirror, labels0)
    np.testing.assert_allclose(points1, points0)
    np.testing.assert_array_equal(lineage1, lineage0)
    assert "painted_0" not in zarr.open_group(str(out), mode="r")


def test_painting_a_track_away_or_anew_changes_the_lineage_as_the_voxels_do(tracked):
    _, out = tracked
    labels, _, _ = _state(out)
    before = rows = _check_lineage(out)
    assert rows[4] == (0, 0, 0) and rows[9][2] == 4 and rows[10][2] == 4
    painted = labels.copy()
    painted[0][labels[0] == 4] = 0                 # the mother painted away: her daughters have none
    painted[5][labels[5] == 1] = 0                 # track 1 ends a time point earlier
    painted[5, 0:2, 0:2, 0:2] = 40                 # a cell the tracker missed, in an id of its own
    done = TrackOutput(out).paint(painted)
    assert "new track 40" in done.text and "track 4 gone" in done.text
    rows = _check_lineage(out)
    assert 4 not in rows and rows[9][2] == 0 and rows[10][2] == 0 and rows[1] == (0, 4, 0) and rows[40] == (5, 5, 0)
    with pytest.raises(VolumeError, match="nothing painted"):
        TrackOutput(out).paint(painted)
    with pytest.raises(VolumeError, match="the painted labels are"):
        TrackOutput(out).paint(painted[:3])
    edit_tracks(out, "undo", 0)
    np.testing.assert_array_equal(_state(out)[0], labels)
    assert _check_lineage(out) == before


def test_relabelling_and_setting_voxels_write_only_the_chunks_touched_and_right(tmp_path, monkeypatch):
    import halo_seg.tracking.voxel_edits as edit
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 4, size=(3, 10, 20, 20)).astype(np.uint32)
    z = zarr.create_array(str(tmp_path / "l.zarr"), shape=ref.shape, chunks=(1, 4, 8, 8), dtype=np.uint32)
    z[...] = ref
    monkeypatch.setattr(edit, "SLAB_VOXELS", 3 * 20 * 20)   # slabs of 3 slices across chunks of 4
    writes = []
    real = type(z).__setitem__
    monkeypatch.setattr(type(z), "__setitem__", lambda self, k, v: (writes.append(k), real(self, k, v))[1])
    z2 = zarr.open_array(str(tmp_path / "l.zarr"), mode="r+")
    one = ref.copy()
    one[:, 5:7, 9:11, 9:11] = 9   # an object inside one chunk column
    z2[...] = one
    writes.clear()
    assert edit.relabel(z2, 9, 5, 0, 2) == 3 * 8
    one[one == 9] = 5
    np.testing.assert_array_equal(z2[...], one)
    assert len(writes) == 3 * 2   # at each time point, the one chunk it lies in, split by the slab border
    coords = np.array([[1, 0, 0], [9, 19, 19], [5, 10, 3]])
    edit.set_voxels(z2, 1, coords, np.array([7, 8, 6]))
    one[1, 1, 0, 0], one[1, 9, 19, 19], one[1, 5, 10, 3] = 7, 8, 6
    np.testing.assert_array_equal(z2[...], one)


def test_two_tracks_swapped_where_cells_crossed_are_swapped_back_in_one_edit(tracked):
    _, out = tracked
    labels0, points0, lineage0 = _state(out)
    p, q = 2, 10   # q divides at its end (into 11 and 12): her daughters follow her tail
    rows = _check_lineage(out)
    assert rows[q][1] < 5 and rows[11][2] == q and rows[p] == (0, 5, 0)
    swapped = labels0.copy()   # what the edit must give, by numpy alone
    swapped[3:][labels0[3:] == p] = q
    swapped[3:][labels0[3:] == q] = p
    done = edit_tracks(out, "swap", p, q, t=3)
    assert done.text == f"tracks {p} and {q} swapped from time point 3 on"
    np.testing.assert_array_equal(_state(out)[0], swapped)
    rows = _check_lineage(out)   # first and last time points as the voxels have them, mothers before daughters
    assert rows[11][2] == p and rows[12][2] == p and rows[p][1] == rows[q + 1][0] - 1
    edit_tracks(out, "undo", 0)
    for x, y in zip(_state(out), (labels0, points0, lineage0)):
        np.testing.assert_array_equal(x, y)
    for args, msg in (((p, p), "cannot swap with itself"), ((p, 11), "must both be seen before time point 3"),
                      ((p, q), "needs the time point")):
        with pytest.raises(VolumeError, match=msg):
            edit_tracks(out, "swap", *args, t=None if msg.startswith("needs") else 3)


def test_a_swap_stopped_between_its_relabellings_resumes_where_it_stopped(tracked, tmp_path, monkeypatch):
    _, out = tracked
    whole = tmp_path / "whole.zarr"
    shutil.copytree(out, whole)
    edit_tracks(whole, "swap", 2, 10, t=3)
    import halo_seg.tracking.voxel_edits as voxel_edits
    monkeypatch.setattr(voxel_edits, "SLAB_VOXELS", 64 * 64 * 4)   # 6 slabs a time point, 18 a relabelling
    for stop_at in (25, 45):   # within the second (b -> a) and the third (free id -> b) of the three
        shutil.rmtree(out)
        shutil.copytree(whole, out)
        edit_tracks(out, "undo", 0)
        calls = []
        with pytest.raises(InterruptedError):
            edit_tracks(out, "swap", 2, 10, cancel=lambda: calls.append(1) or len(calls) > stop_at, t=3)
        assert zarr.open_group(str(out), mode="r").attrs[PENDING]["done"] == stop_at // 18
        TrackOutput(out).finish_pending()
        for x, y in zip(_state(out), _state(whole)):
            np.testing.assert_array_equal(x, y)
    # stopped after its rows were written: not swapped back when finished
    real = TrackOutput._apply

    def dies_after_the_rows(self, job, cancel=None):
        real(self, job, cancel)
        self.grp.attrs[PENDING] = {**job, "done": 3, "points_done": True}
    monkeypatch.setattr(TrackOutput, "_apply", dies_after_the_rows)
    edit_tracks(out, "undo", 0)
    monkeypatch.setattr(TrackOutput, "_apply", real)
    TrackOutput(out).finish_pending()
    edit_tracks(whole, "undo", 0)
    for x, y in zip(_state(out), _state(whole)):
        np.testing.assert_array_equal(x, y)

