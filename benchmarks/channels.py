"""What a network of several input channels costs `segment`: time and each rank's peak memory against
the engine's estimate, for 1, 2 and 4 channels, and the one-channel run against another checkout
(the commit before several channels were taken: db43827), so that one channel costs what it did.

A random-init 3D U-Net (base 8, depth 3, 3 classes) with 1, 2 or 4 input channels segments a
``--shape`` volume of float32 .npy files (one per channel) in halo mode on a 2 x 1 x 1 grid; each
run in a process of its own, interleaved, ``--repeat`` times; medians reported.

    git worktree add /tmp/before db43827
    .venv/bin/python benchmarks/channels.py --before /tmp/before/src [--shape 96 128 128] [--repeat 3]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import before_and_now_parser, in_fresh_process, one_or_main, save_results

NOW = str(Path(__file__).resolve().parents[1] / "src")


def _one(spec: dict) -> dict:
    sys.path.insert(0, spec["src"])
    import torch
    from halo_seg.engine.runner import segment
    from halo_seg.engine.unet import UNet3D
    from halo_seg.engine.weights import save_unet
    torch.manual_seed(0)
    n, d = spec["channels"], spec["dir"]
    weights = f"{d}/c{n}.safetensors"
    save_unet(UNet3D(n, 3, base=8, depth=3), weights, **({"channels": [f"m{k}" for k in range(n)]} if n > 1 else {}))
    files = [f"{d}/ch{k}.npy" for k in range(n)]
    out = f"{d}/out_{n}_{time.time_ns()}.zarr"
    t0 = time.perf_counter()
    res = segment(files if n > 1 else files[0], out, weights=weights, grid=(2, 1, 1), threads=spec["threads"] // 2 or 1)
    seconds = time.perf_counter() - t0
    peak = max(r["peak_mb"] for r in res.ranks)
    return {"seconds": seconds, "peak_mb": peak, "estimate_mb": res.memory.per_rank / 2 ** 20,
            "ratio": res.memory.per_rank / 2 ** 20 / peak}


def main() -> int:
    ap = before_and_now_parser(__doc__, "channels.json", shape=(96, 128, 128))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(4):
            np.save(f"{tmp}/ch{k}.npy", rng.normal(k * 10, 1 + k, a.shape).astype(np.float32))
        runs = {"before, 1 channel": (a.before, 1), "now, 1 channel": (NOW, 1), "now, 2 channels": (NOW, 2),
                "now, 4 channels": (NOW, 4)}
        got = {name: [] for name in runs}
        for _ in range(a.repeat):   # interleaved: the machine is shared and noisy
            for name, (src, n) in runs.items():
                got[name].append(in_fresh_process(__file__, {"src": src, "channels": n, "dir": tmp,
                                                             "threads": a.threads}))
                print(name, got[name][-1], flush=True)
        meds = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for name, rs in got.items()}
    base = meds["now, 1 channel"]
    print(f"\n{'run':20s} {'seconds':>8s} {'x 1 ch':>7s} {'peak MiB':>9s} {'estimate':>9s} {'est/peak':>8s}")
    for name, m in meds.items():
        print(f"{name:20s} {m['seconds']:8.2f} {m['seconds'] / base['seconds']:7.2f} {m['peak_mb']:9.0f} "
              f"{m['estimate_mb']:9.0f} {m['ratio']:8.2f}")
        rows.append({"run": name, **m, "time_vs_one_channel": m["seconds"] / base["seconds"]})
    return save_results(a.out, {"shape": list(a.shape), "grid": [2, 1, 1], "threads": a.threads,
                                "repeat": a.repeat, "network": "UNet3D(C, 3, base=8, depth=3)"}, rows)


if __name__ == "__main__":
    sys.exit(one_or_main(_one, main))
