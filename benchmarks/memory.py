"""The engine's memory estimate against the ranks' measured peaks (engine/memory.py).

For three U-Net configurations (the shipped one, twice as wide, one level deeper), several block
shapes, grids, mirroring and input dtypes, `segment` runs on a random volume and each rank reports
its peak resident-memory growth (the kernel's high-water mark, reset before it reads its block).
The estimate must never be below the measured peak (a run it lets through must fit) and should not
be far above it (a run it refuses should not have fitted). Whole and tile modes run in this
process and measure its own growth. With --device cuda the rank's torch.cuda.max_memory_allocated
is measured instead.

    .venv/bin/python benchmarks/memory.py [--device cpu|cuda] [--threads 1] [--set all|thin]
                                          [--conv onednn pytorch] [--out results/memory.json]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_ratios  # noqa: E402

from halo_seg.engine.memory import MIB, network_bytes_per_voxel  # noqa: E402
from halo_seg.engine.runner import segment  # noqa: E402
from halo_seg.engine.unet import UNet3D  # noqa: E402
from halo_seg.engine.weights import load_unet, save_unet  # noqa: E402

NETS = {"shipped (base 8, depth 3, 3 classes)": None,
        "base 16, depth 3, 2 classes": dict(base=16, depth=3, out_channels=2),
        "base 8, depth 4, 4 classes": dict(base=8, depth=4, out_channels=4)}
RUNS = [((160, 160, 160), (1, 1, 1), "", "float32", "halo"),
        ((160, 160, 160), (2, 1, 1), "", "float32", "halo"),
        ((160, 160, 160), (1, 1, 1), "x", "uint16", "halo"),
        ((128, 192, 160), (2, 2, 1), "", "uint8", "halo"),
        ((96, 96, 96), (2, 1, 1), "", "float32", "halo")]
# whole and tile modes run in the calling process (this one), for the shipped network; tile mode
# at two depths of the same plane, since it holds one band of windows, not the whole volume
SINGLE = [((160, 160, 160), (1, 1, 1), "", "float32", "whole"),
          ((128, 256, 256), (1, 1, 1), "", "uint16", "tile"),
          ((384, 256, 256), (1, 1, 1), "", "uint16", "tile")]
# thin blocks, where PyTorch took its im2col kernel for most convolutions before engine/conv.py
THIN = [((64, 256, 256), (8, 1, 1), "", "float32", "halo"),
        ((32, 256, 256), (2, 1, 1), "", "float32", "halo"),
        ((8, 512, 512), (1, 1, 1), "", "float32", "whole"),
        ((16, 256, 256), (1, 1, 1), "", "float32", "whole"),
        ((16, 1024, 1024), (2, 1, 1), "", "uint16", "halo"),
        ((8, 1024, 1024), (1, 1, 1), "", "uint16", "whole")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every volume's edges (GPU: 2)")
    ap.add_argument("--set", choices=["all", "thin"], default="all",
                    help="thin: the shipped network on thin blocks only")
    ap.add_argument("--conv", nargs="*", choices=["onednn", "pytorch"], default=["onednn"],
                    help="pytorch: PyTorch's own choice of convolution kernel (HALO_SEG_PYTORCH_CONV=1), "
                         "as before engine/conv.py")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory.json"))
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp())
    rows = []
    print("| network | conv | mode | volume | grid | mirror | dtype | block | counted B/voxel | estimated MiB "
          "| measured MiB | estimated / measured | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    nets = NETS if a.set == "all" else {k: v for k, v in NETS.items() if v is None}
    for (name, kw), conv in [(n, c) for n in nets.items() for c in a.conv]:
        os.environ["HALO_SEG_PYTORCH_CONV"] = "1" if conv == "pytorch" else "0"   # the ranks inherit it
        if kw is None:
            weights, config = "default", load_unet("default")[0].config
        else:
            torch.manual_seed(0)
            net = UNet3D(**kw)
            weights, config = str(save_unet(net, tmp / f"{len(rows)}.safetensors", flips=[0, 1, 2])), net.config
        runs = THIN if a.set == "thin" else RUNS + (SINGLE + THIN if kw is None else [])
        for shape, grid, mirror, dtype, mode in runs:
            if a.scale != 1:
                shape = tuple(max(16, int(round(s * a.scale / 16)) * 16) for s in shape)
            vol = rng.normal(100, 20, shape).clip(0, 255).astype(dtype)
            res = segment(vol, tmp / f"out{len(rows)}.zarr", weights=weights, grid=grid, device=a.device,
                          threads=a.threads, mirror=mirror, mode=mode)
            key = "cuda_peak_mb" if a.device == "cuda" else "peak_mb"
            measured = max(r[key] for r in res.ranks)
            est = res.memory.per_rank / MIB
            row = dict(network=name, conv=conv, seconds=res.seconds, mode=mode, volume=list(shape), grid=list(grid), mirror=mirror, dtype=dtype,
                       block=res.ranks[0]["block"], counted_per_voxel=network_bytes_per_voxel(config, mirror),
                       estimated_mib=est, measured_mib=measured, ratio=est / measured)
            rows.append(row)
            print(f"| {name} | {conv} | {mode} | {'x'.join(map(str, shape))} | {'x'.join(map(str, grid))} | {mirror or '-'} | {dtype} "
                  f"| {'x'.join(map(str, row['block']))} | {row['counted_per_voxel']:.0f} | {est:.0f} | "
                  f"{measured:.0f} | {row['ratio']:.2f} | {res.seconds:.1f} |", flush=True)
    return save_ratios(a.out, {"device": a.device, "threads": a.threads}, rows)


if __name__ == "__main__":
    sys.exit(main())
