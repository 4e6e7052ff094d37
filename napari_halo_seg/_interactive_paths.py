"""The interactive widget's paths of followed objects: on a time-lapse, a Tracks layer ("objects
paths") drawn from the objects' links ("carried from", which Commit writes for an object Next or
Previous time point carried) through each object's centre as committed, redrawn as objects are
committed, taken back by Undo, corrected or restored (halo_seg.tracking.paths), so that the user
sees the lineage grow without tracking the layer. A mixin of InteractiveWidget
(_interactive_widget.py), whose state and layers it uses."""
from __future__ import annotations

import weakref

import numpy as np
from qtpy.QtCore import QTimer

from halo_seg.tracking.paths import link_paths

from ._interactive_names import IMAGE_KEY, OBJECTS, PATHS
from ._kept_objects import union_box
from ._measure import layer_links


def box_centre(inside: np.ndarray, box: tuple) -> tuple | None:
    """The centre of the voxels ``inside`` a box (slices) in the array's coordinates; None where none."""
    where = np.argwhere(inside)
    if not len(where):
        return None
    return tuple(float(v) for v in where.mean(0) + [s.start or 0 for s in box])


class PathActions:
    """The objects layer's centres as committed (``_centres``: objects layer -> {id: (t, z, y, x)}),
    the boxes they lie in (``_boxes``, the same way: any voxel of the id is in it; what a brush
    stroke is compared with) and the Tracks layer drawn of them."""

    def _centre_store(self, layer) -> dict:
        if not hasattr(self, "_centres"):
            self._centres, self._boxes = weakref.WeakKeyDictionary(), weakref.WeakKeyDictionary()
        self._boxes.setdefault(layer, {})
        return self._centres.setdefault(layer, {})

    def _set_centres(self, layer, centres: dict, boxes: dict | None = None):
        """Note objects' centres (id -> (t, z, y, x), None: gone) and the (T, Z, Y, X) boxes they lie
        in (id -> box, where known; None: forgotten), and draw the paths again. A box only grows
        (what a brush stroke took away may come back with napari's Undo of it)."""
        store = self._centre_store(layer)
        where = self._boxes[layer]
        for k, c in centres.items():
            if c is None:
                store.pop(int(k), None)
            else:
                store[int(k)] = c
        for k, b in (boxes or {}).items():
            if b is None:
                where.pop(int(k), None)
            else:
                where[int(k)] = union_box(where.get(int(k)), b)
        self._show_paths()

    def _paths_follow_history(self, layer):
        """napari's own Undo and Redo of a brush stroke on the objects layer (which tell nothing, no
        paint event) move the paths' points too."""
        for name in ("undo", "redo"):
            step = getattr(layer, name)

            def moved(step=step):
                step()
                self._painted_centres(layer)
            setattr(layer, name, moved)

    def _painted_centres(self, layer, box: tuple | None = None):
        """After a brush stroke (fill, erase) on a time-lapse's objects layer within ``box`` (T, Z,
        Y, X slices), an object of it corrected there (Edit label's Commit, or its Undo), or
        napari's Undo or Redo of a stroke (``box`` None: where is not told): the centres of the
        objects it may have changed read again, within their box and the stroke's only (an object
        erased whole is no point of its path any more; its Undo brings it back)."""
        if layer.name != OBJECTS or layer.data.ndim != 4 or not hasattr(self, "_centres"):
            return
        self._centre_store(layer)
        where = self._boxes[layer]
        data = layer.data
        # what a stroke or fill may have added to an object far from it is its own label, the one selected
        stroke = set() if box is None else {int(layer.selected_label)}
        touched = list(where) if box is None else [k for k in where if k in stroke or _meet(where[k], box)]
        centres, boxes = {}, {}
        for k in touched:
            region = union_box(where[k], box)   # what it covers now is in either (box None: all of it in its own)
            t = where[k][0].start
            region = (slice(t, t + 1),) + tuple(region[1:])   # an id is one object of one time point
            centres[k] = box_centre(np.asarray(data[region]) == k, region)
            boxes[k] = region
        if centres:
            self._set_centres(layer, centres, boxes)

    def _show_paths(self):
        """Draw (or redraw, or remove where no link is left) the paths of the objects layer's
        followed objects; the selected layer stays selected (clicks go where they went)."""
        objects = self._layer(OBJECTS)
        shown = self._layer(PATHS)
        if objects is None or objects.data.ndim != 4:
            return
        paths = link_paths(self._centre_store(objects), layer_links(objects.features))
        self._tell_merges(paths.merges)
        if not len(paths.points):
            if shown is not None:
                self.viewer.layers.remove(shown)
            return
        if shown is None:
            active = self.viewer.layers.selection.active
            self.viewer.add_tracks(paths.points, graph=paths.graph, name=PATHS, tail_length=len(objects.data),
                                   scale=objects.scale, translate=objects.translate,
                                   metadata={k: objects.metadata.get(k) for k in ("image", IMAGE_KEY)})
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        else:
            shown.graph = {}   # the old graph may name tracks the new points no longer hold
            shown.data = paths.points
            shown.graph = paths.graph

    def _tell_merges(self, merges: list):
        """An object with two objects before it (links typed by hand, or kept so: Next time point
        makes none) is drawn with one of them only: the status line says which link is not drawn,
        once for each such object, after what the action that redrew the paths says."""
        told = getattr(self, "_merges_told", set())
        new = [(k, gone) for k, gone in merges if (k, gone) not in told]
        self._merges_told = {tuple(m) for m in merges}
        if not new:
            return
        note = "; ".join(f"object {k} has two objects before it: its path from {gone} is not drawn" for k, gone in new)
        note = f". {note} (a merge: the Objects widget's tracking refuses it; correct the 'carried from' links)"
        # after the status the redrawing action sets next (Commit, Restore objects, a stroke's none)
        QTimer.singleShot(0, lambda: self.status.setText(self.status.text() + note))


def _meet(a: tuple, b: tuple) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b))

