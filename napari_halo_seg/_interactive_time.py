"""The interactive widget on a time-lapse image (T, Z, Y, X): an object is segmented, propagated and
committed in the volume of one time point, the one shown when it was begun.

The working layers of such an image are (T, Z, Y, X) like it (the Labels zero-filled by calloc, so
that time points never drawn on take no memory; Points and Shapes with a t coordinate), so that
what is drawn, previewed and committed shows at its own time point only, and the objects of every
time point are one Labels layer over the time-lapse. A 3D layer would show at every time point. The
widget's 3D logic reads and writes the layers of the object's time point through the views here,
which keep what lies at other time points as it is.
"""
from __future__ import annotations

import numpy as np


def time_shown(viewer, layer, n: int) -> int:
    """The time point of a (.., T, Z, Y, X) layer that the viewer shows, within 0..n-1."""
    t = int(round(float(layer.world_to_data(viewer.dims.point)[layer.ndim - 4])))
    return min(max(t, 0), n - 1)


def show_time(viewer, layer, t: int) -> None:
    """Move the view to time point ``t`` of a (.., T, Z, Y, X) layer."""
    at = [0.0] * layer.ndim
    at[layer.ndim - 4] = t
    viewer.dims.set_point(viewer.dims.ndim - 4, float(layer.data_to_world(at)[layer.ndim - 4]))


class PointsAt:
    """The points of a 4D Points layer at time point ``t``, as (n, 3) rows; setting them replaces
    only those."""

    def __init__(self, layer, t: int):
        self.layer, self.t = layer, int(t)

    def _split(self):
        d = np.asarray(self.layer.data, float).reshape(-1, 4)
        return d, np.round(d[:, 0]) == self.t

    @property
    def data(self) -> np.ndarray:
        d, at = self._split()
        return d[at][:, 1:]

    @data.setter
    def data(self, value):
        d, at = self._split()
        value = np.asarray(value, float).reshape(-1, 3)
        self.layer.data = np.concatenate([d[~at], np.column_stack([np.full(len(value), float(self.t)), value])])


class ShapesAt:
    """The shapes of a 4D Shapes layer lying at time point ``t``, each as (corners, 3)."""

    def __init__(self, layer, t: int):
        self.layer, self.t = layer, int(t)

    def _index(self) -> list[int]:
        return [i for i, s in enumerate(self.layer.data) if np.all(np.round(np.asarray(s)[:, 0]) == self.t)]

    @property
    def data(self) -> list:
        return [np.asarray(self.layer.data[i])[:, 1:] for i in self._index()]

    @data.setter
    def data(self, value):
        drop = self._index()
        if drop:
            self.layer.selected_data = set(drop)
            self.layer.remove_selected()
        if len(value):
            self.add_rectangles(list(value))

    def _select(self, which):
        index = self._index()
        self.layer.selected_data = {index[i] for i in which}

    selected_data = property(fset=_select)   # set only, as the prompt layers' sync does

    def remove_selected(self):
        self.layer.remove_selected()

    def add_rectangles(self, rects):
        self.layer.add_rectangles([np.column_stack([np.full(len(r), float(self.t)), np.asarray(r, float)])
                                   for r in rects])


class LabelsAt:
    """A 4D Labels layer's volume at time point ``t`` (a view: writing it writes the layer)."""

    def __init__(self, layer, t: int):
        self.layer, self.t = layer, int(t)

    @property
    def data(self) -> np.ndarray:
        return self.layer.data[self.t]

    def refresh(self):
        self.layer.refresh()


def at_time(layer, t: int):
    """The view of a 4D working layer at time point ``t``."""
    import napari
    if isinstance(layer, napari.layers.Points):
        return PointsAt(layer, t)
    if isinstance(layer, napari.layers.Shapes):
        return ShapesAt(layer, t)
    return LabelsAt(layer, t)


def widen(box, t: int | None):
    """A (Z, Y, X) box at time point ``t`` as a box of the (T, Z, Y, X) layer (unchanged for None)."""
    return box if t is None or box is None else (slice(t, t + 1),) + tuple(box)


def narrow(box, t: int | None):
    """The (Z, Y, X) part at time point ``t`` of a box of a (T, Z, Y, X) layer, or None where the box
    does not reach it (unchanged for a 3D layer: ``t`` None)."""
    if t is None or box is None:
        return box
    return tuple(box[1:]) if box[0].start <= t < box[0].stop else None


