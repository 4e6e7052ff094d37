"""Resolution study (seed 000, Figure 3): the same task at 1/4, 1/2 and full resolution.

Task: brain and deep grey matter (the 12 AAL subcortical structures) on the 1 mm Colin27 volume.
The same network (base 8, depth 3), patch size in voxels, batch and iteration budget at every
resolution; trained on the left hemisphere, scored on the right one at full (1 mm) resolution,
low-resolution predictions being upsampled (trilinear on the probabilities) before the argmax.

    .venv/bin/python benchmarks/resolution.py [--iterations 400] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from halo_seg.engine import normalize
from halo_seg.engine.runner import predict_whole
from halo_seg.engine.weights import load_unet
from halo_seg.metrics import dice
from halo_seg.samples import SUBCORTICAL, load_colin27_full
from halo_seg.train.default_model import CLASSES, hemisphere_regions
from halo_seg.train.unet_train import TrainConfig, train_unet


def downsample(image, labels, f):
    from skimage.transform import downscale_local_mean
    if f == 1:
        return image.astype(np.float32), labels
    img = downscale_local_mean(image.astype(np.float32), (f, f, f))
    fr = np.stack([downscale_local_mean((labels == c).astype(np.float32), (f, f, f)) for c in range(3)])
    return img.astype(np.float32), fr.argmax(0).astype(np.int64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--factors", type=int, nargs="*", default=[4, 2, 1])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "resolution.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    s = load_colin27_full()
    lab = s.brain.astype(np.int64)
    lab[np.isin(s.labels, list(SUBCORTICAL))] = 2
    _, va_full = hemisphere_regions(lab.shape)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in a.factors:
            img, lb = downsample(s.image, lab, f)
            tr, va = hemisphere_regions(img.shape)
            patch = tuple(min(48, (n // 8) * 8) for n in img.shape)
            cfg = TrainConfig(n_classes=3, patch=patch, iterations=a.iterations, batch=2, base=8, depth=3,
                              epoch=a.iterations, class_names=CLASSES, threads=a.threads)
            t0 = time.perf_counter()
            w = Path(tmp) / f"r{f}.safetensors"
            train_unet([img], [lb], cfg, w, train_regions=[tr], val_regions=[va], log=lambda *x: None)
            train_s = time.perf_counter() - t0
            net, meta = load_unet(w)
            spec = meta["normalization"]
            m, sd = normalize.mean_std(normalize.moments(img, spec), spec)
            t0 = time.perf_counter()
            prob = torch.from_numpy(predict_whole(net, normalize.apply(img, m, sd, spec), torch.device("cpu")))
            if f > 1:
                prob = F.interpolate(prob[None], size=lab.shape, mode="trilinear", align_corners=False)[0]
            pred = prob.argmax(0).numpy()
            infer_s = time.perf_counter() - t0
            d = [dice((pred == c) & va_full, (lab == c) & va_full) for c in (1, 2)]
            row = {"factor": f, "voxel_mm": [sp * f for sp in s.spacing], "shape": list(img.shape),
                   "patch": list(patch), "train_s": train_s, "infer_s": infer_s,
                   "dice_brain": d[0], "dice_deep_grey": d[1]}
            rows.append(row)
            print(f"1/{f}: {img.shape} voxels {s.spacing[0] * f:.0f} mm  train {train_s:.0f}s  "
                  f"held-out Dice brain {d[0]:.3f}  deep grey {d[1]:.3f}", flush=True)
    print()
    print("| resolution | voxel | grid | train s | Dice brain | Dice deep grey |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        name = "full" if r["factor"] == 1 else f"1/{r['factor']}"
        print(f"| {name} | {r['voxel_mm'][0]:.0f} mm | {'x'.join(map(str, r['shape']))} | {r['train_s']:.0f} | "
              f"{r['dice_brain']:.3f} | {r['dice_deep_grey']:.3f} |")
    out = {"rows": rows, "iterations": a.iterations, "threads": a.threads, "machine": platform.platform(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
