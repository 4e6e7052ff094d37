"""Following a cell through a time-lapse with the interactive widget's Next time point.

One box on the cell's largest slice at the first time point; at each later time point the box is
carried from the object segmented at the one before (halo_seg.interactive.carry, what the widget
does), with no correction, and the object propagated through the time point's volume. Compared:
the carried box where the object was ("not moved"), the carried box moved by the object's last
step (no step at the first carry), that box replaced by the tight box of what the slice's
segmentation found in it ("boxed again", the rule shipped until 2026-12-06), half the last step;
the shipped rule (carry.find_again): the box not moved and the box moved, each boxed again, the
one kept whose segmentation the prompt network predicts the better Dice of, less a cost of an area
unlike the object's (chosen on seeds 0-3 at persistences 0.8 and 0); the same, each box also boxed
again from what it finds once widened where the object reaches its sides (find_again's grow, tried
on 2026-12-07 for cells changing shape, not shipped: it cost balls and random walks on fresh seeds);
the shipped rule since 2026-12-07 (find_again's widen): the one chosen so, widened where the object
reaches its sides if it finds under 0.85 of the object's area (tuned on seeds 0-3 and 300-303,
verdict on 500-503); and a tight box from the
truth at every time point (what drawing a new box each time gives). Then, at divisions (3 a
time-lapse), what the mother's carried object covers at her daughters' first time point.
Procedural time-lapses (halo_seg.tracking.phantom: balls of radius 5 voxels moving with a
persistent velocity, no divisions; ``--deform``: cells changing shape), seeds 300 on (not used to
choose the rule), 5 cells a seed, 6 time points. Dice of each carried time point against the true
cell; mean and minimum over cells and time points, and the share of time points where the cell
was lost (Dice < 0.5; a lost cell stays lost, as nobody corrected it). And how often the widget's
note "looks like two cells touching" (carry.two_cells, chosen on seeds 0-3) is right: at
divisions, and as false alarms at the shipped rule's time points of cells that do not divide. And
each daughter of a division, committed beside her sister, carried to the next time point: how
often she takes her sister in, how often the note names her sister, her Dice before and after
Commit as two splits them there (after_divisions).

    .venv/bin/python benchmarks/carry.py [--speeds 1.5 3] [--seeds 4] [--first-seed 300] [--out benchmarks/results/carry.json]
    .venv/bin/python benchmarks/carry.py --persistence 0 --no-divisions --out benchmarks/results/carry_walk.json
    .venv/bin/python benchmarks/carry.py --deform 0.2 --no-divisions --out benchmarks/results/carry_deform.json
    .venv/bin/python benchmarks/carry.py --daughters-only --out benchmarks/results/carry_daughters.json
    .venv/bin/python benchmarks/carry.py --first-seed 500 --rules 0 5 7 --out benchmarks/results/carry_widen.json
        (and --rules 5 7 --no-divisions with --persistence 0 / --deform 0.2: carry_widen_walk.json,
        carry_widen_deform.json)
    .venv/bin/python benchmarks/carry.py --speeds 2.5 --seeds 4 --first-seed 956 --crowd 30 --cells 10 --rules 7 8
        --no-divisions --out benchmarks/results/carry_grown_over_crowded.json   (rule 8: the own part kept
        where the object grew over a touching cell, shipped 2026-12-07; and --speeds 1.5 3.0 on the
        default phantom: carry_grown_over.json)
    .venv/bin/python benchmarks/carry.py --backward --speeds 2.5 --seeds 4 --first-seed 980 --crowd 30 --cells 10
        --rules 7 8 --no-divisions --out benchmarks/results/carry_grown_over_back_crowded.json   (rule 8 carried
        backward; and --backward --speeds 1.5 3.0 --rules 7 8 on the default phantom, with the daughters
        carried back to their mothers: carry_grown_over_back.json)
    .venv/bin/python benchmarks/carry.py --rules 0 5 6 --out benchmarks/results/carry_grow.json   (and
        --persistence 0 / --deform 0.2 with --no-divisions: carry_grow_walk.json, carry_grow_deform.json;
        their division parts were run with grow the default of find_again, as it was for that run)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _results import save_results

RULES = ("true box", "carried, not moved", "carried, moved by the last step", "moved, then boxed again",
         "moved by half the last step", "either, by predicted Dice and area",
         "either, also widened where the object reaches the box (not shipped)",
         "either, the one chosen widened where the object reaches it, if it finds under 0.85 of its area",
         "as 7, its own part alone kept where it grew over a touching cell (carry.took_in)")
SHIPPED = RULES[7]   # since 2026-12-07; RULES[5] until then


def follow(image, truth, rule: str, named: list | None = None) -> list[float]:
    """Dice at time points 1.. of one cell (``truth`` (T, Z, Y, X) bool) followed by ``rule``;
    ``named`` gets, per carried time point, whether the object was taken for two cells (two_cells:
    a false alarm, as these cells do not divide)."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import WIDEN_BELOW, carried_box, carried_boxes, carry_record, find_again, \
        two_cells
    from halo_seg.interactive.roi import mask_bbox
    from halo_seg.metrics import dice
    z = int(truth[0].sum((1, 2)).argmax())
    seg = InteractiveSegmenter(image[0], device="cpu")
    seg.add_box(z, *mask_bbox(truth[0, z]))
    pred, record, out = seg.propagate(), None, []
    for t in range(1, len(image)):
        if pred.any():
            record = carry_record(pred, t - 1, record if rule != RULES[1] else None)
        seg = InteractiveSegmenter(image[t], device="cpu")
        if rule == RULES[0]:
            zt = int(truth[t].sum((1, 2)).argmax())
            seg.add_box(zt, *mask_bbox(truth[t, zt]))
        elif record is not None and rule in (RULES[5], RULES[6], RULES[7], RULES[8]):
            find_again(seg, carried_boxes(record, image.shape[1:]), record["area"], grow=rule == RULES[6],
                       widen=WIDEN_BELOW if rule in (RULES[7], RULES[8]) else None)
        elif record is not None and rule == RULES[3]:   # the moved box alone, boxed again
            find_again(seg, [carried_box(record, image.shape[1:])], grow=False, widen=None)
        elif record is not None:
            half = rule == RULES[4] and record["step"] is not None
            zt, b = carried_box(dict(record, step=record["step"] / 2) if half else record, image.shape[1:])
            seg.add_box(zt, *b)
        else:   # lost at the time point before: nothing to carry
            out.append(0.0)
            pred = np.zeros_like(pred)
            continue
        before, pred = pred, seg.propagate()
        if rule == RULES[8] and record is not None:
            pred = own_part(pred, before, record)
        out.append(float(dice(pred, truth[t])))
        if named is not None:
            named.append(two_cells(pred) is not None)
    return out


