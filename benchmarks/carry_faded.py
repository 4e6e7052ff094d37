"""Cells that leave: does All to next time point tell an object whose cell is gone (carry.faded)?

A procedural time-lapse (halo_seg.tracking.phantom: 18 cells of radius 5 voxels on 32 x 96 x 128,
14 time points, 2 voxels a time point) seen through a field cut at x < 72, so that cells crawl out
of it, and from time point 1 on a third of the cells in it vanish at each time point (erased from
the image: a cell that died, or left along z). Every object of a time point, taken from the truth,
is carried to the next (carry_all, its contrast where it came from measured in that time point's
image); each carried object is, by the truth at the time point it was carried to, on a cell (over
half of its voxels on cells), on noise (under a fifth: its cell is gone, what its box found is
background) or between. Per kind: how many carry.faded flags, their contrast ratios (after over
before), and the prompt network's predicted Dice (the mean of seg.quality over its slices), which
does not tell noise from cells. ``--arms``: the time point carried to taken as the others (none),
the whole frame scaled by ``--dim`` (whole: another exposure, signal and noise alike), with shot
noise (shot: the noise by its square root) or the cells alone dimmer (signal); contrast ratios raw
and in noise units (carry.noise_level), which carry.faded compares.

    .venv/bin/python benchmarks/carry_faded.py [--seeds 904 905 906 907] [--arms none whole shot signal]
        [--dim 0.4] [--out benchmarks/results/carry_faded.json]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _results import save_results


# how a time point carried to is taken, of a time-lapse whose signal and noise are known apart:
# as the others; the whole frame scaled (another exposure time, laser power or gain: signal and
# noise alike); exposure with shot noise (noise by the square root); the cells alone dimmer
# (bleached at once, the camera's noise as it was)
ARMS = {"none": lambda s, n, f: s + n, "whole": lambda s, n, f: f * (s + n),
        "shot": lambda s, n, f: f * s + np.sqrt(f) * n, "signal": lambda s, n, f: f * s + n}


def movie(seed: int, field: int = 72):
    """(image, ids, signal, noise) (T, Z, Y, X) of the field, a third of the cells vanishing a time
    point; image = signal + noise from time point 1 on (signal and noise None at 0, the phantom's own)."""
    from scipy import ndimage as ndi

    from halo_seg.tracking.phantom import cell_timelapse
    tl = cell_timelapse(shape=(32, 96, 128), cells=18, timepoints=14, radius=5.0, speed=2.0, divisions=2, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    ids, image = tl.ids.copy(), tl.image.copy()
    signal, noise = np.zeros_like(image), np.zeros_like(image)
    for t in range(1, len(ids)):
        present = [k for k in np.unique(ids[t]) if k]
        gone = rng.choice(present, size=len(present) // 3, replace=False)
        ids[t][np.isin(ids[t], gone)] = 0
        signal[t] = ndi.gaussian_filter((ids[t] > 0).astype(np.float32), 1)
        noise[t] = rng.normal(scale=0.2, size=ids[t].shape).astype(np.float32)
        image[t] = signal[t] + noise[t]
    cut = (Ellipsis, slice(0, field))
    return image[cut], ids[cut], signal[cut], noise[cut]


def run(seed: int, arm: str = "none", dim: float = 0.4) -> list[dict]:
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry_all import carry_all
    image, ids, signal, noise = movie(seed)
    rows = []
    for t in range(len(image) - 1):
        labels = ids[t].astype(np.int32)
        segs = []
        after = ARMS[arm](signal[t + 1], noise[t + 1], dim).astype(np.float32)

        def make():
            segs.append(InteractiveSegmenter(after, device="cpu"))
            return segs[-1]
        for c, seg in zip(carry_all(make, labels, t, image=image[t]), segs):
            if c.box is None:
                rows.append({"seed": seed, "arm": arm, "t": t + 1, "label": c.label, "kind": "nothing found"})
                continue
            on = ids[t + 1][c.box][c.mask] > 0
            share = float(on.mean())
            q = seg.quality
            ratio = c.contrast[1] / c.contrast[0] if c.contrast[0] else None
            rows.append({"seed": seed, "arm": arm, "t": t + 1, "label": c.label, "voxels": int(c.mask.sum()),
                         "kind": "cell" if share >= 0.5 else "noise" if share < 0.2 else "between",
                         "cell_share": share, "faded": bool(c.faded), "before": c.contrast[0], "after": c.contrast[1],
                         "noise": list(c.noise), "ratio": ratio,
                         "noise_ratio": ratio * c.noise[0] / c.noise[1] if ratio is not None and all(c.noise) else None,
                         "predicted_dice": float(np.nanmean(q)) if np.isfinite(q).any() else None})
        print(f"seed {seed} {arm} t {t + 1}: {len(segs)} objects carried, "
              f"{sum(r['kind'] == 'noise' for r in rows if r['t'] == t + 1)} on noise, "
              f"{sum(r.get('faded', False) for r in rows if r['t'] == t + 1)} faded", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[904, 905, 906, 907])
    ap.add_argument("--arms", nargs="+", default=["none"], choices=sorted(ARMS),
                    help="how the time point carried to is taken (ARMS; each a run over the seeds)")
    ap.add_argument("--dim", type=float, default=0.4, help="the factor of the arms whole, shot and signal")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "carry_faded.json"))
    a = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    rows = [r for arm in a.arms for seed in a.seeds for r in run(seed, arm, a.dim)]

    def span(values):
        return f"{min(values):.2f}, {np.median(values):.2f}, {max(values):.2f}" if values else "-"
    print("| time point carried to | carried object lies on | objects | said faded | contrast ratio (min, median, "
          "max) | in noise units | predicted Dice (median) |")
    print("|---|---|---|---|---|---|---|")
    for arm in a.arms:
        for kind in ("cell", "between", "noise", "nothing found"):
            rs = [r for r in rows if r["kind"] == kind and r["arm"] == arm]
            if not rs:
                continue
            qs = [r["predicted_dice"] for r in rs if r.get("predicted_dice") is not None]
            print(f"| {arm} | {kind} | {len(rs)} | {sum(r.get('faded', False) for r in rs)} | "
                  f"{span([r['ratio'] for r in rs if r.get('ratio') is not None])} | "
                  f"{span([r['noise_ratio'] for r in rs if r.get('noise_ratio') is not None])} | "
                  + (f"{np.median(qs):.2f} |" if qs else "- |"))
    return save_results(a.out, {"seeds": a.seeds, "cells": 18, "timepoints": 14, "field_x": 72,
                                "vanish_per_timepoint": "a third", "arms": a.arms, "dim": a.dim}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