def division_note(seg, box, label: int, t: int, before=None, t_before: int | None = None,
                  bounds: tuple | None = None, grown: dict | None = None) -> str:
    """The status line's note where the object carried to time point ``t`` looks like two cells
    touching (halo_seg.interactive.carry.two_cells): the mother's box took in both daughters, or
    (``before``: the objects layer's volume at ``t_before``, the time point it came from) a cell's box took in
    the touching cell committed next to it there too, or (``bounds``: where the object lay there) a
    touching cell no object held there, the object having grown over it (carry.took_in): then
    ``grown`` gets its ``parts`` (masks of ``box``, its own first), which Next (Previous) time point
    pressed again commits apart."""
    from halo_seg.interactive.carry import part_sources, touching_parts
    parts, own = touching_parts(seg.prediction_in(box), box, seg.volume_spacing, before, label, bounds)
    if parts is None:
        return ""
    other = [k for k in (part_sources(parts, box, before, label) if before is not None else []) if k != label]
    if other:
        return (f". It looks like two cells touching at time point {t}: object {label}'s and object {other[0]}'s, "
                f"committed next to it at time point {t_before}: Commit as two commits them apart, each "
                "carried from its own")
    if own is not None:
        said = (f". It looks like two cells touching at time point {t}: object {label}'s and a touching cell it "
                f"grew over (one part lies where it was not at time point {t_before})")
        if grown is None or t_before is None:
            return said + ": Commit as two commits them apart, the other as a new cell"
        grown["parts"] = [parts[own], parts[1 - own]]
        return (said + f": {'Previous' if t_before > t else 'Next'} time point commits them apart (its own part "
                "followed on, the other as a new cell), as Commit as two does; Commit object keeps them as one")
    return (f". It looks like two cells touching at time point {t} (object {label} divided?): Commit as two "
            "commits them as two objects (Commit object keeps them as one)")


def fade_note(seg, box, record: dict, t: int, image, image_before, before=None) -> str:
    """The status line's note where the object carried to time point ``t`` (``box``: where the
    session's result lies; ``image``: the volume there) has faded into the background
    (halo_seg.interactive.carry.faded): its contrast there under half of its contrast where it came
    from (``record``'s, else measured in ``image_before`` where ``before``, the objects layer's volume
    at the record's time point, holds it): the cell left the field or is gone, and what was found is
    noise (the contrasts compared in units of each volume's noise level: a time point taken darker as
    a whole is not faded)."""
    from halo_seg.interactive.carry import contrast, faded, noise_level, recorded_contrast, recorded_noise
    was = recorded_contrast(record, image_before, before)
    now = contrast(image, seg.prediction_in(box), box)
    if was is None or now is None:
        return ""
    noise = (recorded_noise(record, image_before), noise_level(image))
    if not faded(was, now, noise=noise):
        return ""
    said = f"contrast {now:.3g}, {was:.3g} at time point {record['t']}"
    if all(noise):   # as compared: in each volume's noise
        said = (f"contrast {now / noise[1]:.3g} times its noise level, {was / noise[0]:.3g} at time point "
                f"{record['t']}")
    return (f". It has faded into the background at time point {t} ({said}): left the field or gone? Reset drops "
            "it (Commit object keeps it)")


