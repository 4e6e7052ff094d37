"""The training memory estimate (train/train_memory.py) against the ranks' measured peaks.

Partitioned runs (`train_partitioned`, spawned ranks, grids of 1 to 8 ranks) report the largest
rank's peak resident-memory growth over the run (training steps and the validation on the whole
volume) plus the private memory its process held before (interpreter, libraries, network: a
spawned rank needs both, and the estimate adds its process); unpartitioned runs (`train_unet`) run
in a fresh process each and report its growth (they run in the caller, whose process exists
already; the estimate adds what the first step loads). A
volume as large as the patch makes the training step the peak; a larger volume makes validation
it. The estimate must not be below the measured peak and should not be far above it.

    .venv/bin/python benchmarks/train_memory.py [--device cpu|cuda] [--set cubes|thin|all] [--out results/train_memory.json]

Thin patches and blocks (8 or 16 slices) are where PyTorch sends a convolution's backward pass to its
im2col kernel unless engine/conv.py permutes it to oneDNN; each row also gives the run's wall seconds.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_ratios  # noqa: E402

from halo_seg.engine.memory import MIB  # noqa: E402
from halo_seg.train import train_memory  # noqa: E402
from halo_seg.train.partitioned_run import train_partitioned  # noqa: E402

# (base, depth, volume, patch, batch, grid); grid None: the unpartitioned trainer
RUNS = [(8, 3, (16, 16, 16), (16, 16, 16), 1, (2, 1, 1)),
        (8, 3, (48, 48, 48), (48, 48, 48), 1, (2, 1, 1)),
        (8, 3, (48, 48, 48), (48, 48, 48), 1, (1, 1, 1)),
        (8, 3, (64, 64, 64), (64, 64, 64), 1, (1, 1, 1)),
        (8, 3, (96, 96, 96), (96, 96, 96), 1, (1, 1, 1)),
        (8, 3, (128, 128, 128), (128, 128, 128), 1, (1, 1, 1)),
        (8, 3, (96, 96, 96), (96, 96, 96), 1, (2, 1, 1)),
        (8, 3, (96, 96, 96), (96, 96, 96), 2, (2, 2, 1)),
        (8, 3, (160, 160, 160), (160, 160, 160), 1, (2, 1, 1)),
        (8, 3, (128, 128, 128), (128, 128, 128), 1, (2, 2, 2)),
        (16, 3, (96, 96, 96), (96, 96, 96), 1, (2, 1, 1)),
        (8, 4, (96, 96, 96), (96, 96, 96), 1, (1, 2, 2)),
        (8, 3, (224, 224, 224), (32, 32, 32), 1, (2, 1, 1)),   # validation is the peak
        (8, 3, (16, 16, 16), (16, 16, 16), 1, None),
        (8, 3, (48, 48, 48), (48, 48, 48), 1, None),
        (8, 3, (96, 96, 96), (96, 96, 96), 2, None),
        (8, 3, (128, 128, 128), (128, 128, 128), 1, None),
        (8, 3, (192, 192, 160), (48, 48, 48), 2, None)]       # validation is the peak
THIN = [(8, 3, (16, 256, 256), (16, 256, 256), 1, (2, 1, 1)),
        (8, 3, (32, 256, 256), (32, 256, 256), 1, (4, 1, 1)),
        (8, 3, (8, 256, 256), (8, 256, 256), 1, None),
        (8, 3, (16, 384, 384), (16, 384, 384), 1, None),
        (8, 3, (16, 512, 512), (16, 64, 64), 1, (2, 1, 1))]     # validation is the peak
SETS = {"cubes": RUNS, "thin": THIN, "all": RUNS + THIN}


def _phantom(shape, seed=0):
    from halo_seg.samples import make_phantom
    ph = make_phantom(shape, n_objects=4, seed=seed, noise=0.1)
    return ph.image, (ph.labels > 0).astype(np.int64)


def _unpartitioned(base, depth, shape, patch, batch, device, out, q):
    from halo_seg.engine.runner import _peak_growth_mb, _reset_peak, map_large_allocations
    from halo_seg.train.unet_train import TrainConfig, train_unet
    import torch
    map_large_allocations()
    img, lab = _phantom(shape)
    cfg = TrainConfig(n_classes=2, patch=patch, iterations=3, batch=batch, base=base, depth=depth, epoch=3,
                      device=device, memory_check=False)
    rss0 = _reset_peak()
    train_unet([img], [lab], cfg, out, log=lambda *a: None)
    q.put((torch.cuda.max_memory_allocated() / MIB) if device == "cuda" else _peak_growth_mb(rss0))


def main(argv=None) -> int:
    import tempfile
    import torch
    import torch.multiprocessing as mp
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", default="all", choices=sorted(SETS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_memory.json"))
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    rows = []
    print("| base, depth | volume | patch | batch | grid | step MiB | validation MiB | process MiB | estimated MiB "
          "| measured MiB | of which the rank's process | estimated / measured | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for base, depth, shape, patch, batch, grid in SETS[a.set]:
        config = dict(in_channels=1, out_channels=2, base=base, depth=depth)
        g = grid or (1, 1, 1)
        if a.device == "cuda" and math.prod(g) > torch.cuda.device_count():
            print(f"(grid {'x'.join(map(str, g))} skipped: NCCL needs a GPU per rank)")
            continue
        step = train_memory.step_bytes(config, patch, batch, g) / MIB
        val = train_memory.validation_bytes(config, shape, g) / MIB
        # on a GPU the estimate and the measure are of GPU memory: processes are host memory
        process = 0.0 if a.device == "cuda" else train_memory.process_bytes(spawned=grid is not None) / MIB
        est = max(step, val) + process
        rank_process = None
        out = tmp / f"{len(rows)}.safetensors"
        t0 = time.perf_counter()
        if grid is None:
            ctx = mp.get_context("spawn")
            q = ctx.SimpleQueue()
            p = ctx.Process(target=_unpartitioned, args=(base, depth, shape, patch, batch, a.device, str(out), q))
            p.start()
            measured = q.get()
            p.join()
        else:
            img, lab = _phantom(shape)
            cfg = dict(n_classes=2, patch=list(patch), iterations=3, epoch=3, batch=batch, lr=1e-3, base=base,
                       depth=depth, device=a.device, threads=a.threads, memory_check=False)
            res = train_partitioned(img, lab, cfg, grid, out, log=lambda *a: None)
            rank_process = None if a.device == "cuda" else res["process_mb"]
            measured = res["peak_mb"] + (rank_process or 0.0)
        seconds = time.perf_counter() - t0
        row = dict(base=base, depth=depth, volume=list(shape), patch=list(patch), batch=batch,
                   grid=None if grid is None else list(grid), step_mib=step, validation_mib=val, process_mib=process,
                   estimated_mib=est, measured_mib=measured, measured_process_mib=rank_process, ratio=est / measured,
                   seconds=seconds)
        rows.append(row)
        print(f"| {base}, {depth} | {'x'.join(map(str, shape))} | {'x'.join(map(str, patch))} | {batch} | "
              f"{'unpartitioned' if grid is None else 'x'.join(map(str, grid))} | {step:.0f} | {val:.0f} | {process:.0f} "
              f"| {est:.0f} | {measured:.0f} | {'-' if rank_process is None else f'{rank_process:.0f}'} "
              f"| {est / measured:.2f} | {seconds:.1f} |", flush=True)
    return save_ratios(a.out, {"device": a.device, "threads": a.threads, "set": a.set}, rows)


if __name__ == "__main__":
    sys.exit(main())
