"""Dock widget: correct a tracking by hand (halo_seg.tracking.edit) on a tracked Labels layer (the
Objects widget's "follow them over time", or a `track` output opened), in a worker thread.

Pick a track with napari's colour picker (or type its id), then: cut it at the time point shown,
join another track onto it, swap it with another from the time point shown (an id switch where
two cells crossed), make it another's mother or take another's mother away, or delete it;
Undo takes back the latest edit. Each edit changes the `track` output on disk (what `track-edit`
changes), and the same change is made to the layer, so paint strokes there stay; the Tracks layer
and what the cursor shows (first and last time point, mother, speed) follow.
"""
from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QComboBox, QLabel, QPushButton, QSpinBox

from ._background import BackgroundWidget
from ._fields import form_of
from ._layers import follow_layers
from ._measure import layer_unit
from ._objects_series import CTC_TRACKING, TRACK_OUTPUT, track_features, tracking_text

CUT, JOIN, SWAP, MOTHER, NO_MOTHER, DELETE = (
    "cut the track at the time point shown", "join: the other track continues the track",
    "swap the two tracks from the time point shown", "the track is the other's mother",
    "the other track has no mother", "delete the track")
OPS = {CUT: "cut", JOIN: "join", SWAP: "swap", MOTHER: "mother", NO_MOTHER: "mother", DELETE: "delete"}


def _imported(ctc, path, spacing, unit, cancel) -> None:
    """A Cell Tracking Challenge folder's tracking made the `track` output ``path`` the first time it
    is edited (``ctc`` None: ``path`` is one already)."""
    if ctc is not None and not Path(path).exists():
        from halo_seg.tracking.ctc_import import import_ctc
        import_ctc(ctc, path, spacing=spacing, unit=unit, cancel=cancel)


def edit_in_worker(path, op, a, b, t, in_memory, spacing, cancel, ctc=None, unit=None):
    """In the worker: the edit on disk (``op`` "undo", "paint": the strokes painted on the layer,
    or tracking.edit's), repeated on the layer's data when it is held in memory, then the Tracks
    rows, lineage graph and each track's row read back; or the exception, as a value. ``ctc``: a
    Cell Tracking Challenge folder, made the `track` output ``path`` first."""
    try:
        from halo_seg.tracking.edit import TrackOutput
        _imported(ctc, path, spacing, unit, cancel)
        out = TrackOutput(path)
        if op == "paint":
            if in_memory is None:
                raise ValueError("the labels are shown from their file (too large for memory), where napari's brush "
                                 "writes nothing: correct them with the edits, or a time point at a time")
            done = out.paint(in_memory, cancel)
        else:
            done = out.undo(cancel) if op == "undo" else out.edit(op, a, b, cancel, t)
            if in_memory is not None:
                done.repeat_on(in_memory)
        return (done, read_back(path, spacing, cancel)), None
    except Exception as exc:   # shown in the status line; the output is as the edit left it (whole or undone)
        return None, exc


def read_back(path, spacing, cancel=None) -> tuple:
    """What the layers show of a track output: napari's Tracks rows and graph, each track's row
    (per_track: what the cursor shows) and the lineage {track: [first, last, mother]}."""
    import zarr

    from halo_seg.io.track_output import track_points
    from halo_seg.tracking.lineage_edits import rows_of
    from halo_seg.tracking.summary import per_track, track_table
    grp = zarr.open_group(str(path), mode="r")
    points, graph = track_points(path)
    lineage = np.asarray(grp["lineage"][...]).reshape(-1, 4)
    rows = per_track(track_table(grp["labels"], points, spacing, cancel), lineage, spacing)
    return points, graph, rows, rows_of(lineage)


def _in_memory(layer):
    """The layer's labels where napari holds them in memory (the brush paints there), else None
    (shown from the file itself)."""
    return layer.data if isinstance(layer.data, np.ndarray) else None


def _save_in_worker(path, dest, in_memory, spacing, cancel, ctc=None, unit=None):
    """In the worker: strokes painted on the layer written into the tracking first (an edit, undone
    as any), then the copy; (where, what the layers show then if strokes were written, else None)
    or the exception, as a value."""
    try:
        from halo_seg.tracking.edit import TrackOutput, save_tracking
        _imported(ctc, path, spacing, unit, cancel)
        out = TrackOutput(path)
        shown = None
        if in_memory is not None and out.paint(in_memory, cancel, nothing_is_error=False) is not None:
            shown = read_back(path, spacing, cancel)
        return (save_tracking(path, dest, cancel), shown), None
    except Exception as exc:   # shown in the status line; nothing is written but whole
        return None, exc


