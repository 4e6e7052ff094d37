"""How much a better choice of the slice to correct would give, and whether the session can tell.

The box protocol of ``interactive.py`` (a box on the largest slice, then one box per round) on AAL
regions of the 1 mm Colin27 volume, never the benchmark's 12 structures. Three stages:

``greedy``: a one-step oracle picks each round's slice: of the unannotated slices (every second one
of the predicted and true extent, and the recommended one), the one whose box and propagation give
the best volume Dice. Mean Dice per round, and where its picks lie, against the shipped
recommendation's own round-by-round Dice (run beside it).

``collect``: along the shipped loop's own path, every round's candidates (every second unannotated
slice of the predicted extent and as far again beyond each end, at least 6 slices, and the
recommended one) with features the session knows (no truth: predicted quality and area, the voxel
rule's score, distance past the predicted end in object radii, whether a stop rule ended the sweep
there and the end's area, distance to the nearest annotation, whether the fill between close
slices takes it up) and the true gain in volume Dice of one box on each.

``fit``: leave-regions-out (4 folds by region) ridge models of the gain over those features (and a
few products of them); the candidate with the highest predicted gain against the shipped choice and
the oracle's, as the mean true gain per round.

    cd benchmarks && HALO_SEG_SHARED_DATA=../../shared/data ../.venv/bin/python recommend_headroom.py \\
        greedy --set validation        # results/recommend_greedy_validation.json, about 8 min
    ... recommend_headroom.py collect --set fit     # results/recommend_candidates_fit.json, about 25 min
    ... recommend_headroom.py fit                   # reads the latter, prints the table
"""
from __future__ import annotations

import argparse
import json
import math
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from halo_seg.samples import QUALITY_FIT, SUBCORTICAL, VALIDATION

SETS = {"validation": list(VALIDATION), "fit": list(QUALITY_FIT)}
RESULTS = Path(__file__).parent / "results"
NAMES = ("score_vox", "inside", "out_rel", "open", "end_area", "qrej", "q", "dist_rel", "area_rel", "between", "fills")


def candidates(seg, stride: int = 2) -> list[int]:
    s = seg._s
    zs = np.array(s.prediction.nonempty(), int)
    lo, hi = int(zs.min()), int(zs.max())
    reach = max(6, (hi - lo + 1) // 2)
    return [z for z in range(max(lo - reach, 0), min(hi + reach, seg.shape[0] - 1) + 1, stride)
            if z not in s.annotations]


def features(seg, z: int) -> np.ndarray:
    """The candidate's features in NAMES order, from the session's state alone."""
    from halo_seg.interactive import segmenter
    s = seg._s
    area = s.prediction.areas().astype(float)
    zs = np.flatnonzero(area > 0)
    lo, hi = int(zs.min()), int(zs.max())
    amax = float(area.max())
    local = np.maximum(area, np.maximum(np.r_[0.0, area[:-1]], np.r_[area[1:], 0.0]))
    q = float(s.quality[z]) if np.isfinite(s.quality[z]) else None
    nonempty = sorted(a for a, m in s.annotations.items() if m.any())
    radius = math.sqrt(max(float(s.annotations[a].sum()) for a in nonempty) / math.pi) * 0.5 * (
        seg.spacing[1] + seg.spacing[2])
    inside = lo <= z <= hi
    side = -1 if z < lo else 1
    past = 0 if inside else (lo - z if side == -1 else z - hi)
    is_open = not inside and side in (s.open_ends or {})
    near = min(s.annotations, key=lambda a: abs(a - z))
    return np.array([(1 - q) * local[z] / amax if q is not None else 0.0, float(inside),
                     past * seg.spacing[0] / radius, float(is_open),
                     0.0 if inside else area[lo if side == -1 else hi] / amax,
                     float(s.open_ends[side]) if is_open else 0.0, q if q is not None else 0.0,
                     abs(near - z) * seg.spacing[0] / radius, area[z] / amax,
                     float(bool(nonempty) and nonempty[0] < z < nonempty[-1]),
                     float(any(abs(a - z) * seg.spacing[0] <= segmenter.FILL_SEGMENTED_MM for a in nonempty))])


def _try(seg, z, truth):
    """Volume Dice after a box (or an empty mask) on slice z; the session is put back as it was."""
    from halo_seg.interactive.simulate import prompt_slice
    from halo_seg.metrics import dice
    n = len(seg._history)
    prompt_slice(seg, z, truth[z], "box", 0)
    d = dice(seg.propagate(), truth)
    while len(seg._history) > n:
        seg.undo()
    return d


def _regions_run(args) -> list:
    stage, regions = args
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.simulate import prompt_slice
    from halo_seg.metrics import dice
    from halo_seg.samples import load_colin27_full
    torch.set_num_threads(1)
    data = load_colin27_full()
    out = []
    for lab in regions:
        t0 = time.time()
        truth = data.labels == lab
        seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu")
        z = int(truth.reshape(len(truth), -1).sum(1).argmax())
        prompt_slice(seg, z, truth[z], "box", 0)
        pred = seg.propagate()
        now = dice(pred, truth)
        rounds = [dict(round=1, dice=now, slice=z)]
        for r in range(2, 7):
            rec = seg.recommend_slice()
            if stage == "greedy":
                ann = set(seg.annotated_slices)
                both = np.flatnonzero(pred.reshape(len(pred), -1).any(1) | truth.reshape(len(truth), -1).any(1))
                lo, hi = max(both.min() - 1, 0), min(both.max() + 1, len(truth) - 1)
                scores = {c: _try(seg, c, truth) for c in sorted({c for c in range(lo, hi + 1, 2) if c not in ann} | {rec})}
                pick = max(scores, key=scores.get)
                rounds.append(dict(round=r, slice=int(pick), rec=int(rec), predicted_area=int(pred[pick].sum()),
                                   true_area=int(truth[pick].sum()), beyond_annotations=bool(
                                       pick < min(a for a in ann if seg.annotation(a).any()) or
                                       pick > max(a for a in ann if seg.annotation(a).any()))))
            else:
                rows = [dict(z=int(c), f=features(seg, c).tolist(), gain=_try(seg, c, truth) - now)
                        for c in sorted(set(candidates(seg)) | {rec})]
                rounds.append(dict(round=r, now=now, rec=int(rec), rows=rows))
                pick = rec
            prompt_slice(seg, pick, truth[pick], "box", 0)
            pred = seg.propagate()
            now = dice(pred, truth)
            rounds[-1]["dice"] = now
        out.append(dict(region=int(lab), rounds=rounds, seconds=time.time() - t0))
        print(lab, [round(x["dice"], 3) for x in rounds], flush=True)
    return out


def design(x) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, float))
    inside, past, is_open, end_area, q, dist, area = x[:, 1], x[:, 2], x[:, 3], x[:, 4], x[:, 6], x[:, 7], x[:, 8]
    return np.concatenate([x, np.stack([is_open * end_area, is_open * past, end_area * past, past ** 2,
                                        inside * (1 - q) * area, np.log1p(past), dist ** 2], 1)], 1)


