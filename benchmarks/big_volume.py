"""An interactive session on a large volume: time per step and peak memory, this checkout against
another (e.g. the commit before the session's mask was kept slice by slice, interactive/slice_masks.py).

A bright ball of radius 30 voxels in a lazily generated dask volume (nothing of the volume is held
in memory but what the session reads), at several volume sizes: a box on the ball's middle slice,
segment it, propagate, paint one slice (``set_slice_mask``), propagate again, undo, save the
session file. Each (code, size) runs in its own process (peak resident memory is per process), one
after the other; ``--repeat`` runs each that many times and reports the median per step.

    git worktree add /tmp/before 6c92984
    .venv/bin/python benchmarks/big_volume.py --before /tmp/before/src [--sizes 150x1024x1024 600x2048x2048]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from _results import before_and_now_parser, interleaved, one_or_main, save_results

STEPS = ("segment slice", "propagate", "paint a slice", "propagate again", "undo", "save session")

def _one(spec: dict) -> dict:
    """One session with the code in ``spec["src"]`` on a volume of ``spec["size"]`` ("ZxYxX")."""
    import resource
    import tempfile
    import time
    sys.path.insert(0, spec["src"])
    import dask.array as da
    import torch
    from halo_seg import InteractiveSegmenter
    torch.set_num_threads(spec["threads"])
    Z, Y, X = (int(v) for v in spec["size"].split("x"))
    c = (Z // 2, Y // 2, X // 2)

    def block(b, block_info=None):
        loc = block_info[0]["array-location"]
        zz, yy, xx = np.ogrid[loc[0][0]:loc[0][1], loc[1][0]:loc[1][1], loc[2][0]:loc[2][1]]
        ball = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < 30 ** 2
        return (ball * 200 + 20).astype(np.uint16)
    vol = da.zeros((Z, Y, X), np.uint16, chunks=(64, 512, 512)).map_blocks(block, dtype=np.uint16)
    seg = InteractiveSegmenter(vol, device="cpu")
    out = {}

    def step(name, fn):
        t = time.perf_counter()
        r = fn()
        out[name] = time.perf_counter() - t
        return r
    seg.add_box(c[0], c[1] - 30, c[2] - 30, c[1] + 30, c[2] + 30)
    step("segment slice", lambda: seg.segment_slice(c[0]))
    pred = step("propagate", seg.propagate)
    z = c[0] + 10
    m = np.asarray(pred[z]).copy()
    del pred
    step("paint a slice", lambda: seg.set_slice_mask(z, m))
    step("propagate again", seg.propagate)
    step("undo", seg.undo)
    with tempfile.TemporaryDirectory() as tmp:
        step("save session", lambda: seg.save_session(tmp + "/s.npz"))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv=None) -> int:
    ap = before_and_now_parser(__doc__, "big_volume.json")
    ap.add_argument("--sizes", nargs="*", default=["150x1024x1024", "600x2048x2048"])
    a = ap.parse_args(argv)
    now = str(Path(__file__).resolve().parents[1] / "src")
    rows = []
    for size in a.sizes:
        runs, med = interleaved(__file__, {"before": a.before, "now": now}, {"size": size, "threads": a.threads},
                                a.repeat)
        rows.append({"size": size, "median": med, "runs": runs})
    print(f"\nmedian of {a.repeat} runs, {a.threads} threads, seconds (peak memory in MiB)")
    print("| volume | " + " | ".join(STEPS) + " | peak memory |")
    print("|---" * (len(STEPS) + 2) + "|")
    for r in rows:
        b, n = r["median"]["before"], r["median"]["now"]
        cells = [f"{b[k]:.2f} -> {n[k]:.2f}" for k in STEPS]
        print(f"| {r['size']} | " + " | ".join(cells) + f" | {b['peak_rss_mib']:.0f} -> {n['peak_rss_mib']:.0f} |")
    return save_results(a.out, {"before": a.before, "threads": a.threads, "repeat": a.repeat}, rows)


if __name__ == "__main__":
    raise SystemExit(one_or_main(_one, main))
