"""An ensemble of models trained with different seeds (`segment --weights A --weights B ...`) against
each of them alone, and against one model with test-time mirroring.

K models of the default model's task (the 2 mm Colin27 sample: brain and deep grey matter, trained
on the left hemisphere) with seeds 0..K-1, the same recipe otherwise; each segments the sample
alone, mirrored along x, and all of them together; Dice on the right hemisphere, which no model saw,
and the time of each run (whole mode, one after another in this process).

    .venv/bin/python benchmarks/ensemble.py [--members 3] [--iterations 1200] [--threads 2]
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_results  # noqa: E402

from halo_seg.engine.runner import segment  # noqa: E402
from halo_seg.metrics import dice  # noqa: E402
from halo_seg.samples import load_colin27_sample  # noqa: E402
from halo_seg.train.default_model import CLASSES, default_targets, hemisphere_regions  # noqa: E402
from halo_seg.train.unet_train import TrainConfig, train_unet  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=1200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each segmentation (median)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ensemble.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    img, lab = default_targets()
    tr, va = hemisphere_regions(img.shape)
    spacing = list(load_colin27_sample().spacing)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        members = []
        for seed in range(a.members):
            path = f"{tmp}/seed{seed}.safetensors"
            cfg = TrainConfig(n_classes=3, patch=(48, 48, 40), iterations=a.iterations, batch=2, seed=seed,
                              threads=a.threads, device="cpu", class_names=CLASSES)
            t0 = time.perf_counter()
            train_unet([img], [lab], cfg, path, train_regions=[tr], val_regions=[va], log=lambda *_: None,
                       meta={"spacing": spacing, "unit": "mm"})
            print(f"trained seed {seed} in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
            members.append(path)
        runs = [(f"seed {i} alone", m, "") for i, m in enumerate(members)]
        runs += [(f"seed {i} mirrored x", m, "x") for i, m in enumerate(members)]
        runs += [(f"ensemble of {len(members)}", members, "")]
        print(f"\n{'run':>22} {'brain':>7} {'deep grey':>9} {'seconds':>8}")
        for name, weights, mirror in runs:
            times = []
            for r in range(a.repeats):
                out = f"{tmp}/{name.replace(' ', '_')}_{r}.zarr"
                t0 = time.perf_counter()
                segment(img, out, weights=weights, mode="whole", mirror=mirror, threads=a.threads)
                times.append(time.perf_counter() - t0)
            pred = zarr.open_group(out, mode="r")["labels"][...]
            d = [dice((pred == c) & va, (lab == c) & va) for c in (1, 2)]
            rows.append({"run": name, "mirror": mirror, "members": len(weights) if isinstance(weights, list) else 1,
                         "dice": d, "seconds": float(np.median(times))})
            print(f"{name:>22} {d[0]:7.3f} {d[1]:9.3f} {np.median(times):8.2f}", flush=True)
    alone = [r for r in rows if r["run"].endswith("alone")]
    mirrored = [r for r in rows if "mirrored" in r["run"]]
    ens = rows[-1]
    summary = {"alone_mean_dice": np.mean([r["dice"] for r in alone], 0).tolist(),
               "mirrored_mean_dice": np.mean([r["dice"] for r in mirrored], 0).tolist(),
               "ensemble_dice": ens["dice"],
               "ensemble_time_ratio": ens["seconds"] / np.median([r["seconds"] for r in alone]),
               "mirrored_time_ratio": np.median([r["seconds"] for r in mirrored]) / np.median([r["seconds"] for r in alone])}
    print(f"\nmean of the members alone: brain {summary['alone_mean_dice'][0]:.3f}, deep grey "
          f"{summary['alone_mean_dice'][1]:.3f}; mirrored x: {summary['mirrored_mean_dice'][0]:.3f}, "
          f"{summary['mirrored_mean_dice'][1]:.3f} (x{summary['mirrored_time_ratio']:.2f} time); ensemble: "
          f"{ens['dice'][0]:.3f}, {ens['dice'][1]:.3f} (x{summary['ensemble_time_ratio']:.2f} time)")
    rows.append({"summary": summary})
    rows.append({"platform": platform.platform(), "torch": torch.__version__, "threads": a.threads,
                 "iterations": a.iterations})
    return save_results(a.out, "2 mm Colin27 sample, brain + deep grey, right hemisphere (never trained on)", rows)


if __name__ == "__main__":
    raise SystemExit(main())
