"""Three boxes: one across each axis, or all three across one? A diagnosis of prompting in several planes.

The shipped loop puts every box on an axial slice (a box on the largest, then boxes on recommended
slices). Sessions can slice across any axis (``InteractiveSegmenter(axis=...)``), and on the
benchmark's structures the best single plane differs from structure to structure. With three boxes
to give, this script compares, per region:
- the axial loop after 1 and 3 rounds (box on the largest axial slice, then 2 recommended slices);
- one box on the largest slice across each axis, each propagated across its own axis;
- their fusions: a vote of 2 of 3, and the union.
Regions: the 16 validation regions by default (never the benchmark's structures for a choice).

    cd benchmarks && HALO_SEG_SHARED_DATA=../../shared/data ../.venv/bin/python planes.py [--regions ...] [--workers 2]
"""
from __future__ import annotations

import argparse
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from _results import save_results
from halo_seg.samples import QUALITY_FIT, SUBCORTICAL, VALIDATION

KEYS = ("axial_1", "axial_3", "coronal_1", "sagittal_1", "vote2", "union", "best_plane_1")
AXES = {0: "axial", 1: "coronal", 2: "sagittal"}
_DATA = None


def _data():
    global _DATA
    if _DATA is None:
        from halo_seg.samples import load_colin27_full
        _DATA = load_colin27_full()
    return _DATA


def region(k: int) -> dict:
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.simulate import run_session
    from halo_seg.metrics import dice
    torch.set_num_threads(1)
    data = _data()
    truth = data.labels == k
    out, preds = {"label": k}, {}
    for axis, name in AXES.items():
        seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu", axis=axis)
        recs = run_session(seg, truth, rounds=3 if axis == 0 else 1, seed=k)
        out[f"{name}_1"] = recs[0]["dice"]
        if axis == 0:
            out["axial_3"] = recs[-1]["dice"]
            seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu")
            run_session(seg, truth, rounds=1, seed=k)
        preds[axis] = seg.prediction
    votes = sum(p.astype(np.int8) for p in preds.values())
    out["vote2"], out["union"] = dice(votes >= 2, truth), dice(votes >= 1, truth)
    out["best_plane_1"] = max(out[f"{n}_1"] for n in AXES.values())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, nargs="*", default=sorted(VALIDATION),
                    help="AAL labels (default: the 16 validation regions; 'fit' in --set for the 24 others)")
    ap.add_argument("--set", choices=["validation", "fit", "benchmark"], default=None,
                    help="a named set of regions instead of --regions")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "planes.json"))
    a = ap.parse_args(argv)
    regions = {"validation": sorted(VALIDATION), "fit": sorted(QUALITY_FIT), "benchmark": sorted(SUBCORTICAL),
               None: a.regions}[a.set]
    names = {**VALIDATION, **SUBCORTICAL}
    with Pool(a.workers) as pool:
        rows = []
        for r in pool.imap(region, regions):
            r["name"] = names.get(r["label"], str(r["label"]))
            rows.append(r)
            print(f"{r['name']:20s} " + " ".join(f"{key} {r[key]:.3f}" for key in KEYS), flush=True)
    print("\n| " + " | ".join(KEYS) + " |\n" + "|---" * len(KEYS) + "|")
    print("| " + " | ".join(f"{np.mean([r[key] for r in rows]):.3f}" for key in KEYS) + " |")
    return save_results(a.out, regions, rows)


if __name__ == "__main__":
    raise SystemExit(main())
