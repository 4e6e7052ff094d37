"""Dock widget: compare a Labels layer with a reference Labels layer, label by label (Dice, Jaccard,
volume difference, HD95 and average surface distance in the reference's unit; halo_seg.evaluate),
in a worker thread with progress and Cancel.

A model's output against ground truth, or two readers' outlines of one structure. Clicking a row
shows the slice, across the plane shown, where that label's two versions disagree on the most
voxels; "Save table" writes the rows as CSV. "As objects" compares instance segmentations instead
(nuclei: ids need not correspond), one row per IoU threshold (evaluate.compare_instances). Two
time-lapses' labels (T, Z, Y, X) are compared at the time point shown.
"""
from __future__ import annotations

import napari
import numpy as np
from qtpy.QtWidgets import QCheckBox, QComboBox, QPushButton, QTableWidget, QTableWidgetItem

from halo_seg.io.volume import VolumeError

from ._background import BackgroundWidget
from ._fields import form_of
from ._interactive_time import show_time, time_shown
from ._layers import fill_layer_box, follow_layers, on_one_grid_of, show_slice, sliced_axis
from ._measure import layer_names, layer_unit, save_table_csv
from ._timelapse import same_timelapse, timelapse_data

COLUMNS = (("label", "label", "{:d}"), ("name", "name", "{}"), ("Dice", "dice", "{:.3f}"),
           ("Jaccard", "jaccard", "{:.3f}"), ("vol. diff", "volume_difference", "{:+.1%}"), ("HD95", "hd95", "{:.2f}"), ("ASSD", "assd", "{:.2f}"))
OBJECT_COLUMNS = (("IoU >=", "iou", "{:.2f}"), ("TP", "tp", "{:d}"), ("FP", "fp", "{:d}"), ("FN", "fn", "{:d}"),
                  ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"), ("F1", "f1", "{:.3f}"),
                  ("AP", "ap", "{:.3f}"), ("mean IoU", "mean_matched_iou", "{:.3f}"), ("SEG", "seg", "{:.3f}"))
OBJECT_IOUS = (0.5, 0.75, 0.9)
INTEGER = ("label", "tp", "fp", "fn")


def _compare(pred, truth, spacing, distances: bool, objects: bool, cancel, names=None):
    """In the worker: ((table, per-label disagreement per slice or None), None) or (None, the
    exception). ``objects``: matched as instances (evaluate.compare_instances), one row per IoU;
    ``names``: id -> name, a column of the table."""
    try:
        from halo_seg.evaluate import compare_instances, compare_labels, disagreement_per_slice
        from halo_seg.measure import with_names
        if objects:
            return (compare_instances(pred, truth, OBJECT_IOUS, cancel=cancel), None), None
        table = with_names(compare_labels(pred, truth, spacing, distances=distances, cancel=cancel), names)
        return (table, disagreement_per_slice(pred, truth, table["label"], cancel=cancel)), None
    except Exception as exc:  # shown to the user; the layers are untouched
        return None, exc


