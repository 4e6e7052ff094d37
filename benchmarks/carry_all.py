"""A field of cells followed with "All to next time point" (halo_seg.interactive.carry_all), no correction.

Every cell of a procedural time-lapse (halo_seg.tracking.phantom: 14 cells of radius 5 voxels, 3
divisions, 12 time points) is taken at time point 0 from the truth (as if segmented and committed),
then every object is carried to the next time point, and those to the next, to the last: what the
widget's All to next time point does when pressed 11 times and nothing is corrected (each object of
a time point is carried on; what it found is written where no object carried before it is, as the
widget commits them). Per time point: seconds (a new session per object, 2 CPU threads), and of the
objects carried, their Dice against the true cell they overlap most, the share lost (Dice < 0.5; an
object said to have faded into the background, carry.faded, or found only where another object is,
is not committed, as in the widget: lost; with --keep-own, a cell left out of an object that grew
over it and written as its own object counts as one more),
and the cells no object covers over half of (daughters are new cells: the mother's object carries
one or both). And the widget's flags: objects said to look like two cells touching that lie over
two true cells (a fifth of the object each at least: a mother's object over her daughters, which
nobody split here, or two touching cells one object took in) and over one (false alarms).

    .venv/bin/python benchmarks/carry_all.py [--seeds 700 701] [--speed 1.5] [--cells 14] [--no-keep-own]
        [--drop-neighbours] [--backward] [--out benchmarks/results/carry_all.json]
    (--backward: All to previous time point from the last; the time-lapse reversed)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _results import save_results


def run(seed: int, speed: float, drop: bool = False, keep_own: bool = False, cells: int = 14,
        backward: bool = False) -> list[dict]:
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry_all import carry_all, place_all
    from halo_seg.metrics import dice
    from halo_seg.tracking.phantom import cell_timelapse
    tl = cell_timelapse(shape=(32, 96, 96), cells=cells, timepoints=12, radius=5.0, speed=speed, divisions=3,
                        seed=seed)
    if backward:   # All to previous time point from the last: the same as carrying with direction -1
        tl.image, tl.ids = tl.image[::-1].copy(), tl.ids[::-1].copy()
    labels, records, rows = tl.ids[0].astype(np.int32), {}, []
    for t in range(1, len(tl.image)):
        t0 = time.perf_counter()
        out = carry_all(lambda: InteractiveSegmenter(tl.image[t], device="cpu"), labels, t - 1, records,
                        drop_neighbours=drop, image=tl.image[t - 1], keep_own=keep_own)
        seconds = time.perf_counter() - t0
        nxt, two = np.zeros_like(labels), {"right": 0, "false": 0}
        placed, gone, under, dim = place_all(out, nxt, 1)   # as the widget commits them
        records = {p.id: {**p.carried.record, "label": p.id} for p in placed}
        dices = [0.0] * (len(gone) + len(under) + len(dim))   # not committed (no cell leaves here): lost
        faded, took_in = len(dim), sum(c.took_in for c in out)
        carried = sum(c.grown_from is None for c in out)   # the objects of t - 1 (out also holds cells left out)
        left_out = sum(p.carried.grown_from is not None for p in placed)
        for p in placed:
            ids, counts = np.unique(tl.ids[t][p.carried.box][p.free], return_counts=True)
            counts, ids = counts[ids > 0], ids[ids > 0]
            true = tl.ids[t] == ids[counts.argmax()] if len(ids) else np.zeros(labels.shape, bool)
            free = np.zeros(labels.shape, bool)
            free[p.carried.box] = p.free
            dices.append(float(dice(free, true)))
            if p.carried.two:   # right where it lies over two cells (a fifth of it each at least): a mother's
                # object over her daughters, two cells one object took in; else a false alarm
                two["right" if (counts >= 0.2 * p.free.sum()).sum() >= 2 else "false"] += 1
        cells = [int(k) for k in np.unique(tl.ids[t]) if k]
        covered = sum(1 for k in cells if (nxt[tl.ids[t] == k] > 0).mean() > 0.5)
        rows.append({"seed": seed, "t": t, "objects": carried, "seconds": seconds, "per_object": seconds / carried,
                     "mean_dice": float(np.mean(dices)), "lost": float(np.mean(np.array(dices) < 0.5)),
                     "cells": len(cells), "cells_covered": covered,
                     # backward: the divisions whose mother is back at t (her daughters' first time point after it)
                     "divisions": len({int(p) for _, first, _, p in tl.lineage
                                       if p and first == (len(tl.image) - t if backward else t)}),
                     "two_right": two["right"], "two_false": two["false"], "faded": faded, "took_in": took_in,
                     "left_out_placed": left_out,
                     "dices": dices})
        print(f"seed {seed} t {t}: {carried} objects in {seconds:.1f}s, mean Dice {rows[-1]['mean_dice']:.3f}, "
              f"lost {rows[-1]['lost']:.2f}, cells covered {covered}/{len(cells)}, two {two}, faded {faded}, took in {took_in} "
              f"(written as their own {left_out})", flush=True)
        labels = nxt
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[700, 701])
    ap.add_argument("--speed", type=float, default=1.5)
    ap.add_argument("--drop-neighbours", action="store_true", help="carry_all's drop_neighbours")
    ap.add_argument("--keep-own", action=argparse.BooleanOptionalAction, default=True,
                    help="carry_all's keep_own (carry.grown_over; the default; --no-keep-own: off)")
    ap.add_argument("--cells", type=int, default=14, help="cells at the first time point (default %(default)s)")
    ap.add_argument("--backward", action="store_true",
                    help="All to previous time point from the last time point (each time-lapse reversed: the same "
                         "as carrying with direction -1); divisions then read as two daughters meeting their mother")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "carry_all.json"))
    a = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    rows = [r for seed in a.seeds for r in run(seed, a.speed, a.drop_neighbours, a.keep_own, a.cells, a.backward)]
    print("| time point | objects carried | seconds (median over seeds) | per object | mean Dice | lost | "
          "cells covered |")
    print("|---|---|---|---|---|---|---|")
    for t in sorted({r["t"] for r in rows}):
        rs = [r for r in rows if r["t"] == t]
        print(f"| {t} | {sum(r['objects'] for r in rs)} | {np.median([r['seconds'] for r in rs]):.1f} | "
              f"{np.median([r['per_object'] for r in rs]):.2f} | {np.mean([r['mean_dice'] for r in rs]):.3f} | "
              f"{np.mean([r['lost'] for r in rs]):.2f} | {sum(r['cells_covered'] for r in rs)}/"
              f"{sum(r['cells'] for r in rs)} |")
    per = np.median([r["per_object"] for r in rows])
    print(f"all: {sum(r['objects'] for r in rows)} objects carried, median {per:.2f} s an object; mean Dice "
          f"{np.mean([r['mean_dice'] for r in rows]):.3f}; said to look like two cells: {sum(r['two_right'] for r in rows)} "
          f"objects lying over two, {sum(r['two_false'] for r in rows)} over one (false alarms); "
          f"{sum(r['divisions'] for r in rows)} divisions; said faded (not committed; no cell leaves here): "
          f"{sum(r['faded'] for r in rows)}; grown over a touching cell, left out: {sum(r['took_in'] for r in rows)} "
          f"(written as their own objects: {sum(r['left_out_placed'] for r in rows)})")
    every = np.concatenate([r["dices"] for r in rows])
    print(f"over every object carried: mean Dice {every.mean():.4f}, lost {(every < 0.5).mean():.4f}, cells covered "
          f"{sum(r['cells_covered'] for r in rows)}/{sum(r['cells'] for r in rows)}")
    return save_results(a.out, {"seeds": a.seeds, "speed": a.speed, "drop_neighbours": a.drop_neighbours,
                                "keep_own": a.keep_own, "cells": a.cells, "timepoints": 12, "divisions": 3,
                                "backward": a.backward},
                        rows)


if __name__ == "__main__":
    raise SystemExit(main())
