"""Propagating through time in a 2D movie: time as the slice axis of the memory network (as video
object segmentation does), a diagnosis, not built.

A 2D movie (T, Y, X) is handed to InteractiveSegmenter as a volume whose slices are its frames: one
box on the middle frame, then one propagation, and the Dice against the cell's true mask over the
movie. Beside it, that same box on every frame alone (a cell that stays put would need nothing more).
Procedural movies: 10 disks of radius 7 pixels in 128 x 128 frames, 20 frames, moving ``speed``
pixels a frame with jitter (bouncing off the walls), noise 0.15; 3 movies (seeds 0-2), 3 cells each.

    .venv/bin/python benchmarks/movie_propagation.py [--speeds 1 2 4] [--out benchmarks/results/movie_propagation.json]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _results import save_results


def movie(frames=20, cells=10, size=128, radius=7.0, speed=1.5, seed=0, noise=0.15):
    """(image (T, Y, X) float32, labels (T, Y, X) uint16) of disks moving with a persistent velocity."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(radius + 2, size - radius - 2, (cells, 2))
    vel = rng.normal(size=(cells, 2))
    vel = speed * vel / np.linalg.norm(vel, axis=1, keepdims=True)
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((frames, size, size), np.float32)
    lab = np.zeros((frames, size, size), np.uint16)
    for t in range(frames):
        d = np.stack([np.hypot(yy - p[0], xx - p[1]) for p in pos])
        near, dmin = d.argmin(0), d.min(0)
        lab[t][dmin <= radius] = near[dmin <= radius] + 1
        img[t] = np.clip(1.2 - dmin / radius, 0, 1) ** 0.5 * (dmin <= radius * 1.3)
        pos += vel + rng.normal(0, 0.3, pos.shape)
        for k in range(cells):
            for a in range(2):
                if not radius + 1 < pos[k, a] < size - radius - 2:
                    vel[k, a] *= -1
                    pos[k, a] = np.clip(pos[k, a], radius + 1, size - radius - 2)
    return img + rng.normal(0, noise, img.shape).astype(np.float32), lab


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speeds", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "movie_propagation.json"))
    a = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.roi import mask_bbox
    from halo_seg.metrics import dice
    rows = []
    for speed in a.speeds:
        through, alone = [], []
        for seed in range(3):
            img, lab = movie(speed=speed, seed=seed)
            mid = len(img) // 2
            for k in (1, 4, 7):
                truth = lab == k
                box = mask_bbox(truth[mid])
                seg = InteractiveSegmenter(img, device="cpu")
                seg.add_box(mid, *box)
                through.append(dice(seg.propagate(), truth))
                each = np.zeros_like(truth)
                for t in range(len(img)):
                    one = InteractiveSegmenter(img[t:t + 1], device="cpu")
                    one.add_box(0, *box)
                    each[t] = one.segment_slice(0)
                alone.append(dice(each, truth))
        rows.append({"speed": speed, "cells": len(through), "propagated_through_time": float(np.mean(through)),
                     "min": float(np.min(through)), "same_box_every_frame": float(np.mean(alone))})
    print("| speed (pixels a frame, radius 7) | cells | propagated through time | min | the box on every frame |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['speed']:g} | {r['cells']} | {r['propagated_through_time']:.3f} | {r['min']:.3f} | "
              f"{r['same_box_every_frame']:.3f} |")
    return save_results(a.out, {"speeds": a.speeds, "seeds": [0, 1, 2]}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
