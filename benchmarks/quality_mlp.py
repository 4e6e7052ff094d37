"""Would a small neural network predict slice Dice better than the shipped logistic quality model?

Both are fitted on the same data, the samples the shipped model was fitted on
(``memseg_default.quality.npz``), and scored on sessions simulated on the 16 validation regions
(``samples.VALIDATION``, 1 mm, box then 5 recommended corrections, the shipped model judging where
sweeps end), so only the prediction differs, not the slices predicted. The networks (one tanh hidden
layer, L2 on its input weights, soft-target BCE, L-BFGS) are averaged over three seeds. Printed and
saved: the Pearson r of predicted vs true slice Dice (pooled, and the median over regions) and the
mean absolute error, for the model with the mirrored pass (``seg.quality``).

    HALO_SEG_SHARED_DATA=../shared/data .venv/bin/python benchmarks/quality_mlp.py
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from halo_seg.interactive.model_io import load_memnet
from halo_seg.interactive.quality import load_for, load_samples, sample_path_for
from halo_seg.samples import VALIDATION, load_colin27_full
from halo_seg.train.quality_fit import session_samples


def mlp_fit(x, y, hidden, wd, seed):
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt, yt = torch.tensor((x - mean) / std, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.LBFGS(net.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt)
                + wd * (net[0].weight ** 2).sum())
        loss.backward()
        return loss
    opt.step(closure)
    return lambda z: torch.sigmoid(net(torch.tensor((z - mean) / std, dtype=torch.float32))[:, 0]).detach().numpy()


def scores(p, y, regions) -> dict:
    per = [float(np.corrcoef(p[regions == g], y[regions == g])[0, 1]) for g in np.unique(regions)
           if (regions == g).sum() > 5 and y[regions == g].std() > 0]
    return {"r_pooled": float(np.corrcoef(p, y)[0, 1]), "r_median_region": float(np.median(per)),
            "mae": float(np.abs(p - y).mean())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--wd", type=float, nargs="+", default=[1e-3, 1e-2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "quality_mlp.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    meta = load_memnet("default", "cpu")[1]
    shipped = load_for(meta)
    x, y = load_samples(sample_path_for(meta), meta["sha256"])["tta"]
    t0 = time.time()
    data = load_colin27_full()
    vx, vy, vr = session_samples(data.image, data.labels, list(VALIDATION), "default", data.spacing, 6, True,
                                 "auto", "cpu", log=lambda *_: None)
    print(f"{len(vy)} validation slices simulated in {time.time() - t0:.0f}s; {len(y)} fitting slices")
    rows = {"logistic (shipped)": scores(np.array(list(shipped.predict(dict(enumerate(vx)), True).values())),
                                         vy, vr)}
    for h in a.hidden:
        for wd in a.wd:
            p = np.mean([mlp_fit(x, y, h, wd, s)(vx) for s in range(3)], 0)
            rows[f"MLP {h} hidden, L2 {wd:g}"] = scores(p, vy, vr)
    print("\n| quality model | r pooled | r median over regions | mean abs. error |\n|---|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | {s['r_pooled']:.3f} | {s['r_median_region']:.3f} | {s['mae']:.3f} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"rows": rows, "validation_slices": int(len(vy)), "fit_slices": int(len(y)),
                                       "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
    print("saved", a.out)


if __name__ == "__main__":
    main()
