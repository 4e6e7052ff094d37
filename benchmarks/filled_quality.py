"""Predicted vs true slice Dice where the box protocol's result is interpolated between close annotated
slices (segmenter.FILL_SEGMENTED_MM) and where it is propagated.

The simulated user of ``interactive.py`` (a box on the largest slice, then a box on each recommended
slice, 6 rounds) on a set of AAL regions of the 1 mm Colin27 volume. Every judged slice (propagated or
filled, not annotated) of every round is one pair (predicted, true Dice), as in interactive.py's
Pearson r. For the filled slices it also records the Dice between the interpolated mask and the
network's own mask there (what the propagation had predicted before the fill replaced it), a
candidate measure of how sure the filled mask is. Per fill distance (``--fill MM``; 0: off): pooled
Pearson r over all pairs, over the propagated and over the filled ones, and the mean predicted and
true Dice of each kind.

    cd benchmarks && HALO_SEG_SHARED_DATA=../../shared/data ../.venv/bin/python filled_quality.py \
        --set validation|further [--fill 0 8] [--quality PATH] [--out results/filled_quality_<set>.json]
"""
from __future__ import annotations

import argparse
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from _results import save_results
from halo_seg.samples import QUALITY_FIT, SUBCORTICAL, VALIDATION

SETS = {"validation": list(VALIDATION), "further": list(QUALITY_FIT)}


def _run(args) -> dict:
    fill, regions, quality = args
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive import segmenter
    from halo_seg.interactive.segmenter import InteractiveError
    from halo_seg.interactive.simulate import choose_slice, prompt_slice
    from halo_seg.metrics import dice, dice_per_slice
    from halo_seg.samples import load_colin27_full
    torch.set_num_threads(1)
    segmenter.FILL_SEGMENTED_MM = fill
    own = {}
    original = segmenter.InteractiveSegmenter._fill_between_close

    def spy(self, s, pred):   # the network's masks of the slices the fill is about to replace
        zs = sorted(s.annotations)
        own.clear()
        for a, b in zip(zs[:-1], zs[1:]):
            for z in range(a + 1, b):
                own[z] = pred[z].copy()
        filled = original(self, s, pred)
        for z in set(own) - filled:
            del own[z]
        return filled
    segmenter.InteractiveSegmenter._fill_between_close = spy
    data = load_colin27_full()
    pairs = []
    for lab in regions:
        truth = data.labels == lab
        seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu", quality_model=quality)
        rng = np.random.default_rng(lab)
        z = int(truth.reshape(len(truth), -1).sum(1).argmax())
        for r in range(6):
            if r:
                try:
                    z = choose_slice(seg, truth, "recommend", rng)
                except (InteractiveError, ValueError):
                    break   # every slice of a thin object annotated
            prompt_slice(seg, z, truth[z], "box", 0)
            pred = seg.propagate()
            q, sd, ann = seg.quality, dice_per_slice(pred, truth), set(seg.annotated_slices)
            for i in (int(i) for i in np.flatnonzero(np.isfinite(q)) if i not in ann):
                pairs.append({"region": lab, "round": r + 1, "slice": i, "predicted": float(q[i]),
                              "true": float(sd[i]), "filled": i in own,
                              "agree": float(dice(pred[i], own[i])) if i in own else None})
    return {"fill_mm": fill, "pairs": pairs}


def _r(x, y) -> float:
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and np.std(x) > 0 and np.std(y) > 0 else float("nan")


def summary(res: dict) -> dict:
    p = res["pairs"]
    pr, tr = np.array([x["predicted"] for x in p]), np.array([x["true"] for x in p])
    f = np.array([x["filled"] for x in p], bool)
    out = {"pairs": len(p), "filled": int(f.sum()), "r_all": _r(pr, tr), "r_propagated": _r(pr[~f], tr[~f]),
           "r_filled": _r(pr[f], tr[f]), "predicted_filled": float(pr[f].mean()) if f.any() else None,
           "true_filled": float(tr[f].mean()) if f.any() else None,
           "predicted_propagated": float(pr[~f].mean()), "true_propagated": float(tr[~f].mean())}
    if f.any():
        ag = np.array([x["agree"] for x in p if x["filled"]])
        out["r_filled_agree_vs_true"] = _r(ag, tr[f])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=sorted(SETS), default="validation")
    ap.add_argument("--fill", type=float, nargs="*", default=[0.0, 8.0])
    ap.add_argument("--quality", default="auto", help="the quality model (default: the weights' own)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    regions = SETS[a.set]
    assert not set(regions) & set(SUBCORTICAL)   # never the benchmark's structures
    with get_context("spawn").Pool(min(2, len(a.fill)), maxtasksperchild=1) as pool:
        results = pool.map(_run, [(f, regions, a.quality) for f in a.fill], chunksize=1)
    print(f"\n{a.set} regions ({len(regions)}), pooled over rounds 1 to 6")
    print("| fill mm | pairs (filled) | r all | r propagated | r filled | filled: predicted / true | "
          "propagated: predicted / true | filled: r of the agreement with the network's mask |")
    print("|---|---|---|---|---|---|---|---|")
    for res in results:
        s = res["summary"] = summary(res)
        fl = (f"{s['predicted_filled']:.3f} / {s['true_filled']:.3f}" if s["filled"] else "-")
        print(f"| {res['fill_mm']:g} | {s['pairs']} ({s['filled']}) | {s['r_all']:.3f} | {s['r_propagated']:.3f} | "
              f"{s['r_filled']:.3f} | {fl} | {s['predicted_propagated']:.3f} / {s['true_propagated']:.3f} | "
              f"{s.get('r_filled_agree_vs_true', float('nan')):.3f} |")
    out = a.out or str(Path(__file__).parent / "results" / f"filled_quality_{a.set}.json")
    return save_results(out, regions, results)


if __name__ == "__main__":
    raise SystemExit(main())
