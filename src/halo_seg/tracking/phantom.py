"""A procedural time-lapse of moving, dividing cells whose true tracks are known: what the tracking
tests and benchmarks/tracking.py measure against (no annotated time-lapse ships with the project)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TimeLapse:
    image: np.ndarray      # (T, Z, Y, X) float32: bright cells on a noisy background
    ids: np.ndarray        # (T, Z, Y, X) uint16: each voxel's true track id (0: background)
    lineage: np.ndarray    # rows: track, first, last time point, parent track or 0


def cell_timelapse(shape=(24, 64, 64), cells: int = 8, timepoints: int = 6, radius: float = 4.0,
                   speed=1.5, divisions: int = 2, noise: float = 0.2, seed: int = 0,
                   persistence: float = 0.8, deform: float = 0.0) -> TimeLapse:
    """``cells`` balls of ``radius`` voxels that drift by about ``speed`` voxels a time point (a
    velocity kept with weight ``persistence`` plus jitter: 0.8 a cell crawling on, 0 a random
    walk whose direction is new at every time point; bouncing off the walls), ``divisions`` of them splitting in
    two (daughters of half the volume, apart along a random direction) at random time points.
    Touching cells are cut along the plane between their centres (each voxel belongs to the
    nearest centre), as a segmentation that kept them apart would. ``deform`` > 0: cells change
    shape as real ones do, each an ellipsoid whose semi-axes along z, y and x are ``radius`` times
    exp(u), u drifting a time point by 0.7 u plus a normal step of that deviation (0.2: axes within
    0.75 to 1.3 of the radius at one standard deviation), balls at the first time point; 0: balls
    throughout (for a seed, the same time-lapse as before the option). ``speed`` may be one per step
    instead (the step from time point t to t + 1 is ``speed[t]``, at least ``timepoints`` - 1 of them): cells
    that speed up or slow down."""
    steps = np.broadcast_to(np.asarray(speed, float), (max(timepoints, 1),)) if np.ndim(speed) == 0 \
        else np.asarray(speed, float)
    if steps.ndim != 1 or len(steps) < timepoints - 1 or not np.all(steps >= 0):
        raise ValueError(f"speed must be a number >= 0 or one per step ({timepoints - 1}), got {speed!r}")
    if len(steps) < timepoints:   # the last time point takes no step
        steps = np.append(steps, steps[-1] if len(steps) else 0.0)
    rng = np.random.default_rng(seed)
    lo = np.array([radius + 1] * 3, float)
    hi = np.array(shape, float) - radius - 2
    if np.any(hi <= lo):
        raise ValueError(f"cells of radius {radius} do not fit in {shape}")
    pos: list[np.ndarray] = []
    for _ in range(cells * 200):   # spread out: no two closer than 2.5 radii at the start
        p = rng.uniform(lo, hi)
        if all(np.linalg.norm(p - q) > 2.5 * radius for q in pos):
            pos.append(p)
        if len(pos) == cells:
            break
    if len(pos) < cells:
        raise ValueError(f"only {len(pos)} of {cells} cells of radius {radius} fit apart in {shape}")
    live = []   # [track, position, velocity, radius, ln of the semi-axes over the radius]
    lineage = {}
    for k, p in enumerate(pos, 1):
        d = rng.normal(size=3)
        live.append([k, p, steps[0] * d / np.linalg.norm(d), radius, np.zeros(3)])
        lineage[k] = [0, 0, 0]
    when = sorted(rng.integers(1, max(2, timepoints), size=divisions).tolist()) if timepoints > 1 else []
    ids = np.zeros((timepoints,) + tuple(shape), np.uint16)
    for t in range(timepoints):
        for _ in range(when.count(t)):
            older = [i for i, c in enumerate(live) if lineage[c[0]][0] < t]   # not one born this time point
            if not older:
                break
            k, p, v, r, u = live.pop(older[int(rng.integers(len(older)))])
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            for sign in (1, -1):
                nk = len(lineage) + 1
                lineage[nk] = [t, t, k]
                live.append([nk, np.clip(p + sign * 0.7 * r * d, lo, hi), v + sign * 0.5 * d, r / 2 ** (1 / 3),
                             u.copy()])
        ids[t] = _drawn(shape, live)
        for c in live:
            lineage[c[0]][1] = t
            if deform > 0:
                c[4] = 0.7 * c[4] + rng.normal(scale=deform, size=3)
            c[2] = persistence * c[2] + rng.normal(scale=0.3 * steps[t], size=3)
            c[2] *= steps[t] / max(np.linalg.norm(c[2]), 1e-6)
            c[1] = c[1] + c[2]
            out = (c[1] < lo) | (c[1] > hi)
            c[2][out] *= -1
            c[1] = np.clip(c[1], lo, hi)
    from scipy import ndimage as ndi
    image = ndi.gaussian_filter((ids > 0).astype(np.float32), (0, 1, 1, 1))
    image += rng.normal(scale=noise, size=image.shape).astype(np.float32)
    rows = np.array([[k, *v] for k, v in sorted(lineage.items())], np.int64).reshape(-1, 4)
    return TimeLapse(image.astype(np.float32), ids, rows)


def _drawn(shape, live) -> np.ndarray:
    """One time point's true ids: each voxel inside a cell goes to the cell whose surface it is
    deepest inside (touching balls meet at a plane); drawn cell by cell in its bounding box."""
    frame = np.zeros(shape, np.uint16)
    depth = np.zeros(shape, np.float32)
    for k, p, _, r, u in live:
        axes = r * np.exp(u)
        lo = np.maximum(np.floor(p - axes - 1).astype(int), 0)
        hi = np.minimum(np.ceil(p + axes + 2).astype(int), shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        zz, yy, xx = np.ogrid[box]
        # depth in the radius's units: a ball's r - distance; an ellipsoid's scaled to its axes
        d = r * (1 - np.sqrt(((zz - p[0]) / axes[0]) ** 2 + ((yy - p[1]) / axes[1]) ** 2
                             + ((xx - p[2]) / axes[2]) ** 2))
        better = (d >= 0) & ((frame[box] == 0) | (d > depth[box]))
        depth[box][better] = d[better]
        frame[box][better] = k
    return frame


def relabelled(ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each time point's ids renumbered at random (as a segmenter numbers each frame afresh), so
    a tracker cannot pass by keeping the true ids."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(ids)
    for t in range(len(ids)):
        present = np.unique(ids[t])
        present = present[present > 0]
        lut = np.zeros(int(ids[t].max()) + 1, ids.dtype)
        lut[present] = rng.permutation(len(present)) + 1
        out[t] = lut[ids[t]]
    return out


def link_scores(truth: np.ndarray, found: np.ndarray, truth_lineage: np.ndarray, found_lineage: np.ndarray) -> dict:
    """How well ``found`` (T, Z, Y, X track ids) follows ``truth``: each found object is matched to
    the true object it overlaps by more than half; ``links``: of the true links (an object to
    itself at the next time point, or a mother to a daughter), the fraction the found tracks make
    as well (recall), ``precision``: of the found links, the fraction that are true; ``divisions``:
    true divisions found (a found mother with two found daughters matching them), ``divisions_right``
    the share of found divisions that are true; ``whole_tracks``: true tracks matched (IoU over
    0.5) by one and the same found track at every time point the found labels have them (no swap,
    no break; a time point where an object was missing from the tracker's input breaks nothing);
    ``cells_matched``: the share of (cell, time point) the found labels match so (segmentation, not
    linking)."""
    T = len(truth)
    match = []   # per t: found id -> true id
    for t in range(T):
        a, b = truth[t].ravel().astype(np.int64), found[t].ravel().astype(np.int64)
        fg = (a > 0) & (b > 0)
        pairs, n = np.unique(np.stack([b[fg], a[fg]], 1), axis=0, return_counts=True)
        size_b = np.bincount(b)
        m = {int(f): int(g) for (f, g), c in zip(pairs, n) if c > 0.5 * size_b[f]}
        match.append(m)

    def links(lineage, present):
        """(t, id at t, id at t+1) for each link: a track to itself, a parent's last to its child's first."""
        out = set()
        for t in range(T - 1):
            for k in present[t] & present[t + 1]:
                out.add((t, k, k))
        for r in lineage:
            k, first, p = int(r[0]), int(r[1]), int(r[3])
            if p and first > 0 and p in present[first - 1] and k in present[first]:
                out.add((first - 1, p, k))
        return out
    tp = [set(np.unique(truth[t]).tolist()) - {0} for t in range(T)]
    fp = [set(np.unique(found[t]).tolist()) - {0} for t in range(T)]
    true_links = links(truth_lineage, tp)
    found_links = links(found_lineage, fp)
    mapped = {(t, match[t].get(a, -1), match[t + 1].get(b, -2)) for t, a, b in found_links}
    hit = len(true_links & mapped)
    def divisions(lineage):
        """{(time point before, mother): [daughters]} of a lineage."""
        out = {}
        for k, first, _, p in lineage.tolist():
            if p:
                out.setdefault((first - 1, p), []).append(k)
        return out
    mothers, fpar = divisions(truth_lineage), divisions(found_lineage)
    true_divs = {(t, m, frozenset(ds)) for (t, m), ds in mothers.items()}
    found_divs = {(t, match[t].get(m, -1), frozenset(match[t + 1].get(d, -2) for d in ds))
                  for (t, m), ds in fpar.items() if t + 1 < T}
    div_hit = len(true_divs & found_divs)
    # whole tracks: at every time point the tracker had the cell, one found object matches it (IoU
    # over 0.5: a watershed's border a voxel off the truth's is no break), the same one throughout
    whole, cells, cells_right = 0, 0, 0
    for k in truth_lineage[:, 0]:
        ids = set()
        for t in range(T):
            cell = truth[t] == k
            under = found[t][cell]
            if not under.any():
                continue   # absent, or missing from the tracker's input
            vals, n = np.unique(under[under > 0], return_counts=True)
            f = vals[n.argmax()]
            iou_f = n.max() / (cell.sum() + (found[t] == f).sum() - n.max())
            ids.add(int(f) if iou_f > 0.5 else -1)
            cells += 1
            cells_right += bool(iou_f > 0.5)
        whole += bool(ids) and len(ids) == 1 and -1 not in ids
    return {"links": hit / max(len(true_links), 1), "precision": hit / max(len(found_links), 1),
            "whole_tracks": whole / max(len(truth_lineage), 1), "cells_matched": cells_right / max(cells, 1),
            "divisions": div_hit / max(len(mothers), 1), "true_divisions": len(mothers),
            "divisions_right": len(found_divs & true_divs) / max(len(found_divs), 1),
            "found_divisions": len(fpar), "true_links": len(true_links)}