class TrackEditWidget(BackgroundWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer, "Apply")
        self.tracked = QComboBox()
        self.op = QComboBox()
        self.op.addItems(list(OPS))
        self.track = QSpinBox()
        self.other = QSpinBox()
        for box in (self.track, self.other):
            box.setRange(0, 2 ** 31 - 1)
        self.track.setToolTip("pick it with the labels layer's colour picker, or type its id")
        self.other.setToolTip("the track joined on, or the daughter")
        self.about = QLabel("")
        self.about.setWordWrap(True)
        self.undo_btn = QPushButton("Undo")
        self.undo_btn.clicked.connect(self.undo)
        self.paint_btn = QPushButton("Write strokes")
        self.paint_btn.setToolTip("what the brush and eraser changed on the layer written into the tracking (a "
                                  "cell missed, painted in a track's colour; a merge cut apart): its rows and "
                                  "lineage follow")
        self.paint_btn.clicked.connect(self.write_strokes)
        self.save_btn = QPushButton("Save tracking ...")
        self.save_btn.setToolTip("a copy as NAME.zarr (further edits go there), or any other name: a Cell Tracking "
                                 "Challenge result folder (mask000.tif ..., res_track.txt)")
        self.save_btn.clicked.connect(lambda: self.save())
        self._rows = {}
        self._lay_out(form_of(("tracked labels", self.tracked), ("track", self.track), ("edit", self.op),
                              ("other track", self.other), ("", self.about)),
                      self.undo_btn, self.paint_btn, self.save_btn)
        self.status.setText("pick a track (colour picker, or its id), choose the edit, then Apply")
        self.tracked.currentTextChanged.connect(self._chosen)
        self.track.valueChanged.connect(self._describe)
        self.other.valueChanged.connect(self._describe)
        follow_layers(self.viewer, self._refresh_layers)
        self._refresh_layers()

    # -- layers ------------------------------------------------------------------------------------
    def _refresh_layers(self, *_):
        current = self.tracked.currentText()
        names = [lay.name for lay in self.viewer.layers if isinstance(lay, napari.layers.Labels)
                 and ((lay.metadata or {}).get(TRACK_OUTPUT) or (lay.metadata or {}).get(CTC_TRACKING))]
        self.tracked.blockSignals(True)
        self.tracked.clear()
        self.tracked.addItems(names)
        if current in names:
            self.tracked.setCurrentText(current)
        self.tracked.blockSignals(False)
        if self.tracked.currentText() != current:
            self._chosen()

    def _layer(self):
        name = self.tracked.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _path(self, layer) -> Path:
        if not layer.metadata.get(TRACK_OUTPUT):   # a CTC folder's: a `track` output made on its first edit
            import tempfile
            path = Path(tempfile.mkdtemp(prefix="halo-seg-ctc-")) / f"{layer.name}.zarr"
            for lay in self._ctc_layers(layer):
                lay.metadata = {**lay.metadata, TRACK_OUTPUT: str(path)}
            return path
        path = Path(layer.metadata[TRACK_OUTPUT])
        if not path.exists() and not layer.metadata.get(CTC_TRACKING):
            raise ValueError(f"the tracking behind {layer.name!r} ({path}) is gone: track again or open it")
        return path

    def _ctc_layers(self, layer) -> list:
        """The layers opened from ``layer``'s Cell Tracking Challenge folder (its labels and paths)."""
        folder = (layer.metadata or {}).get(CTC_TRACKING)
        return [lay for lay in self.viewer.layers if folder and (lay.metadata or {}).get(CTC_TRACKING) == folder]

    def _source(self, layer) -> dict:
        """The worker's arguments that make a CTC folder's tracking a `track` output first, where
        it is not one yet."""
        path = Path(layer.metadata[TRACK_OUTPUT])
        folder = layer.metadata.get(CTC_TRACKING)
        return {"ctc": folder, "unit": layer_unit(layer)} if folder and not path.exists() else {}

    def _chosen(self, *_):
        layer = self._layer()
        self._rows = {}
        if layer is None:
            return
        layer.events.selected_label.connect(self._picked)
        try:
            from halo_seg.tracking.edit import TrackOutput
            output = (layer.metadata or {}).get(TRACK_OUTPUT)
            if layer.metadata.get(CTC_TRACKING) and not (output and Path(output).exists()):
                from halo_seg.io.ctc_tracking import lineage_file, read_lineage   # not edited yet: its lineage
                from halo_seg.tracking.lineage_edits import rows_of
                self._rows = rows_of(read_lineage(lineage_file(layer.metadata[CTC_TRACKING])))
            else:
                self._rows = TrackOutput(self._path(layer)).rows
        except Exception as exc:
            self.status.setText(f"error: {exc}")
        self._describe()

    def _picked(self, event=None):
        layer = self._layer()
        if layer is not None and layer.selected_label in self._rows:
            self.track.setValue(int(layer.selected_label))

    def _describe(self, *_):
        from halo_seg.tracking.lineage_edits import describe
        lines = [describe(self._rows, k) for k in (self.track.value(), self.other.value()) if k in self._rows]
        self.about.setText("\n".join(lines))

    def _timepoint(self, layer) -> int:
        return int(round(float(layer.world_to_data(self.viewer.dims.point)[0])))

    # -- edits -------------------------------------------------------------------------------------
    def run(self):
        self._edit("edit")

    def undo(self):
        self._edit("undo")

    def write_strokes(self):
        self._edit("paint")

    def _edit(self, kind: str):
        if self.worker is not None:
            self.status.setText("busy: wait or press Cancel")
            return
        layer = self._layer()
        if layer is None:
            self.status.setText("error: no tracked labels: follow a time-lapse's objects over time (Objects widget) "
                                "or open a `halo-seg track` output")
            return
        try:
            path = self._path(layer)
        except ValueError as exc:
            self.status.setText(f"error: {exc}")
            return
        choice = self.op.currentText()
        op, a, b, t = OPS[choice], self.track.value(), self.other.value(), self._timepoint(layer)
        if choice == CUT:
            b = t
        elif choice == NO_MOTHER:
            a, b = 0, self.other.value()
        if kind != "edit":
            op = kind
        what = {"undo": "undoing the latest edit", "paint": "writing the strokes into the tracking"}.get(kind, choice)
        # not to be cancelled half way: the layer would no longer mirror the file (an edit takes seconds)
        first = self._source(layer)
        if first:
            what = f"making {Path(first['ctc']).name} a `track` output, then {what}"
        self._start(f"{what} ...", edit_in_worker, path, op, a, b, t, _in_memory(layer), tuple(layer.scale[-3:]),
                    None, **first, on_done=lambda outcome: self._edited(outcome, layer, path))
        self.cancel_btn.setEnabled(False)

    def save(self, dest: str | None = None):
        """The tracking (with its edits) saved as a copy, or as a Cell Tracking Challenge result."""
        if self.worker is not None:
            self.status.setText("busy: wait or press Cancel")
            return
        layer = self._layer()
        try:
            if layer is None:
                raise ValueError("no tracked labels to save")
            path = self._path(layer)
        except ValueError as exc:
            self.status.setText(f"error: {exc}")
            return
        if dest is None:
            from qtpy.QtWidgets import QFileDialog
            dest, _ = QFileDialog.getSaveFileName(self, "save tracking (.zarr, or a CTC result folder)",
                                                  f"{layer.name}.zarr")
            if not dest:
                return
        self._start(f"saving the tracking as {dest} ...", _save_in_worker, path, dest, _in_memory(layer),
                    tuple(layer.scale[-3:]), None, **self._source(layer),
                    on_done=lambda outcome: self._saved(outcome, layer, path))
        self.cancel_btn.setEnabled(False)   # strokes written first are an edit: whole or not at all

    def _saved(self, outcome, layer, path):
        done, exc = outcome
        if exc is not None:
            self._chosen()   # the lineage as the file has it now
            return self._failed(exc)
        saved, shown = done
        first = "the strokes painted written into the tracking, then " if shown else ""
        if shown:
            self._show(layer, path, *shown)
        if saved.suffix.lower() == ".zarr":   # edits from now on go into the copy, which the user keeps
            for lay in self.viewer.layers:
                if (lay.metadata or {}).get(TRACK_OUTPUT) == str(path):
                    lay.metadata = {**lay.metadata, TRACK_OUTPUT: str(saved)}
            return self._succeeded(f"{first}saved {saved}; edits from now on go into it")
        self._succeeded(f"{first}saved {saved} (a Cell Tracking Challenge result: mask*.tif, res_track.txt)")

    def _edited(self, outcome, layer, path):
        done, exc = outcome
        if exc is not None:
            self._chosen()   # the lineage as the file has it now
            return self._failed(exc)
        edited, shown = done
        self._show(layer, path, *shown)
        self._succeeded(f"{edited.text}; {tracking_text(edited.tracks, edited.divisions)}")

    def _show(self, layer, path, points, graph, rows, lineage):
        """The layers as the output now is: labels (read again where shown from the file), what the
        cursor shows, the Tracks layer's paths and lineage."""
        if not isinstance(layer.data, np.ndarray):
            # shown from the file: read again under a new name, so that no chunk cached from before is shown
            import uuid

            import dask.array as da
            import zarr
            layer.data = da.from_zarr(zarr.open_group(str(path), mode="r")["labels"],
                                      name=f"tracked-{uuid.uuid4().hex}")
        layer.features = track_features(rows, layer_unit(layer))
        layer.refresh()
        paths = next((lay for lay in self.viewer.layers if isinstance(lay, napari.layers.Tracks)
                      and (lay.metadata or {}).get(TRACK_OUTPUT) == str(path)), None)
        if paths is None and len(points):   # none yet (no object was followed), or removed
            paths = self.viewer.add_tracks(points, graph=graph, name=f"{layer.name} paths", tail_length=10,
                                           scale=layer.scale, translate=layer.translate,
                                           metadata={TRACK_OUTPUT: str(path)})
        elif paths is not None:
            if len(points):
                paths.graph = {}   # the old graph may name tracks the new rows no longer hold
                paths.data = points
                paths.graph = graph
            else:   # napari cannot show a Tracks layer without a point
                self.viewer.layers.remove(paths)
        self._rows = lineage
        self._describe()
