"""The interactive widget's marks of the cells no object holds after All to next time point (cells
that came into the field, a daughter her mother's object left out: halo_seg.interactive.new_cells)
and "Add marked cells", which segments each from a box and commits it as a new object. A mixin of
InteractiveWidget (_interactive_widget.py), whose state and layers it uses."""
from __future__ import annotations

import numpy as np

from ._interactive_names import IMAGE_KEY, NEW_CELLS, OBJECTS
from ._interactive_time import show_time
from ._timelapse import timelapse_data


class NewCellActions:
    """The marks of the cells no object holds, and Add marked cells."""

    def _marks_now(self):
        """The marks of the cells no object holds as they are: (points, the cells they mark)."""
        layer = self._layer(NEW_CELLS)
        return (np.zeros((0, 4)) if layer is None else np.array(layer.data), self._new_cells)

    def _mark_new_cells(self, cells: list, t1: int, image):
        """Mark the centres of the cells no object holds at time point ``t1`` of ``image`` (the session's
        image key; new_cells) in their points layer (made at the first; the last carry's only), kept
        for Add marked cells, and say how many there are."""
        self._keep_marks(t1, image, cells)
        if cells:
            n = len(cells)
            self.status.setText(self.status.text() + (
                f"; {n} cell{'s' if n > 1 else ''} no object holds at time point {t1} (came in? a daughter left "
                f"out?): marked in '{NEW_CELLS}'; Add marked cells adds {'it' if n == 1 else 'them'} (delete a mark "
                "to leave its cell out), or box one to follow it"))

    def _keep_marks(self, t1: int, image, cells: list):
        """``cells`` (new_cells's, at time point ``t1`` of ``image``) kept for Add marked cells and marked."""
        self._new_cells = (t1, image, cells)
        self._set_marks(np.array([(t1, *c.centre) for c in cells], float).reshape(-1, 4))

    def _set_marks(self, points: np.ndarray):
        layer = self._layer(NEW_CELLS)
        if layer is None and not len(points):
            return
        if layer is None:
            objects = self._layer(OBJECTS)
            active = self.viewer.layers.selection.active
            self.viewer.add_points(points, name=NEW_CELLS, symbol="ring", size=12, face_color="transparent",
                                   border_color="orange", scale=objects.scale, translate=objects.translate,
                                   metadata={k: objects.metadata.get(k) for k in ("image", IMAGE_KEY)})
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active   # clicks go where they went
        else:
            layer.data = points

    def add_marked_cells(self):
        """The cells the last All to next time point marked (no object held them) whose marks are
        left in their points layer, each segmented from a box on its largest slice and propagated
        (new_cells.segment_new), in a worker, then committed at that time point as new objects,
        carried from nothing (Next time point and All to next time point carry them on); a marked cell
        that gave nothing stays marked, a cell whose mark was deleted stays unmarked; Undo takes them
        back out and brings their marks back."""
        from halo_seg.interactive.new_cells import segment_new
        if self._busy():
            return
        layer = self._layer(self.image.currentText())
        series = None if layer is None else timelapse_data(layer)
        marks, objects = self._layer(NEW_CELLS), self._layer(OBJECTS)
        if series is None or self._new_cells is None or marks is None or objects is None or objects.data.ndim != 4:
            self.status.setText("no cells marked: All to next time point marks the cells no object holds where it "
                                "carried the objects to; Add marked cells adds them")
            return
        t1, image, cells = self._new_cells
        kept = [c for c in cells if any(np.allclose(p, (t1, *c.centre)) for p in np.asarray(marks.data))]
        if not kept:
            self.status.setText(f"no marks left of the cells no object held at time point {t1}: nothing to add")
            return
        if self.seg is not None and (self.seg.mask_box() is not None or self.seg.has_prompts):
            self.status.setText("the current object is not committed: Commit or Reset it first (Add marked cells "
                                "commits new objects)")
            return
        show_time(self.viewer, layer, t1)
        if self._guard(lambda: self._session(0)) is None:   # the session of time point t1 (refused: said)
            return
        key, volume = self._session_key, series[t1]
        if key[0] != image:
            self.status.setText("the cells were marked on another image: nothing to add")
            return

        def work():   # cell by cell: which gave nothing stays known (segment_new leaves those out)
            from halo_seg.interactive.carry import noise_level
            level = noise_level(volume)   # of the one volume, once
            return [(c, segment_new(lambda: self._new_segmenter(layer, volume, key, 0), [c], t1,
                                    cancel=self._cancel.is_set, noise=level)) for c in kept]

        def done(pairs):
            marks_before = self._marks_now()
            added = [got[0] for _, got in pairs if got]
            written = self._write_objects(objects, added, t1, image)
            if written is None:
                return
            placed, _, _, _, first, k = written
            if placed:
                self._marks_before = marks_before
                # marked still: the cells that gave nothing (not those whose marks were deleted: left out)
                taken = [p.carried for p in placed]
                self._keep_marks(t1, image, [c for c, got in pairs if not any(g is d for g in got for d in taken)])
            made, lost = k - first, len(kept) - len(placed)
            text = (f"added {made} new object{'s' if made != 1 else ''} at time point {t1}"
                    + (f": objects {first} to {k - 1}" if made > 1 else f": object {first}" if made else "")
                    + f" ({self.last_seconds:.1f}s)")
            if lost:
                text += f"; {lost} of the {len(kept)} marked gave nothing where no object is"
            self.status.setText(text + ("; Undo takes them back out" if made else ""))
        self._start(f"segmenting the {len(kept)} marked cell{'s' if len(kept) > 1 else ''} ...", work, on_done=done)