class CompareWidget(BackgroundWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer, "Compare")
        self.labels, self.reference = QComboBox(), QComboBox()
        self.distances = QCheckBox("surface distances (HD95, ASSD)")
        self.distances.setChecked(True)
        self.objects = QCheckBox("as objects: ids need not match (nuclei, lesions)")
        self.objects.setToolTip("match objects one to one at IoU 0.5, 0.75 and 0.9: precision, recall, F1, AP")
        self.by_name = QCheckBox("match labels by name (SEG segments, RT structures)")
        self.by_name.setToolTip("two planning systems or observers number the same structures differently: match "
                                "the labels' names (the layers' features) instead of their ids")
        self.grid = QTableWidget(0, len(COLUMNS))
        self.grid.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        self.grid.verticalHeader().setVisible(False)
        self.grid.setEditTriggers(QTableWidget.NoEditTriggers)
        self.grid.cellClicked.connect(lambda row, _col: self.show_worst_slice(row))
        self.save_btn = QPushButton("Save table (CSV)")
        self.save_btn.setEnabled(False)
        self.save_btn.clicked.connect(lambda: self.save_table())
        self.table = None
        self._result = None   # (the layer whose grid was compared on, per-label disagreement per slice along z, y, x, or None)
        self._lay_out(form_of(("labels", self.labels), ("reference", self.reference), ("", self.distances),
                              ("", self.objects), ("", self.by_name)),
                      self.save_btn)
        self.layout().insertWidget(self.layout().count() - 1, self.grid)
        self.status.setText("choose the labels to judge and a reference of the same grid, then Compare")
        follow_layers(self.viewer, self._refresh_layers)
        self._refresh_layers()

    def _refresh_layers(self, *_):
        fill_layer_box(self.labels, self.viewer, napari.layers.Labels)
        fill_layer_box(self.reference, self.viewer, napari.layers.Labels)

    def run(self):
        chosen = self._chosen_pair(self.labels, self.reference,
                                   "choose two Labels layers: the labels to judge and the reference",
                                   "the labels and the reference are the same layer: choose another reference")
        if chosen is None:
            return
        layer, ref = chosen
        a, b = layer.name, ref.name
        try:   # labels saved cropped to their objects: both on the grid that holds the other
            pred, truth, grid, t = self._pair(layer, ref)
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        if t is not None:
            a = f"{a} at time point {t}"
        names, ref_names = layer_names(layer.features), layer_names(ref.features)
        note = ""
        if self.by_name.isChecked() and not self.objects.isChecked():
            from halo_seg.evaluate import renumber_by_name
            try:
                pred, missing = renumber_by_name(pred, names, ref_names)
            except VolumeError as exc:
                self.status.setText(str(exc).replace("--by-name", "matching by name"))
                return
            names = ref_names
            note = f"; not in the reference, left out: {', '.join(missing)}" if missing else ""
        elif not self.objects.isChecked():
            from halo_seg.evaluate import name_mismatch
            differ = name_mismatch(names, ref_names, sorted(set(names) & set(ref_names)))
            note = f"; {differ} (or match labels by name)" if differ else ""
        self._start(f"comparing {a} with {b} ...", _compare, pred, truth, tuple(ref.scale[-3:]),
                    self.distances.isChecked(), self.objects.isChecked(), self._cancel.is_set, ref_names or names,
                    on_done=lambda outcome: self._done(outcome, layer, grid, layer_unit(ref), note, t))

    def _pair(self, layer, ref):
        """(labels, reference, the layer whose grid they are on, time point or None): of two
        time-lapses of one shape, their volumes at the time point shown."""
        series, ref_series = timelapse_data(layer), timelapse_data(ref)
        if series is None and ref_series is None:
            return (*on_one_grid_of(layer, ref, "a voxel-by-voxel comparison would pair the wrong voxels"), None)
        series, ref_series = same_timelapse(layer, ref, "a time-lapse's labels are compared with a reference over "
                                                        "the same time points, of one shape (or split both: "
                                                        "right-click > Split Stack)")
        t = time_shown(self.viewer, layer, len(series))
        return series[t], ref_series[t], layer, t

    def _done(self, outcome, layer, grid, unit, note: str = "", t: int | None = None):
        done, exc = outcome
        if exc is not None:
            return self._failed(exc)
        table, per_slice = done
        self.table, self._result = table, (grid, per_slice, t)   # slices of the grid compared on
        shown = [c for c in (OBJECT_COLUMNS if per_slice is None else COLUMNS) if c[1] in table]
        self.grid.setColumnCount(len(shown))
        self.grid.setHorizontalHeaderLabels([c[0] + (f" {unit}" if unit and c[1] in ("hd95", "assd") else "")
                                             for c in shown])
        rows = len(table[shown[0][1]])
        self.grid.setRowCount(rows)
        for i in range(rows):
            for j, (_, key, fmt) in enumerate(shown):
                v = table[key][i]
                text = str(v) if isinstance(v, str) else "n/a" if isinstance(v, float) and not np.isfinite(v) \
                    else fmt.format(int(v) if key in INTEGER else float(v))
                self.grid.setItem(i, j, QTableWidgetItem(text))
        self.grid.resizeColumnsToContents()
        self.save_btn.setEnabled(True)
        if per_slice is None:
            self._succeeded(("" if t is None else f"time point {t}: ")
                            + f"objects: F1 {table['f1'][0]:.3f} at IoU 0.5 ({table['tp'][0]} matched, "
                            f"{table['fp'][0]} only in {layer.name}, {table['fn'][0]} only in the reference)")
            return
        if not len(table["label"]):
            self._succeeded("no labels in either layer")
            return
        self._succeeded(("" if t is None else f"time point {t}: ")
                        + f"mean Dice {np.mean(table['dice']):.3f} over {len(table['label'])} labels; click a row "
                        "to see where that label disagrees most" + note)

    def show_worst_slice(self, row: int):
        """Show the slice, across the plane shown, where the chosen label's two versions disagree on
        the most voxels."""
        if self._result is None:
            return
        grid, per_slice, t = self._result
        if per_slice is None or not 0 <= row < len(self.table["label"]):
            return   # object rows are IoU thresholds, not places
        if grid not in self.viewer.layers:
            self.status.setText("the compared labels were removed; compare again")
            return
        try:
            axis = sliced_axis(self.viewer, "the disagreement is shown slice by slice")
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        k = int(self.table["label"][row])
        counts = per_slice[k][axis]
        if not counts.any():
            self.status.setText(f"label {k}: the two agree on every voxel")
            return
        z = int(counts.argmax())
        if t is not None:   # the time point compared
            show_time(self.viewer, grid, t)
        show_slice(self.viewer, grid, axis, z)
        self.status.setText(f"label {k}: slice {z} across {'zyx'[axis]}, {int(counts[z])} voxels disagree there "
                            f"({int(counts.sum())} in all)")

    def save_table(self, path: str | None = None):
        save_table_csv(self, self.table, "comparison.csv", path)

    def _failed(self, exc, cancelled_types=(InterruptedError,)):
        super()._failed(exc, cancelled_types)
