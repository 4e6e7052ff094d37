"""The interactive widget's objects: Commit (a new id in the objects layer, or an edited label back
into its layer under its id), Edit label, the measurements beside each object, and the objects kept
on disk as they change (Restore objects brings an earlier napari session's back). A mixin of
InteractiveWidget (_interactive_widget.py), whose state and layers it uses."""
from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import QTimer

from halo_seg.interactive.carry import InBox, carry_record, part_sources, two_cells
from halo_seg.interactive.segmenter import LabelMissing
from halo_seg.io.geometry import KEY as GEOMETRY
from halo_seg.measure import volume_text

from ._interactive_names import OBJECTS, WORKING
from ._interactive_paths import box_centre
from ._interactive_time import widen
from ._kept_objects import EARLIER, INTO, KEPT, boxes_union, read_kept, stroke_box, union_box as _union
from ._layers import check_same_grid, on_grid_of
from ._measure import CARRIED, drop_row, layer_links, layer_unit, object_row, set_name, set_row, set_rows
from ._paintable import paintable
from ._timelapse import same_timelapse, timelapse_data


class ObjectActions:
    """Commit, Edit label, Restore objects and the objects layer's brush strokes kept on disk."""

    def _volume_text(self, voxels: int) -> str:
        layer = self._layer(self.image.currentText())
        if layer is None:
            return f"{voxels} voxels"
        return volume_text(voxels * float(np.prod(layer.scale[-3:])), layer_unit(layer))

    def commit(self):
        """Copy the current object into the objects layer under a new id (or, for an edited label, back
        into its layer under its id), then start a new object."""
        if self._busy() or self.seg is None:
            return
        accepted = self._accepted_first()
        if accepted is None:
            return
        pred = self.seg.prediction
        gone = self._into_edited(pred)
        if gone is None:
            return
        box = self.seg.mask_box()
        if box is None:
            self.status.setText("nothing to commit: the current object is empty")
            return
        self._commit_parts([pred[box]], box, gone, accepted)

    def commit_as_two(self):
        """Commit the current object as two objects, split where it narrows between two lobes
        (halo_seg.interactive.carry.two_cells): two touching nuclei taken in by one box, or a dividing
        cell whose carried box took in both daughters (Next time point's note says so); an edited
        label (two nuclei merged in an automatic result) keeps its id for the larger part, the other
        taking a new id of its layer. Three or more lobes: cut at the lowest neck (two_cells's
        at_neck), so that one comes off whole and Commit as two again parts the rest. Refused, with
        nothing changed, where it does not look like two."""
        if self._busy() or self.seg is None:
            return
        accepted = self._accepted_first()
        if accepted is None:
            return
        seg = self.seg
        box = seg.mask_box()
        if box is None:
            self.status.setText("nothing to commit: the current object is empty")
            return

        def done(parts):
            if parts is None:
                self.status.setText("the current object does not look like two touching (no neck between two "
                                    "lobes): nothing committed; Commit object commits it as one")
                return
            self._commit_two(seg, parts, box, accepted)
        # in the worker: split in the object's box, small beside the volume but not always small
        self._start("splitting ...", lambda: two_cells(seg.prediction_in(box), seg.volume_spacing, at_neck=True),
                    on_done=done)

    def _commit_two(self, seg, parts, box, accepted: str | None):
        """Commit ``parts`` (two masks of ``box``) as two objects, each linked to the object it was
        carried from: the larger first, or the followed cell's part (a touching cell it grew over, or
        the cell committed next to it, then carried from its own)."""
        if accepted is None:   # painted slices that could not be accepted: said, nothing committed
            return
        pred = seg.prediction
        # (of the box) the larger first: it keeps an edited label's id, Next time point follows it
        parts = sorted(parts, key=lambda p: -int(p.sum()))
        sources, own = self._part_sources(parts, box), None
        if sources is not None and len(set(sources)) == 1:
            own = self._took_in(parts, box)
            if own is not None:   # a touching cell it grew over (not a daughter): its own part alone carried
                parts, sources = [parts[own], parts[1 - own]], [sources[0], None]
            elif self._carry_source["t"] > self._t:
                sources = [sources[0], None]   # followed back, two from one would be a merge: the larger's link only
        if sources is not None and len(set(sources)) > 1:   # the followed cell's part first: followed on
            first = sources.index(self._carry_source["label"]) if self._carry_source["label"] in sources else 0
            parts, sources = [parts[first], parts[1 - first]], [sources[first], sources[1 - first]]
        gone = self._into_edited(pred, parts, box)
        if gone is not None:
            self._commit_parts(parts, box, gone, accepted, sources, grown=own is not None)

    def _accepted_first(self) -> str | None:
        """The slices painted and not accepted, accepted before a Commit, said; None where that failed
        (the error said, nothing committed)."""
        try:
            return self._accepted_text(self._accept_paint())
        except Exception as exc:  # reported, nothing committed
            self.status.setText(f"error: {exc}")
            return None

    def _into_edited(self, pred, parts=None, box=None) -> str | None:
        """An edited label written back into its layer (None returned; ``parts``, masks of ``box``:
        as two); else what the status line says first of committing it as a new object: '' where no
        label is edited, or that the layer it was taken from is gone (nothing is lost)."""
        if self._editing is None or self.seg.mask_box(prior=True) is None:
            return ""
        if self._editing[0] not in self.viewer.layers:
            return f"the layer {self._editing[0].name!r} it was taken from is gone, so "
        if parts is not None:   # the whole volume's masks, only here (an edited label's box may be larger)
            whole = [np.zeros(pred.shape, bool) for _ in parts]
            for w, p in zip(whole, parts):
                w[box] = p
            parts = whole
        self._commit_edit(pred, parts)
        return None

    def _took_in(self, parts, box) -> int | None:
        """Of a carried object (Next time point) split by Commit as two, both parts lying where the
        object followed was, the index of its own part where it had grown over a touching cell
        (halo_seg.interactive.carry.took_in); None where it divided (or its bounds are not known)."""
        from halo_seg.interactive.carry import took_in
        objects = self._layer(OBJECTS)
        bounds = self._carry_source.get("bounds")
        if objects is None or bounds is None:
            return None
        return took_in(parts, box, objects.data[self._carry_source["t"]], self._carry_source["label"], bounds)

    def _part_sources(self, parts, box) -> list[int] | None:
        """Of a carried object (Next time point) split by Commit as two, the object each part was
        carried from (halo_seg.interactive.carry.part_sources); None where it was not carried."""
        objects = self._layer(OBJECTS)
        at = None if objects is None else self._at(objects)
        followed = self._carried_from(at)
        if followed is None:
            return None
        return part_sources(parts, box, objects.data[self._carry_source["t"]], followed)

    def _commit_parts(self, parts, box, gone: str, accepted: str, sources: list | None = None, grown: bool = False):
        """Write ``parts`` (masks of the object's box) into the objects layer under new ids, each where
        no earlier object is, with its row of measurements; Undo takes them all back out. ``sources``:
        the object each part was carried from, where not the one the current object was (``grown``:
        the second a touching cell the object grew over)."""
        objects = self._layer(OBJECTS)
        at = self._at(objects)   # of a time-lapse, the object's time point (_interactive_time)
        data = self._here(objects)
        first = int(objects.data.max()) + 1   # of every time point: an id is one object
        name = self._take_name()
        followed = self._carried_from(at)
        back = followed is not None and self._carry_source["t"] > at   # followed back: Previous time point
        where, old, new, said, left, records, centres, boxes = [], [], [], [], 0, {}, {}, {}
        for k, inside in enumerate(parts):   # the object's box only: on a large volume nothing else is touched
            new_id = first + k
            carried = sources[k] if sources is not None else followed
            free = inside & (data[box] == 0)   # never overwrite another object
            data[box][free] = new_id
            if at is None:
                objects.data = data
            objects.refresh()
            here = _flat_indices(free if at is None else free[None], widen(box, at), objects.data.shape)
            # its size beside its id when the cursor is over it (napari shows a Labels layer's features)
            row = self._object_row(free, new_id, box, at)   # the new id is nowhere else
            named = name if not name or len(parts) == 1 else f"{name} {k + 1}"
            if row or named or carried:   # the name first; the link that the Objects widget's tracking keeps
                set_row(objects, {"index": new_id, **({"name": named} if named else {}),
                                  **({CARRIED: carried} if carried else {}), **row})
            where.append(here)
            old.append(np.zeros(len(here), data.dtype))
            new.append(np.full(len(here), new_id, data.dtype))
            said.append(f"{self._volume_text(len(here))}, {len(here)} voxels")
            left += int(inside.sum()) - len(here)
            if at is not None:   # what Next time point carries to the next time point
                centre = box_centre(free, box)
                if centre is not None:   # where its path (_interactive_paths) goes through
                    centres[new_id], boxes[new_id] = (at, *centre), widen(box, at)
                # its last step: from the object it was carried from (the cell next to it: hers, if kept here)
                other = self._records.get(carried) or {}
                source = self._carry_source if carried == followed else \
                    other if other.get("image") == self._session_key[0] else None
                records[new_id] = {**carry_record(InBox(box, inside), at, source, self.seg.axis, new_id, box=box),
                                   "image": self._session_key[0]}
        self._last_commit = (objects, np.concatenate(where), np.concatenate(old), np.concatenate(new), None)
        self._keeper.write(objects, widen(box, at))
        self._records.update(records)
        self._set_centres(objects, centres, boxes)
        self._carry = records.get(first)
        self._carry_source = None
        objects.selected_label = first   # the brush corrects it; Next time point follows the label selected
        when = "" if at is None else f" at time point {at}"
        lost = f", {left} left to earlier objects" if left else ""
        if len(parts) == 1:
            text = f"{gone}committed object {first}{when} ({said[0]}{lost})"
        else:
            apart = ""
            if sources is not None and sources[1] is None:
                why = ("two cells are not one's past" if not grown else "a touching cell it grew over" if back
                       else "a touching cell it grew over, not a daughter")
                apart = f"; {first} carried from {sources[0]}, {first + 1} from none ({why})"
            elif sources is not None and len(set(sources)) > 1:
                apart = f"; {first} carried from {sources[0]}, {first + 1} from {sources[1]} (the cell next to it there)"
            text = (f"{gone}committed the object as two, objects {first} ({said[0]}) and {first + 1} ({said[1]}){when}"
                    f"{lost.replace(', ', ' (', 1) + ')' if lost else ''}{apart}"
                    + (f"; Next time point follows {first}: select {first + 1} in {OBJECTS} (its label) to follow "
                       "that one instead" if at is not None else ""))
        self.status.setText(text + accepted + self._unkept())
        self._new_object()

    def _carried_from(self, t: int | None) -> int | None:
        """The id of the object the current one was carried from by Next (or Previous) time point, at
        the time point next to ``t`` of this image; None where it was not carried."""
        src = self._carry_source
        if src is None or t is None or abs(src["t"] - t) != 1 or src.get("image") != (self._session_key or (None,))[0]:
            return None
        return int(src["label"])

    def _object_row(self, mask, label: int, box, t: int | None) -> dict:
        """The object's row of measurements (object_row), of a time-lapse with its time point, over
        the image's volume there."""
        layer, volume = self._image_at(t)
        row = object_row(mask, label, layer, box=box, image=volume)
        return {**row, "timepoint": t} if row and t is not None else row

    def _take_name(self) -> str:
        """The name typed for the object being committed; the field is emptied for the next one."""
        name = self.object_name.text().strip()
        self.object_name.clear()
        return name

    def _commit_edit(self, pred: np.ndarray, parts=None):
        """Write the corrected object back into the layer it was taken from, under its id: voxels of
        the label it no longer covers become background there, voxels of other labels are never
        overwritten. Only the boxes of the label as it was taken and of the corrected object are
        read and written (on a large volume nothing else is touched; what was painted with the label
        elsewhere since Edit label stays). ``parts``: Commit as two's two masks of it, the first
        keeping the label's id, the second a new id of the layer (its largest plus one)."""
        layer, label = self._editing
        data, lazy = layer.data, not isinstance(layer.data, np.ndarray)
        at = self._at(layer)   # a time-lapse's labels: corrected at the object's time point
        if getattr(layer, "multiscale", False) or data.shape[0 if at is None else 1:] != pred.shape:
            self.status.setText(f"layer {layer.name!r} has changed shape since Edit label; nothing was written")
            return
        if lazy:   # labels read from a file: corrected in memory, the file stays as it was
            data, note = paintable(data)
            if note:   # never a whole copy that does not fit: the corrected object stays current
                self.status.setText(f"label {label} was not written back into {layer.name!r}: {note}; the corrected "
                                    "object stays current (save the 'current object' layer to keep it)")
                return
        split = 0
        if parts is not None:
            split = int(np.max(data)) + 1   # of every time point: an id is one object
            if split > np.iinfo(data.dtype).max:
                self.status.setText(f"layer {layer.name!r} holds {data.dtype} ids up to {split - 1}: no new id for the "
                                    "second part; nothing was written (Commit writes the object back whole)")
                return
        box = _union(self.seg.mask_box(prior=True), self.seg.mask_box())
        sub = (data if at is None else data[at])[box]
        inside = (pred if parts is None else parts[0])[box]
        target = np.where(inside, label, 0).astype(data.dtype)   # what each voxel of the label or background becomes
        if split:
            target[parts[1][box] & ~inside] = split
        changed = ((sub == 0) | (sub == label)) & (sub != target)   # other labels are never overwritten
        where = _flat_indices(changed if at is None else changed[None], widen(box, at), data.shape)
        old = sub[changed]
        new = target[changed]
        sub[changed] = new
        layer.data = data
        layer.refresh()
        self._remeasure(layer, label)
        if split:
            self._remeasure(layer, split)
            self._split_follows(layer, label, split, sub, box, at)
        self._painted_centres(layer, widen(box, at))   # of the objects layer: its point moves
        name = self._take_name()
        if name:
            set_name(layer, label, name)
        self._keeper.write(layer, widen(box, at))   # where the layer is kept (objects), with the names
        self._last_commit = (layer, where, old, new, (label, split) if split else label)
        blocked = int(((target > 0) & (sub != target)).sum())   # voxels of other labels, never overwritten
        added, removed = int((new == label).sum()), int((new == 0).sum())
        moved = f"; the second part is new label {split} ({int((sub == split).sum())} voxels)" if split else ""
        self.status.setText(f"label {label} of {layer.name!r} corrected{' and split in two' if split else ''}: {added} "
                            f"voxels added, {removed} removed{moved}"
                            + (f", {blocked} left to other labels" if blocked else "")
                            + ("; the layer is now held in memory (save it to keep the correction)" if lazy
                               else f"; kept in {layer.metadata[INTO]}" if (layer.metadata or {}).get(INTO)
                               else "; its file is as it was (save the layer to keep the correction)"
                               if (layer.metadata or {}).get("source") and KEPT not in layer.metadata else "")
                            + self._unkept())
        self._new_object()

    def _split_follows(self, layer, label: int, split: int, sub, box, at: int | None):
        """An edited label of a time-lapse's objects split in two (Commit as two): where it was
        carried from an object (All to next time point, a division found later), the new part is
        carried from it too, a daughter beside her sister, and gets its point of the paths."""
        link = layer_links(layer.features).get(int(label))
        if link is not None:
            set_row(layer, {"index": int(split), CARRIED: link})
        centre = box_centre(sub == split, box) if at is not None and layer.name == OBJECTS else None
        if centre is not None:
            self._set_centres(layer, {int(split): (at, *centre)}, {int(split): widen(box, at)})

    def _remeasure(self, layer, label: int, box: tuple | None = None, always: bool = False, write: bool = True):
        """Keep a Labels layer's row of measurements for ``label`` true, where it has rows (objects has;
        ``always``: its first row too); without ``write``, the row is returned, not written (None: none).
        ``box``: where the label lies, when known; else found a slab at a time (comparing a large volume
        at once froze napari for 1.5 s on 300 x 1024 x 1024). Of a (T, Z, Y, X) layer, at the time
        point of ``box`` when it has one (a restored object), else the current object's."""
        if always or "index" in layer.features:
            data, t = layer.data, None
            if data.ndim == 4:
                t, box = (box[0].start, box[1:]) if box is not None and len(box) == 4 else (self._t or 0, box)
                data = data[t]
            box = _label_box(data, label) if box is None else box
            row = self._object_row(np.asarray(data[box]) == label, label, box, t) if box is not None else {}
            if not write:
                return row or None
            set_row(layer, row) if row else drop_row(layer, label)
        return None

    def edit_label(self):
        """The label picked in the selected Labels layer becomes the current object, to correct (see the
        module's docstring). Refused while the current object has slices or prompts, so that none is lost."""
        if self._busy():
            return
        if self.seg is not None and (self.seg.annotated_slices or self.seg.has_prompts):
            self.status.setText("the current object has slices or prompts: Commit or Reset it first, then Edit label")
            return
        layer = self.viewer.layers.selection.active
        if not isinstance(layer, napari.layers.Labels) or layer.name in WORKING[1:]:
            self.status.setText("select the Labels layer holding the object (an automatic result, or the objects) "
                                "and pick its label, then Edit label")
            return
        if getattr(layer, "multiscale", False):
            self.status.setText(f"layer {layer.name!r} is a multiscale (pyramid) Labels layer; Edit label corrects "
                                "single-resolution layers")
            return
        label = int(layer.selected_label)
        seg = self._guard(lambda: self._session(self._axis()))
        image = None if seg is None else self._guard(lambda: self._image_layer()[0])
        if image is None or self._guard(lambda: self._check_grid(image, layer) or True) is None:
            return
        t = self._at(layer)   # labels of a time-lapse: the label at the time point shown
        grown = None
        if layer.data.ndim == 3 and tuple(layer.data.shape) != seg.volume_shape:
            # labels saved cropped to their objects (3D Slicer's): corrected on the image's grid, the
            # crop placed by the two files' geometries (lazily here: the worker makes the copy)
            grown = self._guard(lambda: on_grid_of(layer, image, "the object would be taken from other voxels",
                                                   lazy=True))
            if grown is None:
                return
            at, geometry = tuple(image.translate[-3:]), (image.metadata or {}).get(GEOMETRY)

        def take():
            data = layer.data if t is None else layer.data[t]
            if grown is not None:
                data, note = paintable(grown)
                if note:   # never a whole-grid copy that does not fit
                    raise ValueError(f"layer {layer.name!r} is cropped to its objects and, on the image's grid, "
                                     f"too large to hold: {note}")
            if data.ndim != 3 or tuple(data.shape) != seg.volume_shape:
                raise ValueError(f"layer {layer.name!r} has shape {tuple(data.shape)}; the image's is "
                                 f"{seg.volume_shape}: Edit label corrects labels on the image's grid")
            when = "" if t is None else f" at time point {t}"
            missing = ValueError(f"label {label} is not in layer {layer.name!r}{when}: pick one of its objects "
                                 "(napari's label field, or the colour picker on it)")
            if label == 0:
                raise missing
            try:   # read a slab at a time: never the whole layer as a mask (another label taken but not
                # corrected yet is replaced, and Undo brings it back)
                return seg.start_from(data, label=label, cancel=self._cancel.is_set), data
            except LabelMissing as exc:
                raise missing from exc

        def done(result):
            n, data = result
            if grown is not None:   # the same labels, with background around the crop, where the image lies
                layer.data = data
                layer.translate = at
                layer.metadata = {**(layer.metadata or {}), GEOMETRY: geometry}
            self._editing, self._last_commit = (layer, label), None
            self.recommended = None
            self.ensure_prompt_layers()
            self._show()
            self.status.setText(f"label {label} of {layer.name!r} ({self._volume_text(n)}) is the current object: "
                                "correct a slice (paint it and Accept, or a box or clicks), then Propagate; "
                                "Commit writes it back" + ("" if grown is None else " (the layer, cropped to its "
                                                           "objects, is now on the image's grid)"))
        self._start(f"taking label {label} of {layer.name!r} ...", take, on_done=done)

    def _check_grid(self, image, layer):
        """check_same_grid, and of a time-lapse image, labels of its (T, Z, Y, X) shape and voxel size."""
        if timelapse_data(image) is None:
            return check_same_grid(image, layer)
        same_timelapse(image, layer, "Edit label corrects labels over the time-lapse's time points, of its shape")

    def _objects_painted(self, layer, atoms):
        """A brush stroke (or fill, or erase) on the objects layer: kept on disk like a commit."""
        box = stroke_box(atoms, tuple(layer.data.shape))
        if box is not None:   # napari tells before it writes the stroke: read it once it has
            QTimer.singleShot(0, lambda: (self._keeper.write(layer, box), self._painted_centres(layer, box)))

    def _unkept(self) -> str:
        err = self._keeper.take_error()
        return f"; the objects could not be kept on disk: {err}" if err is not None else ""

    def restore_objects(self):
        """Bring back the objects kept for this image (committed in an earlier napari session) into the
        objects layer: where it holds nothing, under ids after its own (read in the worker)."""
        if self._busy():
            return
        self._guard(self.ensure_prompt_layers)
        objects = self._layer(OBJECTS)
        if objects is None:
            return   # the error is on the status line
        if not objects.metadata.get(EARLIER):
            kept = objects.metadata.get(KEPT)
            self.status.setText("no objects of an earlier napari session are kept for this image"
                                + (f"; this session's are kept in {kept}" if kept else ""))
            return
        kept = Path(objects.metadata[EARLIER])
        shape = tuple(objects.data.shape)

        def read():
            from scipy import ndimage
            self._keeper.wait()   # a change handed over just before may be setting the earlier file aside
            restored, names, links = read_kept(kept, shape)
            return restored, names, links, ndimage.find_objects(restored)   # each object's box, for its measurements

        def done(result):
            restored, names, links, boxes = result
            data = objects.data
            if tuple(data.shape) != shape:
                self.status.setText("the objects layer changed shape meanwhile; nothing was restored")
                return
            box = boxes_union(boxes) or tuple(slice(0, 0) for _ in shape)
            # only the objects' box is compared and written: on a large stack the rest is not touched
            mine, held = restored[box] > 0, data[box]
            offset = int(data.max())
            free = mine & (held == 0)
            held[free] = (restored[box][free].astype(np.int64) + offset).astype(data.dtype)
            objects.data = data
            objects.refresh()
            objects.metadata.pop(EARLIER, None)   # restored: the layer, with them, is what is kept now
            ids = np.unique(held[free])
            back = set(ids.tolist())
            centres, placed, rows = {}, {}, []
            for label in ids:
                k = int(label) - offset
                row = self._remeasure(objects, int(label), boxes[k - 1] if 0 < k <= len(boxes) else None,
                                      always=True, write=False) or {"index": int(label)}
                if names.get(k):
                    row["name"] = names[k]
                if links.get(k) and links[k] + offset in back:   # followed from an object restored with it
                    row[CARRIED] = links[k] + offset
                if len(row) > 1:
                    rows.append(row)
                if objects.data.ndim == 4 and 0 < k <= len(boxes) and boxes[k - 1] is not None:
                    centres[int(label)] = box_centre(data[boxes[k - 1]] == label, boxes[k - 1])
                    placed[int(label)] = boxes[k - 1]
            set_rows(objects, rows)   # at once: row by row took time growing with the square of their number
            self._set_centres(objects, centres, placed)   # the paths of those followed
            self._keeper.write(objects, box)   # after the names: they are kept with the objects
            clash = int(mine.sum()) - int(free.sum())
            self.status.setText(f"restored {len(ids)} object{'' if len(ids) == 1 else 's'} from {kept}"
                                + (f" as ids {int(ids.min())} to {int(ids.max())}" if offset and len(ids) else "")
                                + (f"; {clash} voxels left to objects committed since" if clash else "")
                                + self._unkept())
        self._start("restoring the kept objects ...", read, on_done=done)


