"""The default model on scans of other voxel sizes than its 2 mm: run on the voxels as they are
(`--resample off`, what `segment` did before) against resampled to 2 mm and back (`auto`).

Colin27 (needs ../shared/data) at 1 mm, at 1 x 1 x 3 mm (3 mm slices: each the mean of three 1 mm
slices, its labels those of the middle one) and at 3 mm (3 x 3 x 3 block means, the middle voxel's
labels), each written as a NIfTI that records its voxel size, as a scanner's file would; and the
shipped 2 mm sample, where `auto` must change nothing. Classes and held-out region as in the default
model's card: brain and deep grey matter, scored on the right hemisphere (never trained on).

    HALO_SEG_SHARED_DATA=../shared/data .venv/bin/python benchmarks/spacing.py [--repeats 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_results  # noqa: E402

from halo_seg.engine.runner import segment  # noqa: E402
from halo_seg.metrics import dice  # noqa: E402
from halo_seg.samples import SUBCORTICAL, load_colin27_full, load_colin27_sample, shared_data_dir  # noqa: E402

CLASSES = ((1, "brain"), (2, "deep_grey"))


def _targets(brain, aal):
    lab = brain.astype(np.uint8)
    lab[np.isin(aal, list(SUBCORTICAL))] = 2
    return lab


def scans():
    """(name, image, labels, spacing) on each grid."""
    s = load_colin27_sample()
    lab2 = s.brain.astype(np.uint8)
    lab2[s.labels > 0] = 2
    out = [("2 mm (the model's)", s.image.astype(np.float32), lab2, s.spacing)]
    if shared_data_dir() is None:
        return out
    f = load_colin27_full()
    img, lab = f.image.astype(np.float32), _targets(f.brain, f.labels)
    out.append(("1 mm", img, lab, (1.0, 1.0, 1.0)))
    n = img.shape[0] // 3 * 3
    out.append(("1 x 1 x 3 mm", img[:n].reshape(n // 3, 3, *img.shape[1:]).mean(1), lab[1:n:3], (3.0, 1.0, 1.0)))
    c = [k // 3 * 3 for k in img.shape]
    cube = img[:c[0], :c[1], :c[2]].reshape(c[0] // 3, 3, c[1] // 3, 3, c[2] // 3, 3).mean((1, 3, 5))
    out.append(("3 mm", cube, lab[1:c[0]:3, 1:c[1]:3, 1:c[2]:3], (3.0, 3.0, 3.0)))
    return out


def _nifti(path, image, spacing):
    aff = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), aff), str(path))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting, interleaved; the median is kept")
    ap.add_argument("--grid", default="2,1,1")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "spacing.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    grid = tuple(int(g) for g in a.grid.split(","))
    rows = []
    print(f"{'scan':>20} {'grid':>13} {'resample':>8} {'brain':>6} {'deep grey':>9} {'s median':>8} {'x time':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, img, lab, sp in scans():
            src = _nifti(Path(tmp) / "scan.nii.gz", img, sp)
            right = np.zeros(lab.shape, bool)
            right[..., lab.shape[2] // 2:] = True
            secs = {"off": [], "auto": []}
            res = {}
            for _ in range(a.repeats):   # interleaved: the machine's load falls on both alike
                for policy in secs:
                    r = segment(src, Path(tmp) / f"{policy}.zarr", a.weights, grid=grid, threads=a.threads,
                                resample=policy)
                    secs[policy].append(r.seconds)
                    res[policy] = r
            for policy in secs:
                pred = zarr.open_group(str(Path(tmp) / f"{policy}.zarr"), mode="r")["labels"][...]
                assert pred.shape == lab.shape
                s = float(np.median(secs[policy]))
                row = {"scan": name, "shape": list(lab.shape), "spacing": list(sp), "resample": policy,
                       "ran_at": res[policy].resampled, "seconds": s,
                       "time_ratio": s / float(np.median(secs["off"])),
                       "dice": {c: float(dice(pred[right] == i, lab[right] == i)) for i, c in CLASSES}}
                rows.append(row)
                at = "x".join(map(str, res[policy].resampled["shape"])) if res[policy].resampled else "as is"
                print(f"{name:>20} {at:>13} {policy:>8} {row['dice']['brain']:6.3f} {row['dice']['deep_grey']:9.3f} "
                      f"{s:8.2f} {row['time_ratio']:6.2f}")
    rows.append({"platform": platform.platform(), "threads": a.threads, "grid": list(grid), "torch": torch.__version__,
                 "repeats": a.repeats})
    return save_results(a.out, "Colin27 on several voxel grids, right hemisphere (never trained on)", rows)


if __name__ == "__main__":
    raise SystemExit(main())
