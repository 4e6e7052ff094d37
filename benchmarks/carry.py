"""Following a cell through a time-lapse with the interactive widget's Next time point.

One box on the cell's largest slice at the first time point; at each later time point the box is
carried from the object segmented at the one before (halo_seg.interactive.carry, what the widget
does), with no correction, and the object propagated through the time point's volume. Compared:
the carried box where the object was ("not moved"), the carried box moved by the object's last
step (no step at the first carry), that box replaced by the tight box of what the slice's
segmentation found in it ("boxed again", the shipped rule, chosen on seeds 0-3: ``--first-seed
0``), half the last step, and a tight box from the truth at every time point (what drawing a new
box each time gives). Procedural time-lapses (halo_seg.tracking.phantom:
balls of radius 5 voxels moving with a persistent velocity, no divisions), seeds 300 on (not used to
choose the rule), 5 cells a seed, 6 time points. Dice of each carried time point against the true
cell; mean and minimum over cells and time points, and the share of time points where the cell was
lost (Dice < 0.5; a lost cell stays lost, as nobody corrected it).

    .venv/bin/python benchmarks/carry.py [--speeds 1.5 3] [--seeds 4] [--first-seed 300] [--out results/carry.json]
"""
from __future__ import annotations

import argparse

import numpy as np

from _results import save_results

RULES = ("true box", "carried, not moved", "carried, moved by the last step", "moved, then boxed again",
         "moved by half the last step")


def follow(image, truth, rule: str) -> list[float]:
    """Dice at time points 1.. of one cell (``truth`` (T, Z, Y, X) bool) followed by ``rule``."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import box_again, carried_box, carry_record
    from halo_seg.interactive.roi import mask_bbox
    from halo_seg.metrics import dice
    z = int(truth[0].sum((1, 2)).argmax())
    seg = InteractiveSegmenter(image[0], device="cpu")
    seg.add_box(z, *mask_bbox(truth[0, z]))
    pred, record, out = seg.propagate(), None, []
    for t in range(1, len(image)):
        if pred.any():
            box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(pred))
            record = carry_record(pred, box, 0, t - 1, 1, record if rule != RULES[1] else None)
        seg = InteractiveSegmenter(image[t], device="cpu")
        if rule == RULES[0]:
            zt = int(truth[t].sum((1, 2)).argmax())
            seg.add_box(zt, *mask_bbox(truth[t, zt]))
        elif record is not None:
            half = rule == RULES[4] and record["step"] is not None
            zt, b = carried_box(dict(record, step=record["step"] / 2) if half else record, image.shape[1:])
            seg.add_box(zt, *b)
            if rule == RULES[3]:
                box_again(seg, zt)
        else:   # lost at the time point before: nothing to carry
            out.append(0.0)
            pred = np.zeros_like(pred)
            continue
        pred = seg.propagate()
        out.append(float(dice(pred, truth[t])))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speeds", type=float, nargs="+", default=[1.5, 3.0])
    ap.add_argument("--seeds", type=int, default=4, help="time-lapses per speed")
    ap.add_argument("--first-seed", type=int, default=300, help="the first (0: the seeds the rule was chosen on)")
    ap.add_argument("--cells", type=int, default=5, help="cells followed per time-lapse")
    ap.add_argument("--out", default="results/carry.json")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    from halo_seg.tracking.phantom import cell_timelapse
    rows = []
    for speed in a.speeds:
        dices = {r: [] for r in RULES}
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            tl = cell_timelapse(shape=(32, 96, 96), cells=10, timepoints=6, radius=5.0, speed=speed, divisions=0,
                                seed=seed)
            # cells present at every time point, the first few
            whole = [k for k in np.unique(tl.ids[0])[1:] if all((tl.ids[t] == k).any() for t in range(6))]
            for k in whole[:a.cells]:
                for rule in RULES:
                    dices[rule] += follow(tl.image, tl.ids == k, rule)
        for rule in RULES:
            d = np.array(dices[rule])
            rows.append({"speed": speed, "rule": rule, "n": int(d.size), "mean_dice": float(d.mean()),
                         "min_dice": float(d.min()), "lost": float((d < 0.5).mean())})
    print("| speed (voxels a time point, radius 5) | box | time points | mean Dice | min Dice | lost |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['speed']:g} | {r['rule']} | {r['n']} | {r['mean_dice']:.3f} | {r['min_dice']:.3f} | "
              f"{r['lost']:.3f} |")
    return save_results(a.out, {"speeds": a.speeds, "seeds": list(range(a.first_seed, a.first_seed + a.seeds)),
                                "cells": a.cells},
                        rows)


if __name__ == "__main__":
    raise SystemExit(main())