def own_part(pred: np.ndarray, before: np.ndarray, record: dict) -> np.ndarray:
    """``pred`` cut to its own part where the object carried (``before``: it at the time point it came
    from, ``record`` its carry record) grew over a touching cell (carry.two_cells, then took_in: what
    the widget's note finds); else ``pred`` as it is."""
    from scipy import ndimage as ndi

    from halo_seg.interactive.carry import touching_parts
    found = ndi.find_objects(pred.astype(np.uint8))
    if not found:
        return pred
    box = found[0]
    parts, own = touching_parts(pred[box], box, before=before.astype(np.uint8), label=1, bounds=record["bounds"])
    if own is None:
        return pred
    out = np.zeros_like(pred)
    out[box] = parts[own]
    return out


def _divisions(seeds):
    """(time-lapse, mother, her daughters' first time point, daughters) of each division of the
    procedural time-lapses of ``seeds`` (14 cells, 12 time points, 3 divisions each)."""
    from halo_seg.tracking.phantom import cell_timelapse
    for seed in seeds:
        tl = cell_timelapse(shape=(32, 96, 96), cells=14, timepoints=12, radius=5.0, speed=1.5, divisions=3,
                            seed=seed)
        born = {}
        for k, first, _, parent in tl.lineage:
            if parent:
                born.setdefault((int(parent), int(first)), []).append(int(k))
        for (mother, first), daughters in born.items():
            yield tl, mother, first, daughters


