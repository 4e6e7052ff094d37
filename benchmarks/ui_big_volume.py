"""The napari interactive widget on a large volume: how long each step takes, how long the UI
freezes and the process's peak memory, this checkout against another (e.g. the commit before masks
were kept slice by slice and the preview was rewritten in place: 6c92984).

A bright ball of radius 30 voxels in a 300 x 1024 x 1024 uint16 image (numpy; the widget's
preview and objects layers are as large). Steps, each timed from the click to the end of its work
(the worker thread included) with a 10 ms QTimer in the GUI thread whose longest gap is the longest
freeze: segment a box, propagate, paint a slice and accept it, propagate again, undo, commit, take
the committed object back with Edit label and commit it again, ask to learn from the objects (refused: one object, after
the objects layer's ids were listed), and after a simulated restart of napari (the working layers
and the widget gone, the image kept) bring the committed object back with Restore objects. Each code runs in its own process, interleaved,
``--repeat`` times; medians.

    git worktree add /tmp/before 6c92984
    xvfb-run -a .venv/bin/python benchmarks/ui_big_volume.py --before /tmp/before [--shape 300 1024 1024]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from _results import before_and_now_parser, FreezeClock, interleaved, one_or_main, save_results

STEPS = ("segment slice", "propagate", "accept a painted slice", "propagate again", "undo", "commit", "edit label",
         "commit the edited label", "learn from objects (one object: refused)", "restore objects")


def _one(spec: dict) -> dict:
    root, shape, threads = spec["root"], spec["shape"], spec["threads"]
    import os
    import tempfile
    import time
    sys.path[:0] = [str(Path(root) / "src"), root]
    os.environ["HALO_SEG_USER_DIR"] = tempfile.mkdtemp()   # the sessions kept at every propagation
    import napari
    import torch
    from qtpy.QtWidgets import QApplication
    import napari_halo_seg._interactive_widget as iw
    assert Path(iw.__file__).resolve().is_relative_to(Path(root).resolve()), iw.__file__
    torch.set_num_threads(threads)
    Z, Y, X = shape
    c = (Z // 2, Y // 2, X // 2)
    zz, yy, xx = np.ogrid[:Z, :Y, :X]
    ball = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < 30 ** 2
    img = (ball * np.uint16(200) + np.uint16(20)).astype(np.uint16)
    viewer = napari.Viewer(show=True)
    viewer.add_image(img, name="stack")
    app = QApplication.instance()
    w = iw.InteractiveWidget(viewer)
    w.image.setCurrentText("stack")
    w.device.setCurrentText("cpu")
    w.goto_slice(c[0])
    w.ensure_prompt_layers()
    clock = FreezeClock()
    out = {}

    def measure(name, start):
        for _ in range(10):
            app.processEvents()
        clock.start()
        t0 = time.perf_counter()
        start()
        while w.worker is not None:
            app.processEvents()
            time.sleep(0.002)
        out[name] = time.perf_counter() - t0
        app.processEvents()
        out[name + " freeze"] = clock.stop(out[name])

    y0, x0, y1, x1 = c[1] - 30, c[2] - 30, c[1] + 30, c[2] + 30
    viewer.layers["box"].add_rectangles(np.array([[c[0], y0, x0], [c[0], y0, x1], [c[0], y1, x1], [c[0], y1, x0]], float))
    measure("segment slice", w.segment_slice)
    measure("propagate", w.propagate)
    z = c[0] + 10
    w.goto_slice(z)
    preview = viewer.layers["current object"]
    preview.data[z] = ball[z]
    measure("accept a painted slice", w.accept_slice)
    measure("propagate again", w.propagate)
    measure("undo", w.undo)
    measure("commit", w.commit)
    objects = viewer.layers["objects"]   # the committed object taken back to correct
    viewer.layers.selection.active = objects
    objects.selected_label = 1
    measure("edit label", w.edit_label)
    out["edit status"] = w.status.text()
    measure("commit the edited label", w.commit)   # written back under its id, its measurements updated
    measure("learn from objects (one object: refused)", w.learn_quality)   # lists the objects layer's ids
    out["status"] = w.status.text()
    for name in [lay.name for lay in viewer.layers if lay.metadata.get("image") == "stack"]:
        viewer.layers.remove(name)   # as after closing napari: the kept objects file stays
    w = iw.InteractiveWidget(viewer)
    w.image.setCurrentText("stack")
    w.device.setCurrentText("cpu")
    measure("restore objects", w.restore_objects)
    out["restore status"] = w.status.text()
    import resource
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    viewer.close()
    return out


def main(argv=None) -> int:
    a = before_and_now_parser(__doc__, "ui_big_volume.json", "the checkout (with src/ and napari_halo_seg/) to "
                              "compare with", shape=(300, 1024, 1024)).parse_args(argv)
    now = str(Path(__file__).resolve().parents[1])
    runs, med = interleaved(__file__, {"before": a.before, "now": now}, {"shape": a.shape, "threads": a.threads},
                            a.repeat, key="root")
    print(f"\n{'x'.join(map(str, a.shape))}, median of {a.repeat} runs, {a.threads} threads: "
          "seconds (longest UI freeze, s), before -> now")
    print("| step | before | now |\n|---|---|---|")
    for k in STEPS:
        b, n = med["before"], med["now"]
        print(f"| {k} | {b[k]:.2f} ({b[k + ' freeze']:.2f}) | {n[k]:.2f} ({n[k + ' freeze']:.2f}) |")
    print(f"| peak memory MiB | {med['before']['peak_rss_mib']:.0f} | {med['now']['peak_rss_mib']:.0f} |")
    return save_results(a.out, {"before": a.before, "shape": a.shape, "threads": a.threads, "repeat": a.repeat},
                        [{"median": med, "runs": runs}])


if __name__ == "__main__":
    raise SystemExit(one_or_main(_one, main))
