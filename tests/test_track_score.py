"""`track-score`: a tracking scored against a reference one, each a `track` output or a Cell
Tracking Challenge folder (masks + lineage text; the ground truth's markers will do)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr

from halo_seg.io.ctc_tracking import Tracking, open_tracking, read_lineage
from halo_seg.io.track_output import ctc_lineage, write_ctc
from halo_seg.io.volume import VolumeError
from halo_seg.tracking import track_objects
from halo_seg.tracking.phantom import cell_timelapse, link_scores, relabelled
from halo_seg.tracking.score import score_tracking


def _gt(folder, ids, lineage, name="man_track"):
    folder.mkdir(parents=True)
    for t, f in enumerate(ids):
        tifffile.imwrite(folder / f"{name}{t:03d}.tif", f.astype(np.uint16))
    (folder / f"{name}.txt").write_text(ctc_lineage(lineage))
    return folder


def _markers(ids: np.ndarray) -> np.ndarray:
    """Each object reduced to the voxels within 1.5 of its centroid (the challenge's TRA markers)."""
    out = np.zeros_like(ids)
    grid = np.indices(ids.shape[1:]).reshape(3, -1).T
    for t in range(len(ids)):
        flat = ids[t].ravel()
        for k in np.unique(flat[flat > 0]):
            c = grid[flat == k].mean(0)
            near = (np.linalg.norm(grid - c, axis=1) <= 1.5) & (flat == k)
            out[t].ravel()[near] = k
    return out


def _tracked(tmp, seed, **kw):
    tl = cell_timelapse(shape=(24, 72, 72), cells=12, timepoints=8, radius=4.5, divisions=3, speed=5.0, seed=seed)
    return tl, track_objects(relabelled(tl.ids, seed), tmp / "t.zarr", objects_given=True, **kw), tmp


# cells moving over a radius a step: overlap linking with a max distance swaps and breaks tracks and
# calls wrong divisions (seed 11); linking by distance misses a division (seed 12)
TRACKINGS = {"overlap": (11, {"max_distance": 10.0}), "distance": (12, {"link": "distance", "max_distance": 10.0})}


@pytest.fixture(scope="module", params=list(TRACKINGS))
def tracked(request, tmp_path_factory):
    seed, kw = TRACKINGS[request.param]
    return _tracked(tmp_path_factory.mktemp(request.param), seed, **kw)


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    seed, kw = TRACKINGS["overlap"]
    return _tracked(tmp_path_factory.mktemp("fast"), seed, **kw)


def test_scores_agree_with_the_phantoms_own(tracked):
    """On full masks both matchings agree, so the scores equal benchmarks' link_scores (written
    apart, matching the other way round) on trackings that make mistakes."""
    tl, res, tmp = tracked
    found = zarr.open_group(str(tmp / "t.zarr"))["labels"][...]
    ref = link_scores(tl.ids, found, tl.lineage, res.lineage)
    assert ref["links"] < 0.99 and ref["whole_tracks"] < 1   # a tracking with mistakes to find
    assert 0 < ref["divisions"] * ref["divisions_right"] < 1
    _gt(tmp / "gt", tl.ids, tl.lineage)
    s = score_tracking(open_tracking(tmp / "t.zarr"), open_tracking(tmp / "gt")).rates()
    assert s["link recall"] == pytest.approx(ref["links"])
    assert s["link precision"] == pytest.approx(ref["precision"])
    assert s["division recall"] == pytest.approx(ref["divisions"])
    assert s["division precision"] == pytest.approx(ref["divisions_right"])
    assert s["whole tracks"] == pytest.approx(ref["whole_tracks"])
    assert s["detection recall"] == 1 and s["detection precision"] == 1


def test_markers_score_as_full_masks(tracked):
    tl, res, tmp = tracked
    full = score_tracking(open_tracking(tmp / "t.zarr"), Tracking("gt", tl.ids, tl.lineage, "test"))
    marked = score_tracking(open_tracking(tmp / "t.zarr"), Tracking("gt", _markers(tl.ids), tl.lineage, "test"))
    assert marked == full


def _two_cells(T=4):
    ids = np.zeros((T, 1, 20, 40), np.uint16)
    ids[:, 0, 5:15, 2:12] = 1
    ids[:, 0, 5:15, 25:35] = 2
    return ids, np.array([[1, 0, T - 1, 0], [2, 0, T - 1, 0]])


def test_a_swap_a_merge_and_an_extra_object_are_counted():
    ref_ids, ref_lin = _two_cells()
    ref = Tracking("ref", ref_ids, ref_lin, "test")
    swapped = ref_ids.copy()
    swapped[2:] = np.where(ref_ids[2:] == 1, 2, np.where(ref_ids[2:] == 2, 1, 0))   # ids swap from t=2
    s = score_tracking(Tracking("s", swapped, ref_lin, "test"), ref)
    assert (s.reference_links, s.links_found, s.tracked_links_right, s.whole_tracks) == (6, 4, 4, 0)
    merged = ref_ids.copy()
    merged[1, 0, 5:15, 2:35] = 1   # one object over both cells at t=1
    s = score_tracking(Tracking("m", merged, np.array([[1, 0, 3, 0], [2, 0, 3, 0]]), "test"), ref)
    assert s.merges == 1 and s.found == 8 and s.tracked_objects == 7
    # as the AOGM judges it: the merged object is a detection error whose links count for neither cell;
    # track 2, absent at t=1, steps over the gap to t=2: a link of the tracking's that is no reference link
    assert (s.links_found, s.tracked_links, s.tracked_links_right, s.whole_tracks) == (2, 3, 2, 0)
    off = ref_ids.copy()
    off[3] = 0
    off[3, 0, 5:15, 2:12] = 1
    off[3, 0, 5:15, 32:40] = 2   # cell 2's object at t=3 covers 3 of its 10 columns: not found
    s = score_tracking(Tracking("o", off, ref_lin, "test"), ref)
    assert (s.found, s.tracked_found, s.links_found, s.tracked_links_right, s.whole_tracks) == (7, 7, 5, 5, 1)
    extra = ref_ids.copy()
    extra[3, 0, 17:19, 17:19] = 3
    s = score_tracking(Tracking("e", extra, np.vstack([ref_lin, [[3, 3, 3, 0]]]), "test"), ref)
    assert (s.tracked_objects, s.tracked_found, s.whole_tracks) == (9, 8, 2)


def test_ctc_folders_read_and_checked(tmp_path, fast):
    tl, res, tmp = fast
    gt = _gt(tmp_path / "01_GT" / "TRA", tl.ids, tl.lineage)
    t = open_tracking(tmp_path / "01_GT")   # the dataset's GT folder: its TRA
    assert t.kind == "Cell Tracking Challenge" and t.labels.shape == tl.ids.shape
    np.testing.assert_array_equal(t.lineage, tl.lineage)
    (gt / "man_track.txt").write_text("1 0 3 0\n2 0 x 0\n")
    with pytest.raises(VolumeError, match="line 2 .* four whole numbers"):
        open_tracking(gt)
    (gt / "man_track.txt").write_text("1 0 3 0\n2 4 5 9\n")
    with pytest.raises(VolumeError, match="parent track 9 not listed"):
        open_tracking(gt)
    (gt / "man_track.txt").write_text("1 0 30 0\n")
    with pytest.raises(VolumeError, match="track 1 ends at time point 30 but .* holds 8 frames"):
        open_tracking(gt)
    with pytest.raises(VolumeError, match="neither a `halo-seg track` output"):
        open_tracking(tmp_path)
    small = Tracking("small", tl.ids[:, :10], tl.lineage, "test")
    with pytest.raises(VolumeError, match="scored against one of the same time-lapse"):
        score_tracking(open_tracking(tmp / "t.zarr"), small)
    assert read_lineage(tmp_path / "01_GT" / "TRA" / "man_track.txt").shape == (1, 4)
    flat = _gt(tmp_path / "2d", tl.ids[:, 12], tl.lineage)   # a 2D dataset's frames: one plane each
    assert open_tracking(flat).labels.shape == (8, 1, 72, 72)


def test_track_score_command_on_a_ctc_result(tmp_path, fast):
    """`track --ctc` written, scored by the command against the ground truth's markers, and the
    SEG folder beside them found for the challenge's SEG."""
    tl, res, tmp = fast
    write_ctc(tmp / "t.zarr", tmp_path / "01_RES")
    _gt(tmp_path / "01_GT" / "TRA", _markers(tl.ids), tl.lineage)
    (tmp_path / "01_GT" / "SEG").mkdir()
    tifffile.imwrite(tmp_path / "01_GT" / "SEG" / "man_seg_004_010.tif", tl.ids[4][10].astype(np.uint16))
    r = subprocess.run([sys.executable, "-m", "halo_seg.cli", "track-score", str(tmp_path / "01_RES"),
                        str(tmp_path / "01_GT"), "--quiet", "--json", str(tmp_path / "s.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out == json.loads((tmp_path / "s.json").read_text())
    direct = score_tracking(open_tracking(tmp / "t.zarr"), Tracking("gt", tl.ids, tl.lineage, "test"))
    assert out["scores"]["link_recall"] == pytest.approx(direct.rates()["link recall"])
    assert out["counts"]["whole_tracks"] == direct.whole_tracks
    assert "link recall" in r.stderr and "whole tracks" in r.stderr
    from halo_seg.tracking.seg_score import seg_measure
    seg = seg_measure(zarr.open_group(str(tmp / "t.zarr"))["labels"], tmp_path / "01_GT" / "SEG")
    assert out["scores"]["SEG"] == pytest.approx(seg.seg) and out["counts"]["seg_files"] == 1
    assert f"{seg.cells} cells in 1 file of" in r.stderr
    assert out["scores"]["TRA"] == pytest.approx(direct.aogm()["TRA"]) and "TRA" in r.stderr
    if "challenge_evaluation" in out:   # py-ctcmetrics installed (the testing extra has it)
        assert out["challenge_evaluation"]["TRA"] == pytest.approx(out["scores"]["TRA"])
        assert "CT" in out["challenge_evaluation"] and "the challenge's evaluation" in r.stderr


def test_track_import_makes_an_editable_track_output(tmp_path, fast):
    """A ground truth imported: labels, lineage and paths as in its folder (centroids computed here
    apart); edited, written back out and scored; a lineage disagreeing with the masks refused."""
    from halo_seg.tracking.ctc_import import import_ctc
    from halo_seg.tracking.edit import TrackOutput, save_tracking
    tl, _, _ = fast
    gt = _gt(tmp_path / "01_GT" / "TRA", tl.ids, tl.lineage)
    res = import_ctc(tmp_path / "01_GT", tmp_path / "gt.zarr", spacing=(2.0, 1.0, 1.0), unit="µm")
    grp = zarr.open_group(str(tmp_path / "gt.zarr"))
    np.testing.assert_array_equal(grp["labels"][...], tl.ids)
    np.testing.assert_array_equal(grp["lineage"][...], tl.lineage[np.argsort(tl.lineage[:, 0])])
    assert res.divisions == len(set(tl.lineage[tl.lineage[:, 3] > 0, 3].tolist())) > 0
    rows = grp["tracks"][...]
    k, t = int(tl.lineage[(tl.lineage[:, 1] == 0) & (tl.lineage[:, 2] > 3)][0, 0]), 3
    np.testing.assert_allclose(rows[(rows[:, 0] == k) & (rows[:, 1] == t)][0, 2:], np.argwhere(tl.ids[t] == k).mean(0))
    assert tuple(grp["labels"].attrs.get("spacing", grp.attrs.get("spacing"))) == (2.0, 1.0, 1.0)
    out = TrackOutput(tmp_path / "gt.zarr")
    out.edit("cut", k, t)   # a mistake made on purpose: the scores see it
    save_tracking(tmp_path / "gt.zarr", tmp_path / "02_RES")
    s = score_tracking(open_tracking(tmp_path / "02_RES"), open_tracking(tmp_path / "01_GT"))
    assert s.links_found == s.reference_links - 1 and s.whole_tracks == len(tl.lineage) - 1
    # masks and lineage that disagree: refused, naming the track; nothing written
    gone = [i for i, row in enumerate(tl.lineage) if row[0] not in tl.lineage[:, 3]][0]   # no one's mother
    (gt / "man_track.txt").write_text(ctc_lineage(np.delete(tl.lineage, gone, 0)))
    with pytest.raises(VolumeError, match=f"the masks hold track {int(tl.lineage[gone, 0])} that the lineage does"):
        import_ctc(gt, tmp_path / "bad.zarr")
    wrong = tl.lineage.copy()
    wrong[0, 2] -= 1
    (gt / "man_track.txt").write_text(ctc_lineage(wrong))
    with pytest.raises(VolumeError, match=f"lineage has track {int(wrong[0, 0])} from time point .* the masks from"):
        import_ctc(gt, tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()
    with pytest.raises(VolumeError, match="already"):
        import_ctc(tmp_path / "gt.zarr", tmp_path / "again.zarr")


def test_a_tracking_of_some_time_points_is_scored_on_those(tmp_path, fast):
    """`track --timepoint 0-4` of eight: scored as the first five time points alone would be."""
    tl, _, _ = fast
    seed, kw = TRACKINGS["overlap"]
    res = track_objects(relabelled(tl.ids, seed), tmp_path / "part.zarr", objects_given=True, timepoints="0-4", **kw)
    part = open_tracking(tmp_path / "part.zarr")
    assert part.tracked == [0, 1, 2, 3, 4]
    s = score_tracking(part, Tracking("gt", tl.ids, tl.lineage, "test"))
    alone = score_tracking(Tracking("p", zarr.open_group(str(tmp_path / "part.zarr"))["labels"][:5], res.lineage,
                                    "test"), Tracking("gt", tl.ids[:5], tl.lineage, "test"))
    assert s == alone and s.timepoints == 5 and s.found == s.reference_objects


def test_seg_against_whole_frames_and_single_planes(tmp_path, fast):
    """SEG over every reference cell of man_segTTT.tif (a whole frame) and man_seg_TTT_ZZZ.tif
    (one plane) files equals the cells-weighted mean of evaluate.compare_instances' SEG per file
    (written apart); a tracking of some time points skips the others' files."""
    from halo_seg.evaluate import compare_instances
    from halo_seg.tracking.seg_score import seg_folder, seg_measure
    tl, _, tmp = fast
    masks = zarr.open_group(str(tmp / "t.zarr"))["labels"][...]
    masks[2][masks[2] == masks[2].max()] = 0                                   # a cell missed
    k = int(np.unique(masks[5][masks[5] > 0])[0])
    masks[5][(masks[5] == k) & (np.indices(masks[5].shape)[2] % 2 == 0)] = 0   # one cut to half its voxels
    seg = tmp_path / "01_GT" / "SEG"
    seg.mkdir(parents=True)
    (tmp_path / "01_GT" / "TRA").mkdir()
    files = {(2, None): tl.ids[2], (5, None): tl.ids[5], (3, 12): tl.ids[3][12]}
    for (t, z), ref in files.items():
        tifffile.imwrite(seg / (f"man_seg{t:03d}.tif" if z is None else f"man_seg_{t:03d}_{z:03d}.tif"),
                         ref.astype(np.uint16))
    assert seg_folder(tmp_path / "01_GT" / "TRA") == seg_folder(tmp_path / "01_GT") == seg
    got = seg_measure(masks, seg)
    total = cells = 0
    for (t, z), ref in files.items():
        mask = masks[t] if z is None else masks[t][z][None]
        n = len(np.unique(ref[ref > 0]))
        total += compare_instances(mask, ref if z is None else ref[None])["seg"][0] * n
        cells += n
    assert (got.cells, got.files) == (cells, 3) and got.seg == pytest.approx(total / cells) and 0.5 < got.seg < 1
    assert seg_measure(masks, seg, timepoints=[3]).files == 1
    tifffile.imwrite(seg / "man_seg_004_099.tif", tl.ids[4][0].astype(np.uint16))
    with pytest.raises(VolumeError, match="man_seg_004_099.tif: plane 99"):
        seg_measure(masks, seg)


def _errors(tl, seed, drop=0.0, extra=False, merge=False):
    """The time-lapse's ids as a segmentation with mistakes: a share of cells missed after the first
    time point, debris at two time points, two cells merged at two."""
    ids = relabelled(tl.ids, seed).astype(np.int64)
    rng = np.random.default_rng(seed)
    for t in range(1, len(ids)):
        present = np.unique(ids[t][ids[t] > 0])
        ids[t][np.isin(ids[t], present[rng.random(len(present)) < drop])] = 0
    for t in (2, 5) if extra else ():
        ids[t, 0:3, 0:3, 0:3] = ids.max() + 1
    for t in (3, 6) if merge else ():
        a, b = np.unique(ids[t][ids[t] > 0])[:2]
        ids[t][ids[t] == b] = a
    return ids


@pytest.mark.parametrize("seed, speed, mistakes, kw", [
    (11, 5.0, {"drop": 0.1}, {"max_distance": 10.0}),          # misses closed over gaps, swaps, wrong divisions
    (13, 5.0, {"drop": 0.1}, {}),
    (15, 2.0, {"extra": True, "merge": True}, {"max_distance": 10.0})])   # extra objects, merges
def test_aogm_and_tra_equal_the_challenges_evaluation(tmp_path, seed, speed, mistakes, kw):
    """The AOGM's six operations and TRA, DET, LNK as py-ctcmetrics (the challenge's Python
    evaluation) finds them for the same tracking written as a result folder, against full masks
    and against markers."""
    pytest.importorskip("ctc_metrics")
    from halo_seg.tracking.ctc_measures import ctc_measures
    tl = cell_timelapse(shape=(24, 72, 72), cells=12, timepoints=8, radius=4.5, divisions=3, speed=speed, seed=seed)
    track_objects(_errors(tl, seed, **mistakes), tmp_path / "t.zarr", objects_given=True, **kw)
    for name, ids in (("full", tl.ids), ("markers", _markers(tl.ids))):
        gt = _gt(tmp_path / name / "01_GT" / "TRA", ids, tl.lineage)
        mine = score_tracking(open_tracking(tmp_path / "t.zarr"), open_tracking(gt)).aogm()
        theirs = ctc_measures(tmp_path / "t.zarr", gt)
        assert theirs["Valid"] == 1
        assert {k: mine[k] for k in ("NS", "FN", "FP", "ED", "EA", "EC")} == \
            {k: int(theirs[f"AOGM_{k}"]) for k in ("NS", "FN", "FP", "ED", "EA", "EC")}
        assert mine["TRA"] == pytest.approx(theirs["TRA"]) and mine["DET"] == pytest.approx(theirs["DET"])
        assert mine["LNK"] == pytest.approx(theirs["LNK"]) and mine["TRA"] < 1
        assert sum(mine[k] for k in ("NS", "FN", "FP", "ED", "EA", "EC")) > 0


def test_a_track_over_a_gap_is_written_for_the_challenge_as_mother_and_child(tmp_path):
    """The challenge's format has no gaps within a track: a cell missed at a time point and its track
    continued after (gap closing) is written as two tracks, the later the earlier's child, its
    daughters the later piece's; every listed track is in the masks at each time point it spans."""
    import tifffile as tf
    tl = cell_timelapse(shape=(24, 72, 72), cells=12, timepoints=8, radius=4.5, divisions=3, seed=12)
    ids = tl.ids.copy()
    mother = int(next(k for k, _, e, _ in tl.lineage.tolist() if k in tl.lineage[:, 3] and e >= 3))
    ids[2][ids[2] == mother] = 0   # a dividing cell missed once before she divides
    track_objects(ids, tmp_path / "t.zarr", objects_given=True, max_gap=1)
    write_ctc(tmp_path / "t.zarr", tmp_path / "01_RES")
    lineage = read_lineage(tmp_path / "01_RES" / "res_track.txt")
    masks = [tf.imread(tmp_path / "01_RES" / f"mask{t:03d}.tif") for t in range(8)]
    for k, first, last, _ in lineage.tolist():
        assert [k in m for m in masks] == [first <= t <= last for t in range(8)], k
    before = int(np.unique(masks[1][tl.ids[1] == mother])[0])
    after = int(np.unique(masks[3][tl.ids[3] == mother])[0])
    rows = {k: (b, e, p) for k, b, e, p in lineage.tolist()}
    assert after != before and rows[after][2] == before and rows[before][1] == 1
    daughters = [k for k, (b, e, p) in rows.items() if p == after]
    assert len(daughters) == 2
    try:
        from ctc_metrics.metrics import valid
    except ImportError:
        return
    from ctc_metrics.scripts.evaluate import match_computed_to_reference_masks
    from ctc_metrics.utils.filesystem import parse_masks, read_tracking_file
    files = parse_masks(str(tmp_path / "01_RES"))
    labels = match_computed_to_reference_masks(files, files, threads=1)["labels_comp"]
    assert valid(files, read_tracking_file(str(tmp_path / "01_RES" / "res_track.txt")), labels) == 1


def test_seg_equals_the_challenges_evaluation_on_whole_frames(tmp_path, fast):
    """SEG against man_segTTT.tif files (whole frames) as py-ctcmetrics computes it."""
    pytest.importorskip("ctc_metrics")
    import contextlib
    import io

    from ctc_metrics.scripts.evaluate import evaluate_sequence

    from halo_seg.tracking.seg_score import seg_measure
    tl, _, tmp = fast
    masks = zarr.open_group(str(tmp / "t.zarr"))["labels"][...]
    masks[4][masks[4] == masks[4].max()] = 0   # a cell missed
    res = tmp_path / "01_RES"
    res.mkdir()
    for t, m in enumerate(masks):
        tifffile.imwrite(res / f"mask{t:03d}.tif", m.astype(np.uint16))
    (tmp_path / "01_GT" / "SEG").mkdir(parents=True)
    _gt(tmp_path / "01_GT" / "TRA", tl.ids, tl.lineage)
    for t in (1, 4, 6):
        tifffile.imwrite(tmp_path / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", tl.ids[t].astype(np.uint16))
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = evaluate_sequence(str(res), str(tmp_path / "01_GT"), metrics=["SEG"], threads=1)["SEG"]
    mine = seg_measure(masks, tmp_path / "01_GT" / "SEG")
    assert mine.seg == pytest.approx(theirs) and mine.seg < 1 and mine.files == 3


def test_the_challenges_evaluation_refusals_are_named(tmp_path, fast):
    pytest.importorskip("ctc_metrics")
    from halo_seg.tracking.ctc_measures import ctc_measures
    tl, _, tmp = fast
    with pytest.raises(VolumeError, match="not a Cell Tracking Challenge ground truth"):
        ctc_measures(tmp / "t.zarr", tmp_path)
    gt = _gt(tmp_path / "01_GT" / "TRA", tl.ids, tl.lineage)
    write_ctc(tmp / "t.zarr", tmp_path / "01_RES")
    (tmp_path / "01_RES" / "mask007.tif").unlink()   # a result one frame short
    with pytest.raises(VolumeError, match="refused .*01_RES"):
        ctc_measures(tmp_path / "01_RES", gt)
