"""Where does two_cells' cut at the lowest neck (at_neck, Commit as two's) differ from its default
cut between the two largest lobes (the carry's note, measured in benchmarks/carry.py)?

Two cases. At divisions (benchmarks/carry.py's at_divisions: procedural time-lapses, 3 divisions a
seed, the mother boxed two time points before her daughters appear and carried to their first
time point): each carried object split both ways, against the daughters (the mean Dice of the two
parts with the daughters, matched the better way) and whether the two splits are the same. And
nuclei merged into one label (three balls of radius 6 in a row, centres 9 to 12.5 voxels apart:
necks of random width): split once, how many of the three come out whole (over 0.97 of a ball,
less where it overlaps another, in one part).

    .venv/bin/python benchmarks/split_modes.py [--seeds 0 1 2 3 500 501 502 503] [--rows 40]
        [--out benchmarks/results/split_modes.json]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _results import save_results


def divisions(seeds) -> list[dict]:
    import carry as bench

    from halo_seg.interactive import carry
    from halo_seg.metrics import dice
    real, seen = carry.two_cells, []

    def both(mask, spacing=None, at_neck=False):   # at_divisions calls it once per division carried
        seen.append((real(mask, spacing), real(mask, spacing, at_neck=True)))
        return seen[-1][0]
    truths = []
    for tl, mother, first, daughters in bench._divisions(seeds):
        if first - 2 >= 0 and len(daughters) == 2 and (tl.ids[first - 2] == mother).any():
            truths.append((tl.ids[first] == daughters[0], tl.ids[first] == daughters[1]))
    carry.two_cells = both
    try:
        bench.at_divisions(seeds)
    finally:
        carry.two_cells = real
    assert len(seen) == len(truths)

    def score(parts, a, b):
        if parts is None:
            return None
        return float(max(dice(parts[0], a) + dice(parts[1], b), dice(parts[0], b) + dice(parts[1], a)) / 2)
    rows = []
    for (largest, neck), (a, b) in zip(seen, truths):
        same = (largest is None) == (neck is None) and (largest is None or any(
            all(np.array_equal(x, y) for x, y in zip(largest, order)) for order in (neck, neck[::-1])))
        rows.append({"case": "division", "largest": score(largest, a, b), "neck": score(neck, a, b), "same": same})
    return rows


def merged(n: int, seed: int = 0) -> list[dict]:
    from halo_seg.interactive.carry import two_cells
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.ogrid[:24, :48, :96]
    rows = []
    for _ in range(n):
        gaps = rng.uniform(9, 12.5, 2)   # centres apart: 12 touches at a point, 9 a wide neck
        xs = 26 + np.concatenate([[0], np.cumsum(gaps)])
        balls = [(zz - 12) ** 2 + (yy - 24) ** 2 + (xx - x) ** 2 <= 36 for x in xs]
        union = balls[0] | balls[1] | balls[2]
        own = [b & ~np.logical_or.reduce([o for o in balls if o is not b]) for b in balls]   # overlaps left out
        row = {"case": "three merged", "gaps": [float(g) for g in gaps]}
        for mode in ("largest", "neck"):
            parts = two_cells(union, at_neck=mode == "neck")
            row[mode] = None if parts is None else int(sum(any((p & o).sum() > 0.97 * o.sum() for p in parts)
                                                           for o in own))
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 500, 501, 502, 503])
    ap.add_argument("--rows", type=int, default=40, help="merged triples of nuclei")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "split_modes.json"))
    a = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    div = divisions(a.seeds)
    tri = merged(a.rows)
    split = [r for r in div if r["largest"] is not None or r["neck"] is not None]
    print("| case | objects | split the same | taken for two (largest / neck) | mean Dice with the daughters "
          "(largest / neck) | nuclei whole after one split (largest / neck) |")
    print("|---|---|---|---|---|---|")
    both = [r for r in split if r["largest"] is not None and r["neck"] is not None]
    print(f"| division | {len(div)} | {sum(r['same'] for r in div)} | "
          f"{sum(r['largest'] is not None for r in div)} / {sum(r['neck'] is not None for r in div)} | "
          f"{np.mean([r['largest'] for r in both]):.3f} / {np.mean([r['neck'] for r in both]):.3f} | |")
    print(f"| three merged | {len(tri)} | | {sum(r['largest'] is not None for r in tri)} / "
          f"{sum(r['neck'] is not None for r in tri)} | | {sum(r['largest'] or 0 for r in tri)} / "
          f"{sum(r['neck'] or 0 for r in tri)} of {3 * len(tri)} |")
    for r in div:
        if not r["same"]:
            print(f"a division split otherwise: Dice {r['largest']} (largest) against {r['neck']} (neck)")
    return save_results(a.out, {"seeds": a.seeds, "rows": a.rows}, div + tri)


if __name__ == "__main__":
    raise SystemExit(main())
