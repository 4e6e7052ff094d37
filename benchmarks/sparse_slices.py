"""Labels on every k-th slice: unlabelled slices as background against unlabelled slices as unknown.

The default model's task on the 2 mm Colin27 sample (brain, deep grey matter; `train-default`'s
set-up): trained on the left hemisphere, measured on the right hemisphere against its full labels.
Three arms, each choosing its weights by the Dice on the same held-out labelled slices of the left
hemisphere (every 5th labelled slice, `train/sparse.py`):

- `complete`: every left-hemisphere slice labelled (the reference);
- `as background`: only every k-th axial slice labelled, the others all zero and trained on as they
  are (what `halo-seg train` and the napari widget did with slice-wise painting);
- `unknown`: the same labels, training only on the labelled slices (`--labelled-slices z`);
- `unknown, 2x1x1 grid`: the same, every patch split over two CPU ranks (`--grid 2,1,1`, the
  partitioned trainer: its own patch sampler and augmentation, so close to `unknown`, not equal).

Each run is a fresh process; the best weights then segment the whole volume (`segment`, whole mode).

    .venv/bin/python benchmarks/sparse_slices.py [--every 4] [--iterations 600] [--seeds 0 1] [--threads 2]
        [--arms complete "as background" unknown "unknown, 2x1x1 grid"]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import in_fresh_process, one_or_main, save_results  # noqa: E402

ARMS = ("complete", "as background", "unknown", "unknown, 2x1x1 grid")


def _data(every: int):
    from halo_seg.train.default_model import default_targets, hemisphere_regions
    from halo_seg.train.sparse import slab, sparse_regions
    img, lab = default_targets()
    left, right = hemisphere_regions(img.shape)
    painted = slab(lab.shape, 0, np.arange(every // 2, lab.shape[0], every))
    sparse = np.where(painted, lab, 0)
    train_u, val, held = sparse_regions(sparse, 0, 0.2, within=left)
    return img, lab, sparse, left, right, train_u, val, held


def _one(spec: dict) -> dict:
    import torch
    from halo_seg.train.default_model import CLASSES
    from halo_seg.train.sparse import slab
    from halo_seg.train.unet_train import TrainConfig, train_unet
    torch.set_num_threads(spec["threads"])
    img, lab, sparse, left, right, train_u, val, held = _data(spec["every"])
    not_held = left & ~slab(lab.shape, 0, held)
    labels, region = {"complete": (lab, not_held), "as background": (sparse, not_held),
                      "unknown": (sparse, train_u), "unknown, 2x1x1 grid": (sparse, train_u)}[spec["arm"]]
    if spec["arm"].endswith("grid"):
        from halo_seg.train.partitioned_run import train_partitioned
        cfg = dict(n_classes=3, patch=[48, 48, 40], iterations=spec["iterations"], batch=2, lr=3e-3, base=8, depth=3,
                   epoch=spec["epoch"], class_names=list(CLASSES), threads=max(1, spec["threads"] // 2),
                   seed=spec["seed"], memory_check=False)
        res = train_partitioned(img, labels, cfg, (2, 1, 1), spec["out"], train_regions=[region], val_regions=[val],
                                log=lambda *a: None)
        return _scored(res, spec, img, lab, right, region, labels)
    cfg = TrainConfig(n_classes=3, patch=(48, 48, 40), iterations=spec["iterations"], batch=2, base=8, depth=3,
                      epoch=spec["epoch"], flip_axes=(0, 1, 2), class_names=CLASSES, threads=spec["threads"],
                      seed=spec["seed"], memory_check=False)
    res = train_unet([img], [labels], cfg, spec["out"], train_regions=[region], val_regions=[val],
                     log=lambda *a: None)
    return _scored(res, spec, img, lab, right, region, labels)


def _scored(res, spec, img, lab, right, region, labels) -> dict:
    from halo_seg.engine.runner import segment
    from halo_seg.io import open_volume
    from halo_seg.metrics import dice
    seg = segment(img, spec["out"] + ".zarr", weights=spec["out"], grid=(1, 1, 1), mode="whole",
                  threads=spec["threads"], memory_check=False)
    pred = np.asarray(open_volume(seg.output).data)
    return {"held_out_dice": res["best"]["val_dice"], "best_iteration": res["best"]["iteration"],
            "right_dice": [dice((pred == c) & right, (lab == c) & right) for c in (1, 2)],
            "trained_voxels": int(region.sum()), "labelled_voxels_trained": int((labels > 0)[region].sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--epoch", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sparse_slices.json"))
    a = ap.parse_args(argv)
    *_, held = _data(a.every)
    print(f"labels on every {a.every}th axial slice; held-out labelled slices {list(map(int, held))}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            for arm in a.arms:
                spec = dict(arm=arm, every=a.every, iterations=a.iterations, epoch=a.epoch, threads=a.threads,
                            seed=seed, out=str(Path(tmp) / f"{arm.replace(' ', '_')}_{seed}.safetensors"))
                r = {"seed": seed, "arm": arm, **in_fresh_process(__file__, spec)}
                rows.append(r)
                print(f"seed {seed} {arm:>20}: right hemisphere Dice brain {r['right_dice'][0]:.3f}, deep grey "
                      f"{r['right_dice'][1]:.3f} (held-out slices {', '.join(f'{d:.3f}' for d in r['held_out_dice'])}"
                      f" at it {r['best_iteration']})", flush=True)
    print(f"\n| labels | brain Dice (right hemisphere), per seed | deep grey | median brain / deep grey |")
    print("|---|---|---|---|")
    for arm in a.arms:
        sel = [r for r in rows if r["arm"] == arm]
        b, g = [r["right_dice"][0] for r in sel], [r["right_dice"][1] for r in sel]
        print(f"| {arm} | {', '.join(f'{x:.3f}' for x in b)} | {', '.join(f'{x:.3f}' for x in g)} | "
              f"{np.median(b):.3f} / {np.median(g):.3f} |")
    return save_results(a.out, {"every": a.every, "iterations": a.iterations, "held": list(map(int, held))}, rows)


if __name__ == "__main__":
    sys.exit(one_or_main(_one, main))
