"""A tracking scored against a reference tracking (a Cell Tracking Challenge ground truth, or a
tracking corrected by hand), a time point at a time so that a light-sheet time-lapse fits.

Objects are matched by the challenge's rule: a reference object (a full mask or only a marker
inside the cell, as the challenge's TRA ground truth draws them) is found by the tracked object
covering more than half of it; one tracked object may so cover several (cells merged).

* detection: reference objects found (recall), tracked objects that find one (precision), and
  the tracked objects that find several (merges: each would need splitting);
* links: the reference's links, each an object to its own track's next time point it is in, or a
  mother's last to a daughter's first, made by the tracking between the objects that found them
  (recall), and of the tracking's links between objects that found one reference object each
  (a merged or extra object is a detection error), those that are a reference link so
  (precision); a link made as a
  parent link (mother to daughter, or over a gap) where the reference continues a track, or the
  other way, is counted apart;
* divisions: a reference division (a mother of two daughters or more) found when the tracked
  mother and daughters found the reference's mother and daughters (recall), and the tracking's
  divisions that are one (precision);
* whole tracks: reference tracks found at every time point they are in, by one and the same
  tracked track.

Misses, extra objects, merges and the three kinds of link errors are the operations of the
challenge's AOGM, counted as it counts them, and its TRA, DET and LNK follow from them
(tests/test_track_score.py checks them against py-ctcmetrics, the challenge's Python
evaluation, which tracking.ctc_measures runs for its biological measures).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.volume import VolumeError


@dataclass
class _Frame:
    covers: dict             # tracked id -> the reference ids it covers more than half of
    ref_ids: set
    ids: set


def _frame(ref, res, cancel=None) -> _Frame:
    """One time point's reference and tracked objects and which covers which, both read once, in
    slabs of whole slices."""
    from ..io.labels import read_label_slab, slabs
    from .frames import SLAB_VOXELS, pair_counts, summed_rows
    step, starts = slabs(tuple(ref.shape), SLAB_VOXELS)
    sizes, ids, pairs = [], [], []
    for z0 in starts:
        r = read_label_slab(ref, z0, step, cancel, "the reference")
        c = read_label_slab(res, z0, step, cancel, "the tracking")
        u, n = np.unique(r[r > 0], return_counts=True)
        sizes.append(np.stack([u, n], 1).astype(np.int64))
        ids.append(np.unique(c[c > 0]))
        both = (r > 0) & (c > 0)
        if both.any():
            pairs.append(pair_counts(r[both], c[both]))
    size = dict(summed_rows(sizes, 1).tolist())
    covers = {}
    for r, c, n in summed_rows(pairs, 2).tolist():
        if n > 0.5 * size[r]:
            covers.setdefault(c, []).append(r)
    return _Frame(covers, set(size), set(np.concatenate(ids).tolist()) if ids else set())


def _edges(present: list[set], lineage: np.ndarray) -> dict:
    """{(t1, id1, t2, id2): is a parent link} of a tracking: a track from each time point it is in
    to the next one it is in, and a mother's last to each daughter's first. A track's step over
    time points it is missing from is a parent link: the challenge writes such a track as two, the
    later the earlier's child (track_output.without_gaps), and so do its ground truths."""
    times: dict[int, list[int]] = {}
    for t, ids in enumerate(present):
        for k in ids:
            times.setdefault(k, []).append(t)
    edges = {}
    for k, ts in times.items():
        for a, b in zip(ts, ts[1:]):
            edges[(a, k, b, k)] = b - a > 1
    for k, _, _, p in lineage.tolist():
        if p and p in times and k in times:
            edges[(times[p][-1], p, times[k][0], k)] = True
    return edges


def _divisions(edges: dict) -> dict:
    """{(t, mother): frozenset of (t, daughter)}: the mothers of two daughters or more (one child
    alone is a track over a gap, no division)."""
    out: dict = {}
    for (t1, m, t2, d), parent in edges.items():
        if parent and m != d:
            out.setdefault((t1, m), set()).add((t2, d))
    return {k: frozenset(v) for k, v in out.items() if len(v) >= 2}


@dataclass
class TrackScores:
    timepoints: int
    reference_objects: int
    found: int                       # reference objects a tracked object covers more than half of
    tracked_objects: int
    tracked_found: int               # tracked objects that cover at least one reference object
    merges: int                      # reference objects beyond the first covered by one tracked object
    reference_links: int
    links_found: int
    tracked_links: int               # links between tracked objects that found one reference object each
    tracked_links_right: int
    link_kind_wrong: int             # found links made as a parent link where the reference continues, or back
    reference_divisions: int
    divisions_found: int
    tracked_divisions: int
    tracked_divisions_right: int
    reference_tracks: int
    whole_tracks: int

    def aogm(self) -> dict:
        """The AOGM's operations (Matula et al. 2015) and the challenge's TRA, DET and LNK from them,
        with its weights: a split 5, a miss 10, an extra object 1, a link to delete 1, to add 1.5,
        of the wrong kind 1; 0 is the cost of building the reference from nothing."""
        ops = {"NS": self.merges, "FN": self.reference_objects - self.found,
               "FP": self.tracked_objects - self.tracked_found, "ED": self.tracked_links - self.tracked_links_right,
               "EA": self.reference_links - self.links_found, "EC": self.link_kind_wrong}
        detect = 5 * ops["NS"] + 10 * ops["FN"] + ops["FP"]
        link = ops["ED"] + 1.5 * ops["EA"] + ops["EC"]
        d0, l0 = 10 * self.reference_objects, 1.5 * self.reference_links

        def score(cost, zero):
            return 1 - min(cost, zero) / zero if zero else float("nan")
        return {**ops, "AOGM": detect + link, "AOGM_0": d0 + l0, "TRA": score(detect + link, d0 + l0),
                "DET": score(detect, d0), "LNK": score(link, l0)}

    def rates(self) -> dict:
        def r(a, b):
            return a / b if b else float("nan")
        return {"detection recall": r(self.found, self.reference_objects),
                "detection precision": r(self.tracked_found, self.tracked_objects),
                "link recall": r(self.links_found, self.reference_links),
                "link precision": r(self.tracked_links_right, self.tracked_links),
                "division recall": r(self.divisions_found, self.reference_divisions),
                "division precision": r(self.tracked_divisions_right, self.tracked_divisions),
                "whole tracks": r(self.whole_tracks, self.reference_tracks)}


