"""How close `halo-seg train --dry-run`'s estimate comes to the run it estimates.

For each setting (the 2 mm Colin27 sample, brain and deep grey matter as `train-default` trains
them, unpartitioned and on a 2 x 1 x 1 grid), the dry run's estimate and the real run's wall time,
each through the command line, one after the other.

    .venv/bin/python benchmarks/dry_run.py [--iterations 300] [--epoch 50]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_results  # noqa: E402

from halo_seg.train.default_model import default_targets  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--epoch", type=int, default=50)
    ap.add_argument("--grids", nargs="*", default=["1,1,1", "2,1,1"])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dry_run.json"))
    a = ap.parse_args(argv)
    img, lab = default_targets()
    rows = []
    print(f"{'grid':>6} {'estimate min':>12} {'actual min':>10} {'actual / estimate':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, arr in (("img", img), ("lab", lab)):
            nib.save(nib.Nifti1Image(np.asarray(arr).transpose(2, 1, 0), np.diag([2.0, 2.0, 2.0, 1.0])),
                     f"{tmp}/{name}.nii.gz")
        for grid in a.grids:
            base = [sys.executable, "-m", "halo_seg.cli", "train", "--image", f"{tmp}/img.nii.gz", "--labels",
                    f"{tmp}/lab.nii.gz", "--out", f"{tmp}/m.safetensors", "--patch", "48", "48", "40",
                    "--iterations", str(a.iterations), "--epoch", str(a.epoch), "--grid", grid, "--device", "cpu",
                    "--quiet"]
            t0 = time.perf_counter()
            r = subprocess.run(base + ["--dry-run"], capture_output=True, text=True, check=True)
            dry_s = time.perf_counter() - t0
            plan = json.loads(r.stdout.strip().splitlines()[-1])["dry_run"]
            t0 = time.perf_counter()
            subprocess.run(base, capture_output=True, text=True, check=True)
            actual = (time.perf_counter() - t0) / 60
            row = {"grid": grid, "iterations": a.iterations, "epoch": a.epoch, "plan": plan,
                   "dry_run_seconds": dry_s, "actual_minutes": actual,
                   "ratio": actual / plan["estimated_minutes"]}
            rows.append(row)
            print(f"{grid:>6} {plan['estimated_minutes']:12.2f} {actual:10.2f} {row['ratio']:17.2f}"
                  f"   (the dry run took {dry_s:.0f} s)")
    rows.append({"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()})
    return save_results(a.out, "2 mm Colin27 sample, brain + deep grey (train-default's classes)", rows)


if __name__ == "__main__":
    raise SystemExit(main())
