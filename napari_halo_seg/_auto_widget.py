"""Dock widget: automatic segmentation of an image layer with the halo engine, in the background.

The engine runs in a worker thread (its ranks are separate processes), reports per-block progress
through a Qt signal, can be cancelled, and its labels come back as a lazily loaded Labels layer,
with the engine's uncertainty as a hidden Image layer and a button that steps through the slices
most worth checking (halo_seg.review).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import napari
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLineEdit, QPushButton

from halo_seg.engine.partition import parse_grid
from halo_seg.engine.output import UNCERTAINTY
from halo_seg.engine.resample import spacing_text
from halo_seg.engine.runner import Cancelled, segment
from halo_seg.io.dicom_seg import SERIES_KEY
from halo_seg.io.geometry import KEY as GEOMETRY
from halo_seg.io.volume import names_in
from halo_seg.measure import measure_labels, volume_text
from halo_seg.review import expected_errors, review_order

from ._background import BackgroundWidget
from ._fields import ENSEMBLE_SEP, SavedFilesBox, device_choices, form_of
from ._layers import fill_layer_box, follow_layers, layer_spacing, layer_volume, show_slice, sliced_axis
from ._measure import UNIT, layer_unit, table_features
from ._kept_objects import INTO, INTO_SERIES, ObjectsKeeper, stroke_box
from ._paintable import paintable
from ._paths import models_dir
from ._timelapse import TIME_CHOICES, add_timelapse_result, chosen_timepoints, segment_timelapse_or_error, \
    series_source, timelapse_data

REVIEW_TOP = 10
MIRROR_CHOICES = (("none", ""), ("x (left-right in scans): 2 views, 2x time", "x"),
                  ("y, x: 4 views, 4x time", "yx"), ("z, y, x: 8 views, 8x time", "zyx"))


def _segment_or_error(*args, measure_spacing=(1.0, 1.0, 1.0), unit=None, **kwargs):
    """Run the engine, then measure each class of its labels and sum each slice's expected wrong
    voxels (in the worker: both read the whole output); hand
    an exception back as a value so the widget reports it in its status line (the user's layers are
    untouched) instead of it escaping the worker thread."""
    # a tuple, not a bare exception: superqt treats a returned exception as the worker's own error
    try:
        res = segment(*args, **every_channel_for_several(args[0], kwargs))
        import zarr
        grp = zarr.open_group(res.output, mode="r")
        cancel = kwargs.get("cancel")
        stop = None if cancel is None else cancel.is_set
        table = measure_labels(grp["labels"], measure_spacing, unit=unit, cancel=stop)
        return (res, table, expected_errors(grp[UNCERTAINTY], cancel=stop), paintable(grp["labels"])), None
    except Exception as exc:  # every engine error is shown to the user, none is fatal to the viewer
        return None, exc


def every_channel_for_several(source, kwargs: dict) -> dict:
    """A layer shows one channel of its file; a network of several input channels takes them all
    (the engine refuses a file that does not hold as many, saying what it takes)."""
    if not isinstance(source, (str, Path)) or (kwargs.get("channel") is None and kwargs.get("timepoint") is None):
        return kwargs
    from halo_seg.engine.ensemble import input_channels
    if input_channels(kwargs.get("weights", "default")) == 1:
        return kwargs
    return {k: v for k, v in kwargs.items() if k not in ("channel", "timepoint")}


def layer_source(layer):
    """What the engine should read, and the channel and time point to choose in it: the file the
    layer came from (ranks read their blocks from it lazily; the reader noted which channel of it
    the layer shows) or else the layer's (dask or numpy) data."""
    meta = layer.metadata or {}
    src = meta.get("source")
    data = layer_volume(layer)
    if src and Path(src).exists():
        return src, {k: meta[k] for k in ("channel", "timepoint") if meta.get(k) is not None}
    return data, {}


