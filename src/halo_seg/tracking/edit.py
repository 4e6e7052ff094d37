"""Correcting a tracking by hand, in its output (``halo-seg track-edit``, napari's Edit tracks).

A tracker's mistakes are few kinds: a track broken in two (join them), two cells' tracks swapped
where they cross or one cell's track going on as another's (cut it, then join the pieces right),
a division missed or invented (name or clear a mother), debris followed as a cell (delete it).
Each edit here changes the lineage, the Tracks rows and the voxels of the time points the edited
track spans, nothing else; and each can be undone, most recent first.

An edit is a few relabellings (track ``old`` becomes ``new`` from time point t0 to t1) plus the
lineage rows it changes. The relabellings are idempotent, so an edit stopped half way (the
process killed) is finished, not half applied, by the next edit or `track-edit` of the output:
before touching a voxel the edit is written to the output's attributes, and removed last.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.track_output import TRACKS
from ..io.volume import VolumeError

PENDING = "halo_seg_track_edit"   # an edit written down, its voxels perhaps not all changed yet
SLAB_VOXELS = 1 << 24


@dataclass
class Edited:
    """What an edit did, in words (for the command line and the widget's status line)."""
    text: str
    span: tuple | None        # the time points whose voxels changed (first, last), or None
    tracks: int
    divisions: int
    relabels: list = field(default_factory=list)   # [(old, new, t0, t1)]: what a copy in memory repeats
    voxels: tuple | None = None                    # ((N, 4) t, z, y, x; (N,) ids): voxels set by this edit

    def repeat_on(self, labels, cancel=None) -> None:
        """The same change made to a copy of the labels (napari's layer in memory), leaving
        anything else in it as it is."""
        for old, new, t0, t1 in self.relabels:
            relabel(labels, old, new, t0, t1, cancel)
        if self.voxels is not None:
            coords, ids = self.voxels
            labels[tuple(np.asarray(coords).T)] = ids


def _rows(lineage) -> dict[int, list[int]]:
    return {int(r[0]): [int(r[1]), int(r[2]), int(r[3])] for r in np.asarray(lineage).reshape(-1, 4).tolist()}


def _array(rows: dict) -> np.ndarray:
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


def plan(rows: dict, points: np.ndarray, op: str, a: int, b: int | None = None) -> tuple[dict, list, str]:
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
                              f"a track can continue only one that ended before it; cut track {a} at {fb} first "
                              "if the two were swapped")
        lost = [d for d in _daughters(rows, a) if d != b]   # a no longer ends: it did not divide
        for d in lost:
            rows[d][2] = 0
        for d in _daughters(rows, b):
            rows[d][2] = a
        rows[a][1] = lb
        del rows[b]
        text = f"track {b} continues track {a} (time points {fa} to {lb})"
        if lost:
            text += f"; {_plural(lost, 'track')} no longer {'has' if len(lost) == 1 else 'have'} a mother"
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
            f"; {_plural(lost, 'track')} no longer {'has' if len(lost) == 1 else 'have'} a mother" if lost else "")
    raise VolumeError(f"unknown edit {op!r}: join, cut, mother or delete")


def _plural(ids, word) -> str:
    return f"{word} {ids[0]}" if len(ids) == 1 else f"{word}s {', '.join(map(str, ids))}"


def relabel(labels, old: int, new: int, t0: int, t1: int, cancel=None) -> int:
    """Track ``old`` becomes ``new`` (0: background) in labels[t0 .. t1] (numpy or zarr, (T, Z, Y, X)),
    a slab at a time and only where a slab holds it; the voxels changed."""
    from ..io.labels import slabs
    step, starts = slabs(labels.shape[1:], SLAB_VOXELS)
    changed = 0
    for t in range(t0, t1 + 1):
        for z0 in starts:
            if cancel is not None and cancel():
                raise InterruptedError("stopped while relabelling; the next edit of this output finishes it")
            slab = np.asarray(labels[t, z0:z0 + step])
            hit = slab == old
            n = int(hit.sum())
            if n:
                slab = slab.copy() if not slab.flags.writeable else slab
                slab[hit] = new
                _write_where(labels, t, z0, slab, hit)
                changed += n
    return changed


