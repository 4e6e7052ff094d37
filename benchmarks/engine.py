"""Halo-partitioned inference vs overlap-tile vs whole volume: time, per-rank memory, exactness.

    python benchmarks/engine.py [--ranks 1 2 4 8] [--repeats 3] [--device cpu|cuda] [--volume PATH]

Same network and volume for every mode. The volume is the 1 mm Colin27 T1 (181 x 217 x 181) from
../shared/data, or the shipped 2 mm sample upsampled 2x when ../shared is absent. Prints a table
and writes benchmarks/results/engine_<device>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import zarr

from halo_seg.engine.partition import factor_grid
from halo_seg.engine.runner import segment
from halo_seg.engine.unet import UNet3D
from halo_seg.engine.weights import default_weights_installed, save_unet
from halo_seg.samples import load_colin27_full, load_colin27_sample, shared_data_dir


def volume(path: str | None, tmp: Path) -> tuple[Path, str]:
    if path:
        return Path(path), Path(path).name
    if shared_data_dir():
        img, name = load_colin27_full().image, "colin27 1 mm (181x217x181)"
    else:
        img = np.repeat(np.repeat(np.repeat(load_colin27_sample().image, 2, 0), 2, 1), 2, 2)
        name = "colin27 2 mm sample upsampled 2x"
    p = tmp / "vol.npy"
    np.save(p, img.astype(np.float32))
    return p, name


def weights(tmp: Path) -> tuple[Path | str, str]:
    if default_weights_installed():
        return "default", "shipped default"
    torch.manual_seed(0)
    return save_unet(UNet3D(1, 3, base=8, depth=3), tmp / "w.safetensors"), "random init (same shape as default)"


def run(src, out, w, mode, grid, device, tile, threads=None):
    r = segment(src, out, w, grid=grid, mode=mode, device=device, tile_size=tile, save_probabilities=True,
                threads=threads)
    return {"wall_s": r.seconds, "compute_s": max(x["seconds"] for x in r.ranks),
            "peak_mb_per_rank": max(x["peak_mb"] for x in r.ranks),
            "cuda_peak_mb": max((x.get("cuda_peak_mb", 0) for x in r.ranks), default=0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--volume", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="halo-bench-"))
    src, vname = volume(a.volume, tmp)
    w, wname = weights(tmp)
    shape = np.load(src, mmap_mode="r").shape
    cores = os.cpu_count()
    configs = [("whole", (1, 1, 1))] + [("halo", factor_grid(n, shape)) for n in a.ranks] + [("tile", (1, 1, 1))]
    rows = []
    for mode, grid in configs:
        reps = [run(src, tmp / f"{mode}{'x'.join(map(str, grid))}.zarr", w, mode, grid, a.device, a.tile)
                for _ in range(a.repeats if mode != "tile" else max(1, a.repeats // 2))]
        med = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
        rows.append({"mode": mode, "grid": list(grid), "ranks": int(np.prod(grid)), "repeats": len(reps), **med})
        print(f"  {mode:5s} {grid}: {med['wall_s']:.1f}s", flush=True)
    ref = zarr.open_group(str(tmp / "whole1x1x1.zarr"), mode="r")
    pref, lref = ref["probabilities"][...], ref["labels"][...]
    for row in rows:
        g = zarr.open_group(str(tmp / f"{row['mode']}{'x'.join(map(str, row['grid']))}.zarr"), mode="r")
        row["max_abs_prob_diff_vs_whole"] = float(np.abs(g["probabilities"][...] - pref).max())
        row["label_disagreement_vs_whole"] = float((g["labels"][...] != lref).mean())
    base = next(r for r in rows if r["mode"] == "halo" and r["ranks"] == 1)
    tile = next(r for r in rows if r["mode"] == "tile")
    for row in rows:
        row["mem_vs_1rank"] = row["peak_mb_per_rank"] / base["peak_mb_per_rank"]
        row["wall_vs_tile"] = row["wall_s"] / tile["wall_s"]
        row["compute_vs_tile"] = row["compute_s"] / tile["compute_s"]
    print(f"\nvolume {vname} {shape}; weights {wname}; device {a.device}; {cores} cores; "
          f"median of {a.repeats}; tile {a.tile}^3 at 50% overlap")
    hdr = (f"{'mode':6s}{'grid':>8s}{'wall s':>9s}{'compute s':>11s}{'peak MB/rank':>14s}{'mem/1rank':>11s}"
           f"{'wall/tile':>11s}{'max|dp|':>10s}{'label diff':>12s}{'GPU MB':>9s}")
    print(hdr)
    for r in rows:
        print(f"{r['mode']:6s}{'x'.join(map(str, r['grid'])):>8s}{r['wall_s']:9.2f}{r['compute_s']:11.2f}"
              f"{r['peak_mb_per_rank']:14.0f}{r['mem_vs_1rank']:11.2f}{r['wall_vs_tile']:11.2f}"
              f"{r['max_abs_prob_diff_vs_whole']:10.1e}{r['label_disagreement_vs_whole']:12.2e}"
              f"{r['cuda_peak_mb']:9.0f}")
    out = Path(a.out or Path(__file__).parent / "results" / f"engine_{a.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"volume": vname, "shape": list(shape), "weights": wname, "device": a.device,
                               "cores": cores, "torch": torch.__version__, "machine": platform.machine(),
                               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                               "command": " ".join(["python"] + sys.argv), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
