"""Learned memory propagation vs classical optical-flow label propagation, from the same slice.

Is the memory network better at carrying a mask from slice to slice than registration, which
needs no training and knows nothing about anatomy? For each structure: the benchmark's first
round (a tight box on the slice where the object is largest, segmented by the 2D network, then
propagated by the shipped loop), and the same box-segmented slice carried up and down by
``baseline.flow_propagate`` (scikit-image's iterative Lucas-Kanade flow between neighbouring
slices). Flow has no rule for where an object ends, so it is compared three ways:

* ``flow_ext`` / ``net_ext``: both cut to the structure's true slice extent (an oracle end rule,
  the same for both): how well each follows the object inside it;
* ``flow_in_net``: flow cut to the slices the network predicts (the network decides the ends);
* ``slice_*``: the mean slice Dice over slices both reach inside the true extent.

Report-only: no engine setting is chosen from it. Regions: the 16 validation regions
(``samples.VALIDATION``) and the 12 held-out benchmark structures (``samples.SUBCORTICAL``).

    .venv/bin/python benchmarks/flow_baseline.py [--sets validation benchmark] [--radius 4]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from _results import save_results
from halo_seg import InteractiveSegmenter
from halo_seg.interactive.baseline import flow_propagate
from halo_seg.interactive.simulate import run_session
from halo_seg.metrics import dice, dice_per_slice
from halo_seg.samples import SUBCORTICAL, VALIDATION, load_colin27_full

SETS = {"validation": VALIDATION, "benchmark": SUBCORTICAL}
COLUMNS = ("net", "net_ext", "flow", "flow_ext", "flow_in_net", "slice_net", "slice_flow")


def compare(data, label: int, radius: int) -> dict:
    truth = data.labels == label
    seg = InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu")
    t0 = time.perf_counter()
    run_session(seg, truth, rounds=1, seed=label)
    net_s = time.perf_counter() - t0
    net = seg.prediction
    z0, = seg.annotated_slices
    m0 = net[z0]   # the box-segmented slice: the prediction holds the annotated masks as they are
    t0 = time.perf_counter()
    flow = flow_propagate(data.image, z0, m0, radius=radius)
    flow_s = time.perf_counter() - t0
    ext = truth.reshape(len(truth), -1).any(1)
    net_z = net.reshape(len(net), -1).any(1)
    cut = lambda v, keep: np.where(keep[:, None, None], v, False)   # noqa: E731
    both = ext & net_z & flow.reshape(len(flow), -1).any(1)
    both[z0] = False
    sn, sf = dice_per_slice(net, truth), dice_per_slice(flow, truth)
    return {"net": dice(net, truth), "net_ext": dice(cut(net, ext), truth), "flow": dice(flow, truth),
            "flow_ext": dice(cut(flow, ext), truth), "flow_in_net": dice(cut(flow, net_z), truth),
            "slice_net": float(sn[both].mean()) if both.any() else float("nan"),
            "slice_flow": float(sf[both].mean()) if both.any() else float("nan"),
            "common_slices": int(both.sum()), "start_slice": int(z0),
            "seconds_net_round": net_s, "seconds_flow": flow_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--radius", type=int, default=4, help="Lucas-Kanade window radius, pixels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "flow_baseline.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = load_colin27_full()
    results = []
    for name in a.sets:
        rows = []
        print(f"\n{name}:\n| region | " + " | ".join(COLUMNS) + " | s net round / flow |")
        print("|---" * (len(COLUMNS) + 2) + "|")
        for label, region in SETS[name].items():
            if not (data.labels == label).any():
                continue
            r = dict(compare(data, label, a.radius), region=region, label=int(label))
            rows.append(r)
            print(f"| {region} | " + " | ".join(f"{r[c]:.3f}" for c in COLUMNS)
                  + f" | {r['seconds_net_round']:.1f} / {r['seconds_flow']:.1f} |", flush=True)
        mean = {c: float(np.nanmean([r[c] for r in rows])) for c in COLUMNS}
        ahead = sum(r["net_ext"] > r["flow_ext"] for r in rows)
        print(f"| **mean** | " + " | ".join(f"**{mean[c]:.3f}**" for c in COLUMNS) + " | |")
        print(f"inside the true extent the network is ahead of flow on {ahead} of {len(rows)} regions")
        results.append({"set": name, "mean": mean, "network_ahead_inside_extent": ahead, "rows": rows})
    results.append({"radius": a.radius, "threads": a.threads, "machine": platform.platform(),
                    "torch": torch.__version__})
    return save_results(a.out, {s: [int(k) for k in SETS[s]] for s in a.sets}, results)


if __name__ == "__main__":
    raise SystemExit(main())
