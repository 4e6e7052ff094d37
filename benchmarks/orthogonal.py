"""Does a box on one axial slice say enough to seed the two orthogonal planes? A diagnosis.

The one-box protocol gives the network one axial slice. The mask segmented from that box crosses
the sagittal plane through its widest column, and the coronal plane through its widest row, in a
line: on that line the object's extent is known at the box's slice. This script gives that line to
the 2D network as a positive scribble on each orthogonal slice (and the rest of the line, 12 px
beyond the mask, as a negative scribble). It segments those slices, propagates each along its own
axis, and fuses the three volumes: a vote of 2 of 3, their union, or the axial volume cut to the
slices the orthogonal masks reach. Regions: the 16 validation regions by default (never the
benchmark's structures for a choice).

    cd benchmarks && HALO_SEG_SHARED_DATA=../../shared/data ../.venv/bin/python orthogonal.py [--regions ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from _results import save_results
from halo_seg.samples import SUBCORTICAL, VALIDATION

PLANES = {"sagittal": ((2, 0, 1), (1, 2, 0)), "coronal": ((1, 0, 2), (1, 0, 2))}
KEYS = ("box_slice", "axial", "sagittal_slice", "coronal_slice", "sagittal", "coronal", "vote2", "union",
        "axial_cut")


def _extent(mask):
    zs = np.flatnonzero(mask.reshape(len(mask), -1).any(1))
    return (int(zs.min()), int(zs.max())) if len(zs) else None


def region(data, k: int) -> dict:
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.simulate import tight_box
    from halo_seg.metrics import dice
    vol, truth = data.image, data.labels == k
    z0 = int(truth.sum((1, 2)).argmax())
    seg = InteractiveSegmenter(vol, spacing=data.spacing, device="cpu")
    seg.add_box(z0, *tight_box(truth[z0]))
    m = seg.segment_slice(z0)
    pred = {"axial": seg.propagate()}
    out = {"box_slice": dice(m, truth[z0]), "axial": dice(pred["axial"], truth)}
    ends = []
    for plane, (perm, inv) in PLANES.items():
        v, t = vol.transpose(perm), truth.transpose(perm)
        c = int(m.sum(0 if plane == "sagittal" else 1).argmax())
        line = m[:, c] if plane == "sagittal" else m[c, :]
        scribble = np.zeros(v.shape[1:], bool)
        scribble[z0] = line
        other = InteractiveSegmenter(v, spacing=tuple(np.asarray(data.spacing)[list(perm)]), device="cpu")
        other.add_scribble(c, scribble)
        ys = np.flatnonzero(line)
        neg = np.zeros_like(scribble)
        lo, hi = max(ys.min() - 12, 0), min(ys.max() + 13, len(line))
        neg[z0, lo:hi] = ~ndi.binary_dilation(line, iterations=1)[lo:hi]
        if neg.any():
            other.add_scribble(c, neg, positive=False)
        m2 = other.segment_slice(c)
        out[f"{plane}_slice"] = dice(m2, t[c])
        if m2.any():
            ends.append(_extent(m2[:, None, :]))
        pred[plane] = other.propagate().transpose(inv)
        out[plane] = dice(pred[plane], truth)
    votes = sum(p.astype(np.int8) for p in pred.values())
    out["vote2"], out["union"] = dice(votes >= 2, truth), dice(votes >= 1, truth)
    cut = pred["axial"].copy()
    if ends:
        cut[:min(e[0] for e in ends)] = False
        cut[max(e[1] for e in ends) + 1:] = False
    out["axial_cut"] = dice(cut, truth)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, nargs="*", default=sorted(VALIDATION))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "orthogonal.json"))
    a = ap.parse_args(argv)
    import torch
    from halo_seg.samples import load_colin27_full
    torch.set_num_threads(1)
    data = load_colin27_full()
    names = {**VALIDATION, **SUBCORTICAL}
    rows = []
    for k in a.regions:
        r = {"label": k, "name": names.get(k, str(k)), **region(data, k)}
        rows.append(r)
        print(f"{r['name']:20s} " + " ".join(f"{key} {r[key]:.3f}" for key in KEYS), flush=True)
    print("\n| " + " | ".join(KEYS) + " |\n" + "|---" * len(KEYS) + "|")
    print("| " + " | ".join(f"{np.mean([r[key] for r in rows]):.3f}" for key in KEYS) + " |")
    return save_results(a.out, a.regions, rows)


if __name__ == "__main__":
    raise SystemExit(main())
