"""The interactive widget's files: the current object's session saved and opened (and kept after
every propagation under the user's data directory), and the quality model learned from the
committed objects. A mixin of InteractiveWidget (_interactive_widget.py), whose state it uses."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._interactive_names import OBJECTS, _identity
from ._paths import file_stem, last_session_path, learned_dir
from ._timelapse import timelapse_data

MIN_LEARN = 3   # committed objects before the quality model is adjusted to them (measured with 3, 6 and 12)
MAX_LEARN = 12  # the most recent (highest ids) are used: 12 did no better than 6, and time grows with each


class SessionActions:
    """Save session, Open session, the session kept after every propagation, Learn from objects."""

    def learn_quality(self):
        """Fit the quality model to the committed objects (simulated sessions on them, pooled with the
        data the weights' shipped model was fitted on where it exists), then use it."""
        if self._busy():
            return
        objects = self._layer(OBJECTS)
        if objects is None:
            self.status.setText(f"commit at least {MIN_LEARN} objects first (none so far): they are what the "
                                "quality model learns from")
            return
        seg = self._guard(lambda: self._session(self._axis()))
        if seg is None:
            return
        from halo_seg.interactive.quality import sample_path_for
        from halo_seg.io.labels import label_ids
        from halo_seg.train.quality_fit import fit_quality
        layer, data = self._image_layer()
        pool = "auto" if sample_path_for(seg.weights_meta).exists() else None
        # of a time-lapse, the objects of the time point worked on, over its volume
        source, cancel = self._here(objects), self._cancel.is_set
        at = "" if self._at(objects) is None else f" at time point {self._t}"

        def work():
            # in the worker: listing the ids and the snapshot are passes over the whole layer (seconds on a
            # large one); the snapshot, because the user may paint on while the model is fitted
            ids = label_ids(source, cancel=cancel, what=f"layer {objects.name!r}")
            if len(ids) < MIN_LEARN:
                raise ValueError(f"commit at least {MIN_LEARN} objects first ({len(ids)} so far{at}): they are "
                                 "what the quality model learns from")
            labels = np.array(source)
            n_all, ids = len(ids), ids[-MAX_LEARN:]
            which = f"{len(ids)} objects" if len(ids) == n_all else f"the {len(ids)} latest of {n_all} objects"
            model, _ = fit_quality(data, labels, ids, weights=seg.weights_meta["path"],
                                   spacing=tuple(layer.scale[-3:]), device=str(seg.device),
                                   data_note=f"{len(ids)} objects committed in napari on {layer.name!r}{at}",
                                   log=lambda *_: None, pool=pool, cancel=cancel,
                                   progress=self._bridge.progressed.emit)
            return model, which

        def done(result):
            model, which = result
            seg.use_quality_model(model)
            try:
                path = learned_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{file_stem(layer.name)}.quality.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                model.save(path)
            except OSError as exc:   # unsaved, but this session still uses it
                self.status.setText(f"quality model adjusted to {which} and in use, but not saved: {exc}")
                return
            self.quality.blockSignals(True)
            self.quality.refresh()
            self.quality.select(path.name)
            self.quality.blockSignals(False)
            r = model.meta["metrics"]["tta"]["pearson_r_fit"]
            self.status.setText(f"quality model adjusted to {which} in {self.last_seconds:.0f}s "
                                f"(r of the fit {r:.2f}), saved as {path}; it applies from the next propagation")
        self._start("learning from the committed objects ...", work, on_done=done)

    def _kept_path(self) -> Path:
        """Where propagations keep the chosen image's session: by its name and the file it came from
        (else its shape and voxel size), so that two images of one name keep theirs apart."""
        name = self.image.currentText()
        layer = self._layer(name)
        if layer is None:
            return last_session_path(name)
        return last_session_path(name, _identity(layer))

    def _kept_session_path(self) -> Path:
        """Where propagations keep the current object's session: of a time-lapse, one per time point
        (each is a volume of its own; the objects of all are kept in one file, _kept_path's)."""
        path = self._kept_path()
        return path if self._t is None else path.with_name(path.name.replace(".last.npz", f".t{self._t:04d}.last.npz"))

    def _ask_session_path(self, title: str) -> str:
        """A file dialog opened where the kept sessions are; '' when cancelled."""
        from qtpy.QtWidgets import QFileDialog
        start = str(self._kept_path().parent)
        ask = QFileDialog.getSaveFileName if title.startswith("Save") else QFileDialog.getOpenFileName
        return ask(self, title, start, "halo-seg session (*.npz)")[0]

    def save_session(self, path: str | None = None):
        """Save the current object's session (prompts, trusted slices, last propagation) to a file."""
        if self._busy() or self.seg is None:
            return
        path = path or self._ask_session_path("Save session")
        if not path:
            return
        self._start("saving the session ...", self.seg.save_session, path,
                    on_done=lambda written: self.status.setText(f"session saved as {written}"))

    def open_session(self, path: str | None = None):
        """Go on with a saved session on the chosen image as the current object (read in the worker).
        Refused while the current object has slices or prompts (commit or reset it first), so that
        none is lost."""
        if self._busy():
            return
        if self.seg is not None and (self.seg.annotated_slices or self.seg.has_prompts):
            self.status.setText("the current object has slices or prompts: Commit or Reset it first (Undo brings "
                                "a reset object back), then open the session")
            return
        path = path or self._ask_session_path("Open session")
        if not path:
            return

        def choices():
            self.ensure_prompt_layers()
            layer, data = self._image_layer(shown=True)
            series = timelapse_data(layer)   # of a time-lapse, the time point shown is the session's
            t = None if series is None else self._time_point(layer, len(series), shown=True)
            weights = self.weights.currentText().strip() or "default"
            return layer, data, weights, self.device.currentText(), t
        chosen = self._guard(choices)
        if chosen is None:
            return
        layer, data, weights, device, t = chosen

        def opened(seg):
            self._last_commit, self._editing = None, None
            self.seg, self._session_key = seg, ((layer.name, _identity(layer)), weights, device, seg.axis, t)
            self._sent, self._strokes_sent = set(), {}
            self.recommended = self._guard(seg.recommend_slice) if seg.restored_propagation else None
            self._show()
            self._guard(self._sync_prompt_layers)   # its clicks, boxes and strokes, where they were drawn
            later = "" if seg.restored_propagation else "; Propagate to recompute it with these weights"
            n = len(seg.annotated_slices)
            self.status.setText(f"session opened: {n} trusted slice{'' if n == 1 else 's'} across axis "
                                f"{seg.axis}" + ("" if t is None else f" at time point {t}") + later)
        from halo_seg import InteractiveSegmenter
        self._start("opening the session ...", InteractiveSegmenter.from_session, path, data,
                    spacing=tuple(layer.scale[-3:]), device=device, weights=weights,
                    quality_model=self._quality_choice(), strict_ends=self.strict.isChecked(), on_done=opened)
