"""What drawing the followed objects' paths costs a Commit (the interactive widget's objects paths
layer, napari_halo_seg/_interactive_paths.py).

Objects of ``cells`` cells followed over ``timepoints`` time points (each linked to the one before,
a division every tenth cell) are drawn as the widget does after a commit: the paths from the links
(halo_seg.tracking.paths.link_paths) and the Tracks layer made or given its new data, in napari's
GUI thread. Then a brush stroke on one object: its centre read again within its box and the
stroke's. Medians of --repeats.

    xvfb-run -a .venv/bin/python benchmarks/paths.py [--cells 10 100 1000] [--timepoints 50] [--out benchmarks/results/paths.json]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _results import save_results


def drawer(viewer):
    """The widget's part that draws the paths (PathActions), over ``viewer``."""
    from napari_halo_seg._interactive_paths import PathActions

    class Drawer(PathActions):
        def __init__(self):
            self.viewer = viewer

        def _layer(self, name):
            return viewer.layers[name] if name in viewer.layers else None
    return Drawer()


def followed(cells: int, timepoints: int, shape=(8, 64, 64)):
    """Centres, boxes and links of ``cells`` cells followed over ``timepoints`` time points (ids
    numbered anew each time point, as Commit does), a division every tenth cell at the middle."""
    rng = np.random.default_rng(0)
    centres, boxes, links = {}, {}, {}
    k = 0
    prev = {}
    for t in range(timepoints):
        now = {}
        for c in range(cells):
            for d in ((0, 1) if c % 10 == 0 and t == timepoints // 2 else (0,)):
                k += 1
                z, y, x = rng.uniform(1, shape[0] - 2), rng.uniform(2, shape[1] - 3), rng.uniform(2, shape[2] - 3)
                centres[k] = (t, z, y, x)
                boxes[k] = (slice(t, t + 1), slice(int(z) - 1, int(z) + 2), slice(int(y) - 2, int(y) + 3),
                            slice(int(x) - 2, int(x) + 3))
                if c in prev:
                    links[k] = prev[c]
                now.setdefault(c, k)
        prev = now
    return centres, boxes, links


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--timepoints", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "paths.json"))
    a = ap.parse_args(argv)
    import napari

    from halo_seg.tracking.paths import link_paths
    from napari_halo_seg._interactive_names import OBJECTS, PATHS
    from napari_halo_seg._measure import CARRIED
    viewer = napari.Viewer(show=False)
    rows = []
    print("| cells | objects | link_paths (ms) | a commit's redraw (ms) | a brush stroke (ms) |")
    print("|---|---|---|---|---|")
    for cells in a.cells:
        shape = (a.timepoints, 8, 64, 64)
        centres, boxes, links = followed(cells, a.timepoints, shape[1:])
        for lay in list(viewer.layers):
            viewer.layers.remove(lay)
        data = np.zeros(shape, np.uint16)
        objects = viewer.add_labels(data, name=OBJECTS,
                                    features={"index": list(links), CARRIED: list(links.values())})
        paths = drawer(viewer)
        paths._set_centres(objects, centres, boxes)
        t_link, t_draw, t_stroke = [], [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            link_paths(centres, links)
            t_link.append(time.perf_counter() - t0)
            last = max(centres)
            t0 = time.perf_counter()
            paths._set_centres(objects, {last: centres[last]}, {last: boxes[last]})   # what a commit does
            t_draw.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            paths._painted_centres(objects, boxes[last])   # a stroke over the last object
            t_stroke.append(time.perf_counter() - t0)
        row = {"cells": cells, "timepoints": a.timepoints, "objects": len(centres),
               "points": int(len(viewer.layers[PATHS].data)) if PATHS in viewer.layers else 0,
               "link_paths_ms": 1000 * float(np.median(t_link)), "commit_redraw_ms": 1000 * float(np.median(t_draw)),
               "stroke_ms": 1000 * float(np.median(t_stroke))}
        rows.append(row)
        print(f"| {cells} | {row['objects']} | {row['link_paths_ms']:.1f} | {row['commit_redraw_ms']:.1f} | "
              f"{row['stroke_ms']:.1f} |")
    viewer.close()
    return save_results(a.out, {"timepoints": a.timepoints, "repeats": a.repeats}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
