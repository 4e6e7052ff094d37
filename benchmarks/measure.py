"""Per-object measurement (halo_seg.measure) against scikit-image's regionprops_table: time and peak
memory on label volumes of nuclei-like objects, and whether both give the same numbers.

Both start from the same label and image volumes stored as zarr, as the engine writes them:
measure_labels reads them in slabs, so its memory is bounded by the slab, not the volume;
regionprops needs both whole arrays in memory, and their loading is counted in its time and memory.

    .venv/bin/python benchmarks/measure.py [--sizes 128 256 384] [--objects 2000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from _results import timed


def make_labels(side: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Balls of radius 3 to 8 at random places (later ones cut into earlier ones), and an image."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((side,) * 3, np.uint32)
    zz, yy, xx = np.ogrid[-8:9, -8:9, -8:9]
    for k in range(1, n + 1):
        r = rng.uniform(3, 8)
        c = rng.integers(8, side - 8, 3)
        ball = zz ** 2 + yy ** 2 + xx ** 2 <= r * r
        sub = lab[c[0] - 8:c[0] + 9, c[1] - 8:c[1] + 9, c[2] - 8:c[2] + 9]
        sub[ball] = k
    img = rng.normal(100, 20, lab.shape).astype(np.float32) + 50 * (lab > 0)
    return lab, img


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 384])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "measure.json"))
    a = ap.parse_args(argv)
    from skimage.measure import regionprops_table
    from halo_seg.measure import measure_labels
    rows = []
    print(f"{'volume':>10} {'objects':>8} {'measure s':>10} {'regionprops s':>14} {'ratio':>6} "
          f"{'measure MiB':>12} {'regionprops MiB':>16} {'same':>5}")
    import tempfile
    import zarr
    tmp = Path(tempfile.mkdtemp(prefix="halo-seg-measure-"))
    for side in a.sizes:
        lab, img = make_labels(side, a.objects)
        zl = zarr.open_array(str(tmp / f"lab{side}.zarr"), mode="w", shape=lab.shape, chunks=(32, side, side),
                             dtype=lab.dtype)
        zi = zarr.open_array(str(tmp / f"img{side}.zarr"), mode="w", shape=img.shape, chunks=(32, side, side),
                             dtype=img.dtype)
        zl[...], zi[...] = lab, img
        del lab, img
        t, s_m, m_m = timed(lambda: measure_labels(zl, (1, 1, 1), image=zi), a.repeats)
        ref, s_r, m_r = timed(lambda: regionprops_table(zl[...], intensity_image=zi[...], properties=(
            "label", "area", "centroid", "bbox", "intensity_mean")), a.repeats)
        same = (np.array_equal(t["label"], ref["label"]) and np.array_equal(t["voxels"], ref["area"])
                and np.allclose(t["centroid_z"], ref["centroid-0"]) and np.allclose(t["mean"], ref["intensity_mean"],
                                                                                     rtol=1e-5))
        row = {"side": side, "voxels": side ** 3, "objects": int(len(t["label"])), "measure_s": s_m,
               "regionprops_s": s_r, "measure_peak_mib": m_m, "regionprops_peak_mib": m_r, "same": bool(same)}
        rows.append(row)
        print(f"{side:>7}^3 {row['objects']:>8} {s_m:>10.2f} {s_r:>14.2f} {s_m / s_r:>6.2f} {m_m:>12.0f} "
              f"{m_r:>16.0f} {str(same):>5}", flush=True)
    Path(a.out).write_text(json.dumps({"rows": rows, "repeats": a.repeats, "machine": platform.platform(),
                                       "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
