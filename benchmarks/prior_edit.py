"""Correcting an existing segmentation (``InteractiveSegmenter.start_from``) against fixing it by hand.

A user starts from an imperfect mask of an AAL region on the 1 mm Colin27 volume and, each round,
paints the slice of the current result with the most wrong voxels exactly (napari: paint it in the
preview, Accept), then propagates. Priors (``--prior``):

- ``mirror``: the same region of the other hemisphere, mirrored left-right: what registering an
  atlas gives, off by a little almost everywhere (regions without a left/right twin are skipped);
- ``cut``: the truth without the object's last third of slices: an automatic result that stopped
  early, right elsewhere.

Variants (``--variants``): ``edit`` the shipped rule; ``paint`` the prior with the painted slices
only (no propagation: what a brush gives); ``scratch`` the tool without the prior, from the painted
slices alone;
``agree=T`` the prior corrected with the propagation until it agrees with the prior at slice Dice T
(prior.PRIOR_AGREE), ``,minq=Q`` and never with a slice predicted below Dice Q
(prior.PRIOR_MIN_QUALITY; ``minq=none``: with any). ``clicks=K``: the user corrects the slice with K
corrective clicks instead of painting it (simulate.corrective_click, each followed by segmenting the
slice, which refines the current mask), and ``,local=1`` keeps only the clicked slices' masks
(no propagation). Mean volume Dice after each round.

    cd benchmarks && HALO_SEG_SHARED_DATA=../../shared/data ../.venv/bin/python prior_edit.py \
        [--prior mirror|cut] [--variants paint scratch edit agree=0.8,minq=0.7 ...] [--regions 29 30 ...]
        [--rounds 6]
"""
from __future__ import annotations

import argparse
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from _results import save_results
from halo_seg.samples import SUBCORTICAL, VALIDATION, mirrored_twin

VERMIS = range(109, 117)   # AAL's vermis: no left/right twin to mirror


def make_prior(kind: str, labels: np.ndarray, lab: int) -> np.ndarray:
    truth = labels == lab
    if kind == "mirror":
        return mirrored_twin(labels, lab)
    if kind == "cut":
        zs = np.flatnonzero(truth.any((1, 2)))
        prior = truth.copy()
        prior[zs[0] + 2 * len(zs) // 3:] = False
        return prior
    raise ValueError(f"unknown prior {kind!r}")


def run_variant(args) -> dict:
    spec, kind, regions, rounds = args
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive import prior as prior_edit
    from halo_seg.interactive.simulate import click_to_correct, worst_slice
    from halo_seg.metrics import dice
    from halo_seg.samples import load_colin27_full
    torch.set_num_threads(1)
    opts = dict(kv.split("=", 1) for kv in spec.split(",") if "=" in kv)
    for key, name in (("agree", "PRIOR_AGREE"), ("minq", "PRIOR_MIN_QUALITY")):
        if key in opts:
            setattr(prior_edit, name, None if opts[key] == "none" else float(opts[key]))
    clicks, local = int(opts.get("clicks", 0)), opts.get("local") == "1"
    data = load_colin27_full()
    per, secs = {}, []

    def propagate(seg):
        t0 = time.perf_counter()
        out = seg.propagate()
        secs.append(time.perf_counter() - t0)
        return out
    for lab in regions:
        name = {**VALIDATION, **SUBCORTICAL}.get(lab, str(lab))
        truth = data.labels == lab
        prior = make_prior(kind, data.labels, lab)
        seg = None
        if spec != "paint":
            seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu")
            if spec != "scratch":
                seg.start_from(prior)
        pred = prior.copy() if spec != "scratch" else np.zeros_like(truth)
        done, dices = set(), [dice(pred, truth)]
        for _ in range(rounds):
            z = worst_slice(pred, truth, done)
            done.add(z)
            if seg is None:
                pred = pred.copy()
                pred[z] = truth[z]
            elif clicks:
                mask = pred[z]
                for mask in click_to_correct(seg, z, mask, truth[z], clicks, stop=1.0):
                    pass
                if local:
                    pred = pred.copy()
                    pred[z] = mask
                else:
                    pred = propagate(seg)
            else:
                seg.set_slice_mask(z, truth[z])
                if spec == "scratch" and not any(truth[a].any() for a in done):
                    pred = seg.prediction     # only "not here" slices so far: nothing to propagate from
                else:
                    pred = propagate(seg)
            dices.append(dice(pred, truth))
        per[name] = dices
        print(f"{spec:10s} {name:22s} " + " ".join(f"{d:.3f}" for d in dices), flush=True)
    return {"variant": spec, "mean_dice_per_round": np.mean(list(per.values()), 0).tolist(), "per_region": per,
            "seconds_per_propagation_median": float(np.median(secs)) if secs else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", choices=["mirror", "cut"], default="mirror")
    ap.add_argument("--variants", nargs="*", default=["paint", "scratch", "edit"])
    ap.add_argument("--regions", type=int, nargs="*", default=list(VALIDATION),
                    help="AAL labels (default: the 16 validation regions; the benchmark's are samples.SUBCORTICAL)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None, help="default: results/prior_edit_<prior>.json")
    a = ap.parse_args(argv)
    regions = [r for r in a.regions if not (a.prior == "mirror" and r in VERMIS)]
    if len(regions) < len(a.regions):
        print(f"skipped (no left/right twin to mirror): {sorted(set(a.regions) - set(regions))}")
    out = a.out or str(Path(__file__).parent / "results" / f"prior_edit_{a.prior}.json")
    with get_context("spawn").Pool(a.jobs) as pool:
        results = pool.map(run_variant, [(v, a.prior, regions, a.rounds) for v in a.variants])
    print(f"\nprior: {a.prior}, {len(regions)} regions, mean volume Dice")
    print("| painted slices | " + " | ".join(r["variant"] for r in results) + " |")
    print("|---" * (len(results) + 1) + "|")
    for k in range(a.rounds + 1):
        print(f"| {k} | " + " | ".join(f"{r['mean_dice_per_round'][k]:.3f}" for r in results) + " |")
    print("| s per propagation (median, 1 thread) | " + " | ".join(
        "-" if r["seconds_per_propagation_median"] is None else f"{r['seconds_per_propagation_median']:.2f}"
        for r in results) + " |")
    return save_results(out, {"prior": a.prior, "regions": regions, "rounds": a.rounds}, results)


if __name__ == "__main__":
    raise SystemExit(main())
