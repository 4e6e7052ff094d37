"""Dock widget: interactive 3D segmentation with memory propagation (halo_seg.InteractiveSegmenter).

Prompts live in napari layers the widget creates: positive and negative clicks (Points), a box
(Shapes rectangle) and four extreme points (Points), all read on the slice shown, in whichever plane
napari shows (roll or transpose the dims for coronal or sagittal slices: an object is propagated along
the axis its first prompts were drawn across, until it is committed or reset); clicks on a slice
already segmented correct its mask (a positive click only adds, a negative only removes). Strokes
painted in the strokes Labels layer (Draw strokes: green through the object, red through what is
not) are prompts too, and correct a segmented slice as clicks do. The current object
is previewed in an editable Labels layer: paint on a slice and "Accept slice" to trust it as truth.
"Commit" copies the object into the objects Labels layer under a new id, never over another object.
Undo takes back the last step (right after Commit, the commit) and Redo does it again.
"Edit label" takes the label picked in the selected Labels layer (an automatic result, an object
committed earlier) as the current object, to correct rather than redo: corrected slices replace it
and carry on into their neighbours until they agree with it (halo_seg.interactive.prior); Commit
then writes it back into that layer under its own id.
"Learn from objects" adjusts the quality model (where sweeps end, which slice is recommended) to the
committed objects of this image, taken as truth, saves it under the user's data directory and selects
it in the "quality" field, which lists the saved ones in later napari sessions too and takes any
``.quality.json`` path. "Save session" and "Open session" keep the current object's prompts, trusted
slices and last propagation in a file (halo_seg.interactive.session_file), and every propagation also
saves it under the user's data directory (sessions/<image>.<hash>.last.npz), so that closing napari or a crash
loses no corrections; the objects layer is kept beside it as it changes (_kept_objects.py) and "Restore
objects" brings it back in a later napari session. The working layers are made over the chosen image
as soon as there is one. Networks run in a worker thread; the UI stays live, shows progress and can cancel.
Commit, Edit label and Restore objects are in _interactive_objects.py; sessions and Learn from objects
in _interactive_files.py (mixins of the widget). On a time-lapse image (T, Z, Y, X) an object is
segmented in the volume of the time point shown, in (T, Z, Y, X) working layers (_interactive_time.py),
and the objects followed there from one to the next are drawn as paths (_interactive_paths.py).
"""
from __future__ import annotations

import threading
import time
import weakref

import napari
import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QLabel, QLineEdit, QProgressBar,
                            QPushButton, QVBoxLayout, QWidget)

from halo_seg.interactive.segmenter import axis_order
from halo_seg.io.dicom_seg import SERIES_KEY
from halo_seg.io.geometry import KEY as GEOMETRY

from ._fields import SavedFilesBox, device_choices, form_of
from ._interactive_carry_all import CARRIED_ALL, CarryAllActions
from ._interactive_new_cells import NewCellActions
from ._interactive_files import MIN_LEARN, SessionActions
from ._interactive_names import AUTO, BOX, EXTREME, IMAGE_KEY, NEG, OBJECTS, POS, PREVIEW, STROKES, WORKING, \
    _identity, _short
from ._interactive_objects import ObjectActions, _label_box
from ._interactive_paths import PathActions
from ._kept_objects import ObjectsKeeper, atom_boxes as _atom_boxes, full_box as _full, kept_objects_path, \
    union_box as _union
from ._interactive_time import TimeActions, at_time, narrow, show_time, time_shown, widen
from ._layers import fill_layer_box, follow_layers, layer_volume, show_slice, sliced_axis
from ._measure import UNIT, drop_rows
from ._paths import learned_dir
from ._prompt_layers import (STROKE_BACKGROUND, STROKE_OBJECT, box_key, click_key, extreme_key, slice_of as _slice_of,
                             sync_boxes, sync_clicks, sync_extreme, sync_strokes)
from ._quality_plot import QualityPlot
from ._timelapse import timelapse_data

__all__ = ["InteractiveWidget", "AUTO", "MIN_LEARN", "_label_box"]   # the last three: for the tests


class _Bridge(QObject):
    progressed = Signal(int, int)   # from the worker thread to the progress bar, through Qt's queue


def _call(fn, *args, **kwargs):
    """Run in the worker; return (value, exception) so errors reach the status line, not the console."""
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # every segmenter error is shown to the user; none is fatal to the viewer
        return None, exc


