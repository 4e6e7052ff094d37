"""A user who paints exact masks: propagation against "fill between slices" from the same slices.

The interactive benchmark gives the network boxes and the baseline exact masks, so the two curves
answer different questions. Here both get exact masks (``set_slice_mask``) on the same 1..K evenly
spaced slices of each AAL region (for K >= 2 these include the object's first and last slice, as
3D Slicer's users paint them), and the volume Dice of the propagation is set beside the
signed-distance interpolation between them. Variants of the session: ``gap=MM`` (the interpolation
replaces the propagation between consecutive painted slices at most MM apart,
segmenter.PAINTED_GAP_MM; ``gap=0`` the propagation alone), ``blend=W`` (the interpolated shape
mixed into the propagation between annotated slices with weight W, propagation.BETWEEN_BLEND).

    cd benchmarks && HALO_SEG_SHARED_DATA=../../shared/data ../.venv/bin/python painted.py \
        [--variants base gap=0] [--regions 29 30 ...] [--k 6]
"""
from __future__ import annotations

import argparse
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from _results import save_results
from halo_seg.samples import SUBCORTICAL, VALIDATION


def run_variant(args) -> dict:
    spec, regions, kmax = args
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive import propagation, segmenter
    from halo_seg.interactive.baseline import evenly_spaced_slices, interpolate_masks
    from halo_seg.metrics import dice
    from halo_seg.samples import load_colin27_full
    torch.set_num_threads(1)
    kv = dict(x.split("=", 1) for x in spec.split(",")) if spec != "base" else {}
    propagation.BETWEEN_BLEND = float(kv.get("blend", 0))
    segmenter.PAINTED_GAP_MM = float(kv.get("gap", segmenter.PAINTED_GAP_MM))
    data = load_colin27_full()
    per, fill = {}, {}
    for lab in regions:
        name = {**VALIDATION, **SUBCORTICAL}.get(lab, str(lab))
        truth = data.labels == lab
        per[name], fill[name] = [], []
        for k in range(1, kmax + 1):
            zs = evenly_spaced_slices(truth, k)
            seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu")
            for z in zs:
                seg.set_slice_mask(z, truth[z])
            per[name].append(dice(seg.propagate(), truth))
            fill[name].append(dice(interpolate_masks({z: truth[z] for z in zs}, truth.shape), truth))
        print(f"{spec:10s} {name:22s} " + " ".join(f"{d:.2f}" for d in per[name])
              + "  fill: " + " ".join(f"{d:.2f}" for d in fill[name]), flush=True)
    return {"variant": spec, "mean_dice_per_k": np.mean(list(per.values()), 0).tolist(),
            "fill_between_per_k": np.mean(list(fill.values()), 0).tolist(), "per_region": per,
            "fill_per_region": fill}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=["base", "gap=0"])
    ap.add_argument("--regions", type=int, nargs="*", default=list(VALIDATION),
                    help="AAL labels (default: the 16 validation regions; the benchmark's are samples.SUBCORTICAL)")
    ap.add_argument("--k", type=int, default=6, help="painted slices, 1..K")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "painted.json"))
    a = ap.parse_args(argv)
    with get_context("spawn").Pool(a.jobs) as pool:
        results = pool.map(run_variant, [(v, a.regions, a.k) for v in a.variants])
    print("\n| painted slices | " + " | ".join(r["variant"] for r in results) + " | fill between |")
    print("|---" * (len(results) + 2) + "|")
    for k in range(a.k):
        print(f"| {k + 1} | " + " | ".join(f"{r['mean_dice_per_k'][k]:.3f}" for r in results)
              + f" | {results[0]['fill_between_per_k'][k]:.3f} |")
    return save_results(a.out, a.regions, results)


if __name__ == "__main__":
    raise SystemExit(main())
