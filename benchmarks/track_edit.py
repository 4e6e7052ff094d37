"""Correcting a tracking by hand (`halo-seg track-edit`, napari's Edit tracks): seconds per edit on
a large time-lapse's track output, beside tracking the whole time-lapse again (what a user without
edits would do, with other options), measured in one run.

    .venv/bin/python benchmarks/track_edit.py [--shape 64 256 256] [--timepoints 20] [--repeat 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import save_results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 256, 256])
    ap.add_argument("--timepoints", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "track_edit.json"))
    a = ap.parse_args(argv)
    import zarr

    from halo_seg.tracking import track_objects
    from halo_seg.tracking.edit import TrackOutput
    from halo_seg.tracking.phantom import cell_timelapse
    T = a.timepoints
    tl = cell_timelapse(shape=tuple(a.shape), cells=150, timepoints=T, radius=5.0, divisions=10, seed=7)
    runs: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.zarr"
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            track_objects(tl.ids, path, objects_given=True)
            runs.setdefault("track the whole time-lapse again (ids given)", []).append(time.perf_counter() - t0)
            out = TrackOutput(path)
            rows = out.rows
            whole = max(k for k, (b, e, p) in rows.items() if b == 0 and e == T - 1)   # seen at every time point
            labels = np.asarray(zarr.open_group(str(path), mode="r")["labels"][...])
            painted = labels.copy()
            painted[T // 2][labels[T // 2] == whole] = 0   # a cell erased at one time point
            steps = [("cut (a track seen at every time point, at the middle)", lambda: out.edit("cut", whole, T // 2)),
                     ("join (the pieces back)", lambda: out.edit("join", whole, max(out.rows))),
                     ("mother (lineage only)", lambda: out.edit("mother", 0, next(k for k, v in out.rows.items() if v[2]))),
                     ("delete (the whole track)", lambda: out.edit("delete", whole)),
                     ("undo (the delete: its voxels put back)", lambda: out.undo()),
                     ("paint (strokes at one time point, compared at every one)", lambda: out.paint(painted)),
                     ("undo (the strokes)", lambda: out.undo())]
            for name, fn in steps:
                t0 = time.perf_counter()
                fn()
                runs.setdefault(name, []).append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in runs.items()}
    base = med["track the whole time-lapse again (ids given)"]
    rows = [{"run": k, "seconds": v, "vs_tracking_again": v / base} for k, v in med.items()]
    print(f"{T} time points of {' x '.join(map(str, a.shape))}, 150 cells; median seconds of {a.repeat}")
    print("| run | seconds | vs tracking again |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['seconds']:.3f} | {r['vs_tracking_again']:.3f} |")
    return save_results(a.out, {"shape": a.shape, "timepoints": T, "repeat": a.repeat}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
