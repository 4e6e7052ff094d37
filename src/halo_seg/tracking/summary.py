"""A row per track: what a cell biologist reads off a tracking (when a cell was seen, how far and
fast it moved, which cell it came from, how large it was)."""
from __future__ import annotations

import numpy as np

from .link import FAST_STEP, Objects, motion_runs


def per_track(table: dict, lineage: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> dict[str, np.ndarray]:
    """From the table of every object at every time point (timepoint, track, parent, volume,
    centroid_z/y/x in voxels) and the lineage: per track its ``first`` and ``last`` time point,
    ``timepoints`` seen, ``parent`` and number of ``daughters``, ``mean_volume``, ``path_length``
    (the centroid's steps summed), ``displacement`` (first to last centroid) and ``speed``
    (path length per time point elapsed); lengths in the spacing's unit."""
    sp = np.asarray(spacing, float)
    tracks = lineage[:, 0] if len(lineage) else np.zeros(0, np.int64)
    out = {"track": tracks, "first": lineage[:, 1] if len(lineage) else tracks,
           "last": lineage[:, 2] if len(lineage) else tracks, "parent": lineage[:, 3] if len(lineage) else tracks}
    daughters = np.bincount(out["parent"], minlength=int(tracks.max()) + 1 if len(tracks) else 1)
    out["daughters"] = daughters[tracks] if len(tracks) else tracks
    order = np.lexsort((table["timepoint"], table["track"]))
    trk = table["track"][order]
    cent = np.stack([table[f"centroid_{a}"][order] for a in "zyx"], 1) * sp
    vol = table["volume"][order]
    starts = np.searchsorted(trk, tracks)
    ends = np.searchsorted(trk, tracks, side="right")
    seen, mean_vol, path, disp = (np.zeros(len(tracks)) for _ in range(4))
    for k, (a, b) in enumerate(zip(starts, ends)):
        seen[k] = b - a
        mean_vol[k] = vol[a:b].mean() if b > a else np.nan
        steps = np.linalg.norm(np.diff(cent[a:b], axis=0), axis=1)
        path[k] = steps.sum()
        disp[k] = np.linalg.norm(cent[b - 1] - cent[a]) if b > a else 0.0
    elapsed = (out["last"] - out["first"]).astype(float)
    out.update(timepoints=seen.astype(np.int64), mean_volume=mean_vol, path_length=path, displacement=disp,
               speed=np.divide(path, elapsed, out=np.zeros(len(tracks)), where=elapsed > 0))
    return out


def fast_motion(table: dict, link: str = "overlap", max_distance=None, shape=(), spacing=(1.0, 1.0, 1.0)
                ) -> list[dict]:
    """Where overlap linking alone was used: the runs of time points at which the cells had moved
    over FAST_STEP of their radius since the time point before (the runs link "auto" would have
    linked by distance, link.motion_runs), read off the table's objects (every object at every time
    point: its centroid in voxels and its voxels; a time point of ``shape`` (Z, Y, X) one plane:
    radii a disc's), not off the tracks, which overlap linking breaks where the cells are fast; a
    cell may then overlap where its neighbour was more than where it was itself, and linking by
    distance keeps more tracks whole (on the procedural time-lapses from about half a radius on,
    benchmarks/README.md). Empty where none, or where linking was by distance or with a max distance."""
    tp = np.asarray(table["timepoint"])
    if link != "overlap" or max_distance is not None or not len(tp):
        return []
    order = np.argsort(tp, kind="stable")
    ts, starts = np.unique(tp[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    cent = np.stack([np.asarray(table[f"centroid_{a}"], float) for a in "zyx"], 1)[order]
    vox = np.asarray(table["voxels"], float)[order]
    at = {int(t): (a, b) for t, a, b in zip(ts, starts, ends)}
    # the table has no row for a time point without objects: such a time point is one of no cells,
    # as the Linker sees it (the cells' motion is not measured across it, two steps taken for one)
    frames = (Objects(t, np.arange(1, b - a + 1), vox[a:b], cent[a:b], np.zeros(b - a, np.int64))
              for t, (a, b) in ((t, at.get(t, (0, 0))) for t in range(int(ts[0]), int(ts[-1]) + 1)))
    runs = motion_runs(frames, spacing, planar=len(shape) == 3 and shape[0] == 1)
    return [r for r in runs if r["link"] == "distance"]


def _span(lo_hi, fmt: str = ".3g") -> str:
    """The least and most of a run's figure, one number where they read the same."""
    lo, hi = (f"{v:{fmt}}" for v in lo_hi)
    return lo if lo == hi else f"{lo}-{hi}"


def _when(c: dict, unit: str) -> str:
    """A run of Linker.choices's time points, and the cells' motion over them."""
    when = f"time point {c['first']}" if c["first"] == c["last"] else f"time points {c['first']}-{c['last']}"
    return (f"{when} (the cells' median step {_span(c['step'])} {unit} a time point, {_span(c['of_radius'], '.2f')} "
            f"of their radius ({_span(c['radius'])} {unit}))")


def _run_text(c: dict, unit: str) -> str:
    """One run of Linker.choices: how it was linked, at which time points, and the cells' motion."""
    if c["link"] == "distance":
        return f"by distance within {_span(c['reach'], 'g')} {unit} at {_when(c, unit)}"
    return f"by overlap at {_when(c, unit)}"


def motion_text(fast: list, unit: str | None, most: int = 3) -> str:
    """fast_motion's runs said: when the cells moved so, and how far."""
    u = unit or "voxel units"
    said = "; ".join(f"at {_when(c, u)}" for c in fast[:most])
    more = f" and {len(fast) - most} more runs of time points" if len(fast) > most else ""
    return (f"cells moved over {FAST_STEP:g} of their radius a time point {said}{more}: overlap may pair a cell with "
            "where its neighbour was")


def fast_reach(fast: list) -> float:
    """A max distance for linking fast_motion's runs by distance: about two of their fastest median step."""
    return max(c["reach"][1] for c in fast)


def chosen_text(choices: list, unit: str | None, most: int = 4) -> str:
    """What link "auto" chose, and why (the Linker's ``choices``: a run of time points linked alike
    each; empty: it could not tell), the first ``most`` runs and the last said."""
    if not choices:
        return ("linked by overlap: too few objects at consecutive time points to measure how far the cells move "
                "(linking chosen from the motion)")
    u = unit or "voxel units"
    said = [_run_text(c, u) for c in (choices if len(choices) <= most + 1 else choices[:most] + choices[-1:])]
    if len(choices) > most + 1:
        said.insert(most, f"... {len(choices) - most - 1} more changes")
    return (f"linked {'; '.join(said)}; chosen at each time point, by distance where the cells moved over "
            f"{FAST_STEP:g} of their radius (overlap may then pair a cell with where its neighbour was)")


def format_tracks(rows: dict, unit: str | None, most: int = 20) -> str:
    """The ``most`` longest-lived tracks as text, then the counts."""
    n = len(rows["track"])
    if n == 0:
        return "no tracks (no object at any time point)"
    u = unit or "voxel units"
    order = np.lexsort((rows["track"], -rows["timepoints"]))[:most]
    lines = [f"{'track':>7} {'time points':>13} {'parent':>7} {'daughters':>9} {'mean volume':>12} "
             f"{'path':>9} {'speed':>9}   (lengths in {u}, speed per time point)"]
    for i in order:
        lines.append(f"{int(rows['track'][i]):>7} {int(rows['first'][i]):>6}-{int(rows['last'][i]):<6} "
                     f"{int(rows['parent'][i]):>7} {int(rows['daughters'][i]):>9} {rows['mean_volume'][i]:>12.4g} "
                     f"{rows['path_length'][i]:>9.3g} {rows['speed'][i]:>9.3g}")
    if n > most:
        lines.append(f"... {n - most} shorter tracks (--summary writes them all)")
    divided = int((rows["daughters"] > 0).sum())
    lines.append(f"{n} tracks, {divided} of them divided")
    return "\n".join(lines)


def track_table(labels, points: np.ndarray, spacing=(1.0, 1.0, 1.0), cancel=None) -> dict[str, np.ndarray]:
    """What per_track reads (timepoint, track, volume, centroid_z/y/x in voxels) from a track
    output's labels (T, Z, Y, X) and Tracks rows (track, t, z, y, x): after a tracking was edited,
    each object's volume counted again a time point at a time, its centroid as it was."""
    points = np.asarray(points, float).reshape(-1, 5)
    track, t = points[:, 0].astype(np.int64), points[:, 1].astype(np.int64)
    volume = np.zeros(len(points))
    voxel = float(np.prod(spacing))
    for s in np.unique(t).tolist():
        if cancel is not None and cancel():
            raise InterruptedError("stopped while counting the tracks' voxels")
        counts = np.bincount(np.asarray(labels[s]).ravel().astype(np.int64))
        at = t == s
        volume[at] = counts[np.minimum(track[at], len(counts) - 1)] * (track[at] < len(counts)) * voxel
    return {"timepoint": t, "track": track, "volume": volume, "centroid_z": points[:, 2], "centroid_y": points[:, 3],
            "centroid_x": points[:, 4]}
