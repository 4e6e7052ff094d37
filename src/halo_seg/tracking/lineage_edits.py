"""The lineage side of correcting a tracking (tracking.edit): what an edit does to the rows
{track: [first time point, last time point, mother or 0]} and which relabellings of the voxels it
needs, refused with the reason where it would make the lineage wrong."""
from __future__ import annotations

import numpy as np

from ..io.volume import VolumeError


def rows_of(lineage) -> dict[int, list[int]]:
    return {int(r[0]): [int(r[1]), int(r[2]), int(r[3])] for r in np.asarray(lineage).reshape(-1, 4).tolist()}


def lineage_array(rows: dict) -> np.ndarray:
    return np.array([[k, *rows[k]] for k in sorted(rows)], np.int64).reshape(-1, 4)


def _track(rows: dict, track: int, what: str = "track") -> list[int]:
    if track not in rows:
        raise VolumeError(f"there is no {what} {track} (tracks: {_ids_text(rows)})")
    return rows[track]


def describe(rows: dict, track: int) -> str:
    """A track's time points, mother and daughters, in words."""
    first, last, mother = _track(rows, track)
    daughters = _daughters(rows, track)
    return (f"track {track}: time points {first} to {last}; mother {mother or 'none'}; "
            f"daughters {', '.join(map(str, daughters)) or 'none'}")


def _ids_text(rows: dict) -> str:
    ids = sorted(rows)
    return "none" if not ids else (f"{ids[0]} to {ids[-1]}" if len(ids) > 3 else ", ".join(map(str, ids)))


def _daughters(rows: dict, track: int) -> list[int]:
    return sorted(k for k, (_, _, p) in rows.items() if p == track)


def plan(rows: dict, points: np.ndarray, op: str, a: int, b: int | None = None,
         t: int | None = None) -> tuple[dict, list, str]:
    """The lineage after the edit ``op`` (rows {track: [first, last, parent]}), the relabellings
    [(old, new, t0, t1)] it needs, and what it does in words. ``points``: the Tracks rows (track,
    t, z, y, x), which say at which time points a track was seen (it may skip some: gap closing).
    Refuses, naming why, what would make the lineage wrong (a mother ending after her daughter
    began, a join of tracks seen at one time point)."""
    rows = {k: list(v) for k, v in rows.items()}
    if op == "join":   # b continues a
        if a == b:
            raise VolumeError(f"a track cannot continue itself (track {a} twice)")
        fa, la, _ = _track(rows, a)
        fb, lb, pb = _track(rows, b)
        if fb <= la:
            raise VolumeError(f"track {b} (time points {fb} to {lb}) begins before track {a} ends ({fa} to {la}): "
                              f"a track can continue only one that ended before it; if the two cells' ids were "
                              f"switched where they crossed, swap tracks {a} and {b} from time point {fb}")
        lost = [d for d in _daughters(rows, a) if d != b]   # a no longer ends: it did not divide
        for d in lost:
            rows[d][2] = 0
        for d in _daughters(rows, b):
            rows[d][2] = a
        rows[a][1] = lb
        del rows[b]
        text = f"track {b} continues track {a} (time points {fa} to {lb})"
        if lost:
            text += f"; {plural(lost, 'track')} no longer {'has' if len(lost) == 1 else 'have'} a mother"
        if pb and pb != a:
            text += f"; track {pb} is no longer a mother of it"
        return rows, [(b, a, fb, lb)], text
    if op == "cut":    # a from time point b on is a new track
        fa, la, _ = _track(rows, a)
        t = int(b)
        if not fa < t <= la:
            raise VolumeError(f"track {a} is seen at time points {fa} to {la}: a cut at {t} must fall after its "
                              f"first time point and at or before its last ({fa + 1} to {la})" if la > fa else
                              f"track {a} is seen at one time point ({fa}): there is nothing to cut")
        mine = points[points[:, 0] == a, 1]
        new = max(rows) + 1
        rows[new] = [int(mine[mine >= t].min()), la, 0]   # seen again after a gap, perhaps
        for d in _daughters(rows, a):
            rows[d][2] = new
        rows[a][1] = int(mine[mine < t].max())
        return rows, [(a, new, t, la)], f"track {a} from time point {t} on is track {new}"
    if op == "swap":   # a and b exchange what they are from time point t on (an id switch where cells crossed)
        return _swap(rows, points, a, b, t)
    if op == "mother":  # a is b's mother (a = 0: b has none)
        fb, lb, pb = _track(rows, b)
        if a == 0:
            rows[b][2] = 0
            return rows, [], f"track {b} has no mother" + (f" (was {pb})" if pb else " (had none)")
        if a == b:
            raise VolumeError(f"a track cannot be its own mother (track {a})")
        fa, la, _ = _track(rows, a, "mother track")
        if la >= fb:
            raise VolumeError(f"track {a} (time points {fa} to {la}) does not end before track {b} begins ({fb}): "
                              f"a mother ends where her daughters begin; cut track {a} at {fb} first if it "
                              "divided there")
        rows[b][2] = a
        return rows, [], f"track {a} is track {b}'s mother" + (f" (was {pb})" if pb and pb != a else "")
    if op == "delete":
        fa, la, _ = _track(rows, a)
        lost = _daughters(rows, a)
        for d in lost:
            rows[d][2] = 0
        del rows[a]
        return rows, [(a, 0, fa, la)], f"track {a} deleted (time points {fa} to {la})" + (
            f"; {plural(lost, 'track')} no longer {'has' if len(lost) == 1 else 'have'} a mother" if lost else "")
    raise VolumeError(f"unknown edit {op!r}: join, cut, swap, mother or delete")