def score_tracking(tracked, reference, progress=None, cancel=None) -> TrackScores:
    """``tracked`` against ``reference`` (io.ctc_tracking.Tracking each, on one voxel grid); a
    tracking of some time points only (``tracked.tracked``) on those, as if they were the time-lapse."""
    T = tracked.labels.shape[0]
    if tuple(tracked.labels.shape) != tuple(reference.labels.shape):
        raise VolumeError(f"{tracked.source} is {tuple(tracked.labels.shape)} (T, Z, Y, X) but {reference.source} "
                          f"{tuple(reference.labels.shape)}: a tracking is scored against one of the same time-lapse")
    # a tracking of some time points (track --timepoint) is scored on those: the reference's objects
    # elsewhere were never the tracker's to find
    scored = [t for t in range(T) if tracked.tracked is None or t in set(tracked.tracked)]
    empty = _Frame({}, set(), set())
    frames = [empty] * T
    for k, t in enumerate(scored):
        frames[t] = _frame(reference.labels[t], tracked.labels[t], cancel)
        if progress is not None:
            progress(k + 1, len(scored))
    ref_edges = _edges([f.ref_ids for f in frames], reference.lineage)
    res_edges = _edges([f.ids for f in frames], tracked.lineage)

    # links are judged between tracked objects that found one reference object each, as the AOGM
    # judges them: a merged or extra object is a detection error, its links none of their own
    unique = [{c: refs[0] for c, refs in f.covers.items() if len(refs) == 1} for f in frames]
    own = [{r: c for c, r in u.items()} for u in unique]   # reference id -> the tracked object that is it
    judged = {(t1, unique[t1][c1], t2, unique[t2][c2]): parent for (t1, c1, t2, c2), parent in res_edges.items()
              if c1 in unique[t1] and c2 in unique[t2]}
    found_links = sum(e in judged for e in ref_edges)
    kind_wrong = sum(judged[e] != parent for e, parent in ref_edges.items() if e in judged)
    right_links = sum(e in ref_edges for e in judged)

    ref_divs, res_divs = _divisions(ref_edges), _divisions(res_edges)
    mapped = {(t, unique[t].get(m)): frozenset((td, unique[td].get(d)) for td, d in ds)
              for (t, m), ds in res_divs.items()}
    divs_right = sum(ref_divs.get(k) == v for k, v in mapped.items() if k[1] is not None)
    divs_found = divs_right   # one tracked division is at most one reference division, and back

    whole = tracks = 0
    for k in reference.lineage[:, 0].tolist():
        at = [o.get(k, -1) for f, o in zip(frames, own) if k in f.ref_ids]
        tracks += bool(at)   # a track in the time points scored
        whole += bool(at) and -1 not in at and len(set(at)) == 1
    ref_objects = sum(len(f.ref_ids) for f in frames)
    tracked_objects = sum(len(f.ids) for f in frames)
    return TrackScores(
        timepoints=len(scored), reference_objects=ref_objects,
        found=sum(len(v) for f in frames for v in f.covers.values()), tracked_objects=tracked_objects,
        tracked_found=sum(len(f.covers) for f in frames),
        merges=sum(len(v) - 1 for f in frames for v in f.covers.values()),
        reference_links=len(ref_edges), links_found=found_links, tracked_links=len(judged),
        tracked_links_right=right_links, link_kind_wrong=kind_wrong,
        reference_divisions=len(ref_divs), divisions_found=divs_found, tracked_divisions=len(res_divs),
        tracked_divisions_right=divs_right, reference_tracks=tracks, whole_tracks=whole)


def format_scores(s: TrackScores) -> str:
    counts = {"detection recall": (s.found, s.reference_objects),
              "detection precision": (s.tracked_found, s.tracked_objects),
              "link recall": (s.links_found, s.reference_links),
              "link precision": (s.tracked_links_right, s.tracked_links),
              "division recall": (s.divisions_found, s.reference_divisions),
              "division precision": (s.tracked_divisions_right, s.tracked_divisions),
              "whole tracks": (s.whole_tracks, s.reference_tracks)}
    lines = [f"{'':22s} {'score':>7s}  of"]
    for name, value in s.rates().items():
        a, b = counts[name]
        lines.append(f"{name:22s} {value:7.3f}  {a} / {b}")
    lines.append(f"{'merged objects':22s} {s.merges:7d}  (reference objects beyond the first one tracked "
                 "object covers)")
    a = s.aogm()
    lines.append(f"{'TRA':22s} {a['TRA']:7.3f}  DET {a['DET']:.3f}, LNK {a['LNK']:.3f}; AOGM {a['AOGM']:g} of "
                 f"{a['AOGM_0']:g}: " + ", ".join(f"{k} {a[k]}" for k in ("NS", "FN", "FP", "ED", "EA", "EC")))
    if s.link_kind_wrong:
        lines.append(f"{'links of wrong kind':22s} {s.link_kind_wrong:7d}  (a parent link for a continued track, "
                     "or back)")
    return "\n".join(lines)
