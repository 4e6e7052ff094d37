"""Dock widget: split a Labels layer into connected objects and measure each (halo_seg.instances,
halo_seg.measure), in a worker thread with progress and cancel.

The objects come back as a new Labels layer (the input is never changed) whose features hold each
object's size and mean intensity, which napari shows under the cursor; "Save table" writes every
object's row as CSV.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                            QPushButton, QSpinBox, QVBoxLayout, QWidget)

from halo_seg.io.geometry import KEY as GEOMETRY
from halo_seg.measure import volume_text

from ._measure import UNIT, layer_unit, table_features

NO_IMAGE = "(none)"


class _Bridge(QObject):
    progressed = Signal(int, int)


def _label_and_measure(data, out, spacing, unit, image, progress, cancel, **kw):
    """In the worker: (result, table) or the exception, handed back as a value for the status line."""
    try:
        from halo_seg.instances import label_instances
        from halo_seg.measure import measure_labels
        import zarr
        res = label_instances(data, out, spacing=spacing, unit=unit, progress=progress, cancel=cancel, **kw)
        table = measure_labels(zarr.open_array(str(res.path), mode="r"), spacing, image=image, unit=unit,
                               cancel=cancel)
        return (res, table), None
    except Exception as exc:  # shown to the user; the layers are untouched
        return None, exc


def parse_classes(text: str) -> list[int] | None:
    """'' -> None (every value > 0 as one foreground); '1, 3' -> [1, 3]; anything else: ValueError."""
    text = text.replace(",", " ").strip()
    if not text:
        return None
    try:
        classes = [int(t) for t in text.split()]
    except ValueError:
        raise ValueError(f"classes must be label values such as '1' or '1, 3', got {text!r}") from None
    if any(c <= 0 for c in classes):
        raise ValueError(f"classes must be label values > 0, got {text!r}")
    return classes


class ObjectsWidget(QWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.table = None
        self._cancel = threading.Event()
        self._bridge = _Bridge()
        self._bridge.progressed.connect(self._on_progress)
        self.labels = QComboBox()
        self.image = QComboBox()
        self.classes = QLineEdit("")
        self.classes.setPlaceholderText("all values > 0 as one; or e.g. 1, 3 (each apart)")
        self.min_voxels = QSpinBox()
        self.min_voxels.setRange(0, 10 ** 9)
        self.connectivity = QComboBox()
        self.connectivity.addItems(["1: faces", "2: faces, edges", "3: faces, edges, corners"])
        form = QFormLayout()
        form.addRow("labels", self.labels)
        form.addRow("image (intensity)", self.image)
        form.addRow("classes", self.classes)
        form.addRow("min voxels", self.min_voxels)
        form.addRow("connectivity", self.connectivity)
        self.run_btn = QPushButton("Label objects")
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self._cancel.set)
        self.save_btn = QPushButton("Save table (CSV)")
        self.save_btn.setEnabled(False)
        self.save_btn.clicked.connect(lambda: self.save_table())
        self.progress = QProgressBar()
        self.status = QLabel("choose a Labels layer, then Label objects")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.run_btn, self.cancel_btn, self.save_btn):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch()
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_layers)
        self._refresh_layers()

    def _refresh_layers(self, *_):
        for box, kind, extra in ((self.labels, napari.layers.Labels, []), (self.image, napari.layers.Image, [NO_IMAGE])):
            current = box.currentText()
            box.clear()
            box.addItems(extra + [l.name for l in self.viewer.layers if isinstance(l, kind)])
            if current:
                box.setCurrentText(current)

    def _on_progress(self, done, total):
        self.progress.setMaximum(total)
        self.progress.setValue(done)

    def run(self):
        if self.worker is not None:
            self.status.setText("busy: wait or press Cancel")
            return
        name = self.labels.currentText()
        if not name:
            self.status.setText("no Labels layer: segment or open one first")
            return
        layer = self.viewer.layers[name]
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        try:
            classes = parse_classes(self.classes.text())
        except ValueError as exc:
            self.status.setText(f"error: {exc}")
            return
        image = None
        if self.image.currentText() not in ("", NO_IMAGE):
            img = self.viewer.layers[self.image.currentText()]
            image = img.data[0] if getattr(img, "multiscale", False) else img.data
        out = Path(tempfile.mkdtemp(prefix="halo-seg-objects-")) / f"{name}_objects.zarr"
        self._cancel.clear()
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.progress.setMaximum(0)
        self.status.setText(f"labelling the objects of {name} ...")
        from napari.qt.threading import create_worker
        self.worker = create_worker(_label_and_measure, data, out, tuple(layer.scale[-3:]), layer_unit(layer), image,
                                    self._bridge.progressed.emit, self._cancel.is_set, classes=classes,
                                    min_voxels=self.min_voxels.value(),
                                    connectivity=self.connectivity.currentIndex() + 1)
        self.worker.returned.connect(lambda outcome: self._done(outcome, layer))
        self.worker.finished.connect(self._finished)
        self.worker.start()

    def _done(self, outcome, layer):
        import dask.array as da
        import zarr
        done, exc = outcome
        self.progress.setMaximum(1)
        if exc is not None:
            self.progress.setValue(0)
            self.status.setText(("cancelled" if isinstance(exc, InterruptedError) else "failed") + f": {exc}")
            return
        res, table = done
        unit = layer_unit(layer)
        meta = {k: v for k, v in (layer.metadata or {}).items() if k in (GEOMETRY, UNIT)}
        self.viewer.add_labels(da.from_zarr(zarr.open_array(str(res.path), mode="r")), name=f"{layer.name} objects",
                               scale=layer.scale[-3:], translate=layer.translate[-3:], metadata=meta,
                               features=table_features(table, unit))
        self.table = table
        self.save_btn.setEnabled(True)
        self.progress.setValue(1)
        total = volume_text(float(table["volume"].sum()), unit)
        per = ", ".join(f"class {k}: {v}" for k, v in list(res.per_class.items())[:8]) if len(res.per_class) > 1 else ""
        per += " ..." if len(res.per_class) > 8 else ""
        dropped = f"; {res.removed} smaller than {self.min_voxels.value()} voxels dropped" if res.removed else ""
        self.status.setText(f"{res.objects} objects ({total} in all){'; ' + per if per else ''}{dropped}")

    def _finished(self):
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.worker = None

    def save_table(self, path: str | None = None):
        if self.table is None:
            return
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "object table", "objects.csv", "CSV (*.csv)")
            if not path:
                return
        from halo_seg.measure import write_csv
        try:
            self.status.setText(f"wrote {write_csv(self.table, path)}")
        except OSError as exc:
            self.status.setText(f"error: cannot write {path}: {exc}")
