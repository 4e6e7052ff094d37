"""A tracking scored against a reference tracking (a Cell Tracking Challenge ground truth, or a
tracking corrected by hand), a time point at a time so that a light-sheet time-lapse fits.

Objects are matched by the challenge's rule: a reference object (a full mask or only a marker
inside the cell, as the challenge's TRA ground truth draws them) is found by the tracked object
covering more than half of it; one tracked object may so cover several (cells merged).

* detection: reference objects found (recall), tracked objects that find one (precision), and
  the tracked objects that find several (merges: each would need splitting);
* links: the reference's links, each an object to its own track's next time point it is in, or a
  mother's last to a daughter's first, made by the tracking between the objects that found them
  (recall), and the tracking's links that are a reference link so (precision); a link made as a
  division where the reference continues a track, or the other way, is counted apart;
* divisions: a reference division found when the tracked mother and daughters found the
  reference's mother and daughters (recall), and the tracking's divisions that are one (precision);
* whole tracks: reference tracks found at every time point they are in, by one and the same
  tracked track.

These are the quantities of the challenge's AOGM (its TRA score weighs merges, misses, extra
objects and wrong links into one number); the challenge's own tools, run on `track --ctc`'s
folder, give its official scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io.volume import VolumeError
from .frames import frame_objects, frame_overlaps


@dataclass
class _Frame:
    matched: dict            # reference id -> tracked id covering more than half of it
    covers: dict             # tracked id -> reference ids it covers so
    ref_ids: set
    ids: set


def _frame(ref, res, t: int, cancel=None) -> _Frame:
    sizes = frame_objects(ref, t, cancel=cancel)
    ids = frame_objects(res, t, cancel=cancel).ids
    size = dict(zip(sizes.ids.tolist(), sizes.voxels.tolist()))
    matched, covers = {}, {}
    for r, c, n in frame_overlaps(ref, res, cancel=cancel).tolist():
        if n > 0.5 * size[r]:
            matched[r] = c
            covers.setdefault(c, []).append(r)
    return _Frame(matched, covers, set(size), set(ids.tolist()))


def _edges(present: list[set], lineage: np.ndarray) -> dict:
    """{(t1, id1, t2, id2): is a division} of a tracking: a track from each time point it is in to
    the next one it is in (over a gap too), a mother's last to each daughter's first."""
    times: dict[int, list[int]] = {}
    for t, ids in enumerate(present):
        for k in ids:
            times.setdefault(k, []).append(t)
    edges = {}
    for k, ts in times.items():
        for a, b in zip(ts, ts[1:]):
            edges[(a, k, b, k)] = False
    for k, _, _, p in lineage.tolist():
        if p and p in times and k in times:
            edges[(times[p][-1], p, times[k][0], k)] = True
    return edges


def _divisions(edges: dict) -> dict:
    """{(t, mother): frozenset of (t, daughter)} from a tracking's division edges."""
    out: dict = {}
    for (t1, m, t2, d), div in edges.items():
        if div:
            out.setdefault((t1, m), set()).add((t2, d))
    return {k: frozenset(v) for k, v in out.items()}


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
    tracked_links: int
    tracked_links_right: int
    link_kind_wrong: int             # found links made as a division where the reference continues, or back
    reference_divisions: int
    divisions_found: int
    tracked_divisions: int
    tracked_divisions_right: int
    reference_tracks: int
    whole_tracks: int
    extra: dict = field(default_factory=dict)

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
    empty = _Frame({}, {}, set(), set())
    frames = [empty] * T
    for k, t in enumerate(scored):
        frames[t] = _frame(reference.labels[t], tracked.labels[t], t, cancel)
        if progress is not None:
            progress(k + 1, len(scored))
    ref_edges = _edges([f.ref_ids for f in frames], reference.lineage)
    res_edges = _edges([f.ids for f in frames], tracked.lineage)

    found_links = kind_wrong = 0
    for (t1, r1, t2, r2), div in ref_edges.items():
        c1, c2 = frames[t1].matched.get(r1), frames[t2].matched.get(r2)
        key = (t1, c1, t2, c2)
        if c1 is not None and c2 is not None and key in res_edges:
            found_links += 1
            kind_wrong += res_edges[key] != div
    right_links = sum(any((t1, r1, t2, r2) in ref_edges for r1 in frames[t1].covers.get(c1, ())
                          for r2 in frames[t2].covers.get(c2, ()))
                      for t1, c1, t2, c2 in res_edges)

    ref_divs, res_divs = _divisions(ref_edges), _divisions(res_edges)
    divs_found = sum((t, frames[t].matched.get(m)) in res_divs
                     and res_divs[(t, frames[t].matched[m])]
                     == frozenset((td, frames[td].matched.get(d)) for td, d in ds)
                     for (t, m), ds in ref_divs.items())

    def as_reference(t, c):   # the one reference object a tracked object covers, else None
        refs = frames[t].covers.get(c, ())
        return refs[0] if len(refs) == 1 else None
    mapped = {(t, as_reference(t, m)): frozenset((td, as_reference(td, d)) for td, d in ds)
              for (t, m), ds in res_divs.items()}
    divs_right = sum(ref_divs.get(k) == v for k, v in mapped.items())

    whole = tracks = 0
    for k in reference.lineage[:, 0].tolist():
        at = [f.matched.get(k, -1) for f in frames if k in f.ref_ids]
        tracks += bool(at)   # a track in the time points scored
        whole += bool(at) and -1 not in at and len(set(at)) == 1
    ref_objects = sum(len(f.ref_ids) for f in frames)
    tracked_objects = sum(len(f.ids) for f in frames)
    return TrackScores(
        timepoints=len(scored), reference_objects=ref_objects, found=sum(len(f.matched) for f in frames),
        tracked_objects=tracked_objects, tracked_found=sum(len(f.covers) for f in frames),
        merges=sum(len(v) - 1 for f in frames for v in f.covers.values()),
        reference_links=len(ref_edges), links_found=found_links, tracked_links=len(res_edges),
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
    if s.link_kind_wrong:
        lines.append(f"{'links of wrong kind':22s} {s.link_kind_wrong:7d}  (a division for a continued track, or back)")
    return "\n".join(lines)