class TimeActions:
    """"Next time point": the object of this time point committed, and looked for at the next time
    point with its box where it was and moved by its last step, each replaced by the tight box of
    what the slice's segmentation finds in it, the one the network is surer of (of an area like the
    object's) propagated there (halo_seg.interactive.carry.find_again), so that one cell is
    followed through a time-lapse with a keystroke a time point, corrected where it goes wrong. A
    mixin of InteractiveWidget, whose state and layers it uses."""

    def _selected_record(self, layer, n: int) -> dict | None:
        """What to carry where the objects layer's selected label is not the object committed last
        but an object at the time point shown (the other of Commit as two, an object committed or
        restored before): its record, as committed here, or made from the layer."""
        from halo_seg.interactive.carry import carry_record
        from ._interactive_names import OBJECTS
        objects = self._layer(OBJECTS)
        chosen = 0 if objects is None else int(objects.selected_label)
        if not chosen or objects.data.ndim != 4 or (self._carry is not None and chosen == self._carry["label"]):
            return None
        if self._session_key is None or self.seg is None:
            return None
        t, image = time_shown(self.viewer, layer, n), self._session_key[0]
        record = self._records.get(chosen)
        if record is not None and record["t"] == t and record["image"] == image:   # its step kept
            return record
        mask = np.asarray(objects.data[t]) == chosen
        return {**carry_record(mask, t, None, self.seg.axis, chosen), "image": image} if mask.any() else None

    def _grown_over_now(self) -> dict | None:
        """The parts of the current object where Next (or Previous) time point's note found it had
        grown over a touching cell, if the session still holds what was found then (no correction since; a
        corrected object is committed as the user made it)."""
        cut, self._grown_over = self._grown_over, None
        if cut is None or cut["seg"] is not self.seg or self.seg.mask_box() != cut["box"]:
            return None
        return cut if np.array_equal(self.seg.prediction_in(cut["box"]), cut["pred"]) else None

    def previous_timepoint(self):
        """Next time point backward: to the time point before."""
        self.next_timepoint(direction=-1)

    def next_timepoint(self, direction: int = 1):
        from halo_seg.interactive.carry import carried_boxes, find_again
        from ._layers import show_slice
        from ._timelapse import timelapse_data
        if self._busy():
            return
        layer = self._layer(self.image.currentText())
        series = None if layer is None else timelapse_data(layer)
        what = "Next time point" if direction > 0 else "Previous time point"
        if series is None:
            self.status.setText(f"{what} works on a time-lapse image (T, Z, Y, X)")
            return
        apart = ""
        if self.seg is not None and self.seg.mask_box() is not None:
            if self._editing is not None:
                self.status.setText(f"the current object is a label being edited: Commit it, then {what} "
                                    "carries the objects committed here")
                return
            cut = self._grown_over_now()
            if cut is not None:   # the object grew over a touching cell (the note said so): committed apart
                self._commit_two(self.seg, cut["parts"], cut["box"], self._accepted_first())
            else:
                self.commit()   # the object of this time point first (its status says why, if it could not be)
            if self.seg.mask_box() is not None:
                return
            if cut is not None and self._carry is not None:
                apart = (f"object {self._carry['label']} committed apart from a touching cell it had grown over "
                         f"(object {self._carry['label'] + 1}, a new cell); ")
        record = self._selected_record(layer, len(series)) or self._carry
        if record is None or (record is self._carry and record["t"] != self._t) \
                or record["image"] != (self._session_key or (None,))[0]:
            self.status.setText(f"commit an object at this time point first (or segment one): {what} "
                                f"carries it to the {'next' if direction > 0 else 'one before'}")
            return
        t1 = record["t"] + direction
        if not 0 <= t1 < len(series):
            self.status.setText(f"{apart}time point {record['t']} is the {'last' if direction > 0 else 'first'}; "
                                f"object {record['label']} was committed there")
            return
        axis = record["axis"]
        from halo_seg.interactive.segmenter import axis_order
        boxes = carried_boxes(record, tuple(np.asarray(self.seg.volume_shape)[list(axis_order(axis))]), direction)
        show_time(self.viewer, layer, t1)
        show_slice(self.viewer, layer, axis, boxes[-1][0])
        self._carry_source = record
        found = {}

        def first(seg):
            # the box where the object was and the box moved by its last step, each replaced by the
            # tight box of what it finds on its slice; the one the network is surer of is propagated,
            # widened where it finds well under the object's area (a cell that grew out of it)
            at = found["at"] = find_again(seg, boxes, record.get("area"))
            z, which = (boxes[-1][0], len(boxes) - 1) if at is None else (at.slice, at.which)
            how = "moved by its last step" if which > 0 else "where it was"
            if at is None:
                how += f", on slice {z}, nothing found in it"
            else:   # the user sees a box larger than the one carried: why
                how += f", on slice {z}" + (", widened where the cell grew out of it" if at.widened else "")
            return f"its box {how}); "

        said = f"{apart}object {record['label']} carried to time point {t1} ("
        from ._interactive_names import OBJECTS
        objects = self._layer(OBJECTS)
        before = None if objects is None or objects.data.ndim != 4 else objects.data[record["t"]]
        def note(seg, box):
            grown = {}
            text = division_note(seg, box, record["label"], t1, before, record["t"], record.get("bounds"), grown)
            if grown:   # what the session found, so that a correction since is seen (then not cut)
                found["grown_over"] = {**grown, "box": box, "seg": seg, "pred": np.array(seg.prediction_in(box))}
            return text + fade_note(seg, box, record, t1, series[t1], series[record["t"]], before)

        def shown():
            self._grown_over = found.get("grown_over")
            if found.get("at"):
                show_slice(self.viewer, layer, axis, found["at"].slice)

        self._grown_over = None
        self.propagate(first=first, said=said, after=note, shown=shown)
        if self.worker is not None:
            where = " and where its last step takes it" if len(boxes) > 1 else ""
            self.status.setText(f"object {record['label']} carried to time point {t1}: looking for it where it "
                                f"was{where}, propagating ...")
