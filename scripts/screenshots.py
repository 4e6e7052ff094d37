"""Make the README screenshots: napari with the Colin27 sample, the default model's labels from the
halo engine (2 ranks), and the automatic-segmentation dock widget.

    xvfb-run -a .venv/bin/python scripts/screenshots.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from halo_seg.samples import load_colin27_sample
from napari_halo_seg._auto_widget import AutoSegmentWidget

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    s = load_colin27_sample()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 800)
    viewer.add_image(s.image, name="colin27 T1", scale=s.spacing)
    w = AutoSegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="Automatic segmentation")
    w.output.setText(str(Path(tempfile.mkdtemp()) / "colin27_labels.zarr"))
    w.run()
    while w.worker is not None:
        QApplication.processEvents()
    viewer.layers[-1].opacity = 0.5
    viewer.dims.set_point(0, 2.0 * 40)
    for _ in range(5):
        QApplication.processEvents()
    img = viewer.screenshot(canvas_only=False, flash=False)
    import imageio.v3 as iio
    iio.imwrite(OUT / "napari_colin27.png", img)
    print("status:", w.status.text())
    print("wrote", OUT / "napari_colin27.png", img.shape, "std", float(np.std(img)))
    viewer.close()


if __name__ == "__main__":
    main()
