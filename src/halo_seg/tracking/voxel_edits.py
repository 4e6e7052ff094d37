"""The voxel side of correcting a tracking (tracking.edit): relabelling a track over time points,
setting voxels, comparing painted labels with stored ones, and the Tracks rows counted again, all
a slab at a time and writing only the chunks a cell lies in."""
from __future__ import annotations

import numpy as np

from ..io.track_output import in_order

SLAB_VOXELS = 1 << 24


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
                write_where(labels, t, z0, slab, hit)
                changed += n
    return changed


def write_where(labels, t: int, z0: int, slab: np.ndarray, hit: np.ndarray) -> None:
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


def points_after(points: np.ndarray, relabels: list) -> np.ndarray:
    points = points.copy()
    for old, new, t0, t1 in relabels:
        at = (points[:, 0] == old) & (points[:, 1] >= t0) & (points[:, 1] <= t1)
        points[at, 0] = new
    points = points[points[:, 0] > 0]
    return in_order(points)


def set_voxels(labels, t: int, zyx: np.ndarray, ids) -> None:
    """labels[t] at the voxels ``zyx`` set to ``ids``, reading and writing only the slices and
    chunks they lie in."""
    z0, z1 = int(zyx[:, 0].min()), int(zyx[:, 0].max()) + 1
    slab = np.array(labels[t, z0:z1])
    local = (zyx[:, 0] - z0, zyx[:, 1], zyx[:, 2])
    slab[local] = ids
    hit = np.zeros(slab.shape, bool)
    hit[local] = True
    write_where(labels, t, z0, slab, hit)


def differences(stored, painted, cancel=None) -> np.ndarray:
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


def points_at(labels, times, points: np.ndarray, cancel=None) -> np.ndarray:
    """The Tracks rows with those of ``times`` counted again from the labels (each id's centroid)."""
    from .frames import frame_objects
    kept = [points[~np.isin(points[:, 1], times)]]
    for t in times:
        objs = frame_objects(_TimePoint(labels, int(t)), int(t), cancel=cancel)
        kept.append(np.column_stack([objs.ids.astype(float), np.full(len(objs.ids), float(t)), objs.centroids]))
    out = np.concatenate(kept).reshape(-1, 5)
    return in_order(out)
