"""Training in bf16 autocast against fp32: seconds per iteration, peak memory and held-out Dice.

The default model's task on the 2 mm Colin27 sample (brain, deep grey matter), as `train-default`
sets it up: the unpartitioned trainer on the left hemisphere, its right hemisphere held out for
validation (losses are masked to the training region). Each run is a fresh process (its peak RSS is
its own), fp32 and bf16 alternating, for each seed.

    .venv/bin/python benchmarks/train_precision.py [--iterations 400] [--seeds 0 1] [--threads 2]

Prints each run's best held-out Dice per class, median seconds per iteration, peak RSS, and the
training memory estimate of a step (train/train_memory.py) for both precisions.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import in_fresh_process, one_or_main, save_results  # noqa: E402


def _one(spec: dict) -> dict:
    import torch
    from halo_seg.train.default_model import CLASSES, default_targets, hemisphere_regions
    from halo_seg.train.unet_train import TrainConfig, train_unet
    img, lab = default_targets()
    tr, va = hemisphere_regions(img.shape)
    cfg = TrainConfig(n_classes=3, patch=(48, 48, 40), iterations=spec["iterations"], batch=2, base=8, depth=3,
                      epoch=spec["epoch"], flip_axes=(0, 1, 2), class_names=CLASSES, threads=spec["threads"],
                      seed=spec["seed"], precision=spec["precision"], device=spec["device"])
    stamps = []
    res = train_unet([img], [lab], cfg, spec["out"], train_regions=[tr], val_regions=[va], log=lambda *a: None,
                     progress=lambda i, n: stamps.append(time.perf_counter()))
    steps = np.diff(stamps)   # validation iterations included: the median leaves them out
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if spec["device"] == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"s_per_it": float(np.median(steps)), "best_val_dice": res["best"]["val_dice"],
            "best_iteration": res["best"]["iteration"], "peak_mb": peak}


def main(argv=None) -> int:
    from halo_seg.engine.precision import native_bf16
    from halo_seg.train import train_memory
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--epoch", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_precision.json"))
    a = ap.parse_args(argv)
    config = dict(in_channels=1, out_channels=3, base=8, depth=3)
    est = {p: train_memory.step_bytes(config, (48, 48, 40), 2, precision=p) / 2 ** 20 for p in ("fp32", "bf16")}
    print(f"{a.device}: native bfloat16 {native_bf16(a.device)}; estimated step memory "
          f"fp32 {est['fp32']:.0f} MB, bf16 {est['bf16']:.0f} MB")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            for prec in ("fp32", "bf16"):
                spec = dict(iterations=a.iterations, epoch=a.epoch, threads=a.threads, seed=seed, precision=prec,
                            device=a.device, out=str(Path(tmp) / f"{prec}_{seed}.safetensors"))
                r = {"seed": seed, "precision": prec, "estimate_step_mb": est[prec],
                     **in_fresh_process(__file__, spec)}
                rows.append(r)
                print(f"seed {seed} {prec}: {r['s_per_it']:.3f} s/it, peak {r['peak_mb']:.0f} MB, best Dice "
                      f"{', '.join(f'{d:.3f}' for d in r['best_val_dice'])} at it {r['best_iteration']}", flush=True)
    print(f"{'precision':>9} {'s/it':>6} {'x time':>6} {'peak MB':>8} {'brain':>6} {'deep grey':>9}")
    base = None
    for prec in ("fp32", "bf16"):
        sel = [r for r in rows if r["precision"] == prec]
        s = float(np.median([r["s_per_it"] for r in sel]))
        base = base or s
        print(f"{prec:>9} {s:6.3f} {s / base:6.2f} {np.median([r['peak_mb'] for r in sel]):8.0f} "
              f"{np.median([r['best_val_dice'][0] for r in sel]):6.3f} {np.median([r['best_val_dice'][1] for r in sel]):9.3f}")
    return save_results(a.out, {"iterations": a.iterations, "seeds": a.seeds, "threads": a.threads,
                                "device": a.device, "estimate_step_mb": est}, rows)


if __name__ == "__main__":
    sys.exit(one_or_main(_one, main))