def _write_where(labels, t: int, z0: int, slab: np.ndarray, hit: np.ndarray) -> None:
    """labels[t, z0:...] = slab, writing only the chunks (of a zarr array) where ``hit``: an edit of a
    cell rewrites the few chunks it lies in, not its whole time point."""
    chunks = getattr(labels, "chunks", None)
    if chunks is None or len(chunks) != 4:
        labels[t, z0:z0 + len(slab)] = slab
        return
    cz, cy, cx = chunks[1:]
    zs, ys, xs = np.nonzero(hit)
    for bz, by, bx in np.unique(np.stack([(zs + z0) // cz, ys // cy, xs // cx], 1), axis=0).tolist():
        za, zb = max(bz * cz, z0), min((bz + 1) * cz, z0 + len(slab))
        ya, yb, xa, xb = by * cy, (by + 1) * cy, bx * cx, (bx + 1) * cx
        labels[t, za:zb, ya:yb, xa:xb] = slab[za - z0:zb - z0, ya:yb, xa:xb]


def _points_after(points: np.ndarray, relabels: list) -> np.ndarray:
    points = points.copy()
    for old, new, t0, t1 in relabels:
        at = (points[:, 0] == old) & (points[:, 1] >= t0) & (points[:, 1] <= t1)
        points[at, 0] = new
    points = points[points[:, 0] > 0]
    return points[np.lexsort((points[:, 0], points[:, 1]))]


def _set_voxels(labels, t: int, zyx: np.ndarray, ids) -> None:
    """labels[t] at the voxels ``zyx`` set to ``ids``, reading and writing only the slices and
    chunks they lie in."""
    z0, z1 = int(zyx[:, 0].min()), int(zyx[:, 0].max()) + 1
    slab = np.array(labels[t, z0:z1])
    local = (zyx[:, 0] - z0, zyx[:, 1], zyx[:, 2])
    slab[local] = ids
    hit = np.zeros(slab.shape, bool)
    hit[local] = True
    _write_where(labels, t, z0, slab, hit)


def _differences(stored, painted, cancel=None) -> np.ndarray:
    """Rows (t, z, y, x, stored id, painted id) where two (T, Z, Y, X) label arrays differ, a slab
    at a time."""
    from ..io.labels import slabs
    step, starts = slabs(stored.shape[1:], SLAB_VOXELS)
    found = []
    for t in range(stored.shape[0]):
        for z0 in starts:
            if cancel is not None and cancel():
                raise InterruptedError("stopped while comparing the painted labels; nothing was written")
            a = np.asarray(stored[t, z0:z0 + step]).astype(np.int64)
            b = np.asarray(painted[t, z0:z0 + step]).astype(np.int64)
            at = np.argwhere(a != b)
            if len(at):
                where = tuple(at.T)
                found.append(np.column_stack([np.full(len(at), t), at + [z0, 0, 0], a[where], b[where]]))
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 6), np.int64)


class _TimePoint:
    """One time point of (T, Z, Y, X) labels, read a slab at a time by frame_objects."""

    def __init__(self, labels, t: int):
        self.labels, self.t = labels, t
        self.shape, self.dtype = tuple(labels.shape[1:]), labels.dtype

    def __getitem__(self, key):
        return self.labels[(self.t,) + (key if isinstance(key, tuple) else (key,))]


def _points_at(labels, times, points: np.ndarray, cancel=None) -> np.ndarray:
    """The Tracks rows with those of ``times`` counted again from the labels (each id's centroid)."""
    from .frames import frame_objects
    kept = [points[~np.isin(points[:, 1], times)]]
    for t in times:
        objs = frame_objects(_TimePoint(labels, int(t)), int(t), cancel=cancel)
        kept.append(np.column_stack([objs.ids.astype(float), np.full(len(objs.ids), float(t)), objs.centroids]))
    out = np.concatenate(kept).reshape(-1, 5)
    return out[np.lexsort((out[:, 0], out[:, 1]))]


def _rows_from_points(points: np.ndarray, before: dict) -> dict:
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


def _span(relabels) -> tuple | None:
    return (min(r[2] for r in relabels), max(r[3] for r in relabels)) if relabels else None


def _divisions(rows: dict) -> int:
    return len({p for _, _, p in rows.values() if p})


class TrackOutput:
    """A `track` output opened for editing (its labels changed in place)."""

    def __init__(self, path):
        import zarr
        self.path = Path(path)
        if not self.path.exists():
            raise VolumeError(f"{self.path} does not exist: give a `halo-seg track` output")
        try:
            self.grp = zarr.open_group(str(self.path), mode="r+")
        except Exception as exc:
            raise VolumeError(f"{self.path} is not a zarr group ({exc})") from exc
        if TRACKS not in self.grp.attrs or not {"labels", "tracks", "lineage"} <= set(self.grp.array_keys()):
            raise VolumeError(f"{self.path} is not a `halo-seg track` output (its labels, tracks and lineage)")
        self.labels = self.grp["labels"]

    @property
    def rows(self) -> dict:
        return _rows(self.grp["lineage"][...])

    @property
    def points(self) -> np.ndarray:
        return np.asarray(self.grp["tracks"][...], float).reshape(-1, 5)

    @property
    def history(self) -> list:
        return list(self.grp.attrs[TRACKS].get("edits", []))

    def finish_pending(self, cancel=None) -> str | None:
        """An edit stopped half way (its relabellings are idempotent): done now. What it was, or None."""
        job = self.grp.attrs.get(PENDING)
        if not job:
            return None
        self._apply(job, cancel)
        return job["text"]

    def edit(self, op: str, a: int, b: int | None = None, cancel=None) -> Edited:
        """``op``: "join" (track ``b`` continues track ``a``), "cut" (track ``a`` from time point
        ``b`` on is a new track), "mother" (track ``a`` is track ``b``'s mother; ``a`` 0: none),
        "delete" (track ``a``)."""
        self.finish_pending(cancel)
        before, points = self.rows, self.points
        after, relabels, text = plan(before, points, op, int(a), None if b is None else int(b))
        changed = {k: before.get(k) for k in set(before) | set(after) if before.get(k) != after.get(k)}
        depth = len(self.history)
        undo = {"text": text, "rows": {str(k): v for k, v in changed.items()},
                "relabels": [[new, old, t0, t1] for old, new, t0, t1 in reversed(relabels)]}
        if op == "delete":   # the voxels go to background: kept to be put back
            undo["voxels"] = self._keep_voxels(int(a), relabels[0][2], relabels[0][3], depth)
            undo["relabels"] = []
        undo["span"] = _span(relabels)
        self._apply({"text": text, "relabels": [list(r) for r in relabels], "depth": depth,
                     "rows": {str(k): after.get(k) for k in changed}, "push": undo}, cancel)
        return Edited(text, _span(relabels), len(after), _divisions(after), list(relabels))

    def undo(self, cancel=None) -> Edited:
        """The most recent edit taken back."""
        self.finish_pending(cancel)
        history = self.history
        if not history:
            raise VolumeError(f"{self.path} has no edit to undo")
        last = history[-1]
        job = {"text": f"undone: {last['text']}", "relabels": last["relabels"], "rows": last["rows"],
               "depth": len(history), "pop": True}
        voxels = None   # (t, z, y, x) and the ids the undo puts there; read before it drops what kept them
        if last.get("paint"):
            job["paint"] = {**last["paint"], "undo": True}
            changes = np.asarray(self.grp[last["paint"]["array"]][...]).reshape(-1, 6)
            voxels = (changes[:, :4], changes[:, 4])
        if last.get("voxels"):
            job["restore"] = last["voxels"]
            coords = np.asarray(self.grp[last["voxels"]["array"]][...]).reshape(-1, 4)
            voxels = (coords, np.full(len(coords), int(last["voxels"]["track"])))
        self._apply(job, cancel)
        rows = self.rows
        return Edited(job["text"], tuple(last["span"]) if last.get("span") else None, len(rows), _divisions(rows),
                      [tuple(r) for r in last["relabels"]], voxels)

    def differs(self, labels, cancel=None) -> bool:
        """Whether a copy of the labels (napari's layer) holds anything the output does not."""
        from ..io.labels import slabs
        if tuple(labels.shape) != tuple(self.labels.shape):
            return True
        step, starts = slabs(self.labels.shape[1:], SLAB_VOXELS)
        for t in range(self.labels.shape[0]):
            for z0 in starts:
                if cancel is not None and cancel():
                    raise InterruptedError("stopped while comparing the labels")
                if not np.array_equal(np.asarray(self.labels[t, z0:z0 + step]), np.asarray(labels[t, z0:z0 + step])):
                    return True
        return False

    def paint(self, labels, cancel=None) -> Edited:
        """What was painted into a copy of the labels (napari's brush on the tracked layer) written
        into the output: the voxels that differ, the Tracks rows of their time points counted
        again, each track's first and last time point from them (an id painted anew is a track of
        its own; one painted away is gone; a mother no longer ending before her daughter begins
        is no longer her mother). Undone as any edit."""
        self.finish_pending(cancel)
        if tuple(labels.shape) != tuple(self.labels.shape):
            raise VolumeError(f"the painted labels are {tuple(labels.shape)}, the tracking's {tuple(self.labels.shape)}")
        changes = _differences(self.labels, labels, cancel)
        if not len(changes):
            raise VolumeError("nothing painted: the labels hold what the tracking has")
        if changes[:, 5].min() < 0 or changes[:, 5].max() > np.iinfo(np.uint32).max:
            raise VolumeError("painted ids must be between 0 and 4294967295")
        depth = len(self.history)
        name = f"painted_{depth}"
        self.grp.create_array(name, data=changes, overwrite=True)
        times = np.unique(changes[:, 0]).tolist()
        before, points = self.rows, self.points
        after = _rows_from_points(_points_at(labels, times, points, cancel), before)
        changed = {k: before.get(k) for k in set(before) | set(after) if before.get(k) != after.get(k)}
        new = sorted(set(after) - set(before))
        gone = sorted(set(before) - set(after))
        text = (f"painted {len(changes)} voxels at time points {times[0]} to {times[-1]}"
                + (f"; {_plural(new, 'new track')}" if new else "") + (f"; {_plural(gone, 'track')} gone" if gone else ""))
        span = (times[0], times[-1])
        undo = {"text": text, "rows": {str(k): v for k, v in changed.items()}, "relabels": [], "span": span,
                "paint": {"array": name}}
        self._apply({"text": text, "relabels": [], "depth": depth, "paint": {"array": name},
                     "rows": {str(k): after.get(k) for k in changed}, "push": undo}, cancel)
        return Edited(text, span, len(after), _divisions(after), [], (changes[:, :4], changes[:, 5]))

    def _keep_voxels(self, track: int, t0: int, t1: int, k: int) -> dict:
        """A deleted track's voxels (t, z, y, x), stored in the output to be put back by undo."""
        from ..io.labels import slabs
        step, starts = slabs(self.labels.shape[1:], SLAB_VOXELS)
        found = []
        for t in range(t0, t1 + 1):
            for z0 in starts:
                at = np.argwhere(np.asarray(self.labels[t, z0:z0 + step]) == track)
                if len(at):
                    at[:, 0] += z0
                    found.append(np.column_stack([np.full(len(at), t), at]))
        coords = np.concatenate(found).astype(np.int32) if found else np.zeros((0, 4), np.int32)
        name = f"deleted_{k}"
        self.grp.create_array(name, data=coords, overwrite=True)
        pts = self.points
        return {"track": track, "array": name, "points": pts[pts[:, 0] == track].tolist()}

    def _apply(self, job: dict, cancel=None) -> None:
        self.grp.attrs[PENDING] = job   # written first: a stop from here on is finished by the next edit
        for old, new, t0, t1 in job["relabels"]:
            relabel(self.labels, int(old), int(new), int(t0), int(t1), cancel)
        points = _points_after(self.points, [tuple(r) for r in job["relabels"]])
        restore = job.get("restore")
        if restore:
            coords = np.asarray(self.grp[restore["array"]][...]).reshape(-1, 4)
            for t in np.unique(coords[:, 0]).tolist():
                c = coords[coords[:, 0] == t]
                _set_voxels(self.labels, t, c[:, 1:], restore["track"])
            points = np.concatenate([points[points[:, 0] != restore["track"]],   # not twice, when finished again
                                     np.asarray(restore["points"], float).reshape(-1, 5)])
            points = points[np.lexsort((points[:, 0], points[:, 1]))]
        painted = job.get("paint")
        if painted:   # rows t, z, y, x, old id, new id: the new ids set (or, undoing, the old ones)
            changes = np.asarray(self.grp[painted["array"]][...]).reshape(-1, 6)
            column = 4 if painted.get("undo") else 5
            for t in np.unique(changes[:, 0]).tolist():
                c = changes[changes[:, 0] == t]
                _set_voxels(self.labels, t, c[:, 1:4], c[:, column])
            points = _points_at(self.labels, np.unique(changes[:, 0]).tolist(), points, cancel)
        rows = self.rows
        for k, v in job["rows"].items():
            if v is None:
                rows.pop(int(k), None)
            else:
                rows[int(k)] = list(v)
        info = dict(self.grp.attrs[TRACKS])
        history = list(info.get("edits", []))
        # "depth": the history's length when the edit began, so that one finished again (stopped
        # after this point) is pushed or popped once
        if job.get("push") and len(history) == job["depth"]:
            history.append(job["push"])
        if job.get("pop") and len(history) == job["depth"]:
            gone = history.pop()
            kept = (gone.get("voxels") or gone.get("paint") or {}).get("array")
            if kept and kept in self.grp:
                del self.grp[kept]
        info.update(edits=history, tracks=len(rows), divisions=_divisions(rows))
        self.grp.create_array("tracks", data=points.reshape(-1, 5), overwrite=True)
        self.grp.create_array("lineage", data=_array(rows), overwrite=True)
        self.grp.attrs[TRACKS] = info
        del self.grp.attrs[PENDING]


def edit_tracks(path, op: str, a: int, b: int | None = None, cancel=None) -> Edited:
    """One edit of the track output at ``path`` (see TrackOutput.edit), or ``op`` "undo"."""
    out = TrackOutput(path)
    return out.undo(cancel) if op == "undo" else out.edit(op, a, b, cancel)


def save_tracking(path, dest, cancel=None) -> Path:
    """A copy of the track output ``path`` (its edits and their undo with it) at ``dest`` (a new
    path or an earlier track output, never the output itself), built beside it and moved there
    whole; a ``dest`` not ending in .zarr is a Cell Tracking Challenge result folder instead."""
    import shutil
    import tempfile

    from ..io.track_output import write_ctc
    from .run import check_track_output
    path, dest = Path(path), Path(dest)
    TrackOutput(path).finish_pending(cancel)
    if dest.suffix.lower() != ".zarr":
        return write_ctc(path, dest)
    check_track_output(dest, path)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent if dest.parent.exists() else None))
    try:
        shutil.copytree(path, work / dest.name)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(work / dest.name), str(dest))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest
