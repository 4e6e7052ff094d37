"""Putting a volume on another's voxel grid as napari's *Resample onto an image* widget does
(io.resampled.onto_grid_of, then the widget's _compute): one CT-sized volume stored with x and y
reversed (LPS voxel order against RAS), labels (nearest voxel) and an image (trilinear), against
dask computing the whole lazy result at once (the fastest it can be, but with no progress or Cancel)
and the slabs computed one at a time (progress and Cancel, but one core busy). Medians of
``--repeat`` interleaved runs on this machine's cores; each result is checked equal to the others.

    .venv/bin/python benchmarks/resample_onto.py [--shape 300 512 512] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the plugin beside the engine

from _results import save_results  # noqa: E402


def _volume(data, affine):
    from halo_seg.io.geometry import KEY, from_affine
    return SimpleNamespace(shape=data.shape, spacing=(1.0, 0.7, 0.7), spacing_known=True, data=data,
                           meta={"unit": "mm", KEY: from_affine(affine, data.shape)})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "resample_onto.json"))
    a = ap.parse_args(argv)
    from halo_seg.io.resampled import onto_grid_of
    from napari_halo_seg._resample_widget import SLAB, _compute
    shape = tuple(a.shape)
    ras = np.diag([0.7, 0.7, 1.0, 1.0])
    ras[:3, 3] = [-180.0, -180.0, 0.0]
    flip = np.array([[-1.0, 0, 0, shape[2] - 1], [0, -1.0, 0, shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    rng = np.random.default_rng(0)
    labels = np.zeros(shape, np.uint8)
    labels[shape[0] // 6:5 * shape[0] // 6, shape[1] // 5:4 * shape[1] // 5, shape[2] // 5:3 * shape[2] // 5] = 3
    image = rng.normal(size=shape).astype(np.float32)

    def one_at_a_time(lazy):
        out = np.empty(lazy.shape, lazy.dtype)
        b = np.cumsum((0,) + tuple(lazy.chunks[0]))
        for z0, z1 in zip(b[:-1], b[1:]):
            out[z0:z1] = lazy[z0:z1].compute(scheduler="threads")
        return out

    ways = {"dask, all at once": lambda lazy: lazy.compute(scheduler="threads"),
            "slabs one at a time": one_at_a_time,
            "widget (slabs, a core each)": lambda lazy: _compute(lazy, False, "x", lambda: False, lambda *_: None)[0]}
    rows = []
    for kind, data in (("labels", labels), ("image", image)):
        stored = np.ascontiguousarray(data[:, ::-1, ::-1])   # the same volume in LPS voxel order
        got = onto_grid_of(_volume(stored, ras @ flip), _volume(data, ras), kind == "labels", step=SLAB)
        secs, first = {w: [] for w in ways}, None
        for _ in range(a.repeat):
            for w, fn in ways.items():
                t = time.perf_counter()
                out = fn(got.data)
                secs[w].append(time.perf_counter() - t)
                if first is None:
                    first = out
                assert np.array_equal(out, first), w
        assert np.allclose(first, data, atol=1e-5)   # the reversed copy comes back voxel for voxel
        base = float(np.median(secs["dask, all at once"]))
        for w in ways:
            med = float(np.median(secs[w]))
            rows.append({"volume": kind, "way": w, "seconds": med, "vs_dask": med / base})
    print(f"{' x '.join(map(str, shape))} voxels, {os.cpu_count()} cores, medians of {a.repeat}")
    print(f"{'volume':8s} {'way':30s} {'seconds':>8s} {'vs dask':>8s}")
    for r in rows:
        print(f"{r['volume']:8s} {r['way']:30s} {r['seconds']:8.2f} {r['vs_dask']:8.2f}")
    return save_results(a.out, {"shape": list(shape), "cores": os.cpu_count(), "repeat": a.repeat, "slab": SLAB}, rows)


if __name__ == "__main__":
    sys.exit(main())
