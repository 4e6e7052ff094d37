"""Choose the quality-stop threshold of propagation on a validation set, never on the benchmark's structures.

The validation set is 16 AAL regions of Colin27 that the interactive network **was** trained on
(cortex, cerebellum, vermis: none of the 12 held-out subcortical structures that
``benchmarks/interactive.py`` reports). For each threshold it runs the simulated user of the
benchmark (a box on the largest slice, then 5 recommended corrections) and prints the mean Dice
after the first and the last round.

    .venv/bin/python benchmarks/quality_stop.py [--taus 0 0.5] [--weights default]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from halo_seg import InteractiveSegmenter
from halo_seg.interactive import propagation
from halo_seg.interactive.simulate import run_session
from halo_seg.samples import VALIDATION, load_colin27_full



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--taus", type=float, nargs="*", default=[0.0, propagation.MODEL_STOP])
    ap.add_argument("--weights", default="default")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "quality_stop.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = load_colin27_full()
    results = []
    for tau in a.taus:
        per = {}
        for lab, name in VALIDATION.items():
            seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu", weights=a.weights,
                                       quality_stop=tau)
            per[name] = [r["dice"] for r in run_session(seg, data.labels == lab, rounds=a.rounds, seed=lab)]
        curve = np.mean(list(per.values()), 0).tolist()
        results.append({"quality_stop": tau, "mean_dice_per_round": curve, "per_region": per})
        print(f"quality_stop {tau:.2f}: one box {curve[0]:.3f}, round {a.rounds} {curve[-1]:.3f}", flush=True)
    print()
    print("| quality_stop | one box | round " + str(a.rounds) + " |")
    print("|---|---|---|")
    for r in results:
        c = r["mean_dice_per_round"]
        print(f"| {r['quality_stop']:.2f} | {c[0]:.3f} | {c[-1]:.3f} |")
    Path(a.out).write_text(json.dumps({"validation_regions": VALIDATION, "results": results,
                                       "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__}, indent=1))
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