class InteractiveWidget(ObjectActions, SessionActions, TimeActions, CarryAllActions, NewCellActions, PathActions,
                        QWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.seg = None
        self.worker = None
        self.recommended = None
        self._cancel = threading.Event()
        self._sent: set = set()           # prompts already handed to the segmenter
        self._strokes_sent: dict = {}      # (axis, z) -> (object, background) stroke pixels handed over
        self.last_seconds = None
        self._session_key = None           # (image, weights, device, axis, time point) the session was made for
        self._carry = None                 # what Next time point carries: the object committed last (carry_record)
        self._carry_source = None          # the record the current object was carried from, if it was
        self._grown_over = None            # Next/Previous time point's object grown over a touching cell: its parts
        self._records = {}                 # the carry_record of each object committed here, by its id
        self._new_cells = None             # (time point, image, new_cells's) the last All to next time point marked
        self._marks_before = (np.zeros((0, 4)), None)   # the marks before the last carry or add, for its Undo
        self._quality_changed = False      # the quality field changed while a step ran
        self._last_commit = None           # (layer, flat voxel indices, old values, new values, edited label
                                           # or None) while Undo would take the commit back out
        self._editing = None               # (Labels layer, label id) the object with a prior came from (Edit
                                           # label); it applies while the session has that prior
        # preview layer -> (the box outside which it holds nothing but the current mask (shown or painted
        # since), the data array that holds): on a large volume a step rewrites only that box and the
        # current object's, not the volume; an array put in its place is rewritten whole
        self._stale = weakref.WeakKeyDictionary()
        # preview layer -> (the box of what the brush changed since the preview was last drawn whole, the
        # data array that holds): painted there and not accepted, it is accepted by the next step
        # (_accept_paint) instead of being drawn over
        self._paint = weakref.WeakKeyDictionary()
        self._accepted = []
        self._keeper = ObjectsKeeper()     # the objects layer on disk, written as it changes
        self._bridge = _Bridge()
        self._bridge.progressed.connect(self._on_progress)

        self.image = QComboBox()
        self.weights = QComboBox()
        self.weights.setEditable(True)
        self.weights.addItem("default")
        self.quality = SavedFilesBox(AUTO, learned_dir, "*.quality.json")   # and those Learn from objects saved
        self.quality.setToolTip("the model of predicted slice quality, which decides where the propagation stops "
                                "and which slice is recommended: auto (the weights' own), one saved by Learn from "
                                "objects, or the path of a .quality.json from halo-seg train-quality")
        self.quality.currentIndexChanged.connect(lambda *_: self._apply_quality())
        self.device = QComboBox()
        self.device.addItems(["auto"] + device_choices())   # auto: the GPU where there is one
        self.negative = QCheckBox("negative clicks and strokes (Shift-N)")
        self.negative.toggled.connect(self._select_click_layer)
        self.strict = QCheckBox("strict object ends (touching nuclei)")
        self.strict.setToolTip("end the propagation sooner where the object narrows and widens again or turns as "
                               "dark as its surroundings, and never interpolate between segmented slices; helps "
                               "touching objects of equal brightness a few slices deep, such as nuclei, and costs "
                               "a little on low-contrast anatomy")
        self.strict.toggled.connect(self._set_strict)
        self.object_name = QLineEdit()
        self.object_name.setPlaceholderText("optional, e.g. liver")
        self.object_name.setToolTip("the name Commit object gives the object (or an edited label): shown under the "
                                    "cursor, kept with the objects, and written as the segment's or structure's "
                                    "name when the objects are saved as DICOM SEG or an RT structure set")
        form = form_of(("image", self.image), ("weights", self.weights), ("quality", self.quality),
                       ("device", self.device), ("", self.negative), ("", self.strict),
                       ("object name", self.object_name))

        self.buttons = {}
        grid = QGridLayout()
        specs = [("Segment slice", "Shift-S", self.segment_slice), ("Propagate", "Shift-P", self.propagate),
                 ("Go to recommended", "Shift-R", self.goto_recommended), ("Accept painted slice", "Shift-A",
                                                                           self.accept_slice),
                 ("Commit object", "Shift-C", self.commit), ("Reset object", None, self.reset),
                 ("Undo", "Shift-U", self.undo), ("Redo", "Shift-Y", self.redo),
                 ("Edit label", "Shift-E", self.edit_label), ("Draw strokes", "Shift-D", self.draw_strokes),
                 ("Save session", None, self.save_session), ("Open session", None, self.open_session),
                 ("Learn from objects", None, self.learn_quality), ("Restore objects", None, self.restore_objects),
                 ("Next time point", "Shift-T", self.next_timepoint),
                 ("Previous time point", "Shift-B", self.previous_timepoint),
                 ("All to next time point", "Alt-T", self.all_to_next_timepoint),
                 ("All to previous time point", "Alt-B", self.all_to_previous_timepoint),
                 ("Commit as two", "Shift-W", self.commit_as_two), ("Add marked cells", None, self.add_marked_cells),
                 ("Cancel", None, self.cancel)]
        for i, (text, key, fn) in enumerate(specs):
            b = QPushButton(f"{text} ({key})" if key else text)
            b.clicked.connect(lambda _=False, f=fn: f())
            grid.addWidget(b, i // 2, i % 2)
            self.buttons[text] = b
            if key:
                self.viewer.bind_key(key, lambda _v, f=fn: f(), overwrite=True)
        self.viewer.bind_key("Shift-N", lambda _v: self.negative.toggle(), overwrite=True)
        self.buttons["Cancel"].setEnabled(False)
        self.buttons["Edit label"].setToolTip(
            "correct an existing object instead of redrawing it: select a Labels layer (an automatic result, the "
            "objects) and pick its label, then Edit label; corrected slices replace it and carry on into the "
            "slices next to them until they agree with it, and Commit writes it back under its id")
        self.buttons["Draw strokes"].setToolTip(
            "paint strokes on a slice: through the object (green), or with negative on through what is not "
            "(red); Segment slice uses them, and on a slice already segmented they correct its mask as clicks "
            "do. A stroke along the middle of a wrong region fixes more than a click there")
        self.buttons["Learn from objects"].setToolTip(
            f"after {MIN_LEARN} or more committed objects: adjust the predicted quality, which decides where "
            "the propagation stops and which slice is recommended, to them (taken as correct); it is "
            "saved and selected in the quality field")
        self.buttons["Next time point"].setToolTip(
            "on a time-lapse: commit the object of this time point, then look for it at the next time point with its "
            "box where it was and moved by its last step, each tightened to what the slice's segmentation finds in "
            "it, keep the one the network is surer of, and propagate there; check it, correct it if needed, and "
            "press again to follow the cell on")
        self.buttons["Commit as two"].setToolTip(
            "commit the current object as two objects, split where it narrows between two lobes: two touching nuclei "
            "in one box, or a cell that divided (Next time point says where it looks like two); on a time-lapse each "
            "part is carried from the object it lies in at the time point before (a daughter's box that took in her "
            "sister: each her own), else both from the one followed (a division); refused, nothing changed, where "
            "it does not look like two")
        self.buttons["All to next time point"].setToolTip(
            "on a time-lapse: every object committed at the time point shown carried to the next one at once, each "
            "as Next time point carries one, and committed there under a new id carried from it (a field of cells "
            "followed a keystroke a time point); then correct what went wrong with Edit label. Undo takes them "
            "all back out")
        self.buttons["All to previous time point"].setToolTip("as All to next time point, to the time point before")
        self.buttons["Add marked cells"].setToolTip(
            "after All to next time point: the cells no object holds there (came into the field, a daughter left "
            "out), marked in 'cells no object holds', each segmented from a box and committed as a new object; "
            "delete a mark first to leave its cell out. Undo takes them back out")
        self.buttons["Previous time point"].setToolTip("as Next time point, to the time point before (a cell "
                                                       "followed back from where it is clearest)")
        self.buttons["Restore objects"].setToolTip(
            "bring back the objects committed on this image in an earlier napari session: the objects layer is "
            "kept on disk as it changes (beside the kept sessions), so closing napari or a crash loses none")
        self.plot = QualityPlot()
        self.plot.slice_clicked.connect(self.goto_slice)
        self.progress = QProgressBar()
        self.progress.setMaximum(1)
        self.status = QLabel("draw a box, clicks or 4 extreme points on a slice, then Segment slice")
        self.status.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(grid)
        lay.addWidget(QLabel("predicted quality per slice (blue: current, red: recommended,\n"
                             "orange: a sweep stopped early there; look past it)"))
        lay.addWidget(self.plot)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch()
        follow_layers(self.viewer, self._refresh_layers)
        self.image.currentTextChanged.connect(self._image_chosen)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._refresh_layers()
        if self.image.currentText():   # the layers to draw in, from the start
            self._guard(self.ensure_prompt_layers)

    # -- layers ------------------------------------------------------------------------------------
    def _refresh_layers(self, *_):
        fill_layer_box(self.image, self.viewer, napari.layers.Image)
        if self.image.currentText() and not self._bound():
            # an image opened after the widget, or in place of a closed one: its own layers to draw in,
            # once napari has added it
            QTimer.singleShot(0, self._rebind)

    def _bound(self) -> bool:
        """Whether the working layers there are belong to the image chosen."""
        layer = self._layer(self.image.currentText())
        owned = next((lay for lay in (self._layer(n) for n in WORKING) if lay is not None), None)
        return (layer is not None and owned is not None and owned.metadata.get("image") == layer.name
                and owned.metadata.get(IMAGE_KEY) == _identity(layer))

    def _rebind(self):
        if self.image.currentText() and not self._bound():
            self._guard(self.ensure_prompt_layers)

    def _layer(self, name):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _image_layer(self, shown: bool = False):
        """(The chosen image layer, the 3D volume worked on): of a time-lapse, the volume of the
        current object's time point, or with ``shown`` (or no object begun on it) the one shown."""
        name = self.image.currentText()
        if not name:
            raise ValueError("no image layer: open or add a 3D image first")
        layer = self.viewer.layers[name]
        series = timelapse_data(layer)
        if series is not None:
            return layer, series[self._time_point(layer, len(series), shown)]
        data = layer_volume(layer)
        if data.ndim != 3:
            raise ValueError(f"layer {name!r} is {data.ndim}D; interactive segmentation needs a 3D image")
        return layer, data

    def _image_at(self, t: int | None):
        """(The chosen image layer, its volume at time point ``t``; its 3D volume for None)."""
        if t is None:
            return self._image_layer()
        layer = self.viewer.layers[self.image.currentText()]
        return layer, timelapse_data(layer)[t]

    @property
    def _t(self) -> int | None:
        """The time point of a time-lapse image the session works on (None: a 3D image, or no session)."""
        return None if self._session_key is None else self._session_key[4]

    def _time_point(self, layer, n: int, shown: bool = False) -> int:
        """The time-lapse ``layer``'s time point worked on (see _image_layer)."""
        if not shown and self._t is not None and self._session_key[0] == (layer.name, _identity(layer)):
            return min(self._t, n - 1)
        return time_shown(self.viewer, layer, n)

    def _work(self, name):
        """A working layer, or on a time-lapse its view at the object's time point (_interactive_time)."""
        lay = self._layer(name)
        if lay is None or self._t is None or lay.ndim != 4:
            return lay
        return at_time(lay, self._t)

    def _here(self, layer):
        """A working Labels layer's array at the object's time point (a view), the layer's own of a 3D image."""
        data = layer.data
        return data[self._t] if self._t is not None and data.ndim == 4 else data

    def _at(self, layer) -> int | None:
        """The time point a layer's boxes of the object get, None for a 3D layer."""
        return self._t if self._t is not None and layer.data.ndim == 4 else None

    def ensure_prompt_layers(self):
        """Create the prompt, preview and objects layers over the chosen image (once per image): of a
        time-lapse, (T, Z, Y, X) ones (_interactive_time)."""
        layer, data = self._image_layer()
        self._bind_layers(layer)
        series = timelapse_data(layer)
        nd = 3 if series is None else 4
        shape = tuple(data.shape) if series is None else (len(series),) + tuple(data.shape)
        kw = dict(scale=layer.scale[-nd:], translate=layer.translate[-nd:],
                  metadata={"image": layer.name, IMAGE_KEY: _identity(layer)})
        # the labels keep the scan's geometry (and DICOM series), so that saving them as NIfTI (or DICOM
        # SEG) places them on the scan
        lkw = dict(kw, metadata={**kw["metadata"], **{k: v for k, v in (layer.metadata or {}).items()
                                                      if k in (GEOMETRY, SERIES_KEY, UNIT)}})
        if self._layer(OBJECTS) is None:
            objects = self.viewer.add_labels(np.zeros(shape, np.uint16), name=OBJECTS, opacity=0.5, **lkw)
            objects.events.paint.connect(lambda event, lay=objects: self._objects_painted(lay, event.value))
            self._keeper.follow_history(objects)
            self._paths_follow_history(objects)
            if self._keeper.adopt(objects, kept_objects_path(self._kept_path())):
                self.status.setText("objects committed on this image in an earlier napari session are kept: "
                                    "Restore objects brings them back")
            elif series is not None:
                self.status.setText(f"a time-lapse of {len(series)} time points: an object is segmented at the "
                                    "time point shown; Next time point (Shift-T) follows it to the next")
        if self._layer(PREVIEW) is None:
            preview = self.viewer.add_labels(np.zeros(shape, np.uint8), name=PREVIEW, opacity=0.6, **lkw)
            preview.events.paint.connect(lambda event, lay=preview: self._painted(lay, event.value))
            self._stale[preview] = (None, preview.data)   # empty
        if self._layer(BOX) is None:
            self.viewer.add_shapes(ndim=nd, name=BOX, edge_color="yellow", face_color="transparent",
                                   edge_width=1, **kw)
        if self._layer(EXTREME) is None:
            self.viewer.add_points(ndim=nd, name=EXTREME, face_color="magenta", size=4, **kw)
        for name, col in ((NEG, "red"), (POS, "lime")):
            if self._layer(name) is None:
                self.viewer.add_points(ndim=nd, name=name, face_color=col, size=4, **kw)
        if self._layer(STROKES) is None:
            from napari.utils.colormaps import DirectLabelColormap
            colours = DirectLabelColormap(color_dict={STROKE_OBJECT: "lime", STROKE_BACKGROUND: "red",
                                                      None: "transparent"})
            strokes = self.viewer.add_labels(np.zeros(shape, np.uint8), name=STROKES, opacity=0.9,
                                             colormap=colours, **kw)
            strokes.brush_size = 3
            self.viewer.layers.selection.active = None   # made last, it was chosen: clicks come first
        self._select_click_layer()

    def _bind_layers(self, image):
        """The working layers belong to one image: on their grid, prompts and labels are data
        coordinates of that image. Choosing another image parks them, hidden and named after their
        image ('objects (phantom)'), so that nothing drawn or committed is lost, and brings back the
        new image's own parked layers, if it has any. An image is its name and the file it came from
        (else its shape and voxel size): another patient's "scan", opened after this one was closed,
        is another image, and its objects never go into this one's layer."""
        key = _identity(image)
        present = [lay for lay in (self._layer(n) for n in WORKING) if lay is not None]
        owned = next((lay for lay in present if lay.metadata.get("image")), None)
        owner = owned.metadata["image"] if owned is not None else image.name
        owner_key = owned.metadata.get(IMAGE_KEY, key) if owned is not None else key
        if owner == image.name and owner_key == key:
            return
        for lay in present:
            parked = f"{lay.name} ({owner})"
            old = self._layer(parked)
            if old is not None and old.metadata.get(IMAGE_KEY, owner_key) != owner_key:   # a namesake's
                parked = f"{lay.name} ({owner} {_short(owner_key)})"
                old = self._layer(parked)
            if old is not None:
                self.viewer.layers.remove(old)   # parked before, then made anew: the newer one stays
            lay.name, lay.visible = parked, False
        for name in WORKING:
            parked = next((lay for lay in self.viewer.layers if lay.name.startswith(f"{name} (")
                           and lay.metadata.get("image") == image.name and lay.metadata.get(IMAGE_KEY, key) == key),
                          None)
            if parked is not None:
                parked.name, parked.visible = name, True

    def _image_chosen(self, *_):
        if self.image.currentText():
            self._guard(self.ensure_prompt_layers)

    def _select_click_layer(self, *_):
        strokes = self._layer(STROKES)
        if strokes is not None and self.viewer.layers.selection.active is strokes:
            strokes.selected_label = STROKE_BACKGROUND if self.negative.isChecked() else STROKE_OBJECT
            return   # drawing strokes: the sign changes their label, not the layer
        name = NEG if self.negative.isChecked() else POS
        if self._layer(name) is not None:
            self.viewer.layers.selection.active = self.viewer.layers[name]
            self.viewer.layers[name].mode = "add"

    def _set_strict(self, on: bool):
        if self.seg is not None:
            self.seg.strict_ends = bool(on)   # used from the next propagation on

    def _view_axis(self) -> int:
        """The axis of the chosen image that the 2D view slices across: prompts drawn now lie on a
        slice along it."""
        return sliced_axis(self.viewer, "objects are prompted on slices")

    def _axis(self) -> int:
        """The axis the current object is sliced along: its session's once it has prompts or slices,
        else the view's (a new object begins across the slices shown)."""
        seg = self.seg
        if seg is not None and self._session_key is not None and (seg.annotated_slices or seg.has_prompts):
            return seg.axis
        try:
            return self._view_axis()
        except ValueError:
            return 0 if seg is None else seg.axis

    def _z(self, axis: int | None = None) -> int:
        """The chosen image's slice along ``axis`` (default: the object's axis) under the viewer's
        current point (other layers may have other scales)."""
        axis = self._axis() if axis is None else axis
        layer = self._layer(self.image.currentText())
        if layer is None:
            return int(self.viewer.dims.current_step[axis - 3])
        return int(round(float(layer.world_to_data(self.viewer.dims.point)[axis - 3])))

    def _on_step(self, *_):
        if self.seg is not None:
            self.plot.set_data(current=self._z(), recommended=self.recommended)

    def _quality_choice(self) -> str:
        """AUTO or the path of a quality model: a listed one's, or what was typed."""
        return self.quality.choice()

    def _session(self, axis: int | None = None):
        """The segmenter for the image, weights, device and slicing axis (default: the view's) chosen;
        a new one when one of them changed. On the same image and axis the slices segmented so far
        carry over as trusted masks; the prompts drawn are handed over again as they are used. An
        object begun on slices along another axis, or at another time point of a time-lapse, is
        refused, not dropped."""
        layer, data = self._image_layer(shown=True)
        axis = self._view_axis() if axis is None else axis
        series = timelapse_data(layer)
        t = None if series is None else self._time_point(layer, len(series), shown=True)
        key = ((layer.name, _identity(layer)), self.weights.currentText().strip() or "default",
               self.device.currentText(), axis, t)
        if self.seg is None or self._session_key != key:
            same_image = self.seg is not None and self._session_key is not None and self._session_key[0] == key[0]
            begun = self.seg is not None and bool(self.seg.annotated_slices or self.seg.has_prompts)
            if same_image and self._t != t and (begun or self.seg.prior is not None):
                raise ValueError(f"this object is at time point {self._t}, and the view now shows time point {t}: "
                                 f"go back to time point {self._t} to go on with it, or Commit or Reset it to begin "
                                 "an object at this one")
            if same_image and begun and self.seg.axis != axis:
                raise ValueError(f"this object is prompted on slices across axis {self.seg.axis}, and the view now "
                                 f"slices across axis {axis}: show those slices again to go on with it, or "
                                 "Commit or Reset it to begin an object on these")
            same_image = same_image and self._t == t   # another time point is another volume
            seg = self._new_segmenter(layer, data, key, axis)
            old = self.seg if same_image and self.seg.axis == axis else None
            if same_image and self.seg.prior is not None:
                seg.start_from(self.seg.prior)   # the object being corrected
            for z in (old.annotated_slices if old is not None else []):
                seg.set_slice_mask(z, old.annotation(z), painted=z in old.painted_slices)
            self.seg, self._session_key = seg, key
            self._sent, self._strokes_sent = set(), {}
        return self.seg

    def _new_segmenter(self, layer, data, key, axis: int):
        """A segmenter of ``data`` (``layer``'s volume) with the weights and device of ``key`` (the
        session's) and the quality model and object ends chosen."""
        from halo_seg import InteractiveSegmenter
        return InteractiveSegmenter(data, spacing=tuple(layer.scale[-3:]), device=key[2], weights=key[1],
                                    quality_model=self._quality_choice(), strict_ends=self.strict.isChecked(),
                                    axis=axis)

    def _apply_quality(self):
        """The quality field changed: the live session uses the model chosen from its next propagation."""
        if self.seg is None:
            return   # a new session reads the field
        if self.worker is not None:
            self._quality_changed = True   # a running step keeps its model; applied when it ends
            return
        self._quality_changed = False

        def apply():
            from halo_seg.interactive.quality import QualityModel, load_for
            choice = self._quality_choice()
            try:
                model = load_for(self.seg.weights_meta) if choice == AUTO else QualityModel.load(choice)
            except ValueError as exc:
                raise ValueError(f"quality model {choice}: {exc}") from exc
            self.seg.use_quality_model(model)
            self.status.setText(f"quality model: {choice}; it applies from the next propagation")
        self._guard(apply)

    def send_prompts(self, z: int) -> int:
        """Hand the prompts drawn on slice z (along the session's axis) to the segmenter; returns how
        many were new."""
        seg = self._session()
        order = list(axis_order(seg.axis))   # a layer point's coordinates in the session's (z, y, x)
        n = 0
        for name, positive in ((POS, True), (NEG, False)):
            lay = self._work(name)
            for p in (np.asarray(lay.data)[:, order] if lay is not None and len(lay.data) else []):
                if int(round(p[0])) == z:
                    key = click_key(name, seg.axis, z, p[1], p[2])
                    if key not in self._sent:
                        seg.add_click(z, p[1], p[2], positive=positive)
                        self._sent.add(key)
                        n += 1
        box = self._work(BOX)
        if box is not None:
            for shape in (np.asarray(s)[:, order] for s in box.data):
                if np.all(np.round(shape[:, 0]) == z):
                    y0, x0 = shape[:, 1].min(), shape[:, 2].min()
                    y1, x1 = shape[:, 1].max(), shape[:, 2].max()
                    key = box_key(seg.axis, z, y0, x0, y1, x1)
                    if key not in self._sent:
                        seg.add_box(z, int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
                        self._sent.add(key)
                        n += 1
        strokes = self._work(STROKES)
        if strokes is not None:
            plane = np.asarray(strokes.data[_slice_of(seg.axis, z)])
            sent = self._strokes_sent.get((seg.axis, z), (np.zeros(plane.shape, bool),) * 2)
            now = []
            for label, positive, done in ((STROKE_OBJECT, True, sent[0]), (STROKE_BACKGROUND, False, sent[1])):
                drawn = plane == label
                new = drawn & ~done
                if new.any():
                    seg.add_scribble(z, new, positive=positive)
                    n += 1
                now.append(done | drawn)
            self._strokes_sent[(seg.axis, z)] = tuple(now)
        ext = self._work(EXTREME)
        if ext is not None and len(ext.data):
            pts = [p for p in np.asarray(ext.data)[:, order] if int(round(p[0])) == z]
            if pts:
                key = extreme_key(seg.axis, z, np.asarray(pts)[:, 1:])
                if key not in self._sent:
                    seg.add_extreme_points(z, [(p[1], p[2]) for p in pts])
                    self._sent.add(key)
                    n += 1
        return n

    def _sync_prompt_layers(self):
        """Show the prompts the session holds (after an undo, a redo or a session opened the layers
        would otherwise show prompts it no longer has, or none of those it has); see _prompt_layers."""
        seg = self.seg
        if seg is None or self._layer(POS) is None:
            return
        axis, held, sent = seg.axis, seg.prompts, self._sent
        keys = sync_clicks(self._work(POS), POS, "pos", axis, held, sent)
        keys |= sync_clicks(self._work(NEG), NEG, "neg", axis, held, sent)
        keys |= sync_boxes(self._work(BOX), axis, held, sent)
        keys |= sync_extreme(self._work(EXTREME), axis, held, sent)
        self._sent = keys
        self._strokes_sent = sync_strokes(self._work(STROKES), axis, held, self._strokes_sent)

    # -- actions -----------------------------------------------------------------------------------
    def _busy(self) -> bool:
        if self.worker is not None:
            self.status.setText("busy: wait for the current step or press Cancel")
            return True
        return False

    def _start(self, label, fn, *args, on_done, **kwargs):
        from napari.qt.threading import create_worker
        self._cancel.clear()
        for b in self.buttons.values():
            b.setEnabled(False)
        self.buttons["Cancel"].setEnabled(True)
        self.progress.setMaximum(0)  # busy indicator
        self.status.setText(label)
        t0 = time.perf_counter()
        self.worker = create_worker(_call, fn, *args, **kwargs)

        def returned(outcome):
            self.last_seconds = time.perf_counter() - t0
            value, exc = outcome
            if exc is not None:
                prefix = "cancelled" if isinstance(exc, InterruptedError) else "error"
                self.status.setText(f"{prefix}: {exc}")
            else:
                try:
                    on_done(value)
                except Exception as exc:  # a step's last part failing says so, not "propagating ..." forever
                    self.status.setText(f"error: {exc}")

        self.worker.returned.connect(returned)
        self.worker.finished.connect(self._finished)
        self.worker.start()

    def _on_progress(self, done, total):
        self.progress.setMaximum(total)
        self.progress.setValue(done)

    def _finished(self):
        self.worker = None
        self.progress.setMaximum(1)
        self.progress.setValue(1)
        for b in self.buttons.values():
            b.setEnabled(True)
        self.buttons["Cancel"].setEnabled(False)
        if self._quality_changed:
            status = self.status.text()
            self._apply_quality()
            self.status.setText(f"{status}; {self.status.text()}")

    def _guard(self, fn):
        try:
            return fn()
        except Exception as exc:  # a bad prompt: report it, keep the session as it was
            self.status.setText(f"error: {exc}")
            return None

    def _prompted_session(self):
        """The session with the prompts of the slice shown handed over, or None (error reported)."""
        if self._busy():
            return None

        def prep():
            self._last_commit = None
            self.ensure_prompt_layers()
            self._session()   # refuses a view across another axis than the object's
            self._accepted = self._accept_paint()
            self.send_prompts(self._z())
            return self.seg
        return self._guard(prep)

    def segment_slice(self):
        seg = self._prompted_session()
        if seg is None:
            return
        z, accepted = self._z(), self._accepted

        def done(mask):
            self._show(z_mask=(z, mask))
            self.status.setText(f"slice {z} segmented in {self.last_seconds:.2f}s; correct it with clicks or "
                                "strokes and Segment slice again, or Propagate" + self._accepted_text(accepted))
        self._start(f"segmenting slice {z} ...", seg.segment_slice, z, on_done=done)

    def propagate(self, first=None, said: str = "", after=None, shown=None):
        """Propagate the current object; ``first(seg)``, where given, runs in the worker before it (and
        the prompt layers then show what the session holds; what it returns, a text, follows ``said``);
        ``said`` begins the status line after, and ``after(seg, box)`` (in the worker, the result's box
        given) may end it with a note. ``shown()``, where given, runs in the GUI thread when it is done
        (before the status line is set)."""
        seg = self._prompted_session()
        if seg is None:
            return

        keep = self._kept_session_path()
        accepted = self._accepted

        other = tuple(a for a in range(3) if a != seg.axis)

        def work():
            lead = first(seg) if first is not None else None
            pred = seg.propagate(cancel=self._cancel.is_set)
            # counted here, inside the mask's box: on a large volume a whole-array count in the GUI
            # thread froze it
            box = seg.mask_box()
            inside = pred[box] if box is not None else pred[:0]
            counts = [int(inside.any(other).sum()), int(inside.sum()), None]
            region = seg.mask_box(prior=True)
            if region is not None:   # an edited label: how far the corrections carried
                region = _union(box, region)
                counts[2] = int((pred[region] != seg.prior[region]).any(other).sum())
            try:   # kept on disk, so that closing napari or a crash loses no correction
                kept = seg.save_session(keep)
            except (OSError, ValueError) as exc:   # a full or read-only disk: said, the result kept
                kept = exc
            return counts, kept, (after(seg, box) if after is not None and box is not None else ""), lead or ""

        def done(result):
            (slices, voxels, differ), kept, note, lead = result
            late = self._guard(self._accept_paint) or []   # painted while it ran: kept, for the next step
            self.recommended = self._guard(seg.recommend_slice)
            self._show()
            if first is not None:
                self._guard(self._sync_prompt_layers)
            if shown is not None:
                self._guard(shown)
            r = "" if self.recommended is None else f"; recommended slice to check: {self.recommended}"
            across = "" if seg.axis == 0 else f" across axis {seg.axis}"
            unsaved = f"; the session could not be saved: {kept}" if isinstance(kept, Exception) else ""
            edited = "" if differ is None else f"; {differ} slices differ from the label edited"
            # the session cannot tell whether the object goes on where a sweep was stopped; the user can
            cut = seg.cut_ends
            cut = (f"; stopped early before slice{'s' if len(cut) > 1 else ''} {' and '.join(map(str, cut))}: "
                   "if the object goes on there, correct past it") if cut else ""
            self.status.setText(f"{said}{lead}propagated in {self.last_seconds:.2f}s on {seg.device.type} through {slices} "
                                f"slices{across} ({self._volume_text(voxels)}){edited}{r}{cut}{unsaved}"
                                + self._accepted_text(accepted)
                                + (f"; slice{'s' if len(late) > 1 else ''} {', '.join(map(str, late))} painted "
                                   "while it ran: accepted, Propagate to use them" if late else "") + note)
        self._start("propagating ...", work, on_done=done)

    def goto_slice(self, z: int):
        """Show slice z along the object's axis (of a time-lapse, at the object's time point)."""
        layer = self._layer(self.image.currentText())
        seg = self.seg
        begun = seg is not None and (seg.has_prompts or seg.annotated_slices or seg.mask_box() is not None)
        if begun and layer is not None and self._t is not None and timelapse_data(layer) is not None \
                and self._session_key[0] == (layer.name, _identity(layer)):
            show_time(self.viewer, layer, self._t)
        show_slice(self.viewer, layer, self._axis(), z)

    def goto_recommended(self):
        if self.recommended is None:
            self.status.setText("no recommendation yet: propagate first")
            return
        self.goto_slice(self.recommended)

    def accept_slice(self):
        """The preview slice as painted by the user becomes a trusted annotation."""
        if self._busy() or self._layer(PREVIEW) is None:
            return
        try:
            seg = self._session()
            z = self._z()
            mask = np.asarray(self._here(self._layer(PREVIEW))[_slice_of(seg.axis, z)]) > 0
            seg.set_slice_mask(z, mask)
            self._last_commit = None
        except Exception as exc:  # reported, nothing changed
            self.status.setText(f"error: {exc}")
            return
        self._show()
        self.status.setText(f"slice {z} accepted as painted; Propagate to use it")


    def draw_strokes(self):
        """Select the strokes layer to paint on: object strokes, or background ones with negative on."""
        self._guard(self.ensure_prompt_layers)
        strokes = self._layer(STROKES)
        if strokes is None:
            return   # no image to draw on: the error is shown
        self.viewer.layers.selection.active = strokes
        strokes.selected_label = STROKE_BACKGROUND if self.negative.isChecked() else STROKE_OBJECT
        strokes.mode = "paint"
        self.status.setText("paint strokes on the slice (" + ("red: not the object" if self.negative.isChecked()
                            else "green: the object") + "), then Segment slice; Shift-N switches")

    def _new_object(self):
        self.seg.reset()
        self._grown_over = None   # found of the object given up or committed
        for name in (POS, NEG, EXTREME, BOX):
            lay = self._work(name)   # of a time-lapse, the object's time point's: others' prompts stay
            if lay is not None and len(lay.data):
                lay.data = [] if name == BOX else np.zeros((0, 3))
        strokes = self._layer(STROKES)
        if strokes is not None and self._at(strokes) is not None:
            here = self._here(strokes)
            here[np.flatnonzero(here.any((1, 2)))] = 0   # the planes drawn on only: the rest stays calloc'd
            strokes.refresh()
        elif strokes is not None:
            strokes.data = np.zeros(strokes.data.shape, np.uint8)   # calloc'd: a large volume is not written
        self._strokes_sent = {}
        self._sent = set()
        self.recommended = None
        self._show()

    def undo(self):
        """Undo the session's last step; right after Commit, take the object back out of the objects
        layer and make it the current object again; right after All to next time point, take the
        objects it committed back out."""
        if self._last_commit is not None and isinstance(self._last_commit[4], str) \
                and self._last_commit[4] == CARRIED_ALL:
            if not self._busy() and self._last_commit[0] in self.viewer.layers:
                self._undo_carried()
            elif not self._busy():   # the objects layer was removed since: nothing to take back out
                self._last_commit = None
                self.status.setText("the objects layer is gone: nothing to take back out")
            return
        if not self._history_step(self.seg.undo if self.seg is not None else None):
            return
        if self._last_commit is None or self._last_commit[0] not in self.viewer.layers:
            self.status.setText("undone")
            return
        layer, new, edited, box = self._revert_commit()
        # the object is the current one again, as it was before Commit: redoing the session's reset
        # would drop it from both the session and the layer
        self.seg.clear_redo()
        if edited is not None:   # a label, or the label and the new one of Commit as two
            edited, split = edited if isinstance(edited, tuple) else (edited, 0)
            self._remeasure(layer, edited)
            if split:
                self._remeasure(layer, split)
            if box is not None:
                self._painted_centres(layer, box)
            self.status.setText(f"label {edited} of {layer.name!r} is as it was" + (f" (and label {split} gone)" if split
                                                                                     else "")
                                + "; the corrected object is the current object again")
            return
        labels = [int(v) for v in np.unique(new)] or [0]   # one, or the two of Commit as two
        self._forget_objects(layer, labels)
        if self._carry is not None and self._carry["label"] in labels:   # current again, as carried
            self._carry_source, self._carry = self._carry["source"], None
        which = f"object {labels[0]}" if len(labels) == 1 else f"objects {' and '.join(map(str, labels))}"
        self.status.setText(f"{which} taken back out of {layer.name}; {'it is' if len(labels) == 1 else 'they are'} "
                            "the current object again")

    def _forget_objects(self, layer, labels: list):
        """Objects taken back out of ``layer``: their rows, what Next time point would carry of them
        and their points of the paths gone."""
        drop_rows(layer, labels)
        for label in labels:
            self._records.pop(label, None)
        self._set_centres(layer, dict.fromkeys(labels), dict.fromkeys(labels))

    def _revert_commit(self):
        """The voxels of the last commit (``_last_commit``) as they were before it, where the user has
        not painted over them since; (layer, the ids it wrote, the label edited, the box changed)."""
        layer, where, old, new, edited = self._last_commit
        self._last_commit = None
        data = layer.data
        idx = np.unravel_index(where, data.shape)
        mine = data[idx] == new                # what the user has not painted over since
        data[tuple(i[mine] for i in idx)] = old[mine]
        layer.data = data
        layer.refresh()
        box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx) if len(where) else None
        if box is not None:
            self._keeper.write(layer, box)
        return layer, new, edited, box

    def redo(self):
        """What Undo took back, again, until a new step is taken (not a Commit that Undo took back out
        of its layer: the object is the current one, and Commit puts it back)."""
        if self._history_step(self.seg.redo if self.seg is not None else None):
            self.status.setText("redone")

    def _history_step(self, step) -> bool:
        """Undo or redo the session (``step``), then show it and its prompts; False when refused."""
        if self._busy() or step is None:
            return False
        try:
            step()
        except ValueError as exc:
            self.status.setText(f"error: {exc}")
            return False
        self._show()
        self._guard(self._sync_prompt_layers)
        return True

    def reset(self):
        if self._busy() or self.seg is None:
            return
        self._last_commit, self._carry_source = None, None   # a carried object given up: not a step of its cell
        self._new_object()
        self.status.setText("object reset (Undo brings it back)")

    def cancel(self):
        self._cancel.set()
        self.status.setText("cancelling ...")

    def _painted(self, layer, atoms):
        painted = self._paint.get(layer, (None, None))
        if painted[1] is not layer.data:
            painted = (None, layer.data)
        for box in _atom_boxes(atoms, tuple(layer.data.shape)):
            self._stale_add(layer, box)
            painted = (_union(painted[0], box), painted[1])
        self._paint[layer] = painted


    def _accept_paint(self) -> list[int]:
        """The slices of the preview the brush changed since it was last drawn, and left without
        Accept painted slice, accepted as painted (the user's correction; the step about to run
        would otherwise draw over it). Returns those slices. Of a time-lapse, what was painted at
        the object's time point (elsewhere the preview shows no object, and the next step clears it)."""
        preview, seg = self._layer(PREVIEW), self.seg
        box, data = self._paint.pop(preview, (None, None)) if preview is not None else (None, None)
        if seg is None or box is None or data is not preview.data:
            return []
        box, data = narrow(box, self._at(preview)), self._here(preview)
        if box is None or tuple(data.shape) != seg.volume_shape:
            return []
        shown = np.asarray(data[box]) > 0
        other = tuple(a for a in range(3) if a != seg.axis)
        differ = (shown != seg.prediction_in(box)).any(other)
        zs = [int(box[seg.axis].start + i) for i in np.flatnonzero(differ)]
        for z in zs:
            seg.set_slice_mask(z, np.asarray(data[_slice_of(seg.axis, z)]) > 0)
        return zs

    @staticmethod
    def _accepted_text(zs) -> str:
        return (f"; painted slice{'s' if len(zs) > 1 else ''} {', '.join(map(str, zs))} accepted first"
                if zs else "")

    def _stale_add(self, layer, box):
        old, data = self._stale.get(layer, (None, None))
        if data is layer.data:
            self._stale[layer] = (_union(old, box), data)

    def _show(self, z_mask=None):
        preview = self._layer(PREVIEW)
        if preview is None or self.seg is None:
            return
        seg = self.seg
        if z_mask is not None:
            z, m = z_mask
            plane = _slice_of(seg.axis, z)
            self._here(preview)[plane] = m.astype(preview.data.dtype)
            self._stale_add(preview, widen(_full(plane, seg.volume_shape), self._at(preview)))
        else:
            box, at, here = seg.mask_box(), self._at(preview), self._here(preview)
            if (tuple(here.shape) != seg.volume_shape or not isinstance(preview.data, np.ndarray)
                    or self._stale.get(preview, (None, None))[1] is not preview.data):
                if at is None:
                    preview.data = seg.prediction.astype(np.uint8)
                else:   # of a time-lapse: the object at its time point, nothing at the others
                    whole = np.zeros((preview.data.shape[0],) + seg.volume_shape, np.uint8)
                    whole[at] = seg.prediction
                    preview.data = whole
            else:
                stale = self._stale[preview][0]
                for t in range(stale[0].start, stale[0].stop) if at is not None and stale is not None else ():
                    if t != at:   # painted at another time point: no object is there
                        preview.data[t][stale[1:]] = 0
                # the slice shown too: anything written into it directly (a script, a paint event
                # missed) is put right like the rest
                z = min(max(self._z(seg.axis), 0), seg.volume_shape[seg.axis] - 1)
                region = _union(_union(narrow(stale, at), box), _full(_slice_of(seg.axis, z), seg.volume_shape))
                here[region] = seg.prediction[region]
            self._stale[preview] = (widen(box, at), preview.data)
            self._paint.pop(preview, None)   # drawn over: what was painted and not accepted is gone
        preview.refresh()
        self.plot.set_data(self.seg.quality, self._z(), self.recommended, self.seg.annotated_slices,
                           self.seg.cut_ends)


