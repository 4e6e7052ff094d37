"""How long does the napari UI freeze while the interactive network works?

A 10 ms QTimer ticks in the GUI thread; the longest gap between ticks is the longest freeze.
The same propagation runs (a) in the GUI thread, (b) in napari's ``thread_worker`` (micro-sam
reported a slowdown with it), (c) in a plain ``threading.Thread``, and (d) through the dock widget,
which also updates its Labels layer and plot in the GUI thread. Medians of --repeats runs.

    xvfb-run -a .venv/bin/python benchmarks/ui_latency.py [--repeats 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from _results import FreezeClock

os.environ.setdefault("HALO_SEG_USER_DIR", tempfile.mkdtemp())   # kept sessions not into the user's


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample", action="store_true", help="2 mm sample instead of the 1 mm volume")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ui_latency.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import napari
    from napari.qt.threading import create_worker
    from qtpy.QtWidgets import QApplication

    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.roi import mask_bbox
    from halo_seg.samples import load_colin27_full, load_colin27_sample
    from napari_halo_seg._interactive_widget import InteractiveWidget

    data = load_colin27_sample() if a.sample else load_colin27_full()
    truth = data.labels == 77   # left thalamus
    z = int(truth.sum((1, 2)).argmax())
    box = mask_bbox(truth[z])
    viewer = napari.Viewer(show=True)
    viewer.add_image(data.image, name="t1")
    app = QApplication.instance()

    clock = FreezeClock()

    def measure(start, is_done):
        for _ in range(20):          # let the event loop settle
            app.processEvents()
            time.sleep(0.005)
        clock.start()
        t0 = time.perf_counter()
        start()
        while not is_done():
            app.processEvents()
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        app.processEvents()
        return wall, clock.stop(wall)

    def fresh():
        seg = InteractiveSegmenter(data.image, device="cpu")
        seg.add_box(z, *box)
        return seg

    results = {k: [] for k in ("gui_thread", "thread_worker", "threading", "widget")}
    for _ in range(a.repeats):
        seg = fresh()
        results["gui_thread"].append(measure(seg.propagate, lambda: True))

        seg = fresh()
        box_done = []
        w = create_worker(seg.propagate)
        w.returned.connect(lambda _r: box_done.append(1))
        results["thread_worker"].append(measure(w.start, lambda: bool(box_done)))

        seg = fresh()
        th = threading.Thread(target=seg.propagate)
        results["threading"].append(measure(th.start, lambda: not th.is_alive()))

        widget = InteractiveWidget(viewer)
        widget.image.setCurrentText("t1")
        widget.device.setCurrentText("cpu")
        widget.goto_slice(z)
        widget.ensure_prompt_layers()
        viewer.layers["box"].data = []
        y0, x0, y1, x1 = box
        viewer.layers["box"].add_rectangles(np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], float))
        widget._sent = set()
        widget.seg = None
        results["widget"].append(measure(widget.propagate, lambda: widget.worker is None))

    rows = {}
    print(f"| how | wall s (median of {a.repeats}) | longest UI freeze ms (median) |")
    print("|---|---|---|")
    for k, v in results.items():
        wall = float(np.median([x[0] for x in v]))
        gap = float(np.median([x[1] for x in v])) * 1000
        rows[k] = {"wall_s": wall, "max_freeze_ms": gap, "runs": v}
        print(f"| {k} | {wall:.2f} | {gap:.0f} |")
    ratio = rows["thread_worker"]["wall_s"] / rows["gui_thread"]["wall_s"]
    print(f"thread_worker / GUI-thread wall time: {ratio:.2f}")
    out = {"volume": list(data.image.shape), "threads": a.threads, "rows": rows,
           "thread_worker_over_gui_thread": ratio, "machine": platform.platform(),
           "date": time.strftime("%Y-%m-%d %H:%M"),
           "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"saved {a.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
