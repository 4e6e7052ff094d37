"""The quality model (predicted slice Dice) against the network's head alone, on the validation regions.

Same simulated user and regions as ``quality_stop.py`` (16 AAL regions, none of the benchmark's 12 and
none of the regions the quality model is fitted on, ``samples.QUALITY_FIT``). Per variant: the Pearson
r of predicted vs true slice Dice (pooled over every propagated slice of every round, and the median
over regions) and the mean Dice after each round, since the recommendation follows the predicted
quality. Variants run in parallel, one thread each: ``head`` or ``model``, optionally with
``,rec=voxels`` (recommend the slice with the most expected wrong voxels, ``segmenter.RECOMMEND_BY``);
``model=PATH`` is another quality model file, so that two are compared in one run.

    .venv/bin/python benchmarks/quality_calibration.py [--variants head model] [--model PATH]
"""
from __future__ import annotations

import argparse
import json
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from halo_seg.metrics import pearson
from halo_seg.samples import QUALITY_FIT, SUBCORTICAL, VALIDATION


def run_variant(args) -> dict:
    variant, model, rounds, regions = args
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.simulate import run_session
    from halo_seg.samples import load_colin27_full
    torch.set_num_threads(1)
    data = load_colin27_full()
    from halo_seg.interactive import segmenter
    source, _, rec_by = variant.partition(",")
    segmenter.RECOMMEND_BY = rec_by.split("=")[1] if rec_by else "quality"   # the variant says it
    qm = None if source == "head" else source.split("=", 1)[1] if source.startswith("model=") else model
    per, pairs, r_region = {}, [], {}
    for lab in regions:
        name = VALIDATION.get(lab, str(lab))
        seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu", quality_model=qm)
        rec = run_session(seg, data.labels == lab, rounds=rounds, seed=lab)
        per[name] = [r["dice"] for r in rec]
        p = [pp for r in rec for pp in r["pairs"]]
        pairs += p
        r_region[name] = pearson(p)
    curve = np.mean(list(per.values()), 0).tolist()
    out = {"variant": variant, "mean_dice_per_round": curve, "pearson_r_pooled": pearson(pairs),
           "pearson_r_median_per_region": float(np.nanmedian(list(r_region.values()))),
           "per_region": per, "pearson_r_per_region": r_region}
    print(f"{variant}: r {out['pearson_r_pooled']:.3f} / {out['pearson_r_median_per_region']:.3f}, "
          f"Dice " + " ".join(f"{d:.3f}" for d in curve), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=["head", "model"])
    ap.add_argument("--model", default="auto", help="quality model file (auto: the one shipped with the weights)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--regions", type=int, nargs="*", default=list(VALIDATION),
                    help="AAL labels (default: samples.VALIDATION; others must avoid SUBCORTICAL and QUALITY_FIT)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "quality_calibration.json"))
    a = ap.parse_args(argv)
    if set(a.regions) & (set(SUBCORTICAL) | set(QUALITY_FIT)):
        ap.error("--regions must avoid the benchmark's structures and the quality model's fitting regions")
    with get_context("spawn").Pool(a.jobs) as pool:
        results = pool.map(run_variant, [(v, a.model, a.rounds, a.regions) for v in a.variants], chunksize=1)
    print()
    print("| quality from | r pooled | r median per region | " + " | ".join(f"round {i + 1}" for i in range(a.rounds)) + " |")
    print("|---" * (a.rounds + 3) + "|")
    for r in results:
        print(f"| {r['variant']} | {r['pearson_r_pooled']:.3f} | {r['pearson_r_median_per_region']:.3f} | "
              + " | ".join(f"{d:.3f}" for d in r["mean_dice_per_round"]) + " |")
    Path(a.out).write_text(json.dumps({"regions": a.regions, "model": a.model, "results": results,
                                       "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
