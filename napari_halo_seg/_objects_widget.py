"""Dock widget: split a Labels layer into connected objects and measure each (halo_seg.instances,
halo_seg.measure), in a worker thread with progress and cancel.

The objects come back as a new Labels layer (the input is never changed) whose features hold each
object's size and mean intensity, which napari shows under the cursor; "Save table" writes every
object's row as CSV. A time-lapse's labels (T, Z, Y, X) are taken a time point at a time
(_objects_series.py).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QPushButton, QSpinBox

from halo_seg.io.geometry import KEY as GEOMETRY
from halo_seg.measure import volume_text

from ._background import BackgroundWidget
from ._fields import form_of
from ._layers import fill_layer_box, follow_layers, layer_volume, on_grid_of
from ._measure import UNIT, layer_links, layer_names, layer_unit, save_table_csv, table_features
from ._objects_series import (TRACK_OUTPUT, counts_text, label_series, measure_series, series_image,
                              track_features, track_series, tracking_text)
from ._paintable import paintable
from ._timelapse import timelapse_data

NO_IMAGE = "(none)"
# the linking choices, as the tracker names them; the first is the default
LINKING = {"chosen from the cells' motion": "auto", "by overlap": "overlap", "by distance alone (fast cells)": "distance"}


def _label_and_measure(data, out, spacing, unit, image, progress, cancel, split=False, **kw):
    """In the worker: (result, table) or the exception, handed back as a value for the status line."""
    try:
        from halo_seg.instances import label_instances, split_touching
        from halo_seg.measure import measure_labels
        import zarr
        res = label_instances(data, out, spacing=spacing, unit=unit, progress=progress, cancel=cancel,
                              dtype=np.uint32 if split else None, **kw)
        if split:
            res.objects = split_touching(res.path, spacing=spacing, progress=progress, cancel=cancel)
            res.per_class = {}   # the split's new ids are not counted per class
        stored = zarr.open_array(str(res.path), mode="r")
        table = measure_labels(stored, spacing, image=image, unit=unit, cancel=cancel)
        return (res, table, paintable(stored)), None
    except Exception as exc:  # shown to the user; the layers are untouched
        return None, exc


def _measure_only(data, spacing, unit, image, cancel):
    try:
        from halo_seg.measure import measure_labels
        return measure_labels(data, spacing, image=image, unit=unit, cancel=cancel), None
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


class ObjectsWidget(BackgroundWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer, "Label objects")
        self.table = None
        self.labels = QComboBox()
        self.image = QComboBox()
        self.classes = QLineEdit("")
        self.classes.setPlaceholderText("all values > 0 as one; or e.g. 1, 3 (each apart)")
        self.min_voxels = QSpinBox()
        self.min_voxels.setRange(0, 10 ** 9)
        self.connectivity = QComboBox()
        self.connectivity.addItems(["1: faces", "2: faces, edges", "3: faces, edges, corners"])
        self.split = QCheckBox("split touching objects (nuclei)")
        self.track = QCheckBox("follow them over time (tracks, lineage)")
        self.track.setToolTip("labels with time points (T, Z, Y, X): each object keeps one id from time point to "
                              "time point, a dividing cell's daughters get ids of their own (halo_seg.tracking); "
                              "the interactive widget's objects are tracked as committed, keeping the links "
                              "made with Next time point (a cell followed, its daughters after Commit as two)")
        self.as_numbered = QCheckBox("follow the ids as they are (objects numbered already)")
        self.as_numbered.setToolTip("tracking: each id at a time point is one object, touching ones apart (StarDist, "
                                    "Cellpose, `instances`, the interactive widget's committed objects), instead of "
                                    "finding connected components; a layer with links made with Next time point is "
                                    "followed so whatever this says")
        self.max_distance = QDoubleSpinBox()
        self.max_distance.setRange(0.0, 1e6)
        self.max_distance.setDecimals(2)
        self.max_distance.setSpecialValueText("off")   # at 0
        self.max_distance.setToolTip("tracking: how far a cell may move between time points, in the layer's units; "
                                     "objects no overlap paired are paired by nearest centroid, measured from where "
                                     "each cell's steps predict it, and a daughter too far to overlap her mother is "
                                     "told by her and her sister's sizes and places")
        self.linking = QComboBox()
        self.linking.addItems(list(LINKING))
        self.linking.setToolTip("tracking: by overlap (an object continues as the one it overlaps most), by distance "
                                "alone (nearest centroid within the max distance, as point trackers do: cells moving "
                                "further than their radius between time points), or chosen at each time point from how "
                                "far the cells moved since the one before (by distance over half their radius, within "
                                "the max distance or else twice their step: cells that speed up or slow down)")
        form = form_of(("labels", self.labels), ("image (intensity)", self.image), ("classes", self.classes),
                       ("min voxels", self.min_voxels), ("connectivity", self.connectivity), ("", self.split),
                       ("", self.track), ("", self.as_numbered), ("max distance", self.max_distance),
                       ("linking", self.linking))
        self.measure_btn = QPushButton("Measure labels as they are")
        self.measure_btn.clicked.connect(self.measure)
        self.save_btn = QPushButton("Save table (CSV)")
        self.save_btn.setEnabled(False)
        self.save_btn.clicked.connect(lambda: self.save_table())
        self.status.setText("choose a Labels layer, then Label objects")
        self._lay_out(form, self.save_btn)
        self.layout().insertWidget(2, self.measure_btn)
        follow_layers(self.viewer, self._refresh_layers)
        self._refresh_layers()

    def _refresh_layers(self, *_):
        fill_layer_box(self.labels, self.viewer, napari.layers.Labels)
        fill_layer_box(self.image, self.viewer, napari.layers.Image, first=[NO_IMAGE])

    def run(self):
        if self.worker is not None:
            self.status.setText("busy: wait or press Cancel")
            return
        try:
            classes = parse_classes(self.classes.text())
        except ValueError as exc:
            self.status.setText(f"error: {exc}")
            return
        chosen = self._chosen()
        if chosen is None:
            return
        layer, data, image = chosen
        out = Path(tempfile.mkdtemp(prefix="halo-seg-objects-")) / f"{layer.name}_objects.zarr"
        if self.track.isChecked():
            if data.ndim != 4:
                self.status.setText(f"error: {layer.name} has no time points to follow objects over; tracking takes "
                                    "a time-lapse's labels (T, Z, Y, X)")
                return
            reach = self.max_distance.value() or None
            link = LINKING[self.linking.currentText()]
            if link == "distance" and reach is None:
                self.status.setText("error: linking by distance alone needs a max distance: how far a cell may move "
                                    "between time points")
                return
            links = layer_links(layer.features)
            given = bool(links) or self.as_numbered.isChecked()
            if given and (classes or self.min_voxels.value() or self.split.isChecked()):
                why = ("holds objects followed with Next time point: they are tracked as committed, keeping the links "
                       "made there" if links else "is followed with its ids as they are")
                self.status.setText(f"error: {layer.name} {why}; clear classes, min voxels and split (they apply to "
                                    "objects found as connected components)")
                return
            found = {"objects_given": True, "links": links or None} if given else {
                "classes": classes, "min_voxels": self.min_voxels.value(), "split": self.split.isChecked(),
                "connectivity": self.connectivity.currentIndex() + 1}
            self._start(f"following the objects of {layer.name} over its {data.shape[0]} time points"
                        + (f", keeping the {len(links)} link{'s' if len(links) != 1 else ''} made with Next time "
                           "point" if links else "") + " ...",
                        track_series, data, out.with_name(f"{layer.name}_tracks.zarr"), tuple(layer.scale[-3:]),
                        layer_unit(layer), image, self.progress_callback, self._cancel.is_set, max_distance=reach,
                        link=link, on_done=lambda outcome: self._tracks_done(outcome, layer, link, reach, len(links)),
                        **found)
            return
        if data.ndim == 4:
            self._start(f"labelling the objects of {layer.name} at each of its {data.shape[0]} time points ...",
                        label_series, data, out, tuple(layer.scale[-3:]), layer_unit(layer), image,
                        self.progress_callback, self._cancel.is_set, classes=classes, min_voxels=self.min_voxels.value(),
                        split=self.split.isChecked(), connectivity=self.connectivity.currentIndex() + 1,
                        on_done=lambda outcome: self._series_done(outcome, layer))
            return
        self._start(f"labelling the objects of {layer.name} ...", _label_and_measure, data, out,
                    tuple(layer.scale[-3:]), layer_unit(layer), image, self.progress_callback, self._cancel.is_set,
                    classes=classes, min_voxels=self.min_voxels.value(), split=self.split.isChecked(),
                    connectivity=self.connectivity.currentIndex() + 1,
                    on_done=lambda outcome: self._done(outcome, layer))

    def _chosen(self):
        """(labels layer, its data, image data or None), or None with the reason in the status line."""
        name = self.labels.currentText()
        if not name:
            self.status.setText("no Labels layer: segment or open one first")
            return None
        layer = self.viewer.layers[name]
        try:
            image_layer = None if self.image.currentText() in ("", NO_IMAGE) else \
                self.viewer.layers[self.image.currentText()]
            timed = timelapse_data(layer)
            if timed is not None:   # a time-lapse's labels (_objects_series.py)
                return layer, timed, series_image(image_layer, timed.shape)
            data = layer_volume(layer)
            image = None
            if image_layer is not None:
                # the labels saved cropped to their objects: the image's part under them
                image = on_grid_of(image_layer, layer, "the intensities would be read from other voxels", cut=True)
        except ValueError as exc:
            self.status.setText(str(exc))
            return None
        return layer, data, image

    def measure(self):
        """Each label value of the chosen layer as one object (e.g. the structures of an atlas): its
        size on the layer itself (napari shows it under the cursor, beside the names its file gave
        the ids) unless the layer has features of its own, and in the table."""
        if self.worker is not None:
            self.status.setText("busy: wait or press Cancel")
            return
        chosen = self._chosen()
        if chosen is None:
            return
        layer, data, image = chosen
        self.measure_btn.setEnabled(False)
        if data.ndim == 4:
            self._start(f"measuring the labels of {layer.name} at each of its {data.shape[0]} time points ...",
                        measure_series, data, tuple(layer.scale[-3:]), layer_unit(layer), image, self._cancel.is_set,
                        on_done=lambda outcome: self._series_measured(outcome, layer))
            return
        self._start(f"measuring the labels of {layer.name} ...", _measure_only, data, tuple(layer.scale[-3:]),
                    layer_unit(layer), image, self._cancel.is_set, on_done=lambda outcome: self._measured(outcome, layer))

    def _finished(self):
        # here, not connected after the worker started: a quick worker could finish before that
        super()._finished()
        self.measure_btn.setEnabled(True)

    def _measured(self, outcome, layer):
        table, exc = outcome
        if exc is not None:
            return self._failed(exc)
        from halo_seg.measure import with_names
        unit, names = layer_unit(layer), layer_names(layer.features)   # a file's names of its ids stay, beside the sizes
        own = [c for c in layer.features.columns if c not in table_features(table, unit, names)]
        if not own:
            layer.features = table_features(table, unit, names)
        self.table = with_names(table, names)
        self.save_btn.setEnabled(True)
        where = "kept the layer's own features; the table has them" if own else "on the layer: hover over one"
        self._succeeded(f"{len(table['label'])} labels, {volume_text(float(table['volume'].sum()), unit)} in all "
                        f"({where})")

    def _done(self, outcome, layer):
        import dask.array as da
        done, exc = outcome
        if exc is not None:
            return self._failed(exc)
        res, table, (labels, note) = done
        unit = layer_unit(layer)
        meta = {k: v for k, v in (layer.metadata or {}).items() if k in (GEOMETRY, UNIT)}
        if note:   # too large for memory: shown from the file
            labels = da.from_zarr(labels)
        self.viewer.add_labels(labels, name=f"{layer.name} objects",
                               scale=layer.scale[-3:], translate=layer.translate[-3:], metadata=meta,
                               features=table_features(table, unit))
        self.table = table
        self.save_btn.setEnabled(True)
        total = volume_text(float(table["volume"].sum()), unit)
        per = ", ".join(f"class {k}: {v}" for k, v in list(res.per_class.items())[:8]) if len(res.per_class) > 1 else ""
        per += " ..." if len(res.per_class) > 8 else ""
        dropped = f"; {res.removed} smaller than {self.min_voxels.value()} voxels dropped" if res.removed else ""
        self._succeeded(f"{res.objects} objects ({total} in all){'; ' + per if per else ''}{dropped}"
                        + (f"; {note}" if note else ""))

    def _series_measured(self, outcome, layer):
        table, exc = outcome
        if exc is not None:
            return self._failed(exc)
        from halo_seg.measure import with_names
        self.table = with_names(table, layer_names(layer.features))
        self.save_btn.setEnabled(True)
        n = len(set(table["timepoint"].tolist()))
        self._succeeded(f"{len(table['label'])} rows: each label at each of {n} time points; Save table writes them "
                        "(a timepoint column first)")

    def _series_done(self, outcome, layer):
        done, exc = outcome
        if exc is not None:
            return self._failed(exc)
        ids, table, counts = done
        unit = layer_unit(layer)
        meta = {k: v for k, v in (layer.metadata or {}).items() if k in (GEOMETRY, UNIT)}
        features = table_features(table, unit)
        features["timepoint"] = table["timepoint"]   # under the cursor: which time point the object is of
        self.viewer.add_labels(ids, name=f"{layer.name} objects", scale=(1.0,) + tuple(layer.scale[-3:]),
                               translate=(0.0,) + tuple(layer.translate[-3:]), metadata=meta, features=features)
        self.table = table
        self.save_btn.setEnabled(True)
        self._succeeded(f"{sum(counts)} objects: {counts_text(counts)}; numbered on from one time point to the "
                        "next (the table's timepoint column says whose)")

    def _tracks_done(self, outcome, layer, link, reach, links: int = 0):
        import dask.array as da
        done, exc = outcome
        if exc is not None:
            return self._failed(exc)
        res, (labels, note), rows, (points, graph) = done
        if not len(points):   # napari cannot show a Tracks layer without a point
            return self._succeeded(f"no objects at any of the {len(res.objects)} time points: nothing to follow")
        unit = layer_unit(layer)
        meta = {k: v for k, v in (layer.metadata or {}).items() if k in (GEOMETRY, UNIT)}
        if note:   # too large for memory: shown from the file
            labels = da.from_zarr(labels)
        place = {"scale": (1.0,) + tuple(layer.scale[-3:]), "translate": (0.0,) + tuple(layer.translate[-3:])}
        meta[TRACK_OUTPUT] = str(res.output)   # what Edit tracks corrects
        self.viewer.add_labels(labels, name=f"{layer.name} tracked", metadata=meta,
                               features=track_features(rows, unit), **place)
        self.viewer.add_tracks(points, graph=graph, name=f"{layer.name} tracks", tail_length=10,
                               metadata={TRACK_OUTPUT: str(res.output)}, **place)
        self.table = res.table
        self.save_btn.setEnabled(True)
        from halo_seg.tracking.summary import chosen_text, fast_motion, fast_reach, motion_text
        if link == "auto":
            hint = f"; {chosen_text(res.choices, unit)}"
        else:
            fast = fast_motion(res.table, link, reach, res.shape, res.spacing)   # as asked, whatever the fields say now
            hint = (f"; {motion_text(fast, unit)}: link chosen from the cells' motion (by distance where they move so) "
                    f"or by distance alone with a max distance of about {fast_reach(fast):g}, and follow them again"
                    if fast else "")
        kept = ""
        if links:   # a link to an object erased since, or to one not at the next time point, is not used
            kept = (f"; the {links} link{'s' if links != 1 else ''} made with Next time point kept"
                    if res.given_links == links else
                    f"; {res.given_links} of the {links} links made with Next time point kept (the others join "
                    "objects erased since)")
        self._succeeded(f"{tracking_text(res.tracks, res.divisions)}; objects: {counts_text(res.objects)}"
                        + kept + (f"; {note}" if note else "") + hint)

    def save_table(self, path: str | None = None):
        save_table_csv(self, self.table, "objects.csv", path)
