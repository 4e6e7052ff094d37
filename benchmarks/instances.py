"""Connected objects of a label volume: halo_seg.instances.label_instances (slabs, zarr in and out)
against scipy.ndimage.label on the whole array and, when it is installed, dask-image's label on the
zarr's chunks. Time, peak memory (Python's allocations, tracemalloc) and whether all three give the
same partition of the voxels. dask-image runs once, without tracemalloc (which slows its task graph
by orders of magnitude), and only up to --dask-image-max.

    .venv/bin/python benchmarks/instances.py [--sizes 128 256 512] [--repeats 3] [--dask-image-max 256]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from _results import timed


def _same(a, b, fg) -> bool:
    pairs = set(zip(a[fg].tolist(), b[fg].tolist()))
    return len(pairs) == len(np.unique(a[fg])) == len(np.unique(b[fg]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dask-image-max", type=int, default=256)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "instances.json"))
    a = ap.parse_args(argv)
    import zarr
    from halo_seg.instances import label_instances
    try:
        import dask.array as da
        from dask_image.ndmeasure import label as dask_label
    except ImportError:
        dask_label = None
    tmp = Path(tempfile.mkdtemp(prefix="halo-seg-instances-"))
    rows = []
    print(f"{'volume':>8} {'objects':>8} {'slabs s':>8} {'scipy s':>8} {'dask-image s':>13} {'slabs MiB':>10} "
          f"{'scipy MiB':>10} {'same':>5}")
    for side in a.sizes:
        rng = np.random.default_rng(side)
        m = ndi.gaussian_filter(rng.random((side,) * 3, np.float32), 3) > 0.51
        z = zarr.open_array(str(tmp / f"m{side}.zarr"), mode="w", shape=m.shape, chunks=(64, 64, 64), dtype=np.uint8)
        z[...] = m
        res, s_h, m_h = timed(lambda: label_instances(z, tmp / f"o{side}.zarr"), a.repeats)
        (ref, n), s_s, m_s = timed(lambda: ndi.label(z[...]), a.repeats)
        out = zarr.open_array(str(tmp / f"o{side}.zarr"))[...]
        same = res.objects == n and _same(out, ref, m)
        s_d = None
        if dask_label is not None and side <= a.dask_image_max:
            t0 = time.perf_counter()
            dl, dn = dask_label(da.from_zarr(z))
            dl, dn = dl.compute(), int(dn)
            s_d = time.perf_counter() - t0
            same = same and dn == n and _same(dl, ref, m)
        row = {"side": side, "objects": int(n), "slabs_s": s_h, "scipy_s": s_s, "dask_image_s": s_d,
               "slabs_peak_mib": m_h, "scipy_peak_mib": m_s, "same": bool(same)}
        rows.append(row)
        print(f"{side:>5}^3 {n:>8} {s_h:>8.2f} {s_s:>8.2f} {'-' if s_d is None else f'{s_d:.2f}':>13} "
              f"{m_h:>10.0f} {m_s:>10.0f} {str(same):>5}", flush=True)
    Path(a.out).write_text(json.dumps({"rows": rows, "repeats": a.repeats, "input_chunks": [64, 64, 64],
                                       "machine": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M")},
                                      indent=1))
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