def _label_box(data, label: int, slab_voxels: int = 2 ** 24) -> tuple | None:
    """The bounding box of ``label`` in a volume, read a slab at a time; None where it is not."""
    from halo_seg.io.labels import slabs
    lo, hi = None, None
    step, starts = slabs(data.shape, slab_voxels)
    for z0 in starts:
        m = np.asarray(data[z0:z0 + step]) == label
        if not m.any():
            continue
        idx = [np.flatnonzero(m.any(tuple(a for a in range(3) if a != ax))) for ax in range(3)]
        first = [int(i[0]) + (z0 if ax == 0 else 0) for ax, i in enumerate(idx)]
        last = [int(i[-1]) + 1 + (z0 if ax == 0 else 0) for ax, i in enumerate(idx)]
        lo = first if lo is None else [min(a, b) for a, b in zip(lo, first)]
        hi = last if hi is None else [max(a, b) for a, b in zip(hi, last)]
    return None if lo is None else tuple(slice(a, b) for a, b in zip(lo, hi))


def _flat_indices(mask: np.ndarray, box: tuple, shape) -> np.ndarray:
    """Flat indices, in a volume of ``shape``, of the voxels of ``mask`` (the volume's ``box``)."""
    return np.ravel_multi_index(tuple(i + b.start for i, b in zip(np.nonzero(mask), box)), shape)