def fit_table(data: list) -> list:
    regions = [d["region"] for d in data]
    folds = [regions[i::4] for i in range(4)]
    rows = []
    for target in ("gain", "gain - round mean", "rank in round"):
        for l2 in (1e-3, 1e-2, 1e-1):
            chosen, shipped, oracle = [], [], []
            for test in folds:
                x, y = [], []
                for d in data:
                    if d["region"] in test:
                        continue
                    for r in d["rounds"][1:]:
                        g = np.array([c["gain"] for c in r["rows"]])
                        y += list(g if target == "gain" else g - g.mean() if target.startswith("gain -")
                                  else np.argsort(np.argsort(g)) / max(len(g) - 1, 1))
                        x += [c["f"] for c in r["rows"]]
                X = design(x)
                mean, std = X.mean(0), X.std(0) + 1e-9
                Z = (X - mean) / std
                y = np.array(y)
                w = np.linalg.solve(Z.T @ Z + l2 * len(Z) * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))
                for d in data:
                    if d["region"] not in test:
                        continue
                    for r in d["rounds"][1:]:
                        g = np.array([c["gain"] for c in r["rows"]])
                        p = ((design([c["f"] for c in r["rows"]]) - mean) / std) @ w
                        chosen.append(g[int(p.argmax())])
                        shipped.append(g[[c["z"] for c in r["rows"]].index(r["rec"])])
                        oracle.append(g.max())
            rows.append(dict(target=target, l2=l2, chosen=float(np.mean(chosen)), shipped=float(np.mean(shipped)),
                             oracle=float(np.mean(oracle)), n=len(chosen)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("greedy", "collect", "fit"))
    ap.add_argument("--set", choices=tuple(SETS), default=None, help="greedy: validation; collect: fit")
    ap.add_argument("--data", default=str(RESULTS / "recommend_candidates_fit.json"), help="fit: collect's output")
    a = ap.parse_args(argv)
    if a.stage == "fit":
        d = json.loads(Path(a.data).read_text())
        rows = fit_table(d["results"])
        print("| target | L2 | mean gain per round: learned choice | shipped choice | one-step oracle |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['target']} | {r['l2']:g} | {r['chosen']:.4f} | {r['shipped']:.4f} | {r['oracle']:.4f} |")
        out = RESULTS / "recommend_fit.json"
        out.write_text(json.dumps({"data": a.data, "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
        print(f"saved {out}")
        return 0
    name = a.set or ("validation" if a.stage == "greedy" else "fit")
    regions = SETS[name]
    assert not set(regions) & set(SUBCORTICAL)
    with get_context("spawn").Pool(2) as pool:
        parts = pool.map(_regions_run, [(a.stage, regions[0::2]), (a.stage, regions[1::2])])
    res = [x for p in parts for x in p]
    curve = [float(np.mean([x["rounds"][r]["dice"] for x in res])) for r in range(6)]
    print(f"{a.stage} on {name}: mean Dice per round " + " ".join(f"{c:.3f}" for c in curve))
    if a.stage == "greedy":
        picks = [r for x in res for r in x["rounds"][1:]]
        print(f"picks with nothing predicted there: {np.mean([p['predicted_area'] == 0 for p in picks]):.2f}; "
              f"beyond the outermost annotations: {np.mean([p['beyond_annotations'] for p in picks]):.2f}")
    out = RESULTS / f"recommend_{'greedy' if a.stage == 'greedy' else 'candidates'}_{name}.json"
    out.write_text(json.dumps({"regions": regions, "results": res, "curve": curve,
                               "date": time.strftime("%Y-%m-%d %H:%M")}))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
