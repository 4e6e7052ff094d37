"""Memory held by an interactive session's undo history on a CT-sized volume.

Every step (a box segmented, a painted slice, a propagation) changes the predicted volume, and the
session keeps the last 50 states for Undo. Held whole, 50 predictions of a 512 x 512 x 300 scan are
3.7 GB. The history kept each as the bits of its bounding box from 2026-12-02 (commit 6c92984 and
before); since 2026-12-03 a session's masks are kept slice by slice and the states share the slices
they have in common (interactive/slice_masks.py). This runs the same session with this checkout and,
with ``--before``, with another one's ``src/``, each in its own process, and prints the memory
Python holds after it (tracemalloc, which numpy reports to) and the time.

    git worktree add /tmp/before 6c92984
    .venv/bin/python benchmarks/undo_memory.py [--before /tmp/before/src] [--shape 300 512 512] [--steps 30]
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from _results import in_fresh_process, one_or_main, save_results


def session(InteractiveSegmenter, mask_bbox, img, ball, steps: int) -> dict:
    seg = InteractiveSegmenter(img, device="cpu")
    c = img.shape[0] // 2
    tracemalloc.start()
    t0 = time.perf_counter()
    seg.add_box(c, *mask_bbox(ball[c]))
    seg.propagate()
    zs = np.flatnonzero(ball.any((1, 2)))
    for i, z in enumerate(np.linspace(zs[0] + 2, zs[-1] - 2, steps).astype(int)):
        if i % 2:
            seg.set_slice_mask(int(z), ball[z])
        else:
            seg.add_box(int(z), *mask_bbox(ball[z]))
            seg.segment_slice(int(z))
    seconds = time.perf_counter() - t0
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"undo_steps": len(seg._history), "held_mib": held / 2 ** 20, "peak_mib": peak / 2 ** 20,
            "seconds": seconds}


def _one(spec: dict) -> dict:
    src, shape, steps = spec["src"], spec["shape"], spec["steps"]
    sys.path.insert(0, src)
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.roi import mask_bbox
    torch.set_num_threads(2)
    z, y, x = shape
    zz, yy, xx = np.ogrid[:z, :y, :x]
    ball = ((zz - z / 2) / (z / 7.5)) ** 2 + ((yy - y / 2) / (y / 8.5)) ** 2 + ((xx - x / 2) / (x / 10)) ** 2 <= 1
    img = (ball + np.random.default_rng(0).normal(0, 0.1, ball.shape)).astype(np.float32)
    return session(InteractiveSegmenter, mask_bbox, img, ball, steps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=None, help="the src/ directory of the code to compare with")
    ap.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "undo_memory.json"))
    a = ap.parse_args(argv)
    now = str(Path(__file__).resolve().parents[1] / "src")
    rows = []
    for way, src in (("before", a.before), ("now", now)):
        if src is None:
            continue
        rows.append({"history": f"{way} ({src})",
                     **in_fresh_process(__file__, {"src": src, "shape": a.shape, "steps": a.steps})})
    print(f"\na box, a propagation and {a.steps} corrections on {tuple(a.shape)}\n")
    print("| code | undo steps kept | MiB held after | MiB peak | seconds |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['history']} | {r['undo_steps']} | {r['held_mib']:.0f} | {r['peak_mib']:.0f} | {r['seconds']:.1f} |")
    return save_results(a.out, {"shape": a.shape, "steps": a.steps}, rows)


if __name__ == "__main__":
    raise SystemExit(one_or_main(_one, main))
