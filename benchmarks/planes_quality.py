"""The protocol across one axis on the 16 validation regions, once per quality model given.

Used to ask whether a quality model fitted on sessions across the plane the user works in does
better there than one fitted on axial sessions (benchmarks/README.md, "Prompting in other planes"):

    HALO_SEG_SHARED_DATA=../shared/data .venv/bin/halo-seg train-quality --out axial.quality.json --axes 0
    HALO_SEG_SHARED_DATA=../shared/data .venv/bin/halo-seg train-quality --out coronal.quality.json --axes 1
    cd benchmarks && HALO_SEG_SHARED_DATA=../../shared/data ../.venv/bin/python planes_quality.py 1 \
        ../axial.quality.json ../coronal.quality.json
"""
import json
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

AXIS = int(sys.argv[1]); MODELS = sys.argv[2:]


def run(arg):
    k, model = arg
    import torch
    torch.set_num_threads(1)
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.simulate import run_session
    from halo_seg.samples import load_colin27_full
    d = load_colin27_full()
    seg = InteractiveSegmenter(d.image, spacing=d.spacing, device="cpu", axis=AXIS, quality_model=model)
    recs = run_session(seg, d.labels == k, 6, seed=k)
    return model, k, [r["dice"] for r in recs], [p for r in recs for p in r["pairs"]]


if __name__ == "__main__":
    from halo_seg.samples import VALIDATION
    from halo_seg.metrics import pearson
    jobs = [(k, m) for m in MODELS for k in sorted(VALIDATION)]
    out = {m: {"dice": [], "pairs": []} for m in MODELS}
    with Pool(2) as pool:
        for m, k, d, p in pool.imap_unordered(run, jobs):
            out[m]["dice"].append(d); out[m]["pairs"] += p
    for m in MODELS:
        print(m, np.round(np.mean(out[m]["dice"], 0), 3), "r", round(pearson(out[m]["pairs"]), 3))
    dst = Path(__file__).parent / "results" / f"planes_quality_axis{AXIS}.json"
    json.dump({m: {"dice": v["dice"]} for m, v in out.items()}, open(dst, "w"), indent=1)
