"""Does partitioned training's augmentation (train/block_augment.py) help on data it never saw?

The default model's task on the 2 mm Colin27 sample (brain, deep grey matter): partitioned training
(grid 2x1x1, two CPU ranks) on the left hemisphere, validated on the right one, held out as its own
volume (`--val-image`), with the earlier recipe (flips and gamma) and with the block-wise scale,
elastic displacement, contrast and noise; several seeds each, run alternately in one process.

    .venv/bin/python benchmarks/partitioned_augment.py [--iterations 300] [--seeds 0 1 2]
                     [--out results/partitioned_augment.json]

Prints each run's best held-out Dice per class and seconds per iteration, then the medians.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_results  # noqa: E402

from halo_seg.train.default_model import CLASSES, default_targets  # noqa: E402
from halo_seg.train.partitioned_run import train_partitioned  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--epoch", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "partitioned_augment.json"))
    a = ap.parse_args(argv)
    img, lab = default_targets()
    half = img.shape[2] // 2                 # x < midline: the left hemisphere, as train-default splits it
    train = (img[..., :half], lab[..., :half].astype(np.int64))
    held = (img[..., half:], lab[..., half:].astype(np.int64))
    tmp = Path(tempfile.mkdtemp())
    rows = []
    print("| augmentation | seed | held-out Dice brain | deep grey | mean | s / iteration |")
    print("|---|---|---|---|---|---|")
    for seed in a.seeds:
        for augment in (False, True):
            cfg = dict(n_classes=3, patch=[48, 48, 40], iterations=a.iterations, epoch=a.epoch, batch=2, lr=3e-3,
                       base=8, depth=3, seed=seed, threads=1, augment=augment, class_names=CLASSES)
            res = train_partitioned(*train, cfg, (2, 1, 1), tmp / f"{seed}_{augment}.safetensors",
                                    log=lambda *x: None, val_images=[held[0]], val_labels=[held[1]])
            best = res["best"]["val_dice"]
            last = res["history"][-1]
            row = dict(augment=augment, seed=seed, dice=best, mean=float(np.mean(best)),
                       best_iteration=res["best"]["iteration"], s_per_iteration=last["seconds"] / a.iterations)
            rows.append(row)
            print(f"| {'block-wise' if augment else 'flips, gamma'} | {seed} | {best[0]:.3f} | {best[1]:.3f} | "
                  f"{row['mean']:.3f} | {row['s_per_iteration']:.2f} |", flush=True)
    for augment in (False, True):
        mine = [r for r in rows if r["augment"] == augment]
        print(f"median, {'block-wise' if augment else 'flips, gamma'}: brain "
              f"{np.median([r['dice'][0] for r in mine]):.3f}, deep grey {np.median([r['dice'][1] for r in mine]):.3f}, "
              f"{np.median([r['s_per_iteration'] for r in mine]):.2f} s / iteration")
    return save_results(a.out, {"iterations": a.iterations, "grid": [2, 1, 1], "train": "left hemisphere",
                                "validation": "right hemisphere"}, rows)


if __name__ == "__main__":
    sys.exit(main())
