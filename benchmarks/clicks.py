"""Corrective clicks on a slice: how much does each click of a careful user fix?

The standard measure of interactive segmentation (RITM, SAM): after the first prompt, the simulated
user clicks at the pixel deepest inside the largest error region, positive on a miss, negative on
a false positive (``simulate.corrective_click``), and the slice is segmented again after each
click. Three starts per region of the 1 mm Colin27 volume:

* ``box``: a tight box on the largest slice and on three more (at a quarter, half and three
  quarters of the object's slices), segmented, then the clicks;
* ``extreme``: the same slices from their four extreme points;
* ``propagated``: a box on the largest slice and one propagation, then clicks on four propagated
  slices spread over the predicted extent (no box on them: the propagated mask is corrected).

The user stops clicking on a slice once its Dice reaches ``--stop`` (0.9, as NoC@90 counts).
Variants run in parallel, one process each: ``shipped`` (a slice's box is spent once it is
segmented, so later clicks refine that mask, ``segmenter.BOX_SPENT``; a positive click only adds to
it and a negative one only removes, ``segmenter.MONOTONE_CLICKS``), ``spent`` (the first alone) and
``old`` (neither: clicks join the box's guidance, as before 2026-12-02); ``NAME,weights=PATH``
runs one of them with other weights (and their quality model); ``NAME+scribble`` corrects with
strokes instead of clicks (``simulate.corrective_scribble``: along the skeleton of the largest
error region; each stroke counts as one interaction). Mean slice Dice after 0..K clicks and
the share of slices at >= 0.85 / 0.90 after K.

    .venv/bin/python benchmarks/clicks.py [--set validation|further|fresh|subcortical | --regions ...]
                                          [--clicks 5] [--stop 0.9] [--variants shipped spent old]
"""
from __future__ import annotations

import argparse
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from _results import save_results
from halo_seg.samples import SUBCORTICAL, VALIDATION

# the AAL regions earlier choices of the interactive loop were checked on (benchmarks/README.md)
FURTHER = (5, 10, 11, 18, 21, 23, 28, 33, 34, 54, 58, 64, 67, 69, 85, 89, 90, 91, 100, 101, 102, 104, 109, 113)
# 16 AAL regions in none of the sets above nor in samples.QUALITY_FIT: the second rule's (README)
FRESH = (7, 8, 12, 16, 20, 27, 44, 49, 53, 65, 81, 88, 94, 98, 108, 116)
SETS = {"validation": tuple(VALIDATION), "further": FURTHER, "fresh": FRESH, "subcortical": tuple(SUBCORTICAL)}
VARIANTS = {"shipped": (True, True), "spent": (True, False), "old": (False, False)}   # BOX_SPENT, MONOTONE_CLICKS
STARTS = ("box", "extreme", "propagated")


def _clicks(seg, z, mask, truth, k, stop, scribble=False):
    """Slice Dice after 0..k corrective clicks (or strokes) on slice z (the last one repeated once the
    user stops at ``stop``); then every click is undone."""
    from halo_seg.interactive.simulate import click_to_correct
    from halo_seg.metrics import dice
    curve = [dice(mask, truth)] + [dice(m, truth) for m in click_to_correct(seg, z, mask, truth, k, stop, scribble)]
    made = len(curve) - 1
    for _ in range(2 * made):   # add_click and segment_slice: one undo step each
        seg.undo()
    return curve + [curve[-1]] * (k - made)


def run_variant(args) -> dict:
    variant, regions, k, stop = args
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive import segmenter
    from halo_seg.interactive.simulate import extreme_points, tight_box
    from halo_seg.samples import load_colin27_full
    torch.set_num_threads(1)
    name, _, weights = variant.partition(",weights=")
    name, _, interaction = name.partition("+")
    scribble = interaction == "scribble"
    segmenter.BOX_SPENT, segmenter.MONOTONE_CLICKS = VARIANTS[name]
    data = load_colin27_full()

    def session():
        return InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu", weights=weights or "default")

    per = {s: {} for s in STARTS}
    for lab in regions:
        truth = data.labels == lab
        area = truth.reshape(len(truth), -1).sum(1)
        zs = np.flatnonzero(area)
        z0 = int(area.argmax())
        picks = [z0] + [int(zs[int(f * (len(zs) - 1))]) for f in (0.25, 0.5, 0.75)]
        for start in ("box", "extreme"):
            curves = []
            for z in picks:
                seg = session()
                if start == "box":
                    seg.add_box(z, *tight_box(truth[z]))
                else:
                    seg.add_extreme_points(z, extreme_points(truth[z]))
                curves.append(_clicks(seg, z, seg.segment_slice(z), truth[z], k, stop, scribble))
            per[start][str(lab)] = curves
        seg = session()
        seg.add_box(z0, *tight_box(truth[z0]))
        pred = seg.propagate()
        pz = [z for z in np.flatnonzero(pred.reshape(len(pred), -1).any(1)) if z != z0]
        curves = []
        for z in ([pz[int(f * (len(pz) - 1))] for f in (0.0, 1 / 3, 2 / 3, 1.0)] if pz else []):
            curves.append(_clicks(seg, int(z), pred[z], truth[z], k, stop, scribble))   # one slice at a time
        per["propagated"][str(lab)] = curves
    out = {"variant": variant, "per_region": per}
    for start in STARTS:
        allc = np.array([c for cs in per[start].values() for c in cs])
        out[start] = {"slices": len(allc), "mean_dice": allc.mean(0).tolist(),
                      "share_085": (allc >= 0.85).mean(0).tolist(), "share_090": (allc >= 0.90).mean(0).tolist()}
    print(f"{variant}: box {out['box']['mean_dice'][0]:.3f} -> {out['box']['mean_dice'][-1]:.3f} after {k} clicks",
          flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=sorted(SETS), default="validation")
    ap.add_argument("--regions", type=int, nargs="*", help="AAL labels instead of --set")
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--stop", type=float, default=0.9,
                    help="the user stops clicking on a slice once its Dice reaches this (1: never)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    regions = list(a.regions or SETS[a.set])
    bad = [v for v in a.variants if v.partition(",weights=")[0].partition("+")[0] not in VARIANTS
           or v.partition(",weights=")[0].partition("+")[2] not in ("", "scribble")]
    if bad:
        ap.error(f"unknown variants {bad}: use {list(VARIANTS)}, optionally with +scribble and ,weights=PATH")
    out = a.out or str(Path(__file__).parent / "results" / f"clicks_{'regions' if a.regions else a.set}.json")
    with get_context("spawn").Pool(a.jobs, maxtasksperchild=1) as pool:
        results = pool.map(run_variant, [(v, regions, a.clicks, a.stop) for v in a.variants], chunksize=1)
    print()
    print("| start | variant | slices | " + " | ".join(f"{i} clicks" for i in range(a.clicks + 1))
          + f" | >= 0.85 / 0.90 after {a.clicks} |")
    print("|---" * (a.clicks + 5) + "|")
    for start in STARTS:
        for r in results:
            s = r[start]
            print(f"| {start} | {r['variant']} | {s['slices']} | " + " | ".join(f"{v:.3f}" for v in s["mean_dice"])
                  + f" | {s['share_085'][-1]:.2f} / {s['share_090'][-1]:.2f} |")
    return save_results(out, regions, results)


if __name__ == "__main__":
    raise SystemExit(main())
