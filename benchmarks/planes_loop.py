"""A loop that prompts in three planes, against the shipped axial loop: a prototype, not kept.

Round 1: a box on the largest axial slice. Round 2: a box on the coronal slice where the current
prediction is largest (chosen from the prediction, never the truth), propagated across axis 1 in its
own session; round 3 the same across axis 2. From round 3 on the output is the 2-of-3 vote of the
three sessions, each session's annotated slices kept as given (round 2: union, intersection or
either session alone are all recorded). Rounds 4 to 6 cycle through the planes, each session
recommending its own slice. Results in benchmarks/README.md, "Prompting in other planes".

    cd benchmarks && HALO_SEG_SHARED_DATA=../../shared/data ../.venv/bin/python planes_loop.py val|fit
"""
import json
import sys
from multiprocessing import Pool
from pathlib import Path
import numpy as np

ROUNDS = 6


def idx(axis, z):
    return (slice(None),) * axis + (int(z),)


def fuse(sessions, mode):
    preds = [s.prediction for s in sessions]
    if mode == "inter":
        out = np.logical_and.reduce(preds)
    elif mode == "union":
        out = np.logical_or.reduce(preds)
    elif mode == "vote":
        out = sum(p.astype(np.int8) for p in preds) >= (len(preds) // 2 + 1)
    else:
        out = preds[int(mode)].copy()
    out = out.copy()
    for s in sessions:
        for z in s.annotated_slices:
            out[idx(s.axis, z)] = s.annotation(z)
    return out


def region(k):
    import torch
    torch.set_num_threads(1)
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.simulate import run_session, prompt_slice
    from halo_seg.metrics import dice
    from halo_seg.samples import load_colin27_full
    data = load_colin27_full()
    truth = data.labels == k
    mk = lambda ax: InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu", axis=ax)
    shipped = [r["dice"] for r in run_session(mk(0), truth, ROUNDS, seed=k)]
    ses = {0: mk(0)}
    z = int(truth.sum((1, 2)).argmax())
    prompt_slice(ses[0], z, truth[z]); ses[0].propagate()
    fused = ses[0].prediction
    out = {"label": k, "shipped": shipped, "multi": [dice(fused, truth)], "r2": {}}
    for r in range(1, ROUNDS):
        if r < 3:
            ax = r
            s = ses[ax] = mk(ax)
            area = fused.sum(tuple(a for a in range(3) if a != ax))
            z = int(area.argmax())
        else:
            ax = (r - 3) % 3
            s = ses[ax]
            try:
                z = s.recommend_slice()
            except Exception:
                out.setdefault("skipped", []).append(r); out["multi"].append(out["multi"][-1]); continue
        t2 = np.moveaxis(truth, ax, 0)[z]
        prompt_slice(s, z, t2)
        try:
            s.propagate()
        except Exception:   # e.g. only an empty mask in a new session
            pass
        sessions = [ses[a] for a in sorted(ses) if ses[a].prediction.any() or ses[a].annotated_slices]
        if r == 1:
            for mode in ("inter", "union", "0", "1"):
                out["r2"][mode] = dice(fuse([ses[0], ses[1]], mode), truth)
            fused = fuse([ses[0], ses[1]], "union")
        else:
            fused = fuse(sessions, "vote")
        out["multi"].append(dice(fused, truth))
    return out


if __name__ == "__main__":
    from halo_seg.samples import VALIDATION, QUALITY_FIT
    regions = sorted(VALIDATION) if sys.argv[1] == "val" else sorted(QUALITY_FIT)
    rows = []
    with Pool(2) as pool:
        for o in pool.imap(region, regions):
            rows.append(o)
            print(o["label"], "shipped", " ".join(f"{x:.3f}" for x in o["shipped"]), "| multi",
                  " ".join(f"{x:.3f}" for x in o["multi"]), "| r2", {m: round(v, 3) for m, v in o["r2"].items()}, flush=True)
    print("shipped", np.round(np.mean([o["shipped"] for o in rows], 0), 3))
    print("multi  ", np.round(np.mean([o["multi"] for o in rows], 0), 3))
    print("r2", {m: round(float(np.mean([o["r2"][m] for o in rows])), 3) for m in rows[0]["r2"]})
    json.dump(rows, open(Path(__file__).parent / "results" / f"planes_loop_{sys.argv[1]}.json", "w"), indent=1)
