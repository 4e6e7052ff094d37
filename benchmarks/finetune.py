"""Fine-tuning (`train --init`) against training from random weights, at equal iteration budgets.

A new task on the 2 mm Colin27 sample: four classes (background; caudate + putamen + pallidum;
thalamus; hippocampus + amygdala, AAL), trained on the left hemisphere and scored on the right one,
which neither run ever sees. "scratch" starts from random weights; "init" from the shipped default
model (brain and deep grey matter; its classifier starts afresh, 3 classes there, 4 here), at the
default learning rate and at a third of it. Each budget is its own run (the one-cycle schedule spans
it); the Dice of the last iteration and of the best validated one, per seed, and their medians.

`--task inverted`: the default model's own classes (brain, deep grey; its classifier kept) on the
sample with its contrast inverted, an image the default model never saw: fine-tuning to another
scanner's contrast.

Caveat: the default model was trained on this subject's left hemisphere (brain, and deep grey matter,
the union of the new classes), so this measures the case "a model of related anatomy exists"; a
starting model of other anatomy or another modality will help less.

    .venv/bin/python benchmarks/finetune.py [--task groups|inverted] [--budgets 50 100 200 400] [--seeds 0 1]
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

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_results  # noqa: E402

from halo_seg.samples import load_colin27_sample  # noqa: E402
from halo_seg.train.default_model import CLASSES, default_targets, hemisphere_regions  # noqa: E402
from halo_seg.train.unet_train import TrainConfig, train_unet  # noqa: E402

GROUPS = {1: (71, 72, 73, 74, 75, 76), 2: (77, 78), 3: (37, 38, 41, 42)}
NAMES = ["background", "striatum_pallidum", "thalamus", "hippocampus_amygdala"]
VARIANTS = {"scratch": (None, 3e-3), "init": ("default", 3e-3), "init_lr1e-3": ("default", 1e-3)}


def task(name: str = "groups"):
    """(image, labels, spacing, class names): "groups", new classes on the sample; "inverted", the
    default model's own classes on the sample with its contrast inverted (a T2-like image, which
    the default model never saw: another scanner's images of the same anatomy)."""
    s = load_colin27_sample()
    if name == "inverted":
        img, lab = default_targets()
        return float(img.max()) - img.astype(np.float32), lab.astype(np.int64), s.spacing, CLASSES
    lab = np.zeros(s.labels.shape, np.int64)
    for k, ids in GROUPS.items():
        lab[np.isin(s.labels, ids)] = k
    return s.image, lab, s.spacing, NAMES


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, nargs="*", default=[50, 100, 200, 400])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--task", choices=["groups", "inverted"], default="groups")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "finetune.json"))
    a = ap.parse_args(argv)
    img, lab, spacing, names = task(a.task)
    tr, va = hemisphere_regions(img.shape)
    rows = []
    if a.task == "inverted":   # where fine-tuning starts: the default model on an image it never saw
        from halo_seg.engine.runner import segment
        from halo_seg.metrics import dice
        import zarr
        with tempfile.TemporaryDirectory() as tmp:
            pred = zarr.open_group(segment(img, f"{tmp}/d.zarr", mode="whole").output, mode="r")["labels"][...]
        as_is = [dice((pred == c) & va, (lab == c) & va) for c in range(1, len(names))]
        rows.append({"variant": "default as it is", "dice": as_is})
        print(f"the default model as it is: Dice {', '.join(f'{d:.3f}' for d in as_is)}")
    print(f"{'variant':>12} {'iters':>5} {'seed':>4} {'last Dice per class':>26} {'mean':>6} {'best mean':>9} {'min':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for budget in a.budgets:
            for seed in a.seeds:
                for name in a.variants:
                    init, lr = VARIANTS[name]
                    cfg = TrainConfig(n_classes=len(names), patch=(48, 48, 40), iterations=budget, batch=2, lr=lr,
                                      epoch=max(1, budget // 4), seed=seed, threads=a.threads, device="cpu",
                                      class_names=names, init=init)
                    t0 = time.perf_counter()
                    res = train_unet([img], [lab], cfg, f"{tmp}/m.safetensors", train_regions=[tr], val_regions=[va],
                                     log=lambda *_: None, meta={"spacing": list(spacing), "unit": "mm"})
                    minutes = (time.perf_counter() - t0) / 60
                    last = [d or 0.0 for d in res["history"][-1]["val_dice"]]
                    row = {"variant": name, "iterations": budget, "seed": seed, "lr": lr, "init": init,
                           "last_dice": last, "last_mean": float(np.mean(last)),
                           "best_mean": float(res["best_mean_dice"]), "minutes": minutes}
                    rows.append(row)
                    print(f"{name:>12} {budget:5d} {seed:4d} {' '.join(f'{d:8.3f}' for d in last):>26} "
                          f"{row['last_mean']:6.3f} {row['best_mean']:9.3f} {minutes:5.1f}", flush=True)
    print("\nmedian over seeds (last-iteration mean Dice; best-validated mean Dice)")
    print(f"{'iters':>5} " + " ".join(f"{v:>20}" for v in a.variants) + "   init / scratch")
    summary = []
    for budget in a.budgets:
        med = {v: (float(np.median([r["last_mean"] for r in rows if r["variant"] == v and r["iterations"] == budget])),
                   float(np.median([r["best_mean"] for r in rows if r["variant"] == v and r["iterations"] == budget])))
               for v in a.variants}
        summary.append({"iterations": budget, **{v: {"last_mean": m[0], "best_mean": m[1]} for v, m in med.items()}})
        ratio = (f"{med['init'][0] / med['scratch'][0]:.2f}" if "init" in med and "scratch" in med
                 and med["scratch"][0] > 0 else "n/a")
        print(f"{budget:5d} " + " ".join(f"{m[0]:9.3f}; {m[1]:9.3f}" for m in med.values()) + f"   {ratio}")
    rows.append({"summary": summary})
    rows.append({"platform": platform.platform(), "torch": torch.__version__, "threads": a.threads})
    what = {"groups": "4 grouped AAL classes", "inverted": "brain + deep grey on the contrast-inverted image"}[a.task]
    return save_results(a.out, f"2 mm Colin27 sample, {what}, left hemisphere train, right validate", rows)


if __name__ == "__main__":
    raise SystemExit(main())
