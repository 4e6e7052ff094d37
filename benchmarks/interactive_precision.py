"""The interactive network's training step in bf16 autocast against fp32: seconds and loss, one run.

The step of `train-interactive` (interactive_train.train_step): a batch of one-step examples and
unrolled sweeps, forward, losses, backward, gradient clipping and AdamW, for the shipped network (width 16, 64 px crops) from
its own weights. The same batches (phantoms, made once) go through both precisions, alternating
step by step, so load on the machine hits both alike; the example making is left out.

    .venv/bin/python benchmarks/interactive_precision.py [--steps 10] [--batch 24] [--sweeps 8 --sweep-steps 6]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_results  # noqa: E402

from halo_seg.engine.precision import native_bf16  # noqa: E402
from halo_seg.interactive.model_io import load_memnet  # noqa: E402
from halo_seg.train.interactive_data import ExampleSampler, phantom_sources  # noqa: E402
from halo_seg.train.interactive_train import train_step  # noqa: E402


def step(net, opt, batch, sweep, precision):
    t0 = time.perf_counter()
    loss = train_step(net, opt, batch, sweep, torch.device("cpu"), precision)[0]
    return time.perf_counter() - t0, float(loss)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--sweeps", type=int, default=8)
    ap.add_argument("--sweep-steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "interactive_precision.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    net0, meta = load_memnet("default")
    net0.train()
    sampler = ExampleSampler(phantom_sources(4), size=net0.size, seed=0)
    data = [(sampler.batch(a.batch), sampler.sweep_batch(a.sweeps, a.sweep_steps)) for _ in range(a.steps)]
    nets = {p: copy.deepcopy(net0) for p in ("fp32", "bf16")}
    opts = {p: torch.optim.AdamW(n.parameters(), lr=0.0) for p, n in nets.items()}   # lr 0: the same weights each step
    rows = {p: [] for p in nets}
    for i, (batch, sweep) in enumerate(data):
        for p in ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32"):
            rows[p].append(step(nets[p], opts[p], batch, sweep, p))
    res = []
    base = float(np.median([s for s, _ in rows["fp32"][1:]]))
    print(f"cpu: native bfloat16 {native_bf16('cpu')}; batch {a.batch}, {a.sweeps} sweeps of {a.sweep_steps} steps, "
          f"{a.threads} threads; first step of each left out")
    print(f"{'precision':>9} {'s/step':>7} {'x time':>6} {'mean loss':>9}")
    for p, r in rows.items():
        s = float(np.median([t for t, _ in r[1:]]))
        loss = float(np.mean([v for _, v in r]))
        res.append({"precision": p, "s_per_step": s, "x_time": s / base, "mean_loss": loss, "steps": a.steps})
        print(f"{p:>9} {s:7.3f} {s / base:6.2f} {loss:9.4f}")
    return save_results(a.out, {"batch": a.batch, "sweeps": a.sweeps, "sweep_steps": a.sweep_steps,
                                "threads": a.threads, "weights": meta.get("path", "default")}, res)


if __name__ == "__main__":
    sys.exit(main())
