"""napari's brush on a labels layer held as a dask array (as the plugin's reader and widgets gave
segment outputs before) against the same labels in memory (as now, where they fit): the time of one
brush dab and of reading the slice shown, after N dabs. Each dab on a dask array adds a task to its
graph, which every read computes again.

    xvfb-run -a .venv/bin/python benchmarks/paint_labels.py [--shape 100 512 512] [--dabs 1000]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _results import save_results

MARKS = (1, 10, 100, 300, 1000)


def run(kind: str, shape, dabs: int, tmp: Path) -> list[dict]:
    import dask.array as da
    import napari
    import zarr
    z = zarr.open_array(str(tmp / f"{kind}.zarr"), mode="w", shape=shape, chunks=(16, 256, 256), dtype="uint8")
    data = da.from_zarr(z) if kind == "dask" else np.asarray(z)
    viewer = napari.Viewer(show=False)
    layer = viewer.add_labels(data, name=kind)
    layer.brush_size = 5
    rng = np.random.default_rng(0)
    mid, rows = shape[0] // 2, []
    dab_ms = []
    for n in range(1, dabs + 1):
        t = time.perf_counter()
        layer.paint((mid, int(rng.integers(10, shape[1] - 10)), int(rng.integers(10, shape[2] - 10))), 2)
        dab_ms.append(1000 * (time.perf_counter() - t))
        if n in MARKS:
            t = time.perf_counter()
            np.asarray(layer.data[mid])
            rows.append({"layer": kind, "dabs": n, "dab ms (median of the last 10)": float(np.median(dab_ms[-10:])),
                         "read slice ms": 1000 * (time.perf_counter() - t)})
    viewer.close()
    return rows


def main(argv=None) -> int:
    import tempfile
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[100, 512, 512])
    ap.add_argument("--dabs", type=int, default=1000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "paint_labels.json"))
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    rows = run("dask", a.shape, a.dabs, tmp) + run("numpy", a.shape, a.dabs, tmp)
    print(f"\n{'x'.join(map(str, a.shape))} uint8, brush size 5")
    print("| dabs | dask: dab ms | dask: read slice ms | in memory: dab ms | in memory: read slice ms |")
    print("|---|---|---|---|---|")
    for n in sorted({r["dabs"] for r in rows}):
        d, m = ([r for r in rows if r["dabs"] == n and r["layer"] == k][0] for k in ("dask", "numpy"))
        print(f"| {n} | {d['dab ms (median of the last 10)']:.1f} | {d['read slice ms']:.1f} | "
              f"{m['dab ms (median of the last 10)']:.1f} | {m['read slice ms']:.1f} |")
    return save_results(a.out, {"shape": a.shape, "dabs": a.dabs}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