class AutoSegmentWidget(BackgroundWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer, "Segment")
        self._keeper = ObjectsKeeper()   # brush corrections of a result, into its output (a background thread)
        self.image = QComboBox()
        # the models trained in napari (Train a model) are listed by name
        self.weights = SavedFilesBox("default", models_dir, "*.safetensors")
        browse = QPushButton("...")
        browse.clicked.connect(self._browse)
        self.weights.setToolTip("3D U-Net weights; several joined by ' + ' (or chosen together with ...) are an "
                                "ensemble: their class probabilities are averaged")
        wrow = QHBoxLayout()
        wrow.addWidget(self.weights)
        wrow.addWidget(browse)
        self.device = QComboBox()
        self.device.addItems(device_choices())
        self.mode = QComboBox()
        self.mode.addItems(["halo", "tile", "whole"])
        # auto: one rank per GPU on cuda, two CPU processes otherwise (runner.auto_grid)
        self.grid = QLineEdit("auto")
        self.overlap = QDoubleSpinBox()
        self.overlap.setRange(0.0, 0.9)
        self.overlap.setSingleStep(0.25)
        self.overlap.setValue(0.5)
        # test-time mirroring: labels averaged over mirrored views, at that many times the work
        self.mirror = QComboBox()
        for text, axes in MIRROR_CHOICES:
            self.mirror.addItem(text, axes)
        # bf16: several times faster where the CPU or GPU has bfloat16, labels equal to fp32's but
        # for a few boundary voxels (engine/precision.py); fp32 keeps the halo run exact
        self.precision = QComboBox()
        self.precision.addItem("fp32 (exact)", "fp32")
        self.precision.addItem("bf16 (faster)", "bf16")
        # refuse, before it starts, a run whose estimated peak memory exceeds what is free
        self.memory_check = QCheckBox("refuse a run that will not fit")
        self.memory_check.setChecked(True)
        # a time-lapse layer (T, Z, Y, X): which time points, each segmented in turn (_timelapse.py)
        self.timepoints = QComboBox()
        self.timepoints.setEditable(True)
        self.timepoints.addItems(TIME_CHOICES)
        self.timepoints.setToolTip("for a time-lapse layer: all, the one shown, or typed (0-9,20); "
                                   "a 3D layer has none")
        self.output = QLineEdit("")
        self.output.setPlaceholderText("output .zarr (default: a new temporary folder)")
        # the slices with the most expected wrong voxels, in turn, across the plane shown
        self.review_btn = QPushButton("Next slice to review")
        self.review_btn.setEnabled(False)
        self.review_btn.clicked.connect(self.next_review_slice)
        self._review = None   # (labels layer, per-slice expected wrong voxels along z, y, x, next rank per axis)
        self._lay_out(form_of(("image", self.image), ("weights", wrow), ("device", self.device), ("mode", self.mode),
                              ("grid z,y,x", self.grid), ("tile overlap", self.overlap), ("mirror views", self.mirror),
                              ("precision", self.precision), ("memory", self.memory_check),
                              ("time points", self.timepoints), ("output", self.output)),
                     self.review_btn)
        follow_layers(self.viewer, self._refresh_layers)
        self._refresh_layers()

    def _refresh_layers(self, *_):
        fill_layer_box(self.image, self.viewer, napari.layers.Image)

    def _browse(self):
        # several files: an ensemble, their class probabilities averaged (engine/ensemble.py)
        paths, _ = QFileDialog.getOpenFileNames(self, "weights (several for an ensemble)", "",
                                                "safetensors (*.safetensors)")
        if paths:
            self.weights.setCurrentText(ENSEMBLE_SEP.join(paths))

    def run(self):
        name = self.image.currentText()
        if not name:
            self.status.setText("no image layer to segment: open or add one first")
            return
        layer = self.viewer.layers[name]
        timed = timelapse_data(layer)
        try:
            grid = parse_grid(self.grid.text())
            if timed is not None:
                source, choice = series_source(layer)
                times = chosen_timepoints(self.timepoints.currentText(), layer, self.viewer, timed.shape[0])
            else:
                source, choice = layer_source(layer)
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        out = self.output.text().strip() or str(Path(tempfile.mkdtemp(prefix="halo-seg-")) / f"{name}_labels.zarr")
        precision = self.precision.currentData()
        weights = self.weights.choices()
        self._ran_on = self.device.currentText() + (f", {precision}" if precision != "fp32" else "") + \
            (f", an ensemble of {len(weights)} models" if len(weights) > 1 else "")
        kwargs = dict(weights=weights, grid=grid, device=self.device.currentText(),
                      mode=self.mode.currentText(), overlap=self.overlap.value(), mirror=self.mirror.currentData(),
                      memory_check=self.memory_check.isChecked(), precision=precision, **choice)
        if timed is not None:
            self._start(f"segmenting {len(times)} time point{'s' * (len(times) > 1)} of {name} ...",
                        segment_timelapse_or_error, source, out, times, progress=self.progress_callback,
                        cancel=self._cancel, measure_spacing=tuple(layer.scale[-3:]), unit=layer_unit(layer),
                        spacing=layer_spacing(layer), on_done=lambda outcome: self._timelapse_done(outcome, layer),
                        **kwargs)
            return
        self._start(f"segmenting {name} ({kwargs['mode']}, grid {self.grid.text()}) ...", _segment_or_error,
                    source, out, progress=self.progress_callback, cancel=self._cancel,
                    measure_spacing=tuple(layer.scale[-3:]), unit=layer_unit(layer), spacing=layer_spacing(layer),
                    on_done=lambda outcome: self._done(outcome, layer), **kwargs)

    def _done(self, outcome, layer):
        import dask.array as da
        import zarr
        done, exc = outcome
        if exc is not None:
            return self._failed(exc)
        res, table, per_slice, (labels, note) = done
        grp = zarr.open_group(res.output, mode="r")
        meta = {"source": res.output}
        if note:   # too large for memory: shown from the file
            labels = da.from_zarr(grp["labels"])
        else:      # in memory: what the brush corrects is kept in the output as it is painted
            meta[INTO] = str(Path(res.output) / "labels")
        geometry = grp["labels"].attrs.get(GEOMETRY) or \
            (layer.metadata or {}).get(GEOMETRY)
        if geometry is not None:   # the input scan's, so that saving the labels places them on it
            meta[GEOMETRY] = geometry
        for key in (SERIES_KEY, UNIT):
            if (layer.metadata or {}).get(key):
                meta[key] = layer.metadata[key]
        unit = layer_unit(layer)
        names = names_in(grp["labels"].attrs)   # the model's classes
        # named after what was segmented: the layer's channel, or its file where every channel was
        base = layer.name
        if res.inputs and (layer.metadata or {}).get("source"):
            base = Path(layer.metadata["source"]).name.split(".")[0]
        # hidden until asked for: where the labels are likely wrong, in percent
        self.viewer.add_image(da.from_zarr(grp[UNCERTAINTY]), name=f"{base} uncertainty ({res.mode})",
                              scale=layer.scale[-3:], translate=layer.translate[-3:], colormap="inferno",
                              contrast_limits=(0, 50), blending="additive", visible=False)
        out = self.viewer.add_labels(labels, name=f"{base} labels ({res.mode})", scale=layer.scale[-3:],
                                     translate=layer.translate[-3:], metadata=meta,
                                     features=table_features(table, unit, names))
        if not note:
            out.events.paint.connect(lambda event, lay=out: self._painted(lay, event.value))
            self._keeper.follow_history(out)
        self._review = (out, per_slice, [0, 0, 0])
        self.review_btn.setEnabled(True)
        per_class = ", ".join(f"{names.get(int(k)) or f'class {int(k)}'}: {volume_text(v, unit)}"
                              for k, v in zip(table["label"][:8], table["volume"][:8]))
        where = f"{res.mode}, grid {'x'.join(map(str, res.grid))}" if res.mode == "halo" else res.mode
        if res.resampled:   # the network saw the image at the voxel size it was trained at
            where += ", at the model's voxel size " + spacing_text(res.resampled["spacing"], unit=res.resampled.get("unit"))
        # a network of several channels: the layer's file gave them all
        took = f" from {len(res.inputs)} channels ({', '.join(res.inputs)})" if res.inputs else ""
        self._succeeded(f"done in {res.seconds:.1f}s ({where} on {self._ran_on}){took}: {res.output}"
                        + (f"; {per_class}" if per_class else "")
                        + (f"; {note}" if note else "; corrections with the brush are kept in it as you paint"))

    def _timelapse_done(self, outcome, layer):
        done, exc = outcome
        if exc is not None:
            return self._failed(exc)
        out, kept, text = add_timelapse_result(self.viewer, layer, *done, layer_unit(layer), self._ran_on)
        if kept:
            out.events.paint.connect(lambda event, lay=out: self._painted(lay, event.value))
            self._keeper.follow_history(out)
        self._succeeded(text)

    def _painted(self, layer, atoms):
        """A brush stroke (fill, erase) on a result: written into its output, in the keeper's thread."""
        box = stroke_box(atoms, tuple(layer.data.shape))
        if box is not None:   # napari tells before it writes the stroke: read it once it has
            QTimer.singleShot(0, lambda: self._keeper.write(layer, box))
        err = self._keeper.take_error()
        if err is not None:
            where = layer.metadata.get(INTO) or layer.metadata.get(INTO_SERIES)
            self.status.setText(f"a correction could not be kept in {where}: {err}"
                                + ("" if layer.ndim > 3 else "; save the layer to keep it"))

    def next_review_slice(self):
        """Show the next of the 10 slices, across the plane shown, with the most voxels expected
        wrong in the last result, and say how many."""
        if self._review is None:
            self.status.setText("no result to review yet: segment first")
            return
        layer, per_slice, ranks = self._review
        if layer not in self.viewer.layers:
            self.status.setText("the labels to review were removed; segment again")
            return
        try:
            axis = sliced_axis(self.viewer, "slices are reviewed one at a time")
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        order = review_order(per_slice[axis], REVIEW_TOP)
        if not order:
            self.status.setText("no voxel is expected wrong: nothing to review")
            return
        k = ranks[axis] % len(order)
        ranks[axis] = k + 1
        z = order[k]
        show_slice(self.viewer, layer, axis, z)
        share = per_slice[axis][z] / per_slice[axis].sum()
        self.status.setText(f"slice {z} across {'zyx'[axis]}: about {per_slice[axis][z]:.0f} voxels expected wrong "
                            f"({share:.0%} of all); {k + 1} of the {len(order)} slices with the most")

    def _failed(self, exc, cancelled_types=(Cancelled, InterruptedError)):
        super()._failed(exc, cancelled_types)
