"""The interactive widget's "All to next time point" (and to the previous one): every object of the
objects layer at the time point shown carried to the next one at once, each as Next time point
carries one (halo_seg.interactive.carry_all), in a worker with progress and Cancel, then committed
there under new ids, each with the link to the object it was carried from; Undo takes them all
back out. A mixin of InteractiveWidget (_interactive_widget.py), whose state and layers it uses."""
from __future__ import annotations

import numpy as np

from halo_seg.interactive.carry_all import place_all

from ._interactive_names import OBJECTS
from ._interactive_objects import _flat_indices
from ._interactive_paths import box_centre
from ._interactive_time import show_time, time_shown, widen
from ._kept_objects import union_box
from ._measure import CARRIED, layer_links, set_rows
from ._timelapse import timelapse_data

CARRIED_ALL = "carried all"   # _last_commit's mark: Undo takes the objects back out, no session step


class CarryAllActions:
    """All to next (previous) time point, and its Undo."""

    def all_to_next_timepoint(self):
        self.carry_all_objects(1)

    def all_to_previous_timepoint(self):
        self.carry_all_objects(-1)

    def carry_all_objects(self, direction: int = 1):
        """Every object committed at the time point shown carried to the next (``direction`` -1: the
        one before); nothing is committed where it is cancelled or fails."""
        from halo_seg.interactive.carry_all import carry_all
        if self._busy():
            return
        what = "All to next time point" if direction > 0 else "All to previous time point"
        layer = self._layer(self.image.currentText())
        series = None if layer is None else timelapse_data(layer)
        if series is None:
            self.status.setText(f"{what} works on a time-lapse image (T, Z, Y, X)")
            return
        if self.seg is not None and (self.seg.mask_box() is not None or self.seg.has_prompts):
            self.status.setText(f"the current object is not committed: Commit or Reset it first ({what} carries "
                                "the objects committed at the time point shown)")
            return
        objects = self._layer(OBJECTS)
        t = time_shown(self.viewer, layer, len(series))
        if objects is None or objects.data.ndim != 4:
            self.status.setText(f"no object committed at time point {t}: {what} carries the objects committed there")
            return
        view = objects.data[t]   # read in the worker: a pass over a large time point would hold napari
        t1 = t + direction
        done_before = _followed_to(objects.features, t, t1)   # carried there already (Next time point): left as they are
        if not 0 <= t1 < len(series):
            self.status.setText(f"time point {t} is the {'last' if direction > 0 else 'first'}: nothing to carry to")
            return
        axis = self._view_axis()
        show_time(self.viewer, layer, t1)
        if self._guard(lambda: self._session(axis)) is None:   # the session of time point t1 (refused: said)
            show_time(self.viewer, layer, t)
            return
        key, volume = self._session_key, series[t1]
        records = {k: r for k, r in self._records.items() if r["t"] == t and r.get("image") == key[0]}

        there = objects.data[t1]

        def work():
            from halo_seg.interactive.new_cells import new_cells
            labels = np.array(view)   # a copy: what the user paints meanwhile is not half read
            held = labels.copy()      # every object there: a cell none held is not new at t1 (new_cells before)
            if done_before:
                labels[np.isin(labels, list(done_before))] = 0
            carried = carry_all(lambda: self._new_segmenter(layer, volume, key, axis), labels, t, records, direction,
                                axis, cancel=self._cancel.is_set, progress=self._bridge.progressed.emit,
                                image=series[t])
            # the cells no object will hold there (came in, a daughter left out): with the carried objects
            # placed on a copy as the commit will place them
            ahead = np.array(there)
            place_all(carried, ahead, int(ahead.max()) + 1)
            return carried, new_cells(volume, ahead, before=(series[t], held)) if carried else []

        def done(result):
            carried, new = result
            if not carried:
                self.status.setText(f"no object committed at time point {t}" + (
                    f" but those already followed to time point {t1} ({_ids(sorted(done_before))})"
                    if done_before else "") + f": {what} carries the objects committed there")
                show_time(self.viewer, layer, t)
                return
            marks, last = self._marks_now(), self._last_commit
            if not self._commit_carried(objects, carried, t, t1, key[0], sorted(done_before)):
                return
            if self._last_commit is not last:   # committed some: its Undo shows the marks as they were
                self._marks_before = marks
            self._mark_new_cells(new, t1, key[0])
        self._start(f"carrying the objects of time point {t} to {t1} ...", work, on_done=done)

    def _commit_carried(self, objects, carried, t: int, t1: int, image, before=()) -> bool:
        """Write the carried objects into the objects layer at ``t1`` under new ids, each where no
        earlier object is, with its row (measurements, the id it was carried from), its record (Next
        time point carries it on) and its point of the paths; Undo takes them all back out. False
        (said) where the objects layer is gone or changed shape meanwhile."""
        written = self._write_objects(objects, carried, t1, image, t)
        if written is None:
            return False
        placed, gone, covered, dim, first, k = written
        split = [p.id for p in placed if p.carried.two]
        left_out = [p.id for p in placed if p.carried.grown_from is not None]
        crowded = [p.id for p in placed if p.free.sum() < 0.5 * p.carried.mask.sum()]
        made, n = k - first, sum(c.grown_from is None for c in carried)   # carried also holds the cells left out
        text = (f"carried {n} object{'s' if n > 1 else ''} from time point {t} to {t1}: "
                + (f"objects {first} to {k - 1}" if made > 1 else f"object {first}" if made else "none committed")
                + f" ({self.last_seconds:.1f}s)")
        if before:
            text += (f"; {_ids(list(before))} of time point {t} followed there already: left as "
                     + ("it is" if len(before) == 1 else "they are"))
        if gone:
            text += f"; nothing found for {_ids(gone)} of time point {t}"
        if covered:
            text += f"; {_ids(covered)} of time point {t} found only where another object is: not committed"
        if dim:
            text += (f"; {_ids(dim)} of time point {t} faded into the background there (left the field or gone?): "
                     f"not committed (Next time point on {'it' if len(dim) == 1 else 'one'} carries it alone)")
        if crowded:
            text += f"; {_ids(crowded)} found mostly where another object is (check {'it' if len(crowded) == 1 else 'them'})"
        if split:
            text += (f"; {_ids(split)} look{'s' if len(split) == 1 else ''} like two cells touching (divided?): "
                     "Edit label, then Commit as two")
        if left_out:
            text += (f"; {_ids(left_out)} {'is a cell' if len(left_out) == 1 else 'are cells'} an object had grown "
                     f"over, left out of it (check {'it' if len(left_out) == 1 else 'them'})")
        self.status.setText(text + ("; Undo takes them back out" if made else ""))
        return True

    def _write_objects(self, objects, carried, t1: int, image, t: int | None = None):
        """Write ``carried`` (carry_all's Carried; label 0: carried from nothing, a new cell) into the
        objects layer at ``t1`` under new ids where no object is yet (place_all), each with its row
        (measurements, the id it was carried from), its record and its point of the paths (and, where
        it was carried from time point ``t``, its source's, if that has none); Undo takes them all
        back out. None (said) where the objects layer is gone or changed; else (placed, gone,
        covered, faded, the first id, the id after the last)."""
        if objects not in self.viewer.layers or objects.data.ndim != 4 or t1 >= len(objects.data):
            self.status.setText("the objects layer is gone or changed shape meanwhile; nothing was committed")
            return None
        data = objects.data
        here = data[t1]
        first = int(data.max()) + 1   # of every time point: an id is one object
        where, new, centres, boxes, records, rows, region = [], [], {}, {}, {}, [], None
        placed, gone, covered, dim = place_all(carried, here, first)   # never over another object, nor noise
        for p in placed:
            c, k, big = p.carried, p.id, widen(p.carried.box, t1)
            where.append(_flat_indices(p.free[None], big, data.shape))
            new.append(np.full(len(where[-1]), k, data.dtype))
            rows.append({"index": k, **({CARRIED: c.label} if c.label else {}),
                         **self._object_row(p.free, k, c.box, t1)})
            centres[k], boxes[k] = (t1, *box_centre(p.free, c.box)), big
            records[k] = {**c.record, "label": k, "image": image}
            region = union_box(region, big)
        objects.refresh()
        if rows:
            set_rows(objects, rows)
        known = self._centre_store(objects)
        for c in carried:   # an object painted or edited there, never committed here: its point of the path
            if c.label and c.label not in known and c.was is not None:
                centre = box_centre(np.asarray(data[t][c.was]) == c.label, c.was)
                if centre is not None:
                    centres[c.label], boxes[c.label] = (t, *centre), widen(c.was, t)
        if where:
            flat = np.concatenate(where)
            self._last_commit = (objects, flat, np.zeros(len(flat), data.dtype), np.concatenate(new), CARRIED_ALL)
            self._keeper.write(objects, region)
            self._records.update(records)
            self._set_centres(objects, centres, boxes)
            objects.selected_label = first   # Next time point follows the one selected
        self._carry, self._carry_source = None, None
        return placed, gone, covered, dim, first, first + len(placed)

    def _undo_carried(self):
        """Take the objects of the last All to next time point (or Add marked cells) back out, and
        show the marks of the cells no object held as they were before it."""
        points, cells = self._marks_before
        self._new_cells = cells
        self._set_marks(points)
        layer, new, _, _ = self._revert_commit()
        labels = [int(v) for v in np.unique(new)]
        self._forget_objects(layer, labels)
        self.status.setText(f"objects {labels[0]} to {labels[-1]} taken back out of {layer.name}" if len(labels) > 1
                            else f"object {labels[0]} taken back out of {layer.name}")


def _followed_to(features, t: int, t1: int) -> set[int]:
    """The objects of time point ``t`` followed to ``t1`` already: those an object there was carried from."""
    if features is None or "timepoint" not in features:
        return set()
    when = {int(i): int(w) for i, w in zip(features["index"], features["timepoint"]) if w == w}   # NaN: not known
    return {k for i, k in layer_links(features).items() if when.get(i) == t1 and when.get(k) == t}


def _ids(labels: list) -> str:
    return f"object {labels[0]}" if len(labels) == 1 else "objects " + ", ".join(map(str, labels))
