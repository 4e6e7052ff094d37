"""Cells no object holds after All to next time point (halo_seg.interactive.new_cells): found, and
added as new objects?

A procedural time-lapse (halo_seg.tracking.phantom: 26 cells of radius 5 voxels on 32 x 96 x 160,
16 time points, 2.5 voxels a time point, 4 divisions) seen through a field cut at x < 64, so that
cells crawl in and out. The cells in the field at time point 0, from the truth, are carried on to
the last time point, every object a time point at a time (carry_all, placed where no object is, as
the widget's All to next time point pressed 15 times and `halo-seg carry` do), in two arms: carried
only, and with the regions no object holds (new_cells) segmented and added as new objects at each
time point (segment_new: `halo-seg carry --add-new`). A true cell is unheld where objects cover
under half of it and at least 30 % of a whole cell lies in the field (a cell that came in, a
daughter her mother's object left out), and bare where no object covers a tenth of it (what
new_cells is for: partly held ones are objects that took in two cells); a region found is on an
unheld cell, on a held one, or on none (over half of it). Per arm: the share of the cells in the field held, at the last time point
and over all; the regions found and where.

    .venv/bin/python benchmarks/new_cells.py [--seeds 914 ... 921] [--before] [--out benchmarks/results/new_cells.json]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _results import save_results


def run(seed: int, add: bool, before: bool = False) -> list[dict]:
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry_all import carry_all, place_all
    from halo_seg.interactive.new_cells import new_cells, segment_new
    from halo_seg.tracking.phantom import cell_timelapse
    tl = cell_timelapse(shape=(32, 96, 160), cells=26, timepoints=16, radius=5.0, speed=2.5, divisions=4, seed=seed)
    image, ids = tl.image[..., :64], tl.ids[..., :64]
    whole = np.median(np.bincount(tl.ids[0].ravel())[1:])   # a whole cell's voxels
    labels, records, rows = ids[0].astype(np.uint32), {}, []
    for t in range(1, len(image)):
        def make():
            return InteractiveSegmenter(image[t], device="cpu")
        carried = carry_all(make, labels.astype(np.int64), t - 1, records, image=image[t - 1])
        here = np.zeros(labels.shape, np.uint32)
        placed, *_ = place_all(carried, here, 1)
        t0 = time.perf_counter()
        found = new_cells(image[t], here, before=(image[t - 1], labels) if before else None)
        seconds = time.perf_counter() - t0
        truth = ids[t]
        cells = [int(k) for k in np.unique(truth) if k and (truth == k).sum() >= 0.3 * whole]
        unheld = [k for k in cells if (here[truth == k] > 0).mean() < 0.5]
        bare = [k for k in unheld if (here[truth == k] > 0).mean() < 0.1]   # no object on it: new to the objects
        hits, on_held, false = set(), 0, 0
        for c in found:
            under = truth[c.box][c.mask]
            ks, n = np.unique(under[under > 0], return_counts=True)
            if len(ks) and n.max() > 0.5 * c.mask.sum():
                k = int(ks[n.argmax()])
                hits.add(k) if k in unheld else None
                on_held += k not in unheld
            else:
                false += 1
        added = []
        if add and found:
            added, *_ = place_all(segment_new(make, found, t), here, len(placed) + 1)
        records = {p.id: {**p.carried.record, "label": p.id} for p in placed + added}
        held = sum(1 for k in cells if (here[truth == k] > 0).mean() >= 0.5)
        rows.append({"seed": seed, "add": add, "t": t, "cells": len(cells), "held": held, "unheld_before": len(unheld),
                     "bare": len(bare), "bare_found": len(hits & set(bare)),
                     "found": len(found), "unheld_found": len(hits), "on_held": on_held, "false": false,
                     "added": len(added), "seconds": seconds})
        print(f"seed {seed} add {add} t {t}: cells {len(cells)}, held {held}; unheld after carrying {len(unheld)}, "
              f"regions {len(found)} ({len(hits)} on unheld, {on_held} on held, {false} on none), added {len(added)} "
              f"({seconds:.2f}s)", flush=True)
        labels = here
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(914, 922)))
    ap.add_argument("--before", action="store_true",
                    help="new_cells(before=): only the regions where no unheld region lay at the time point before "
                         "(the widget's marks; `halo-seg carry --add-new` looks without)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "new_cells.json"))
    a = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    rows = [r for seed in a.seeds for add in (False, True) for r in run(seed, add, a.before)]
    last = max(r["t"] for r in rows)
    print("| arm | cells held, last time point | cells held, all time points | unheld after carrying: none on them "
          "(found) / partly held (found) | regions found | on unheld cells | on held cells | on none | new objects "
          "added | seconds to look (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for add in (False, True):
        rs = [r for r in rows if r["add"] == add]
        end = [r for r in rs if r["t"] == last]
        s = {k: sum(r[k] for r in rs) for k in ("cells", "held", "found", "unheld_found", "on_held", "false", "added",
                                                  "unheld_before", "bare", "bare_found")}
        print(f"| {'carried, new cells added' if add else 'carried only'} | "
              f"{sum(r['held'] for r in end)}/{sum(r['cells'] for r in end)} | {s['held']}/{s['cells']} "
              f"({s['held'] / s['cells']:.1%}) | {s['bare']} ({s['bare_found']}) / {s['unheld_before'] - s['bare']} "
              f"({s['unheld_found'] - s['bare_found']}) | {s['found']} | {s['unheld_found']} | {s['on_held']} | "
              f"{s['false']} | {s['added']} | {np.median([r['seconds'] for r in rs]):.2f} |")
    return save_results(a.out, {"seeds": a.seeds, "before": a.before, "cells": 26, "timepoints": 16, "field_x": 64, "speed": 2.5,
                                "divisions": 4}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
