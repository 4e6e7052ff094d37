"""What linking needs to know of a time point's object ids, read in slabs of whole slices (a frame
of a light-sheet time-lapse may be larger than memory): each object's size, centroid and class,
and the voxels two time points' objects have in common."""
from __future__ import annotations

import numpy as np

from ..io.labels import read_label_slab, slabs
from .link import Objects

SLAB_VOXELS = 1 << 23


def pair_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows (a value, b value, count) of the value pairs found at the same voxels."""
    if not a.size:
        return np.zeros((0, 3), np.int64)
    key = np.stack([a.astype(np.int64), b.astype(np.int64)], 1)
    pairs, counts = np.unique(key, axis=0, return_counts=True)
    return np.concatenate([pairs, counts[:, None]], 1)


def summed_rows(rows: list[np.ndarray], width: int) -> np.ndarray:
    """Rows of (key..., value...) from every slab, summed per key (the first ``width`` columns)."""
    if not rows:
        return np.zeros((0, width + 1), np.int64)
    allr = np.concatenate(rows)
    keys, inv = np.unique(allr[:, :width], axis=0, return_inverse=True)
    sums = np.zeros((len(keys), allr.shape[1] - width), allr.dtype)
    np.add.at(sums, inv.ravel(), allr[:, width:])
    return np.concatenate([keys, sums], 1)


def frame_objects(ids, t: int, classes=None, cancel=None) -> Objects:
    """The objects of one time point's ids (Z, Y, X; any array): sizes, centroids (voxel z, y, x)
    and, with ``classes`` (the class labels they were made from), each one's class."""
    shape = tuple(ids.shape)
    step, starts = slabs(shape, SLAB_VOXELS)
    keys, sums, cls = [], [], []
    grid = np.indices(shape[1:])
    for z0 in starts:
        lab = read_label_slab(ids, z0, step, cancel)
        fg = lab > 0
        if not fg.any():
            continue
        zz = np.broadcast_to(np.arange(z0, z0 + lab.shape[0])[:, None, None], lab.shape)
        yy = np.broadcast_to(grid[0], lab.shape)
        xx = np.broadcast_to(grid[1], lab.shape)
        v = lab[fg].astype(np.int64)
        u, inv = np.unique(v, return_inverse=True)
        keys.append(u)   # kept as integers: a tool's ids may be hashes past float64's 2**53
        sums.append(np.stack([np.bincount(inv).astype(float)]
                             + [np.bincount(inv, weights=coord[fg]) for coord in (zz, yy, xx)], 1))
        if classes is not None:
            c = np.asarray(classes[z0:z0 + step])[fg].astype(np.int64)
            cls.append(np.unique(np.stack([v, c], 1), axis=0))
    if not keys:
        return Objects(t, np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)), np.zeros(0, np.int64))
    ids_, inv = np.unique(np.concatenate(keys), return_inverse=True)
    total = np.zeros((len(ids_), 4))
    np.add.at(total, inv.ravel(), np.concatenate(sums))
    voxels = total[:, 0]
    cent = total[:, 1:4] / voxels[:, None]
    kind = np.zeros(len(ids_), np.int64)
    if cls:
        pairs = np.unique(np.concatenate(cls), axis=0)   # an object of the engine's ids has one class
        kind[np.searchsorted(ids_, pairs[:, 0])] = pairs[:, 1]
    return Objects(t, ids_, voxels, cent, kind)


def frame_overlaps(a, b, a_classes=None, b_classes=None, only_a=None, cancel=None) -> np.ndarray:
    """Rows (id in a, id in b, voxels in common) of two time points' ids (same shape); with the
    class labels, only where the two classes agree (a nucleus never continues as a membrane);
    ``only_a``: the ids of ``a`` worth comparing (the others are skipped)."""
    shape = tuple(a.shape)
    step, starts = slabs(shape, SLAB_VOXELS)
    rows = []
    for z0 in starts:
        la, lb = read_label_slab(a, z0, step, cancel), read_label_slab(b, z0, step, cancel)
        both = (la > 0) & (lb > 0)
        if a_classes is not None and b_classes is not None:
            both &= np.asarray(a_classes[z0:z0 + step]) == np.asarray(b_classes[z0:z0 + step])
        if only_a is not None:
            both &= np.isin(la, only_a)
        if both.any():
            rows.append(pair_counts(la[both], lb[both]))
    return summed_rows(rows, 2).astype(np.int64)
