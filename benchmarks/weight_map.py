"""The U-Net border weight map (train/losses.unet_weight_map) on volumes of many separate objects
(nuclei, the U-Net paper's case): its peak memory and time, this checkout against another (e.g.
the commit before the two nearest distances were kept as each object's map came: 894605a), and
whether the maps are the same.

Touching and separate spheres (radius 4 to 7 voxels, ``--objects`` of them) in a ``--shape``
volume, labelled 1. Each code in its own process, interleaved, ``--repeat`` times; the peak of
numpy's allocations during the call (tracemalloc) and its seconds, medians; the largest difference
between the two codes' maps.

    git worktree add /tmp/before 894605a
    .venv/bin/python benchmarks/weight_map.py --before /tmp/before/src [--shape 48 192 192 --objects 20 100 300]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from _results import before_and_now_parser, interleaved, one_or_main, save_results


def nuclei(shape, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    lab = np.zeros(shape, np.uint8)
    for _ in range(n):
        c, r = rng.uniform(0, shape), rng.uniform(4, 7)
        lab[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r] = 1
    return lab


def _saved(folder: str, src: str) -> str:
    import hashlib
    return f"{folder}/{hashlib.md5(src.encode()).hexdigest()}.npy"


def _one(spec: dict) -> dict:
    import time
    import tracemalloc
    sys.path.insert(0, spec["src"])
    from scipy import ndimage as ndi
    from halo_seg.train.losses import unet_weight_map
    lab = nuclei(spec["shape"], spec["objects"])
    tracemalloc.start()
    t = time.perf_counter()
    w = unet_weight_map(lab)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.save(_saved(spec["save"], spec["src"]), w)
    return {"seconds": seconds, "peak_mib": peak / 2 ** 20, "components": int(ndi.label(lab > 0)[1])}


def main(argv=None) -> int:
    ap = before_and_now_parser(__doc__, "weight_map.json", shape=(48, 192, 192))
    ap.add_argument("--objects", type=int, nargs="+", default=[20, 100, 300])
    a = ap.parse_args(argv)
    now = str(Path(__file__).resolve().parents[1] / "src")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.objects:
            codes = {"before": a.before, "now": now}
            runs, med = interleaved(__file__, codes, {"shape": a.shape, "objects": n, "save": tmp}, a.repeat)
            maps = {code: np.load(_saved(tmp, src)) for code, src in codes.items()}   # each code's last run
            diff = float(np.abs(maps["before"] - maps["now"]).max())
            rows.append({"objects": n, "components": runs["now"][0]["components"], "median": med, "max_difference": diff})
    print(f"\n{'x'.join(map(str, a.shape))}, median of {a.repeat} runs")
    print("| spheres | objects (components) | peak MiB before | now | seconds before | now | largest difference |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["median"]
        print(f"| {r['objects']} | {r['components']} | {m['before']['peak_mib']:.0f} | {m['now']['peak_mib']:.0f} | "
              f"{m['before']['seconds']:.1f} | {m['now']['seconds']:.1f} | {r['max_difference']:.1e} |")
    return save_results(a.out, {"before": a.before, "shape": a.shape, "repeat": a.repeat}, rows)


if __name__ == "__main__":
    raise SystemExit(one_or_main(_one, main))
