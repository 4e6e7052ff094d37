"""Touching nuclei: connected components alone, and split by the distance-transform watershed
(halo_seg.instances.split_touching), scored as instance segmentation is (StarDist's F1 at IoU 0.5).

The split depth is chosen on procedural scenes of touching balls (random radii, 2:1 anisotropic
voxels), then applied to StarDist's synthetic 3D nuclei (see microscopy.py: 51 nuclei, most touching
a neighbour, 31 x 61 x 57 voxels), which played no part in the choice. Both start from the true
foreground (every labelled voxel), so the score is the splitting's alone.

    .venv/bin/python benchmarks/split_nuclei.py [--depths 0.25 0.5 1 1.5 2 3] [--scenes 4] [--wheel PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from microscopy import find_wheel, load_nuclei


def balls(seed: int, shape=(40, 96, 96), n=40, spacing=(2.0, 1.0, 1.0)):
    """Balls of radius 4 to 9 (in x units) placed at random, most overlapping a neighbour a little."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint16)
    grid = np.indices(shape).astype(np.float32)
    for k in range(1, n + 1):
        r = rng.uniform(4, 9)
        c = [rng.uniform(r / s, d - r / s) for d, s in zip(shape, spacing)]
        d2 = sum(((g - cc) * s) ** 2 for g, cc, s in zip(grid, c, spacing))
        lab[(d2 <= r * r) & (lab == 0)] = k
    ids = [k for k in np.unique(lab) if k]
    out = np.zeros_like(lab)
    for i, k in enumerate(ids, 1):   # drop slivers a later ball left of an earlier one
        m = lab == k
        if m.sum() >= 30:
            out[m] = i
    return out, spacing


def f1_at(pred: np.ndarray, truth: np.ndarray, thr: float = 0.5) -> tuple[float, int, int, int]:
    """F1 with one-to-one matches of IoU >= thr (halo_seg.evaluate.compare_instances): (F1, TP, FP, FN)."""
    from halo_seg.evaluate import compare_instances
    t = compare_instances(pred, truth, (thr,))
    return float(t["f1"][0]), int(t["tp"][0]), int(t["fp"][0]), int(t["fn"][0])


def score(truth, spacing, depth, tmp):
    import zarr
    from halo_seg.instances import label_instances, split_touching
    label_instances(truth > 0, tmp, spacing=spacing, dtype=np.uint32)
    if depth:
        split_touching(tmp, depth, spacing)
    return f1_at(zarr.open_array(str(tmp))[...].astype(np.int64), truth.astype(np.int64))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=float, nargs="*", default=[0.25, 0.5, 1.0, 1.5, 2.0, 3.0])
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--wheel", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "split_nuclei.json"))
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="halo-seg-split-")) / "o.zarr"
    depths = [0.0] + a.depths
    rows = {}
    print(f"{'depth':>6} {'balls F1 (mean of ' + str(a.scenes) + ')':>22}")
    for d in depths:
        f1s = [score(*balls(s), d, tmp)[0] for s in range(a.scenes)]
        rows[d] = {"balls_f1": float(np.mean(f1s)), "balls_f1_each": f1s}
        print(f"{d:>6} {np.mean(f1s):>22.3f}", flush=True)
    best = max(a.depths, key=lambda d: rows[d]["balls_f1"])
    img, lab = load_nuclei(find_wheel(a.wheel))
    # its anisotropy from the nuclei's median extents, as StarDist's 3D example estimates it
    from scipy import ndimage as ndi
    med = np.median([[sl.stop - sl.start for sl in o] for o in ndi.find_objects(lab) if o is not None], 0)
    nuc_spacing = tuple(float(v) for v in med.max() / med)
    print(f"\nchosen on the balls: depth {best}; StarDist's nuclei ({len(np.unique(lab)) - 1}, spacing "
          f"{tuple(round(v, 2) for v in nuc_spacing)}), held out:")
    print(f"{'depth':>6} {'F1':>6} {'TP':>4} {'FP':>4} {'FN':>4}")
    nuclei = {}
    for d in depths:
        f1, tp, fp, fn = score(lab, nuc_spacing, d, tmp)
        nuclei[d] = {"f1": f1, "tp": tp, "fp": fp, "fn": fn}
        print(f"{d:>6} {f1:>6.3f} {tp:>4} {fp:>4} {fn:>4}" + ("   <- chosen" if d == best else
                                                               "   (components alone)" if d == 0 else ""))
    Path(a.out).write_text(json.dumps({"balls": {str(k): v for k, v in rows.items()}, "chosen_depth": best,
                                       "nuclei": {str(k): v for k, v in nuclei.items()},
                                       "nuclei_spacing": nuc_spacing, "machine": platform.platform(),
                                       "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
