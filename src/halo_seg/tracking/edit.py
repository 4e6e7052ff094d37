"""Correcting a tracking by hand, in its output (``halo-seg track-edit``, napari's Edit tracks).

A tracker's mistakes are few kinds: a track broken in two (join them), two cells' ids switched
where they crossed (swap them from there), one cell's track going on as another's (cut it, join
the pieces right), a division missed or invented (name or clear a mother), debris followed as a
cell (delete it), a cell missed or merged (paint it, and write the strokes in).
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

from ..io.track_output import PENDING, TRACKS, in_order
from ..io.volume import VolumeError
from .lineage_edits import lineage_array, division_count, plural, rows_of, rows_from_points, span_of, plan
from .voxel_edits import SLAB_VOXELS, differences, points_after, points_at, set_voxels, relabel


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
        return rows_of(self.grp["lineage"][...])

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

    def edit(self, op: str, a: int, b: int | None = None, cancel=None, t: int | None = None) -> Edited:
        """``op``: "join" (track ``b`` continues track ``a``), "cut" (track ``a`` from time point
        ``b`` on is a new track), "swap" (tracks ``a`` and ``b`` exchange from time point ``t``
        on), "mother" (track ``a`` is track ``b``'s mother; ``a`` 0: none), "delete" (track ``a``)."""
        self.finish_pending(cancel)
        before, points = self.rows, self.points
        after, relabels, text = plan(before, points, op, int(a), None if b is None else int(b), t)
        changed = {k: before.get(k) for k in set(before) | set(after) if before.get(k) != after.get(k)}
        depth = len(self.history)
        undo = {"text": text, "rows": {str(k): v for k, v in changed.items()},
                "relabels": [[new, old, t0, t1] for old, new, t0, t1 in reversed(relabels)]}
        if op == "delete":   # the voxels go to background: kept to be put back
            undo["voxels"] = self._keep_voxels(int(a), relabels[0][2], relabels[0][3], depth)
            undo["relabels"] = []
        undo["span"] = span_of(relabels)
        self._apply({"text": text, "relabels": [list(r) for r in relabels], "depth": depth,
                     "rows": {str(k): after.get(k) for k in changed}, "push": undo}, cancel)
        return Edited(text, span_of(relabels), len(after), division_count(after), list(relabels))

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
        return Edited(job["text"], tuple(last["span"]) if last.get("span") else None, len(rows), division_count(rows),
                      [tuple(r) for r in last["relabels"]], voxels)

    def paint(self, labels, cancel=None, nothing_is_error: bool = True) -> Edited | None:
        """What was painted into a copy of the labels (napari's brush on the tracked layer) written
        into the output: the voxels that differ, the Tracks rows of their time points counted
        again, each track's first and last time point from them (an id painted anew is a track of
        its own; one painted away is gone; a mother no longer ending before her daughter begins
        is no longer her mother). Undone as any edit. Labels holding what the output has: an
        error, or with ``nothing_is_error`` False, None."""
        self.finish_pending(cancel)
        if tuple(labels.shape) != tuple(self.labels.shape):
            raise VolumeError(f"the painted labels are {tuple(labels.shape)}, "
                              f"the tracking's {tuple(self.labels.shape)}")
        changes = differences(self.labels, labels, cancel)
        if not len(changes):
            if not nothing_is_error:
                return None
            raise VolumeError("nothing painted: the labels hold what the tracking has")
        if changes[:, 5].min() < 0 or changes[:, 5].max() > np.iinfo(np.uint32).max:
            raise VolumeError("painted ids must be between 0 and 4294967295")
        depth = len(self.history)
        name = f"painted_{depth}"
        self.grp.create_array(name, data=changes, overwrite=True)
        times = np.unique(changes[:, 0]).tolist()
        before, points = self.rows, self.points
        after = rows_from_points(points_at(labels, times, points, cancel), before)
        changed = {k: before.get(k) for k in set(before) | set(after) if before.get(k) != after.get(k)}
        new = sorted(set(after) - set(before))
        gone = sorted(set(before) - set(after))
        text = (f"painted {len(changes)} voxels at time points {times[0]} to {times[-1]}"
                + (f"; {plural(new, 'new track')}" if new else "")
                + (f"; {plural(gone, 'track')} gone" if gone else ""))
        span = (times[0], times[-1])
        undo = {"text": text, "rows": {str(k): v for k, v in changed.items()}, "relabels": [], "span": span,
                "paint": {"array": name}}
        self._apply({"text": text, "relabels": [], "depth": depth, "paint": {"array": name},
                     "rows": {str(k): after.get(k) for k in changed}, "push": undo}, cancel)
        return Edited(text, span, len(after), division_count(after), [], (changes[:, :4], changes[:, 5]))

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
        # each relabelling is idempotent alone, not a swap's three in a row (a -> free id, b -> a,
        # free id -> b): those done are noted, so that one finished again resumes where it stopped
        for k, (old, new, t0, t1) in enumerate(job["relabels"]):
            if k < job.get("done", 0):
                continue
            relabel(self.labels, int(old), int(new), int(t0), int(t1), cancel)
            if len(job["relabels"]) > 1:
                job = {**job, "done": k + 1}
                self.grp.attrs[PENDING] = job
        points = self.points if job.get("points_done") else points_after(self.points,
                                                                         [tuple(r) for r in job["relabels"]])
        restore = job.get("restore")
        if restore:
            coords = np.asarray(self.grp[restore["array"]][...]).reshape(-1, 4)
            for t in np.unique(coords[:, 0]).tolist():
                c = coords[coords[:, 0] == t]
                set_voxels(self.labels, t, c[:, 1:], restore["track"])
            points = np.concatenate([points[points[:, 0] != restore["track"]],   # not twice, when finished again
                                     np.asarray(restore["points"], float).reshape(-1, 5)])
            points = in_order(points)
        painted = job.get("paint")
        if painted:   # rows t, z, y, x, old id, new id: the new ids set (or, undoing, the old ones)
            changes = np.asarray(self.grp[painted["array"]][...]).reshape(-1, 6)
            column = 4 if painted.get("undo") else 5
            for t in np.unique(changes[:, 0]).tolist():
                c = changes[changes[:, 0] == t]
                set_voxels(self.labels, t, c[:, 1:4], c[:, column])
            points = points_at(self.labels, np.unique(changes[:, 0]).tolist(), points, cancel)
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
            history.pop()
        info.update(edits=history, tracks=len(rows), divisions=division_count(rows))
        self.grp.create_array("tracks", data=points.reshape(-1, 5), overwrite=True)
        if len(job["relabels"]) > 1 and not job.get("points_done"):   # a swap's rows: not to be swapped twice
            self.grp.attrs[PENDING] = {**job, "points_done": True}
        self.grp.create_array("lineage", data=lineage_array(rows), overwrite=True)
        self.grp.attrs[TRACKS] = info
        del self.grp.attrs[PENDING]
        # what an undone edit kept (a deleted track's voxels, strokes' old ids) goes last: until the
        # edit is whole, finishing it again may need them
        kept = (job.get("restore") or job.get("paint") or {}).get("array") if job.get("pop") else None
        if kept and kept in self.grp:
            del self.grp[kept]


def edit_tracks(path, op: str, a: int, b: int | None = None, cancel=None, t: int | None = None) -> Edited:
    """One edit of the track output at ``path`` (see TrackOutput.edit), or ``op`` "undo"."""
    out = TrackOutput(path)
    return out.undo(cancel) if op == "undo" else out.edit(op, a, b, cancel, t)


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
