"""One click as the first prompt: how much of the object does it find, with and without the crop scale search?

Clicks alone do not say how big the object is; the prompt network was trained on crops sized from the
object, so it takes the crop's scale for the object's. ``segmenter.CLICK_SCALE_GAIN`` tries wider crops
around the clicks and keeps one where the quality head predicts a clearly higher Dice. Per case the
simulated user clicks once at the pixel deepest inside the object on one slice and the slice is
segmented; the table gives the mean slice Dice per set with the search off (0) and on (the shipped
gain), and the median seconds of that one segmentation (``--repeats`` times each).

Sets: AAL regions of the 1 mm Colin27 volume (``validation``, on which the gain was chosen, and
``further``; the largest slice and the slices at a quarter, half and three quarters of the region),
the brain (``ch2bet``) on 8 axial slices, the head in the CT (air below -300 HU, holes filled) on 8
slices, bright disks of radius 6 to 100 pixels in noise (400 x 400 slices), and ``large``: disks of
radius 30 and 300 on 2048 x 2048 slices (what the search costs where its crops are widest).

    .venv/bin/python benchmarks/click_scale.py [--sets validation further brain ct disks large] [--gains 0 0.2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _results import save_results

FURTHER = (5, 10, 11, 18, 21, 23, 28, 33, 34, 54, 58, 64, 67, 69, 85, 89, 90, 91, 100, 101, 102, 104, 109, 113)


def _spread(zs, n):
    return sorted({int(zs[int(round(f * (len(zs) - 1)))]) for f in np.linspace(0.1, 0.9, n)})


def cases(name: str):
    """(volume, spacing, [(case name, z, truth slice)])."""
    from scipy import ndimage as ndi

    from halo_seg.samples import VALIDATION, load_colin27_full, shared_data_dir
    if name in ("validation", "further", "brain"):
        data = load_colin27_full()
        if name == "brain":
            zs = np.flatnonzero(data.brain.reshape(len(data.brain), -1).any(1))
            return data.image, data.spacing, [("brain", z, data.brain[z]) for z in _spread(zs, 8)]
        out = []
        for lab in (VALIDATION if name == "validation" else FURTHER):
            truth = data.labels == lab
            area = truth.reshape(len(truth), -1).sum(1)
            zs = np.flatnonzero(area)
            for z in dict.fromkeys([int(area.argmax())] + [int(zs[int(f * (len(zs) - 1))]) for f in (0.25, 0.5, 0.75)]):
                out.append((str(lab), z, truth[z]))
        return data.image, data.spacing, out
    if name == "ct":
        import nibabel as nib
        img = nib.load(Path(shared_data_dir()) / "ct_cranium" / "ct.nii.gz")
        ct = np.asanyarray(img.dataobj).transpose(2, 1, 0)
        head = np.stack([ndi.binary_fill_holes(s > -300) for s in ct])
        lab, n = ndi.label(head)
        head = lab == 1 + int(np.argmax(ndi.sum(head, lab, range(1, n + 1))))
        zs = np.flatnonzero(head.reshape(len(head), -1).any(1))
        return ct, tuple(float(v) for v in img.header.get_zooms()[::-1]), [("head", z, head[z]) for z in _spread(zs, 8)]
    rng = np.random.default_rng(0)
    if name == "large":   # microscopy-sized slices: what the search costs where its crops are widest
        yy, xx = np.indices((2048, 2048))
        stack, out = np.zeros((40, 2048, 2048), np.float32), []
        for i, r in enumerate((30, 300)):
            disk = (yy - 1024) ** 2 + (xx - 1024) ** 2 < r * r
            stack[20 * i] = disk * 100 + rng.normal(0, 10, disk.shape)
            out.append((f"r{r}", 20 * i, disk))
        return stack, None, out
    yy, xx = np.indices((400, 400))
    vol, out = [], []
    for i, r in enumerate((6, 12, 25, 50, 100)):
        disk = (yy - 200) ** 2 + (xx - 200) ** 2 < r * r
        vol.append(disk * 100 + rng.normal(0, 10, disk.shape))
        out.append((f"r{r}", i, disk))
    # the disks lie 20 slices apart, so no slice is another's neighbour
    stack = np.zeros((20 * len(vol), 400, 400), np.float32)
    stack[::20] = np.stack(vol)
    return stack, None, [(n, 20 * z, t) for n, z, t in out]


def run(name: str, gains, repeats: int = 1) -> dict:
    import torch

    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive import segmenter
    from halo_seg.interactive.simulate import depth_inside
    from halo_seg.metrics import dice
    torch.set_num_threads(2)
    volume, spacing, todo = cases(name)
    seg = InteractiveSegmenter(volume, spacing=spacing, device="cpu")
    res = {}
    for g in gains:
        segmenter.CLICK_SCALE_GAIN = g
        rows, secs = [], []
        for case, z, truth in todo:
            y, x = np.unravel_index(np.argmax(depth_inside(truth)), truth.shape)
            for _ in range(repeats):
                seg.reset()
                seg.add_click(z, int(y), int(x))
                t0 = time.perf_counter()
                m = seg.segment_slice(z)
                secs.append(time.perf_counter() - t0)
            rows.append({"case": case, "z": int(z), "dice": round(float(dice(m, truth)), 4),
                         "pixels": int(m.sum()), "truth_pixels": int(truth.sum())})
        res[str(g)] = {"mean_dice": float(np.mean([r["dice"] for r in rows])), "median_s": float(np.median(secs)),
                       "cases": rows}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="*", default=["validation", "further", "brain", "ct", "disks", "large"])
    ap.add_argument("--gains", type=float, nargs="*", default=[0.0, 0.2])
    ap.add_argument("--repeats", type=int, default=1, help="time each click's segmentation this many times")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "click_scale.json"))
    a = ap.parse_args(argv)
    results = {s: run(s, a.gains, a.repeats) for s in a.sets}
    head = " | ".join(f"gain {g}" for g in a.gains)
    print(f"\n| set | slices | mean Dice: {head} | median s: {head} |")
    print("|---|---|" + "---|" * (2 * len(a.gains)))
    for s, r in results.items():
        n = len(r[str(a.gains[0])]["cases"])
        print(f"| {s} | {n} | " + " | ".join(f"{r[str(g)]['mean_dice']:.3f}" for g in a.gains) + " | "
              + " | ".join(f"{r[str(g)]['median_s']:.3f}" for g in a.gains) + " |")
    return save_results(a.out, a.sets, [results])


if __name__ == "__main__":
    raise SystemExit(main())
