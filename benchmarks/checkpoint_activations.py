"""Activation checkpointing in training (`halo-seg train --checkpoint-activations`): memory and time.

Partitioned runs (spawned ranks, 1 thread each) with and without checkpointing, alternated, on
phantom volumes where patch = volume: each rank's measured peak (its process before the first step
plus its growth over the run, the largest rank's), the estimate (`train/train_memory.py`) and the
seconds per training iteration (validation left out), medians over the repeats.

    .venv/bin/python benchmarks/checkpoint_activations.py [--iterations 4] [--repeats 2]
                     [--out results/checkpoint_activations.json]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_results  # noqa: E402

from halo_seg.engine.memory import MIB  # noqa: E402
from halo_seg.samples import make_phantom  # noqa: E402
from halo_seg.train import train_memory  # noqa: E402
from halo_seg.train.partitioned_run import train_partitioned  # noqa: E402

RUNS = [((96, 96, 96), (1, 1, 1)), ((128, 128, 128), (2, 1, 1)), ((160, 160, 160), (2, 2, 1))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "checkpoint_activations.json"))
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    config = dict(in_channels=1, out_channels=2, base=8, depth=3)
    rows = []
    print("| patch = volume | grid | checkpointing | estimated MiB | measured MiB | estimated / measured | "
          "s / iteration |")
    print("|---|---|---|---|---|---|---|")
    for shape, grid in RUNS:
        ph = make_phantom(shape, n_objects=4, seed=1, noise=0.05)
        img, lab = ph.image, (ph.labels > 0).astype(np.int64)
        seen = {False: [], True: []}
        for _ in range(a.repeats):
            for ck in (False, True):
                cfg = dict(n_classes=2, patch=list(shape), iterations=a.iterations, epoch=a.iterations, batch=1,
                           lr=1e-3, base=8, depth=3, threads=1, checkpoint=ck, memory_check=False)
                res = train_partitioned(img, lab, cfg, grid, tmp / "w.safetensors", log=lambda *x: None)
                seen[ck].append((res["peak_mb"] + res["process_mb"], res["history"][-1]["seconds"] / a.iterations))
        for ck in (False, True):
            est = (train_memory.rank_bytes(config, shape, 1, grid, [shape], checkpoint=ck)
                   + train_memory.process_bytes(spawned=True)) / MIB
            measured = float(np.median([m for m, _ in seen[ck]]))
            sec = float(np.median([t for _, t in seen[ck]]))
            rows.append(dict(shape=list(shape), grid=list(grid), checkpoint=ck, estimated_mib=est,
                             measured_mib=measured, ratio=est / measured, s_per_iteration=sec,
                             runs=[dict(mib=m, s_per_iteration=t) for m, t in seen[ck]]))
            print(f"| {'x'.join(map(str, shape))} | {'x'.join(map(str, grid))} | {'on' if ck else 'off'} | {est:.0f} | "
                  f"{measured:.0f} | {est / measured:.2f} | {sec:.2f} |", flush=True)
        off, on = rows[-2], rows[-1]
        print(f"  on / off: memory {on['measured_mib'] / off['measured_mib']:.2f}, time "
              f"{on['s_per_iteration'] / off['s_per_iteration']:.2f}")
    return save_results(a.out, {"iterations": a.iterations, "repeats": a.repeats, "threads": 1}, rows)


if __name__ == "__main__":
    sys.exit(main())
