"""Taking one label of a large label volume to correct it (napari's Edit label,
``InteractiveSegmenter.start_from``): time and memory, this checkout against another (e.g. the
commit before the label was read a slab at a time: 0db8cdc).

An automatic result with every voxel labelled (about 200 labels in 64 x 64 columns, in numpy) and
one small object (label 999, 30 x 40 x 40 voxels) in a volume of ``--shape``. The code before built
the object's whole boolean mask (as the widget did: ``labels == 999``) and gave it to
``start_from``; now ``start_from(labels, label=999)`` reads the labels a slab at a time. Each code
in its own process, interleaved, ``--repeat`` times; medians of the seconds and of the peak memory
above what the image and the labels hold.

    git worktree add /tmp/before 0db8cdc
    .venv/bin/python benchmarks/edit_label.py --before /tmp/before/src [--shape 600 1024 1024]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from _results import before_and_now_parser, interleaved, one_or_main, save_results


def _one(spec: dict) -> dict:
    import resource
    import time
    sys.path.insert(0, spec["src"])
    import torch
    from halo_seg import InteractiveSegmenter
    torch.set_num_threads(spec["threads"])
    Z, Y, X = spec["shape"]
    rng = np.random.default_rng(0)
    labels = np.empty((Z, Y, X), np.uint16)
    for z in range(0, Z, 50):
        cols = rng.integers(1, 200, (min(50, Z - z), -(-Y // 64), -(-X // 64))).astype(np.uint16)
        labels[z:z + 50] = cols.repeat(64, 1).repeat(64, 2)[:, :Y, :X]
    zc, yc, xc = Z // 2, Y // 2, X // 2
    labels[zc - 15:zc + 15, yc - 20:yc + 20, xc - 20:xc + 20] = 999
    seg = InteractiveSegmenter(np.zeros((Z, Y, X), np.uint8), device="cpu")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    try:
        n = seg.start_from(labels, label=999)
    except TypeError:   # the code before: no label argument
        mask = np.asarray(labels == 999)
        seg.start_from(mask)
        n = int(mask.sum())
    seconds = time.perf_counter() - t
    assert n == 30 * 40 * 40 and seg.mask_box(prior=True) is not None
    return {"seconds": seconds, "peak_above_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base}


def main(argv=None) -> int:
    a = before_and_now_parser(__doc__, "edit_label.json", shape=(600, 1024, 1024)).parse_args(argv)
    now = str(Path(__file__).resolve().parents[1] / "src")
    runs, med = interleaved(__file__, {"before": a.before, "now": now}, {"shape": a.shape, "threads": a.threads},
                            a.repeat)
    print(f"\n{'x'.join(map(str, a.shape))}, median of {a.repeat} runs, {a.threads} threads")
    print("| | before | now |\n|---|---|---|")
    print(f"| seconds | {med['before']['seconds']:.2f} | {med['now']['seconds']:.2f} |")
    print(f"| peak memory above the volumes, MiB | {med['before']['peak_above_mib']:.0f} | "
          f"{med['now']['peak_above_mib']:.0f} |")
    return save_results(a.out, {"before": a.before, "shape": a.shape, "threads": a.threads, "repeat": a.repeat},
                        [{"median": med, "runs": runs}])


if __name__ == "__main__":
    raise SystemExit(one_or_main(_one, main))