def at_divisions(seeds) -> dict:
    """Each division of procedural time-lapses (3 per seed): the mother boxed two time points before
    her daughters appear and carried (the shipped rule) to their first time point; how often the
    carried object covers most (over half) of both daughters, of one, of none; how often, of each,
    it was taken for two cells (two_cells: the widget's note), and the Dice of its two parts against
    the daughters where it covered both."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import carried_boxes, carry_record, find_again, two_cells
    from halo_seg.metrics import dice
    from halo_seg.interactive.roi import mask_bbox
    counts = {"both": 0, "one": 0, "none": 0, "named": {"both": 0, "one": 0, "none": 0}, "parts_dice": []}
    for tl, mother, first, daughters in _divisions(seeds):
        t0 = first - 2
        if t0 < 0 or len(daughters) != 2 or not (tl.ids[t0] == mother).any():
            continue
        truth = tl.ids[t0] == mother
        z = int(truth.sum((1, 2)).argmax())
        seg = InteractiveSegmenter(tl.image[t0], device="cpu")
        seg.add_box(z, *mask_bbox(truth[z]))
        pred, record = seg.propagate(), None
        for t in (t0 + 1, first):
            if not pred.any():
                break
            record = carry_record(pred, t - 1, record)
            seg = InteractiveSegmenter(tl.image[t], device="cpu")
            find_again(seg, carried_boxes(record, tl.image.shape[1:]), record["area"])
            pred = seg.propagate()
        covered = sum(float((pred & (tl.ids[first] == d)).sum()) / (tl.ids[first] == d).sum() > 0.5
                      for d in daughters)
        kind = ("none", "one", "both")[int(covered)]
        counts[kind] += 1
        parts = two_cells(pred)
        counts["named"][kind] += parts is not None
        if parts is not None and kind == "both":   # each daughter to the part that matches her best
            a, b = (tl.ids[first] == d for d in daughters)
            counts["parts_dice"].append(max((dice(parts[0], a) + dice(parts[1], b)) / 2,
                                            (dice(parts[0], b) + dice(parts[1], a)) / 2))
    return counts


def after_divisions(seeds) -> dict:
    """Each daughter of each division (procedural time-lapses, 3 divisions per seed), committed as
    her true mask at her first time point, as a right Commit as two leaves her, her sister beside
    her, and carried by the shipped rule to the next: how often the carried object takes in most
    of her sister too, how often the widget's note names her sister (two_cells, then
    part_sources: a part lying where her sister was), and her Dice from the carried object whole
    and after Commit as two where the note named her sister (her part, the one carried from her)."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import carried_boxes, carry_record, find_again, part_sources, two_cells
    from halo_seg.metrics import dice
    out = {"daughters": 0, "took_in_sister": 0, "named_sister": 0, "named_sister_rightly": 0,
           "dice_whole": [], "dice_after": []}
    whole = (slice(None),) * 3
    for tl, mother, first, daughters in _divisions(seeds):
        if len(daughters) != 2 or first + 1 >= len(tl.ids) or not (tl.ids[first - 1] == mother).any():
            continue
        before = np.where(np.isin(tl.ids[first], daughters), tl.ids[first], 0)   # the two committed
        source = carry_record(tl.ids[first - 1] == mother, first - 1)
        for her, sister in (daughters, daughters[::-1]):
            truth = tl.ids[first + 1] == her
            if not truth.any():
                continue
            record = carry_record(tl.ids[first] == her, first, source, label=her)
            seg = InteractiveSegmenter(tl.image[first + 1], device="cpu")
            find_again(seg, carried_boxes(record, tl.image.shape[1:]), record["area"])
            pred = seg.propagate()
            out["daughters"] += 1
            other = tl.ids[first + 1] == sister
            took = bool(other.any() and (pred & other).sum() > 0.5 * other.sum())
            out["took_in_sister"] += took
            parts = two_cells(pred)
            sources = part_sources(parts, whole, before, her) if parts is not None else [her]
            d = float(dice(pred, truth))
            out["dice_whole"].append(d)
            if sister in sources and her in sources:
                out["named_sister"] += 1
                out["named_sister_rightly"] += took
                d = float(dice(parts[sources.index(her)], truth))
            out["dice_after"].append(d)
    return out


