"""Writing many objects' rows of features into a Labels layer (napari_halo_seg._measure): one by one
(set_row, as Commit writes one object's and as Restore objects and All to next time point wrote
theirs until 2026-12-07) against at once (set_rows, what they write now). Each set_row rewrites every
row, so n objects written one by one onto a layer of N rows cost n x N. In napari's GUI thread;
medians of 5.

    .venv/bin/python benchmarks/feature_rows.py [--out benchmarks/results/feature_rows.json]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _results import save_results


def once(held: int, new: int, at_once: bool) -> float:
    import napari

    from napari_halo_seg._measure import set_row, set_rows
    layer = napari.layers.Labels(np.zeros((4, 8, 8), np.int32))
    set_rows(layer, [{"index": i, "voxels": i, "timepoint": 0, "carried from": i - 1} for i in range(1, held + 1)])
    rows = [{"index": held + i, "voxels": i, "timepoint": 1, "carried from": i} for i in range(1, new + 1)]
    t = time.perf_counter()
    if at_once:
        set_rows(layer, rows)
    else:
        for r in rows:
            set_row(layer, r)
    assert len(layer.features) == held + new
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "feature_rows.json"))
    a = ap.parse_args()
    rows = []
    print("| rows held | rows written | one by one (ms) | at once (ms) | ratio |")
    print("|---|---|---|---|---|")
    for held, new in ((0, 50), (200, 50), (2000, 50), (0, 1000), (5000, 500)):
        one = float(np.median([once(held, new, False) for _ in range(5)]))
        both = float(np.median([once(held, new, True) for _ in range(5)]))
        rows.append({"held": held, "new": new, "one_by_one_s": one, "at_once_s": both})
        print(f"| {held} | {new} | {one * 1000:.1f} | {both * 1000:.1f} | {one / both:.0f}x |", flush=True)
    return save_results(a.out, {"repeats": 5}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
