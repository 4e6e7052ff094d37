"""How well `halo-seg review` finds the slices worth checking in an automatic segmentation.

The 2 mm Colin27 sample, scored on the right hemisphere that the default model never trained on.
For each axis, the k slices ranked by expected wrong voxels (the engine's `uncertainty` output,
summed per slice) against: the truly worst k slices (an oracle), the k slices with the longest
predicted class borders (errors sit on borders: the naive rule), and k random slices. Each cell is
the share of all wrong voxels those k slices hold. Also: expected against actual wrong voxels (is
1 - max probability calibrated?), and Pearson r per slice.

    .venv/bin/python benchmarks/review.py [--weights default PATH ...] [--mirror "" zyx] [--top 5 10]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import zarr
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_results  # noqa: E402

from halo_seg.engine.runner import segment  # noqa: E402
from halo_seg.review import expected_errors, review_order  # noqa: E402
from halo_seg.train.default_model import default_targets, hemisphere_regions  # noqa: E402


def share(per_slice_err, chosen) -> float:
    return float(per_slice_err[list(chosen)].sum() / per_slice_err.sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="*", default=["default"])
    ap.add_argument("--mirror", nargs="*", default=["", "zyx"], help="'' for none")
    ap.add_argument("--top", type=int, nargs="*", default=[5, 10])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--random-draws", type=int, default=1000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "review.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    img, lab = default_targets()
    _, va = hemisphere_regions(img.shape)
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'weights':>14} {'mirror':>6} {'axis':>4} {'k':>3} {'review':>7} {'oracle':>7} {'borders':>7} "
          f"{'random':>7} {'r':>6} {'expected/actual wrong':>22}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t1.npy"
        np.save(src, img)
        for w in a.weights:
            for m in a.mirror:
                out = Path(tmp) / "o.zarr"
                segment(src, out, w, mode="whole", mirror=m, threads=a.threads)
                g = zarr.open_group(str(out), mode="r")
                pred = g["labels"][...]
                unc = np.where(va, g["uncertainty"][...], 0)   # the trained hemisphere is not scored
                wrong = (pred != lab) & va
                border = np.zeros_like(va)
                for c in np.unique(pred):
                    if c:
                        mc = pred == c
                        border |= mc & ~ndi.binary_erosion(mc)
                border &= va
                sums = expected_errors(unc)
                expected, actual = float(unc.sum() / 100.0), int(wrong.sum())
                for axis in range(3):
                    other = tuple(i for i in range(3) if i != axis)
                    err = wrong.sum(other).astype(float)
                    bord = border.sum(other).astype(float)
                    scored = np.flatnonzero(va.any(other))
                    r = float(np.corrcoef(sums[axis][scored], err[scored])[0, 1])
                    for k in a.top:
                        rand = np.mean([share(err, rng.choice(scored, k, replace=False))
                                        for _ in range(a.random_draws)])
                        row = {"weights": str(w), "mirror": m, "axis": "zyx"[axis], "k": k,
                               "review": share(err, review_order(sums[axis], k)),
                               "oracle": share(err, review_order(err, k)),
                               "borders": share(err, review_order(bord, k)), "random": float(rand),
                               "r": r, "expected_wrong": expected, "actual_wrong": actual,
                               "slices_scored": int(len(scored))}
                        rows.append(row)
                        print(f"{Path(str(w)).stem[-14:]:>14} {m or 'none':>6} {'zyx'[axis]:>4} {k:>3} "
                              f"{row['review']:7.3f} {row['oracle']:7.3f} {row['borders']:7.3f} {rand:7.3f} "
                              f"{r:6.2f} {expected:>10.0f} / {actual:<10d}")
    return save_results(a.out, "2 mm Colin27, right hemisphere (never trained on)", rows)


if __name__ == "__main__":
    raise SystemExit(main())
