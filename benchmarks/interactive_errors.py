"""Where the interactive error comes from, per held-out structure of the 1 mm Colin27 volume.

For each of the 12 subcortical structures: the Dice of the 2D box segmentation (on the largest
slice and on every third slice), the volume Dice of one propagation from a box and from the exact
mask of the largest slice, and the latter cut to the structure's true slice extent (what is left
is under-segmentation inside; the difference is sweeps running past the ends).

    .venv/bin/python benchmarks/interactive_errors.py [--quality-stop 0] [--weights default]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from halo_seg import InteractiveSegmenter
from halo_seg.interactive.roi import mask_bbox
from halo_seg.metrics import dice
from halo_seg.samples import SUBCORTICAL, load_colin27_full

COLUMNS = ("box_2d_largest", "box_2d_every_third", "volume_from_box", "volume_from_exact", "exact_within_extent")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="default")
    ap.add_argument("--quality-stop", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "interactive_errors.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    data = load_colin27_full()

    def session():
        return InteractiveSegmenter(data.image, spacing=data.spacing, device="cpu", weights=a.weights,
                                    quality_stop=a.quality_stop)

    rows = []
    print("| structure | " + " | ".join(COLUMNS) + " | true slices | predicted slices |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    for lab, name in sorted(SUBCORTICAL.items()):
        truth = data.labels == lab
        area = truth.reshape(len(truth), -1).sum(1)
        z, zs = int(area.argmax()), np.flatnonzero(area)
        seg = session()
        seg.add_box(z, *mask_bbox(truth[z]))
        d2 = dice(seg.segment_slice(z), truth[z])
        from_box = dice(seg.propagate(), truth)
        seg = session()
        seg.set_slice_mask(z, truth[z])
        pred = seg.propagate()
        inside = pred.copy()
        inside[:zs.min()] = False
        inside[zs.max() + 1:] = False
        d2s = []
        for zz in zs[::3]:
            s2 = session()
            s2.add_box(int(zz), *mask_bbox(truth[zz]))
            d2s.append(dice(s2.segment_slice(int(zz)), truth[zz]))
        pz = np.flatnonzero(pred.reshape(len(pred), -1).any(1))
        row = dict(zip(COLUMNS, (d2, float(np.mean(d2s)), from_box, dice(pred, truth), dice(inside, truth))))
        row.update(name=name, true_slices=[int(zs.min()), int(zs.max())],
                   predicted_slices=[int(pz.min()), int(pz.max())] if len(pz) else None)
        rows.append(row)
        print(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in COLUMNS)
              + f" | {row['true_slices']} | {row['predicted_slices']} |", flush=True)
    mean = {c: float(np.mean([r[c] for r in rows])) for c in COLUMNS}
    print("| mean | " + " | ".join(f"{mean[c]:.3f}" for c in COLUMNS) + " | | |")
    Path(a.out).write_text(json.dumps({"mean": mean, "structures": rows, "quality_stop": a.quality_stop,
                                       "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__}, indent=1))
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