def back_to_mothers(seeds, rules) -> dict:
    """Each daughter of each division (the time-lapses of _divisions), from her true mask at her
    first time point (her step from the time point after it), carried back (Previous time point) by
    each of ``rules`` to her mother's last time point: Dice against the mother, and for rule 8 how
    often it cut the object (took_in: the mother, twice the daughter's volume, taken for the
    daughter grown over a touching cell)."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import WIDEN_BELOW, carried_boxes, carry_record, find_again
    from halo_seg.metrics import dice
    out = {r: [] for r in rules}
    cut = 0
    for tl, mother, first, daughters in _divisions(seeds):
        truth = tl.ids[first - 1] == mother
        for her in daughters:
            now = tl.ids[first] == her
            if not truth.any() or not now.any() or first + 1 >= len(tl.ids) or not (tl.ids[first + 1] == her).any():
                continue
            record = carry_record(now, first, carry_record(tl.ids[first + 1] == her, first + 1))
            seg = InteractiveSegmenter(tl.image[first - 1], device="cpu")
            find_again(seg, carried_boxes(record, tl.image.shape[1:], -1), record["area"], widen=WIDEN_BELOW)
            pred = seg.propagate()
            for rule in rules:
                got = own_part(pred, now, record) if rule == RULES[8] else pred
                cut += rule == RULES[8] and not np.array_equal(got, pred)
                out[rule].append(float(dice(got, truth)))
    rows = [{"rule": r, "n": len(d), "mean_dice": float(np.mean(d)), "lost": float(np.mean(np.array(d) < 0.5)),
             **({"cut": int(cut)} if r == RULES[8] else {})} for r, d in out.items()]
    for r in rows:
        print(f"a daughter carried back to her mother ({r['n']}): {r['rule']}: mean Dice {r['mean_dice']:.3f}, "
              f"lost {r['lost']:.3f}" + (f", cut {r['cut']}" if "cut" in r else ""))
    return {"rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speeds", type=float, nargs="+", default=[1.5, 3.0])
    ap.add_argument("--seeds", type=int, default=4, help="time-lapses per speed")
    ap.add_argument("--first-seed", type=int, default=300, help="the first (0: the seeds the rule was chosen on)")
    ap.add_argument("--cells", type=int, default=5, help="cells followed per time-lapse")
    ap.add_argument("--crowd", type=int, default=10, help="cells in the time-lapse (30: crowded, touching often)")
    ap.add_argument("--persistence", type=float, default=0.8,
                    help="the share of its velocity a cell keeps a time point (0.8 crawling on, 0 a random walk)")
    ap.add_argument("--deform", type=float, default=0.0,
                    help="how much cells change shape a time point (phantom.cell_timelapse's deform; 0: balls)")
    ap.add_argument("--no-divisions", action="store_true", help="without the divisions' part")
    ap.add_argument("--rules", type=int, nargs="+", default=list(range(len(RULES))),
                    help="which rules (their numbers in RULES, 0 the true box) to follow the cells by")
    ap.add_argument("--daughters-only", action="store_true",
                    help="only the daughters followed after a division (after_divisions)")
    ap.add_argument("--backward", action="store_true",
                    help="carry backward (Previous time point): each time-lapse reversed, the same as carrying with "
                         "direction -1 (a record keeps its forward step, carried_box turns it by the direction); "
                         "the divisions' part is then back_to_mothers")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "carry.json"))
    a = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    from halo_seg.tracking.phantom import cell_timelapse
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    if a.daughters_only:
        return save_results(a.out, {"seeds": list(seeds)}, [_after_row(after_divisions(seeds))])
    rows = []
    for speed in a.speeds:
        rules = [RULES[i] for i in a.rules]
        dices, named = {r: [] for r in rules}, []
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            tl = cell_timelapse(shape=(32, 96, 96), cells=a.crowd, timepoints=6, radius=5.0, speed=speed, divisions=0,
                                seed=seed, persistence=a.persistence, deform=a.deform)
            if a.backward:
                tl.image, tl.ids = tl.image[::-1].copy(), tl.ids[::-1].copy()
            # cells present at every time point, the first few
            whole = [k for k in np.unique(tl.ids[0])[1:] if all((tl.ids[t] == k).any() for t in range(6))]
            for k in whole[:a.cells]:
                for rule in rules:
                    dices[rule] += follow(tl.image, tl.ids == k, rule, named if rule == SHIPPED else None)
        for rule in rules:
            d = np.array(dices[rule])
            rows.append({"speed": speed, "rule": rule, "n": int(d.size), "mean_dice": float(d.mean()),
                         "min_dice": float(d.min()), "lost": float((d < 0.5).mean()),
                         **({"taken_for_two": int(sum(named))} if rule == SHIPPED else {})})
    print("| speed (voxels a time point, radius 5) | box | time points | mean Dice | min Dice | lost |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['speed']:g} | {r['rule']} | {r['n']} | {r['mean_dice']:.3f} | {r['min_dice']:.3f} | "
              f"{r['lost']:.3f} |")
    for speed in a.speeds if SHIPPED in rules else []:
        r = next(r for r in rows if r["speed"] == speed and r["rule"] == SHIPPED)
        print(f"speed {speed:g}, cells that do not divide: taken for two at {r['taken_for_two']} of {r['n']} time points")
    meta = {"speeds": a.speeds, "seeds": list(range(a.first_seed, a.first_seed + a.seeds)), "cells": a.cells,
            "crowd": a.crowd,
            "persistence": a.persistence, "deform": a.deform, "backward": a.backward}
    if a.no_divisions:
        return save_results(a.out, meta, rows)
    if a.backward:
        return save_results(a.out, {**meta, "back_to_mothers": back_to_mothers(seeds, rules)}, rows)
    divided = at_divisions(range(a.first_seed, a.first_seed + a.seeds))
    print(f"at a division (speed 1.5, the mother carried to her daughters' first time point): the carried object "
          f"covers most of both daughters {divided['both']}, one {divided['one']}, none {divided['none']}")
    n = divided["named"]
    print(f"taken for two cells (the widget's note): {n['both']} of {divided['both']} covering both, {n['one']} of "
          f"{divided['one']} one, {n['none']} of {divided['none']} none; its two parts against the daughters, mean "
          f"Dice {np.mean(divided['parts_dice']) if divided['parts_dice'] else float('nan'):.3f}")
    after = _after_row(after_divisions(range(a.first_seed, a.first_seed + a.seeds)))
    return save_results(a.out, {**meta, "at_divisions": divided, "after_divisions": after}, rows)


def _after_row(after: dict) -> dict:
    """after_divisions' counts and mean Dice, printed."""
    row = {k: v for k, v in after.items() if not k.startswith("dice")}
    row.update(mean_dice_whole=float(np.mean(after["dice_whole"])), mean_dice_after=float(np.mean(after["dice_after"])),
               lost_whole=float(np.mean(np.array(after["dice_whole"]) < 0.5)),
               lost_after=float(np.mean(np.array(after["dice_after"]) < 0.5)))
    print(f"a daughter carried from her first time point to the next (her sister committed beside her): "
          f"{row['daughters']} daughters, her sister taken in too {row['took_in_sister']}; the note named her sister "
          f"{row['named_sister']} ({row['named_sister_rightly']} of them taking her in); her mean Dice "
          f"{row['mean_dice_whole']:.3f} carried whole, {row['mean_dice_after']:.3f} after Commit as two where the "
          f"note named her sister; Dice < 0.5 at {row['lost_whole']:.2f} and {row['lost_after']:.2f}")
    return row


if __name__ == "__main__":
    raise SystemExit(main())
