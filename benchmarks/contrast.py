"""Does the interactive network depend on the image's contrast? The validation protocol on remapped T1s.

Same simulated user as ``interactive_variants.py`` (a box on the largest slice, then 5 recommended
corrections) on validation regions (``samples.VALIDATION``, never the benchmark's), with the
Colin27 T1 as it is (``t1``), inverted (``invert``: CSF and grey matter bright, a T2-like look) or
folded around grey matter's intensity (``fold``: grey matter brightest, both CSF and white matter
darker), for one or more networks; plus squares brighter or darker than their background, in the
middle of a small volume or touching its corner (``squares``: Dice from one box).

    .venv/bin/python benchmarks/contrast.py [--weights default PATH] [--contrasts t1 invert fold squares]
"""
from __future__ import annotations

import argparse
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from _results import save_results
from halo_seg.samples import VALIDATION


def remap(image: np.ndarray, contrast: str) -> np.ndarray:
    img = np.asarray(image, np.float32)
    if contrast == "t1":
        return img
    if contrast == "invert":
        return img.max() - img
    if contrast == "fold":
        return -np.abs(img - np.percentile(img[img > 0], 60))
    raise ValueError(f"unknown contrast {contrast!r}")


def squares(weights: str) -> dict:
    from halo_seg import InteractiveSegmenter
    from halo_seg.metrics import dice
    rng = np.random.default_rng(0)
    out = {}
    for where, (ys, xs) in {"middle": (slice(10, 30), slice(8, 33)), "corner": (slice(0, 20), slice(0, 25))}.items():
        for polarity in ("bright", "dark"):
            truth = np.zeros((10, 40, 40), bool)
            truth[:, ys, xs] = True
            img = (truth if polarity == "bright" else ~truth).astype(np.float32)
            img = img + rng.normal(0, 0.05, truth.shape).astype(np.float32)
            seg = InteractiveSegmenter(img, device="cpu", weights=weights)
            yy, xx = np.nonzero(truth[5])
            seg.add_box(5, yy.min(), xx.min(), yy.max(), xx.max())
            out[f"{polarity} {where}"] = dice(seg.propagate(), truth)
    return out


def run(args) -> dict:
    weights, contrast, regions = args
    import torch
    torch.set_num_threads(1)
    if contrast == "squares":
        res = squares(weights)
        print(f"{weights} squares: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
        return {"weights": weights, "contrast": contrast, "squares": res}
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.simulate import run_session
    from halo_seg.samples import load_colin27_full
    data = load_colin27_full()
    img = remap(data.image, contrast)
    per = {}
    for lab in regions:
        seg = InteractiveSegmenter(img, spacing=data.spacing, device="cpu", weights=weights)
        per[VALIDATION.get(lab, str(lab))] = [r["dice"] for r in run_session(seg, data.labels == lab, 6, seed=lab)]
    curve = np.mean(list(per.values()), 0).tolist()
    print(f"{weights} {contrast}: one box {curve[0]:.3f}, round 6 {curve[-1]:.3f}", flush=True)
    return {"weights": weights, "contrast": contrast, "mean_dice_per_round": curve, "per_region": per}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="*", default=["default"])
    ap.add_argument("--contrasts", nargs="*", default=["t1", "invert", "fold", "squares"])
    ap.add_argument("--regions", type=int, nargs="*", default=list(VALIDATION)[::2],
                    help="AAL labels (default: every other validation region)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "contrast.json"))
    a = ap.parse_args(argv)
    from halo_seg.samples import SUBCORTICAL
    if set(a.regions) & set(SUBCORTICAL):
        ap.error("--regions must avoid the benchmark's structures")
    jobs = [(w, c, a.regions) for w in a.weights for c in a.contrasts]
    with get_context("spawn").Pool(a.jobs) as pool:
        results = pool.map(run, jobs, chunksize=1)
    print()
    print("| weights | contrast | one box | round 6 |")
    print("|---|---|---|---|")
    for r in results:
        if "squares" in r:
            for k, v in r["squares"].items():
                print(f"| {r['weights']} | square, {k} | {v:.3f} | |")
        else:
            c = r["mean_dice_per_round"]
            print(f"| {r['weights']} | {r['contrast']} | {c[0]:.3f} | {c[-1]:.3f} |")
    return save_results(a.out, a.regions, results)


if __name__ == "__main__":
    raise SystemExit(main())
