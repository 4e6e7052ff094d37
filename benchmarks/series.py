"""Segmenting every time point of a time-lapse (`segment --timepoint all`, engine/series.py): the
seconds per time point of a series in halo mode (each time point starts its ranks) and in whole
mode (one process), beside one time point segmented alone, with the shipped model, interleaved,
medians of ``--repeat`` runs; the halo series checked equal to the whole series voxel for voxel.

    .venv/bin/python benchmarks/series.py [--frames 6] [--shape 48 96 96] [--grid 2,1,1] [--repeat 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import save_results


def main(argv=None) -> int:
    import tifffile

    from halo_seg.engine.partition import parse_grid
    from halo_seg.engine.runner import segment
    from halo_seg.engine.series import segment_series
    from halo_seg.io.volume import file_contents
    from halo_seg.samples import make_phantom
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--shape", type=int, nargs=3, default=[48, 96, 96])
    ap.add_argument("--grid", default="2,1,1")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "series.json"))
    a = ap.parse_args(argv)
    grid = parse_grid(a.grid)
    movie = np.stack([make_phantom(tuple(a.shape), seed=s).image for s in range(a.frames)]).astype(np.float32)
    runs = {"series, halo": [], "series, whole": [], "one time point, halo": []}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "movie.tif"
        tifffile.imwrite(src, movie, imagej=True, metadata={"axes": "TZYX"})
        for r in range(a.repeat):
            for name in runs:   # interleaved: each repeat runs every configuration once
                out = Path(tmp) / f"{name.replace(', ', '_').replace(' ', '_')}_{r}.zarr"
                t0 = time.perf_counter()
                if name.startswith("series"):
                    mode = name.split(", ")[1]
                    segment_series(src, out, mode=mode, grid=grid if mode == "halo" else (1, 1, 1))
                    per = (time.perf_counter() - t0) / a.frames
                else:
                    segment(src, out, timepoint=0, grid=grid)
                    per = time.perf_counter() - t0
                runs[name].append(per)
        halo = np.asarray(file_contents(Path(tmp) / "series_halo_0.zarr").data)
        whole = np.asarray(file_contents(Path(tmp) / "series_whole_0.zarr").data)
        equal = bool(np.array_equal(halo, whole))
    med = {k: float(np.median(v)) for k, v in runs.items()}
    print(f"\n{a.frames} time points of {' x '.join(map(str, a.shape))}, shipped model, grid {a.grid}; "
          f"median seconds of {a.repeat}; halo series equals whole series: {equal}")
    print("| run | seconds per time point | vs one time point alone |")
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} | {v / med['one time point, halo']:.2f}x |")
    return save_results(a.out, {"frames": a.frames, "shape": a.shape, "grid": a.grid, "repeat": a.repeat,
                                "halo_equals_whole": equal},
                        [{"run": k, "median_seconds_per_timepoint": med[k], "runs": runs[k]} for k in runs])


if __name__ == "__main__":
    raise SystemExit(main())
