"""Candidate changes to the interactive loop, scored on the validation regions (never the benchmark's).

Same simulated user and validation set as ``quality_stop.py`` (16 AAL regions the network was
trained on; none of the 12 held-out structures of ``interactive.py``): a box on the largest slice,
then 5 recommended corrections. Each variant sets experimental switches of the engine (module
constants, off by default) or other weights; the table gives the mean Dice after round 1 and 6,
and the median / max seconds per round (variants run two at a time, one thread each).

    .venv/bin/python benchmarks/interactive_variants.py [--variants base blend=0.5 ...]

Variant keys: ``blend`` (segmentation interpolated between annotated slices mixed into the
propagation), ``box`` (crop-pixel margin around the boxes interpolated between annotated slices),
``patience`` (slices in a row below the quality stop that end a sweep), ``explore`` (recommend a slice this fraction of the extent beyond an end where a stop rule ended
a sweep), ``emptymem=0`` (empty annotated slices stop sweeps but leave the memory),
``adapt``/``lr``/``self`` (test-time adaptation of the decoder: steps, learning rate, whether a
lone annotated slice serves as its own shifted memory), ``weights`` (another network), ``stop=head``
(the quality head, not the quality model, judges where sweeps end), ``tau`` (that judge's threshold),
``qmodel=0`` (no quality model at all: the head ends sweeps and picks the slice, as for weights
without a fitted model), ``prev`` (recent slices of a sweep held in memory), ``reach`` (annotated
slices farther than this from the query leave its memory), ``shrunk``/``regrown`` (the unimodal-extent
rule: past the annotations a sweep ends where an object that shrank below ``shrunk`` x its largest
section grows back above ``regrown`` x its smallest), ``contrast`` (a sweep ends where the predicted
mask's intensity lies below this fraction of the way from the annotated object's ring to the object),
``strict=1`` (the session option ``strict_ends``: propagation.STRICT_ENDS), ``quality=PATH`` (another
quality model for the shipped network), ``segfill=G`` (annotated slices at most G mm apart filled
between by interpolation, segmenter.FILL_SEGMENTED_MM; 0: painted slices only, as before 2026-12-04).
"""
from __future__ import annotations

import argparse
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from _results import save_results
from halo_seg.samples import SUBCORTICAL, VALIDATION

DEFAULT = ["base", "blend=0.5", "box=4", "box=8", "explore=0.15", "explore=0.25", "explore=0.35",
           "explore=0.5", "emptymem=0", "patience=2", "patience=3", "adapt=20,lr=3e-4,self=1", "adapt=20,lr=1e-4,self=0",
           "adapt=20,lr=3e-4,self=0"]


def run_variant(args) -> dict:
    spec, regions = args
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive import adapt, propagation, segmenter
    from halo_seg.interactive.simulate import run_session
    from halo_seg.samples import load_colin27_full
    torch.set_num_threads(1)
    kv = dict(x.split("=", 1) for x in spec.split(",")) if spec != "base" else {}
    propagation.BETWEEN_BLEND = float(kv.get("blend", 0))
    propagation.BOX_MARGIN = float(kv["box"]) if "box" in kv else None
    propagation.EMPTY_IN_MEMORY = kv.get("emptymem", "1") == "1"
    propagation.QUALITY_PATIENCE = int(kv.get("patience", 1))
    segmenter.EXPLORE = float(kv["explore"]) if "explore" in kv else None
    adapt.ADAPT_STEPS = int(kv.get("adapt", 0))
    adapt.ADAPT_LR = float(kv.get("lr", 1e-4))
    adapt.SELF_MEMORY = kv.get("self", "1") == "1"
    propagation.STOP_BY_MODEL = kv.get("stop", "model") == "model"
    propagation.N_PREVIOUS = int(kv.get("prev", 1))
    propagation.ANNOTATED_REACH = int(kv["reach"]) if "reach" in kv else None
    propagation.SHRUNK = float(kv.get("shrunk", propagation.SHRUNK))
    propagation.REGROWN = float(kv.get("regrown", propagation.REGROWN))
    propagation.CONTRAST_STOP = float(kv["contrast"]) if "contrast" in kv else None
    segmenter.FILL_SEGMENTED_MM = float(kv.get("segfill", segmenter.FILL_SEGMENTED_MM))
    data = load_colin27_full()
    per, secs = {}, []
    for lab in regions:
        name = VALIDATION.get(lab, str(lab))
        seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu", weights=kv.get("weights", "default"),
                                   quality_stop=float(kv["tau"]) if "tau" in kv else None,
                                   quality_model=None if kv.get("qmodel") == "0" else kv.get("quality", "auto"),
                                   strict_ends=kv.get("strict", "0") == "1")
        rec = run_session(seg, data.labels == lab, rounds=6, seed=lab)
        per[name] = [r["dice"] for r in rec]
        secs += [r["seconds"] for r in rec if r["seconds"] is not None]
    curve = np.mean(list(per.values()), 0).tolist()
    print(f"{spec}: one box {curve[0]:.3f}, round 6 {curve[-1]:.3f}", flush=True)
    return {"variant": spec, "mean_dice_per_round": curve, "per_region": per,
            "seconds_median": float(np.median(secs)), "seconds_max": float(max(secs))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=DEFAULT)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--regions", type=int, nargs="*", default=list(VALIDATION),
                    help="AAL labels (default: samples.VALIDATION; never the benchmark's SUBCORTICAL)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "interactive_variants.json"))
    a = ap.parse_args(argv)
    if set(a.regions) & set(SUBCORTICAL):
        ap.error("--regions must avoid the benchmark's structures")
    # one variant per process: the switches are module constants
    with get_context("spawn").Pool(a.jobs, maxtasksperchild=1) as pool:
        results = pool.map(run_variant, [(v, a.regions) for v in a.variants], chunksize=1)
    print()
    print("| variant | one box | round 6 | s/round median | max |")
    print("|---|---|---|---|---|")
    for r in results:
        c = r["mean_dice_per_round"]
        print(f"| {r['variant']} | {c[0]:.3f} | {c[-1]:.3f} | {r['seconds_median']:.2f} | {r['seconds_max']:.2f} |")
    return save_results(a.out, a.regions, results)


if __name__ == "__main__":
    raise SystemExit(main())
