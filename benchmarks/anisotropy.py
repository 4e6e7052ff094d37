"""Thick slices: the validation protocol on Colin27 resliced to 1, 2, 3 or 5 mm along z.

Clinical CT and MRI are often acquired with slices several times thicker than their pixels; the
interactive network was trained on volumes of about 1 to 1.5 mm along every axis. Here the 1 mm
Colin27 T1 is turned into a thick-slice volume by averaging each run of k consecutive slices (the
partial-volume effect of a thick slice) and keeping the label of the run's middle slice, with
``spacing=(k, 1, 1)``. Same simulated user as ``interactive_variants.py`` (a box on the largest
slice, then 5 recommended corrections) on the validation regions (``samples.VALIDATION``, never the
benchmark's); Dice after round 1 and 6, the Pearson r of predicted vs true slice Dice, and the
same r over the slices not predicted empty, with the share predicted empty.

    .venv/bin/python benchmarks/anisotropy.py [--thickness 1 2 3 5] [--regions ...] [--weights default W.safetensors]
"""
from __future__ import annotations

import argparse
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from _results import save_results
from halo_seg.samples import SUBCORTICAL, VALIDATION


def run(args) -> dict:
    k, regions, qmodel, strategy, weights, segfill = args
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive import segmenter
    from halo_seg.interactive.quality import FEATURES
    from halo_seg.interactive.simulate import run_session, thick_slices
    from halo_seg.metrics import pearson
    from halo_seg.samples import load_colin27_full
    torch.set_num_threads(1)
    if segfill is not None:
        segmenter.FILL_SEGMENTED_MM = segfill
    data = load_colin27_full()
    img, lab, spacing = thick_slices(data.image, data.labels, k, data.spacing)
    per, pairs, secs, rest, n_empty, n_all = {}, [], [], [], 0, 0
    for r in regions:
        if not (lab == r).any():
            continue
        seg = InteractiveSegmenter(img, spacing=spacing, device="cpu", weights=weights, quality_model=qmodel)
        rec = run_session(seg, lab == r, 6, strategy, seed=r)
        per[VALIDATION.get(r, str(r))] = [x["dice"] for x in rec]
        pairs += [p for x in rec for p in x["pairs"]]
        secs += [x["seconds"] for x in rec if x["seconds"] is not None]
        if seg.quality_model is not None:
            # slices predicted empty (the object has ended there, rightly or not) apart from the rest
            for f, d in (s for x in rec for s in x["samples"]):
                if f[FEATURES.index("empty")] > 0.5:
                    n_empty += 1
                else:
                    rest.append((seg.quality_model.predict({0: f}, seg.tta)[0], d))
                n_all += 1
    curve = np.mean(list(per.values()), 0).tolist()
    res = {"thickness_mm": k, "quality_model": qmodel, "strategy": strategy, "weights": weights,
           "mean_dice_per_round": curve, "per_region": per,
           "pearson_r_pooled": pearson(pairs), "slices": int(img.shape[0]),
           "pearson_r_nonempty": pearson(rest) if rest else float("nan"),
           "predicted_empty_share": n_empty / max(n_all, 1),
           "seconds_median": float(np.median(secs))}
    print(f"{weights} {k} mm {strategy}: one box {curve[0]:.3f}, round 6 {curve[-1]:.3f}, "
          f"r {res['pearson_r_pooled']:.3f}", flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--thickness", type=int, nargs="*", default=[1, 2, 3, 5])
    ap.add_argument("--regions", type=int, nargs="*", default=list(VALIDATION))
    ap.add_argument("--quality-model", default="auto",
                    help="a quality model JSON (default: the one fitted for the weights, beside them)")
    ap.add_argument("--weights", nargs="+", default=["default"], help="networks to score, in one run")
    ap.add_argument("--strategies", nargs="*", default=["recommend"],
                    help="how the corrected slice is chosen: recommend, random (simulate.choose_slice)")
    ap.add_argument("--segfill", type=float, default=None,
                    help="fill between annotated slices at most this many mm apart (segmenter.FILL_SEGMENTED_MM; "
                         "default: the shipped value, 0: painted slices only)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "anisotropy.json"))
    a = ap.parse_args(argv)
    if set(a.regions) & set(SUBCORTICAL):
        ap.error("--regions must avoid the benchmark's structures")
    jobs = [(k, a.regions, a.quality_model, st, w, a.segfill) for w in a.weights for st in a.strategies for k in a.thickness]
    with get_context("spawn").Pool(a.jobs) as pool:
        results = pool.map(run, jobs, chunksize=1)
    print()
    print("| weights | slice thickness | slice chosen by | slices | one box | round 6 | r pooled "
          "| r, slices predicted non-empty | share predicted empty | s/round median |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        c = r["mean_dice_per_round"]
        print(f"| {r['weights']} | {r['thickness_mm']} mm | {r['strategy']} | {r['slices']} | {c[0]:.3f} | "
              f"{c[-1]:.3f} | {r['pearson_r_pooled']:.3f} | {r['pearson_r_nonempty']:.3f} | {r['predicted_empty_share']:.2f} | "
              f"{r['seconds_median']:.2f} |")
    return save_results(a.out, a.regions, results)


if __name__ == "__main__":
    raise SystemExit(main())