def _swap(rows: dict, points: np.ndarray, a: int, b: int, t: int | None) -> tuple[dict, list, str]:
    if a == b:
        raise VolumeError(f"a track cannot swap with itself (track {a} twice)")
    if t is None:
        raise VolumeError("a swap needs the time point from which the two tracks exchange")
    t = int(t)
    (fa, la, _), (fb, lb, _) = _track(rows, a), _track(rows, b)
    if fa >= t or fb >= t:
        raise VolumeError(f"tracks {a} ({fa} to {la}) and {b} ({fb} to {lb}) must both be seen before time point {t} "
                          "to swap from there")
    if la < t and lb < t:
        raise VolumeError(f"neither track {a} ({fa} to {la}) nor {b} ({fb} to {lb}) is seen from time point {t} on: "
                          "nothing to swap")
    seen = {k: points[points[:, 0] == k, 1] for k in (a, b)}
    for k, other in ((a, b), (b, a)):
        rows[k][1] = int(max(seen[k][seen[k] < t].max(), seen[other].max() if seen[other].max() >= t else -1))
    born = {k: _daughters(rows, k) for k in (a, b)}
    for k, other, last in ((a, b, la), (b, a, lb)):
        if last >= t:   # she divided after the swap point: her daughters follow her tail
            for d in born[k]:
                rows[d][2] = other
    lost = [d for k in (a, b) for d in _daughters(rows, k) if rows[k][1] >= rows[d][0]]
    for d in lost:   # a mother who no longer ends before her daughter begins
        rows[d][2] = 0
    top = max(la, lb)
    tmp = max(rows) + 1   # a free id, for the moment the two are exchanged
    text = f"tracks {a} and {b} swapped from time point {t} on"
    if lost:
        text += f"; {plural(sorted(lost), 'track')} no longer {'has' if len(lost) == 1 else 'have'} a mother"
    return rows, [(a, tmp, t, top), (b, a, t, top), (tmp, b, t, top)], text


def plural(ids, word) -> str:
    return f"{word} {ids[0]}" if len(ids) == 1 else f"{word}s {', '.join(map(str, ids))}"


def rows_from_points(points: np.ndarray, before: dict) -> dict:
    """The lineage the Tracks rows give: each track's first and last time point; its mother kept
    where she still exists and ends before it begins."""
    rows = {}
    for k in np.unique(points[:, 0]).astype(np.int64).tolist():
        ts = points[points[:, 0] == k, 1]
        rows[k] = [int(ts.min()), int(ts.max()), before.get(k, [0, 0, 0])[2]]
    for k, (first, _, mother) in rows.items():
        if mother and (mother not in rows or rows[mother][1] >= first):
            rows[k][2] = 0
    return rows


def span_of(relabels) -> tuple | None:
    return (min(r[2] for r in relabels), max(r[3] for r in relabels)) if relabels else None


def division_count(rows: dict) -> int:
    return len({p for _, _, p in rows.values() if p})
