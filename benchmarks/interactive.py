"""Interactive segmentation benchmark: Mem3D's protocol on Colin27 structures never trained on.

For each held-out AAL structure (the 12 subcortical ones): a tight box on the slice where the
object is largest, then 5 more rounds of one box (or an empty mask) on a chosen slice, propagating
after each. ``--prompt extreme`` gives four extreme points instead of each box (Mem3D scores both);
``--clicks N`` lets the user correct each prompted slice with up to N clicks (the largest error's
centre; with ``--strokes`` a stroke along its middle) before propagating, stopping at slice Dice 0.9. Slices are chosen by the network's
recommendation, at random, and by an oracle that knows the true per-slice Dice. Reports Dice per round, seconds per round, the Pearson r of predicted
vs true slice Dice, and the "fill between slices" baseline (exact masks on 1..6 slices).

    .venv/bin/python benchmarks/interactive.py [--weights PATH] [--structures 77 78] [--threads 2] [--quality head]
                                               [--prompt box|extreme] [--clicks N [--strokes]] [--axis 0|1|2]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from halo_seg import InteractiveSegmenter
from halo_seg.interactive.baseline import fill_between_curve
from halo_seg.interactive.simulate import run_session
from halo_seg.metrics import pearson
from halo_seg.samples import SUBCORTICAL, load_colin27_full, load_colin27_sample

TARGETS = {"one_box": 0.75, "six_rounds": 0.90, "pearson_r": 0.7, "round_seconds": 3.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="default")
    ap.add_argument("--structures", type=int, nargs="*", default=sorted(SUBCORTICAL))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--strategies", nargs="*", default=["recommend", "random", "oracle"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the round-time target is for 2 CPU cores)")
    ap.add_argument("--no-tta", dest="tta", action="store_false", help="no mirrored second pass")
    ap.add_argument("--quality", default="auto",
                    help="predicted slice Dice from: auto (the quality model shipped with the weights), head "
                         "(the network's head alone) or a quality model file")
    ap.add_argument("--prompt", choices=["box", "extreme"], default="box", help="the user's prompt each round")
    ap.add_argument("--clicks", type=int, default=0, help="corrective clicks per prompted slice, at most")
    ap.add_argument("--strokes", action="store_true", help="the corrections are strokes, not clicks")
    ap.add_argument("--axis", type=int, default=0,
                    help="slice the volume across this axis (0 axial, 1 coronal, 2 sagittal for Colin27); the "
                         "first box goes on the object's largest slice across it")
    ap.add_argument("--sample", action="store_true", help="use the shipped 2 mm sample (no ../shared needed)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "interactive.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = load_colin27_sample() if a.sample else load_colin27_full()
    vol = data.image
    rows, curves, pairs = [], {s: [] for s in a.strategies}, []
    secs = []
    meta = None
    for k in a.structures:
        truth = data.labels == k
        if not truth.any():
            continue
        name = SUBCORTICAL.get(k, str(k))
        base = fill_between_curve(np.moveaxis(truth, a.axis, 0), a.rounds)
        row = {"label": k, "name": name, "voxels": int(truth.sum()), "fill_between": base}
        for strat in a.strategies:
            seg = InteractiveSegmenter(vol, spacing=data.spacing, device=a.device, weights=a.weights, tta=a.tta,
                                       quality_model=None if a.quality == "head" else a.quality, axis=a.axis)
            meta = seg.weights_meta
            recs = run_session(seg, truth, a.rounds, strat, seed=k, prompt=a.prompt, clicks=a.clicks,
                               scribble=a.strokes)
            row[strat] = [r["dice"] for r in recs]
            curves[strat].append(row[strat])
            if strat == "recommend":
                row["seconds"] = [r["seconds"] for r in recs]
                row["slices"] = [r["slice"] for r in recs]
                row["clicks"] = [r["clicks"] for r in recs]
                secs += [x for x in row["seconds"] if x is not None]
                p = [pp for r in recs for pp in r["pairs"]]
                row["pearson_r"] = pearson(p)
                pairs += p
        rows.append(row)
        print(f"{name:14s} " + "  ".join(f"{s}: " + " ".join(f"{d:.2f}" for d in row[s]) for s in a.strategies)
              + "  fill: " + " ".join(f"{d:.2f}" for d in base), flush=True)
    mean = {s: np.mean(curves[s], 0).tolist() for s in a.strategies}
    mean["fill_between"] = np.mean([r["fill_between"] for r in rows], 0).tolist()
    summary = {
        "structures": len(rows),
        "volume_shape": list(vol.shape),
        "mean_dice_per_round": mean,
        "pearson_r_pooled": pearson(pairs),
        "pearson_r_median_per_structure": float(np.nanmedian([r["pearson_r"] for r in rows])),
        "round_seconds_median": float(np.median(secs)) if secs else None,
        "round_seconds_max": float(np.max(secs)) if secs else None,
        "prompt": a.prompt, "clicks": a.clicks, "strokes": a.strokes, "axis": a.axis,
        "clicks_made_per_round": (np.mean([r["clicks"] for r in rows], 0).tolist() if a.clicks and "recommend" in curves
                                  else None),
        "threads": a.threads, "device": a.device, "tta": a.tta, "quality": a.quality, "weights": meta and {k: meta.get(k) for k in ("path", "sha256", "iterations")},
        "machine": platform.platform(), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
    }
    print()
    print("| round | " + " | ".join(mean) + " |")
    print("|---" * (len(mean) + 1) + "|")
    for r in range(a.rounds):
        print(f"| {r + 1} | " + " | ".join(f"{mean[s][r]:.3f}" for s in mean) + " |")
    rec = mean.get("recommend")
    print()
    if rec:
        how = ("one box" if a.prompt == "box" else "one set of extreme points") + (
            f" and up to {a.clicks} {'strokes' if a.strokes else 'clicks'}" if a.clicks else "")
        print(f"{how}: {rec[0]:.3f} (target for one box >= {TARGETS['one_box']}); after {a.rounds} rounds: {rec[-1]:.3f} "
              f"(target >= {TARGETS['six_rounds']})")
    print(f"Pearson r predicted vs true slice Dice: pooled {summary['pearson_r_pooled']:.3f}, median per structure "
          f"{summary['pearson_r_median_per_structure']:.3f} (target >= {TARGETS['pearson_r']})")
    if secs:
        print(f"seconds per round on {tuple(vol.shape)}, {a.device}, {a.threads} threads: median {summary['round_seconds_median']:.2f}, "
              f"max {summary['round_seconds_max']:.2f} (target <= {TARGETS['round_seconds']})")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"summary": summary, "structures": rows}, indent=1))
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
