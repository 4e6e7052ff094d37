"""bf16 autocast against fp32 in the automatic engine: time, memory, agreement and Dice, in one run.

Each run is `segment` in a fresh process (so each peak is its own): whole volume (one process)
and halo (ranks of --grid), fp32 and bf16, interleaved over --repeats. Dice on the 2 mm Colin27
sample's right hemisphere, which the default model never trained on (brain and deep grey matter,
as in its model card); labels compared voxel by voxel with the fp32 whole-volume run. With
../shared/data (HALO_SEG_SHARED_DATA) the 1 mm volume (181 x 217 x 181) is timed too.

    .venv/bin/python benchmarks/precision.py [--device cpu|cuda] [--repeats 3] [--grid 2,1,1]
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import in_fresh_process, one_or_main, save_results  # noqa: E402


def _one(spec: dict) -> dict:
    """One segment run, in this (fresh) process; prints its report as JSON."""
    from halo_seg.engine.runner import segment
    res = segment(spec["src"], spec["out"], mode=spec["mode"], grid=tuple(spec["grid"]), device=spec["device"],
                  precision=spec["precision"], threads=spec["threads"])
    peaks = [r.get("cuda_peak_mb", r.get("peak_mb")) for r in res.ranks]
    return {"wall_s": res.seconds, "rank_s": max(r["seconds"] for r in res.ranks),
            "peak_mb": max(peaks), "estimate_mb": res.memory.per_rank / 2 ** 20}


def _labels(path) -> np.ndarray:
    import zarr
    return np.asarray(zarr.open_group(str(path), mode="r")["labels"])


def main(argv=None) -> int:
    import torch
    from halo_seg.engine.precision import native_bf16
    from halo_seg.metrics import dice
    from halo_seg.samples import load_colin27_full, shared_data_dir
    from halo_seg.train.default_model import default_targets, hemisphere_regions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grid", default=None, help="halo runs' grid (default: 2,1,1 on CPU, one rank per GPU on cuda: "
                                                 "NCCL gives every rank its own GPU)")
    ap.add_argument("--threads", type=int, default=2, help="per whole run; halo ranks share them")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "precision.json"))
    a = ap.parse_args(argv)
    if a.grid is None:
        a.grid = f"{torch.cuda.device_count()},1,1" if a.device == "cuda" else "2,1,1"
    grid = [int(g) for g in a.grid.split(",")]
    world = int(np.prod(grid))
    img, lab = default_targets()
    _, va = hemisphere_regions(img.shape)
    volumes = {"2 mm (91x109x91)": img}
    shared = shared_data_dir()
    if shared is not None:
        volumes["1 mm (181x217x181)"] = load_colin27_full(shared).image
    native = native_bf16(a.device)
    print(f"{a.device}: native bfloat16 {native} ({platform.processor() or platform.machine()}, "
          f"torch {torch.__version__})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for vname, vol in volumes.items():
            src = Path(tmp) / "vol.npy"
            np.save(src, vol)
            runs = {}
            for rep in range(a.repeats):
                for mode in ("whole", "halo"):
                    for prec in ("fp32", "bf16"):   # interleaved, so that load on the machine hits both alike
                        out = Path(tmp) / f"{mode}_{prec}.zarr"
                        spec = dict(src=str(src), out=str(out), mode=mode, grid=grid if mode == "halo" else [1, 1, 1],
                                    device=a.device, precision=prec,
                                    threads=a.threads if mode == "whole" else max(1, a.threads // world))
                        runs.setdefault((mode, prec), []).append(in_fresh_process(__file__, spec))
                        if rep == 0:
                            runs[(mode, prec, "labels")] = _labels(out)
            ref = runs[("whole", "fp32", "labels")]
            for mode in ("whole", "halo"):
                for prec in ("fp32", "bf16"):
                    reps = runs[(mode, prec)]
                    got = runs[(mode, prec, "labels")]
                    row = {"volume": vname, "mode": mode if mode == "whole" else f"halo {a.grid}", "precision": prec,
                           "device": a.device,
                           **{k: float(np.median([r[k] for r in reps])) for k in ("wall_s", "rank_s", "peak_mb",
                                                                                   "estimate_mb")},
                           "differ_from_fp32_whole": int((got != ref).sum()),
                           "share_differing": float((got != ref).mean())}
                    if vname.startswith("2 mm"):
                        row["dice_brain"] = dice((got >= 1) & va, (lab >= 1) & va)
                        row["dice_deep_grey"] = dice((got == 2) & va, (lab == 2) & va)
                    base = runs[(mode, "fp32")]
                    row["x_rank_time_vs_fp32"] = row["rank_s"] / float(np.median([r["rank_s"] for r in base]))
                    row["x_peak_vs_fp32"] = row["peak_mb"] / float(np.median([r["peak_mb"] for r in base]))
                    rows.append(row)
    print(f"{'volume':>18} {'mode':>12} {'prec':>5} {'wall s':>7} {'rank s':>7} {'x time':>6} {'peak MB':>8} "
          f"{'x peak':>6} {'est MB':>7} {'differ':>7} {'brain':>6} {'deep':>6}")
    for r in rows:
        print(f"{r['volume']:>18} {r['mode']:>12} {r['precision']:>5} {r['wall_s']:7.2f} {r['rank_s']:7.2f} "
              f"{r['x_rank_time_vs_fp32']:6.2f} {r['peak_mb']:8.0f} {r['x_peak_vs_fp32']:6.2f} {r['estimate_mb']:7.0f} "
              f"{r['differ_from_fp32_whole']:7d} {r.get('dice_brain', float('nan')):6.3f} "
              f"{r.get('dice_deep_grey', float('nan')):6.3f}")
    return save_results(a.out, {"device": a.device, "native_bf16": native, "grid": a.grid, "repeats": a.repeats,
                                "threads": a.threads}, rows)


if __name__ == "__main__":
    sys.exit(one_or_main(_one, main))
