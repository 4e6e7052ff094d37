"""InteractiveSegmenter: one object, prompted on slices, propagated through the volume.

Every public method validates its input before touching the session, so an error leaves the
state exactly as it was; every change is undoable.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from .adapt import adapt_decoder
from .baseline import interpolate_masks
from .column import ColumnReader
from .model_io import load_memnet
from . import propagation
from . import prior as prior_edit
from .prior import keep_prior, with_slices
from .propagation import annotation_roi, merge, propagate_volume, to_volume_masks
from .quality import QualityModel, distance_scale, load_for, slice_features
from .roi import (ROI, crop_stack, guidance_maps, mask_bbox, network_images, paste_logits, resize, roi_from_bbox,
                  zscore_stats)
from .slice_masks import SliceMasks
from ..io.labels import whole_labels
from ..io.volume import VolumeError

# Off: recommend past an end cut by a stop rule, this fraction of the extent away (scored on the
# validation regions by benchmarks/interactive_variants.py, no reliable gain)
EXPLORE = None
# "quality": the slice with the lowest predicted Dice (Mem3D); "voxels": the most expected wrong
# voxels, (1 - predicted Dice) x the largest predicted area within a slice of it; "auto": voxels
# with a quality model, quality with the head alone (benchmarks/quality_calibration.py: voxels gains
# 0.045 +- 0.018 Dice at round 6 over 40 validation regions with the model, loses with the head)
RECOMMEND_BY = "auto"
MEMORY_REACH = 15   # slices: an annotated neighbour further away than this does not help a prompt
# Between two consecutive painted (set_slice_mask), non-empty slices at most this many mm apart the
# mask is the signed-distance interpolation of the two ("fill between slices"), not the propagation:
# from exact masks a few mm apart it is the better guess (benchmarks/painted.py: +0.045 mean Dice
# over 1..6 painted slices on 24 AAL regions the rule was not chosen on, no count of slices worse);
# farther apart the network is better. 0: off.
PAINTED_GAP_MM = 12.0
# Any two consecutive non-empty annotated slices (segmented from boxes or clicks too) at most this far
# apart are filled between the same way: on the box protocol's validation regions round 6 went 0.644
# -> 0.660 (8 mm; 12 mm: 0.649), then on the 24 further regions 0.696 -> 0.710, 16 regions better and
# one worse (benchmarks/README.md, "Filling between close segmented slices"). 0: painted slices only.
FILL_SEGMENTED_MM = 8.0
HISTORY = 50
# the object's column as read by the last propagation is kept for the next while it is this small:
# a correction rarely moves the ROI, so propagating again reads nothing
COLUMN_CACHE_BYTES = 256 * 2 ** 20
# Clicks alone (no box, no annotated slice to size the object by) are segmented in a crop of
# 2 * CLICK_HALF pixels around them, then in crops CLICK_SCALE_STEP times wider up to the slice; a
# wider one is kept where the quality head predicts a Dice at least CLICK_SCALE_GAIN higher than
# the first crop's (benchmarks/click_scale.py: one click inside a 100-pixel object found 4 % of it).
# 0: off.
CLICK_HALF = 16
CLICK_SCALE_STEP = 1.5
CLICK_SCALE_GAIN = 0.2

# Corrective clicks (benchmarks/clicks.py, a simulated user clicking the largest error; rules and
# figures in benchmarks/README.md). BOX_SPENT: a box is spent once its slice is segmented, so later
# clicks refine that mask (it joins the memory, the clicks guide) instead of joining the box's
# guidance, a mix the network never saw in training: on 24 AAL regions one click after a box took
# slice Dice from 0.766 to 0.729 that way, and to 0.777 by refining. Extreme points are not spent:
# clicks after them move the mask by under 0.02 either way. MONOTONE_CLICKS: when the clicks since the
# slice was last segmented are all of one sign, positive ones only add to the mask they correct and
# negative ones only remove from it, so a click never undoes what was right elsewhere (0.782 after
# one click; +0.009 to +0.017 after 3 and 5 clicks on 16 regions used for nothing else).
# False and False: the behaviour before 2026-12-02.
BOX_SPENT = True
MONOTONE_CLICKS = True


def _click_halves(half: float, slice_shape) -> list[float]:
    """Half-sides of the crops tried around clicks alone: ``half``, then CLICK_SCALE_STEP times wider
    up to the one an object as wide as the slice would be given."""
    out, last = [float(half)], max(slice_shape) / 2
    while out[-1] < last:
        out.append(min(out[-1] * CLICK_SCALE_STEP, last))
    return out

class InteractiveError(ValueError):
    """A prompt or request the session cannot honour; the session state is unchanged."""


class LabelMissing(InteractiveError):
    """start_from was asked for a label the label volume does not hold."""


@dataclass
class _Prompts:
    pos: list = field(default_factory=list)
    neg: list = field(default_factory=list)
    box: tuple | None = None
    extreme: list | None = None
    pos_mask: np.ndarray | None = None
    neg_mask: np.ndarray | None = None
    segmented: bool = False   # the slice has been segmented from these prompts (its box is spent)
    new_signs: set = field(default_factory=set)   # signs of the clicks and scribbles since it was segmented

    def has_positive(self) -> bool:
        return bool(self.pos or self.box or self.extreme or self.pos_mask is not None)

    def has_clicks(self) -> bool:
        return bool(self.pos or self.neg or self.pos_mask is not None or self.neg_mask is not None)


@dataclass
class _State:
    prompts: dict = field(default_factory=dict)        # z -> _Prompts
    annotations: dict = field(default_factory=dict)    # z -> bool (Y, X), trusted
    painted: set = field(default_factory=set)          # annotated slices the user gave as masks
    pending: set = field(default_factory=set)          # prompted slices not segmented since
    prediction: SliceMasks | None = None
    quality: np.ndarray | None = None
    open_ends: dict = field(default_factory=dict)      # see Propagation.open_ends
    features: dict = field(default_factory=dict)       # z -> quality features, see quality.FEATURES
    prior: SliceMasks | None = None   # an existing segmentation being corrected (start_from), see prior.py

    def copy(self) -> "_State":
        """A copy that may be changed; masks and arrays are shared because they are never mutated (a
        new prediction is a SliceMasks copy with the changed slices replaced), so the undo history
        holds only what each step changed (slice_masks.py)."""
        return _State(copy.deepcopy(self.prompts), dict(self.annotations), set(self.painted), set(self.pending),
                      self.prediction, self.quality, dict(self.open_ends), self.features, self.prior)


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        d = None
    if d is None or d.type not in ("cpu", "cuda"):
        raise InteractiveError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise InteractiveError(f"device {device!r} requested but CUDA is not available")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise InteractiveError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
    return d


class InteractiveSegmenter:
    """Segment one object in a (Z, Y, X) volume from prompts on a few slices.

    ``volume`` may be numpy, dask or zarr, any numeric dtype; only the region around the object
    is read. Points are (y, x), boxes inclusive pixel bounds (y0, x0, y1, x1). ``axis`` is the axis
    the object is sliced along (0: the (Y, X) slices; 1 or 2 for the other planes, e.g. coronal or
    sagittal slices of a scan): slice indices count along it, and (y, x) are the other two axes in
    their order. ``shape`` and ``spacing`` are then the volume's with ``axis`` first; ``prediction``
    and ``propagate()`` are in the volume's own orientation. ``strict_ends``
    ends sweeps sooner where an object narrows and widens again or turns as dark as its
    surroundings: for touching objects of equal brightness such as nuclei.
    """

    def __init__(self, volume, spacing=None, device: str = "auto", weights="default", tta: bool = True,
                 quality_stop: float | None = None, quality_model="auto", strict_ends: bool = False,
                 axis: int = 0):
        shape = getattr(volume, "shape", None)
        if shape is None:
            raise InteractiveError(f"volume must be an array (numpy, dask or zarr), got {type(volume).__name__}")
        if len(shape) != 3:
            raise InteractiveError(f"volume must be 3D (Z, Y, X); got {len(shape)}D with shape {tuple(shape)}")
        if min(shape) == 0:
            raise InteractiveError(f"volume is empty: shape {tuple(shape)}")
        dt = np.dtype(volume.dtype)
        if not (np.issubdtype(dt, np.number) or dt == bool) or np.issubdtype(dt, np.complexfloating):
            raise InteractiveError(f"volume must be real numeric, got dtype {dt}")
        if isinstance(volume, np.ndarray) and np.issubdtype(dt, np.floating) and not np.isfinite(volume).all():
            raise InteractiveError("volume contains NaN or infinite values; fill or mask them first")
        if spacing is not None and (len(spacing) != 3 or not all(np.isfinite(float(v)) and float(v) > 0
                                                                 for v in spacing)):
            raise InteractiveError(f"spacing must be 3 positive numbers (z, y, x), got {spacing}")
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or not -3 <= axis < 3:
            raise InteractiveError(f"axis must be 0, 1 or 2 (the axis slices are taken along), got {axis!r}")
        self.axis = int(axis) % 3
        self.volume_shape = tuple(int(s) for s in shape)
        order = axis_order(self.axis)
        self.volume = volume if self.axis == 0 else AxisView(volume, self.axis)
        self.shape = tuple(self.volume_shape[a] for a in order)
        spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0, 1.0, 1.0)
        self.spacing = tuple(spacing[a] for a in order)
        self.volume_spacing = spacing   # in the volume's own orientation, as volume_shape
        self.device = _pick_device(device)
        self.tta = bool(tta)   # average with a mirrored propagation: more accurate, twice the work
        self.net, self.weights_meta = load_memnet(weights, self.device)
        # "auto": the model fitted for these weights if there is one; None: the network's head alone
        try:
            if quality_model == "auto":
                self.quality_model = load_for(self.weights_meta)
            elif quality_model is None or isinstance(quality_model, QualityModel):
                self.quality_model = quality_model
            else:
                self.quality_model = QualityModel.load(quality_model)
        except ValueError as exc:
            raise InteractiveError(str(exc)) from exc
        self._check_model(self.quality_model)
        # past the annotations a sweep ends below this predicted Dice (0: never), judged by the quality
        # model when there is one; None: the threshold chosen for that judge
        self._stop_given = quality_stop
        self._judge_with(self.quality_model)
        # stricter end rules past the annotations (propagation.STRICT_ENDS): for touching objects of
        # equal brightness, e.g. nuclei; may be changed between propagations
        self.strict_ends = bool(strict_ends)
        self._s = _State()
        self._history: list[_State] = []
        self._future: list[_State] = []   # undone states, the latest last (redo)
        self._column: tuple[ROI, ColumnReader] | None = None
        self.restored_propagation = False   # from_session: the saved propagation came back with it

    def use_quality_model(self, model):
        """From the next propagation on, ``model`` (a QualityModel fitted for these weights, e.g. on the
        user's own objects with train.quality_fit.fit_quality; None: the network's head) reports the
        quality, chooses the recommended slice and judges where sweeps end."""
        if model is not None and not isinstance(model, QualityModel):
            raise InteractiveError(f"quality model must be a QualityModel or None, got {type(model).__name__}")
        self._check_model(model)
        self._judge_with(model)

    def _check_model(self, model):
        sha = model.meta.get("weights_sha256") if model is not None else None
        if sha is not None and sha != self.weights_meta.get("sha256"):
            raise InteractiveError(f"this quality model was fitted for other weights (sha256 {sha}); "
                                   "fit one for these")

    def _judge_with(self, model):
        self.quality_model = model
        self.stop_model = model if propagation.STOP_BY_MODEL else None
        stop = self._stop_given
        if stop is None:
            stop = propagation.QUALITY_STOP if self.stop_model is None else propagation.MODEL_STOP
        self.quality_stop = float(stop)

    # -- read-only views ----------------------------------------------------------------------------
    @property
    def prediction(self) -> np.ndarray:
        """Current 3D mask, in the volume's orientation: the last propagation, with annotated slices
        as the user gave them (a new array)."""
        return self._oriented(self._current().dense())

    def prediction_in(self, box) -> np.ndarray:
        """``prediction[box]`` (``box``: (Z, Y, X) slices with bounds, in the volume's orientation),
        read from the slices inside it only: a view checking a painted box does not build the whole
        volume's mask."""
        return self._oriented(self._current().region(tuple(box[a] for a in axis_order(self.axis))))

    def _current(self) -> SliceMasks:
        if self._s.prediction is not None:
            return self._s.prediction
        return with_slices(SliceMasks(self.shape), self._s.annotations)

    def mask_box(self, prior: bool = False):
        """The bounding box of the current mask (``prior``: of the mask the session started from) as
        (Z, Y, X) slices in the volume's orientation, None when it is empty (or there is no prior): a
        viewer showing a large volume rewrites only that part (and the last one)."""
        if prior and self._s.prior is None:
            return None
        box = (self._s.prior if prior else self._current()).bbox()
        if box is None:
            return None
        out = [None] * 3
        for a, sl in zip(axis_order(self.axis), box):
            out[a] = sl
        return tuple(out)

    def _oriented(self, frame: np.ndarray) -> np.ndarray:
        """A (slices, rows, columns) array of the session in the volume's orientation (a view)."""
        return frame if self.axis == 0 else np.moveaxis(frame, 0, self.axis)

    @property
    def quality(self) -> np.ndarray:
        if self._s.quality is None:
            return np.full(self.shape[0], np.nan)
        return self._s.quality.copy()

    @property
    def slice_features(self) -> dict[int, np.ndarray]:
        """z -> the features the predicted quality is computed from (quality.FEATURES order)."""
        return {z: f.copy() for z, f in self._s.features.items()}

    @property
    def cut_ends(self) -> list[int]:
        """The slices just past the current mask's ends where the last propagation's sweep was
        stopped by the quality rule while the network still saw the object: it may go on there, and
        only the user can tell. A correction past such an end is often the best next one
        (benchmarks/README.md, "Which slice to correct next: the headroom")."""
        ends = self._s.open_ends or {}
        if not ends or self._s.prediction is None:
            return []
        zs = self._s.prediction.nonempty()
        if not zs:
            return []
        out = [z for d, z in ((-1, min(zs) - 1), (1, max(zs) + 1)) if d in ends]
        return [z for z in out if 0 <= z < self.shape[0] and z not in self._s.annotations]

    @property
    def annotated_slices(self) -> list[int]:
        return sorted(self._s.annotations)

    @property
    def painted_slices(self) -> list[int]:
        """The annotated slices whose masks the user gave (set_slice_mask), not segmented from prompts."""
        return sorted(self._s.painted)

    def annotation(self, z: int) -> np.ndarray:
        """The trusted mask of an annotated slice (a copy), e.g. to carry it into another session."""
        z = self._z(z)
        if z not in self._s.annotations:
            raise InteractiveError(f"slice {z} is not annotated (annotated: {self.annotated_slices})")
        return self._s.annotations[z].copy()

    @property
    def prompts(self) -> dict[int, dict]:
        """The prompts the session holds, per slice: ``{z: {"pos": [(y, x)], "neg": [(y, x)], "box":
        (y0, x0, y1, x1) or None, "extreme": [(y, x)] * 4 or None, "pos_mask": bool (Y, X) or None,
        "neg_mask": ...}}``, copies. Clicks a new box or new extreme points replaced are gone, as the
        segmentation no longer uses them; a view redraws what it shows from this after an undo or
        when a saved session is opened."""
        out = {}
        for z, p in sorted(self._s.prompts.items()):
            out[z] = {"pos": list(p.pos), "neg": list(p.neg), "box": p.box,
                      "extreme": None if p.extreme is None else list(p.extreme),
                      "pos_mask": None if p.pos_mask is None else p.pos_mask.copy(),
                      "neg_mask": None if p.neg_mask is None else p.neg_mask.copy()}
        return out

    @property
    def has_prompts(self) -> bool:
        """Prompts were given that no segmentation has used yet."""
        return bool(self._s.pending)

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    @property
    def can_redo(self) -> bool:
        return bool(self._future)

    # -- validation ----------------------------------------------------------------------------------
    def _z(self, z) -> int:
        if isinstance(z, (bool, np.bool_)) or not float(z).is_integer():
            raise InteractiveError(f"slice index must be an integer, got {z!r}")
        z = int(z)
        if not 0 <= z < self.shape[0]:
            raise InteractiveError(f"slice {z} is outside the volume (0..{self.shape[0] - 1})")
        return z

    def _point(self, y, x, what="point") -> tuple[int, int]:
        fy, fx = float(y), float(x)
        if not (np.isfinite(fy) and np.isfinite(fx)):
            raise InteractiveError(f"{what} ({y}, {x}) is not finite")
        yi, xi = int(round(fy)), int(round(fx))
        if not (0 <= yi < self.shape[1] and 0 <= xi < self.shape[2]):
            raise InteractiveError(f"{what} ({y}, {x}) is outside the {self.shape[1]}x{self.shape[2]} slice")
        return yi, xi

    def _mask2d(self, mask, what="mask") -> np.ndarray:
        m = np.asarray(mask)
        if m.shape != self.shape[1:]:
            raise InteractiveError(f"{what} must have the slice shape {self.shape[1:]}, got {m.shape}")
        try:   # a float mask of 0.3 (a probability) is not "object": refused, not taken as nonzero
            return whole_labels(m, f"the {what}").astype(bool)
        except VolumeError as exc:
            raise InteractiveError(str(exc)) from None

    def _push(self) -> _State:
        """Snapshot for undo; the live state (a copy) may then be changed. A new step ends what could
        be redone."""
        self._history.append(self._s)
        self._s = self._s.copy()
        del self._history[:-HISTORY]
        self._future.clear()
        return self._s

    def _prompts(self, s: _State, z: int) -> _Prompts:
        return s.prompts.setdefault(z, _Prompts())

    def _outline_prompts(self, s: _State, z: int) -> _Prompts:
        """The prompts a new box or extreme points join: after the slice was segmented they start
        afresh, since the new outline redefines the object there and the clicks that corrected
        the old mask do not apply to the new one."""
        p = s.prompts.get(z)
        if p is None or (p.segmented and BOX_SPENT):
            p = s.prompts[z] = _Prompts()
        return p

    # -- prompts -------------------------------------------------------------------------------------
    def add_click(self, z, y, x, positive: bool = True):
        z = self._z(z)
        p = self._point(y, x, "click")
        s = self._push()
        (self._prompts(s, z).pos if positive else self._prompts(s, z).neg).append(p)
        self._prompts(s, z).new_signs.add(bool(positive))
        s.pending.add(z)

    def _box(self, y0, x0, y1, x1) -> tuple[int, int, int, int]:
        a = self._point(y0, x0, "box corner")
        b = self._point(y1, x1, "box corner")
        if a[0] > b[0] or a[1] > b[1]:
            raise InteractiveError(f"box ({y0}, {x0}, {y1}, {x1}) must have y0 <= y1 and x0 <= x1")
        return a[0], a[1], b[0], b[1]

    def add_box(self, z, y0, x0, y1, x1):
        z = self._z(z)
        box = self._box(y0, x0, y1, x1)
        s = self._push()
        self._outline_prompts(s, z).box = box
        s.pending.add(z)

    def add_extreme_points(self, z, points):
        z = self._z(z)
        pts = [tuple(p) for p in points]
        if len(pts) != 4 or any(len(p) != 2 for p in pts):
            raise InteractiveError(f"extreme points: need exactly 4 (y, x) points (top, bottom, left, right), "
                                   f"got {len(pts)}")
        pts = [self._point(y, x, "extreme point") for y, x in pts]
        ys, xs = zip(*pts)
        if max(ys) == min(ys) and max(xs) == min(xs):
            raise InteractiveError("extreme points all coincide; they must span the object")
        s = self._push()
        self._outline_prompts(s, z).extreme = pts
        s.pending.add(z)

    def add_scribble(self, z, mask2d, positive: bool = True):
        z = self._z(z)
        m = self._mask2d(mask2d, "scribble")
        if not m.any():
            raise InteractiveError(f"scribble on slice {z} is empty")
        s = self._push()
        p = self._prompts(s, z)
        key = "pos_mask" if positive else "neg_mask"
        old = getattr(p, key)
        setattr(p, key, m if old is None else (old | m))
        p.new_signs.add(bool(positive))
        s.pending.add(z)

    def set_slice_mask(self, z, mask2d, painted: bool = True):
        """A painted or corrected slice, trusted as truth (an empty mask says: the object is not here).
        ``painted=False``: a trusted mask that was segmented, not drawn (e.g. carried over from another
        session), which painted neighbours are interpolated from only as close as any annotated slice
        (FILL_SEGMENTED_MM, not PAINTED_GAP_MM)."""
        z = self._z(z)
        m = self._mask2d(mask2d).copy()
        s = self._push()
        s.annotations[z] = m
        if painted:
            s.painted.add(z)
        else:
            s.painted.discard(z)
        s.prompts.pop(z, None)
        s.pending.discard(z)
        s.prediction = None if s.prediction is None else with_slices(s.prediction, {z: m})

    def start_from(self, mask3d, label: int | None = None, cancel=None) -> int:
        """Correct an existing segmentation of the object (an automatic result, an object committed
        earlier, another tool's mask: a (Z, Y, X) array in the volume's orientation, numpy, dask or
        zarr, nonzero = object, or ``label`` = object in a label volume) instead of starting from
        nothing. It becomes the current mask; corrected slices replace it and their propagation
        replaces it next to them until the two agree again (prior.py); it stands everywhere else.
        Only on a session without prompts or slices (reset first); undoable. The mask is read a slab
        at a time (``cancel()`` is asked between slabs); returns its voxel count."""
        if not hasattr(mask3d, "shape") or not hasattr(mask3d, "dtype"):
            mask3d = np.asarray(mask3d)
        shape = tuple(mask3d.shape)
        if shape != self.volume_shape:
            raise InteractiveError(f"the mask to start from has shape {shape}; the volume's is {self.volume_shape}")
        if self._s.annotations or self._s.prompts:
            raise InteractiveError("this session already has prompts or slices: reset it before starting "
                                   "from a mask")
        try:   # float-stored labels (FSL, SPM masks) as integers; probabilities refused
            mask3d = whole_labels(mask3d, "the mask to start from")
        except VolumeError as exc:
            raise InteractiveError(str(exc)) from None
        m = SliceMasks.from_volume(mask3d, self.axis, label, cancel)
        if not m.any():
            if label is not None:
                raise LabelMissing(f"label {label} is not in the mask to start from")
            raise InteractiveError("the mask to start from is empty")
        s = self._push()
        s.prior, s.prediction = m, m
        s.quality, s.features, s.open_ends = None, {}, {}
        return int(m.areas().sum())

    @property
    def prior(self) -> np.ndarray | None:
        """The segmentation the session corrects (start_from), in the volume's orientation; None if it
        started from nothing."""
        return None if self._s.prior is None else self._oriented(self._s.prior.dense())

    # -- computation ---------------------------------------------------------------------------------
    def _read(self, zs, roi) -> np.ndarray:
        """Image crops of slices zs in the ROI, from any array type, read once."""
        y0, x0 = max(roi.y0, 0), max(roi.x0, 0)
        y1, x1 = min(roi.y0 + roi.side, self.shape[1]), min(roi.x0 + roi.side, self.shape[2])
        if isinstance(zs, slice):
            block = self.volume[zs, y0:y1, x0:x1]
        else:
            block = np.stack([np.asarray(self.volume[z, y0:y1, x0:x1]) for z in zs])
        block = np.asarray(block, dtype=np.float32)
        if not np.isfinite(block).all():
            raise InteractiveError("the volume contains NaN or infinite values around the object")
        return _crop_read(block, roi, (y0, x0))

    def _column_of(self, roi: ROI) -> ColumnReader:
        """The ROI's column through the stack, read as the sweeps reach it (the last one if the ROI
        has not moved)."""
        if self._column is not None and self._column[0] == roi:
            return self._column[1]
        return ColumnReader(lambda z0, z1: self._read(slice(z0, z1), roi), self.shape[0], roi.side)

    def _segment(self, s: _State, z: int) -> np.ndarray:
        return self._segment_judged(s, z)[0]

    def _segment_judged(self, s: _State, z: int) -> tuple[np.ndarray, float]:
        """Slice z's mask from its prompts and the prompt network's predicted Dice of it (nan where
        the network did not run: no click since the slice's last segmentation)."""
        p = s.prompts.get(z)
        if p is None or not (p.has_positive() or p.neg or p.neg_mask is not None):
            raise InteractiveError(f"slice {z} has no prompt to segment from")
        current = s.annotations.get(z)
        if current is None and s.prediction is not None and z in s.prediction.nonempty():
            current = s.prediction[z]
        corrected = BOX_SPENT and p.segmented and p.has_clicks() and current is not None and current.any()
        if corrected and not p.new_signs:
            return current.copy(), float("nan")   # no click since its last segmentation: nothing changes
        # clicks after the slice was segmented from its box correct that mask: the box is spent
        refine = corrected and p.box is not None
        if refine:
            box = None
        elif p.box is not None:
            box = p.box
        elif p.extreme is not None:
            ys, xs = zip(*p.extreme)
            box = (min(ys), min(xs), max(ys), max(xs))
        else:
            box = None
        if box is not None:
            rois = [roi_from_bbox(*box)]
        else:
            pts = list(p.pos) + ([tuple(a) for a in np.argwhere(p.pos_mask)] if p.pos_mask is not None else [])
            near = [a for a in s.annotations if a != z and s.annotations[a].any()]
            ref = current if current is not None and current.any() else (
                s.annotations[min(near, key=lambda a: abs(a - z))] if near else None)
            if ref is not None:
                b = mask_bbox(ref)
                pts += [(b[0], b[1]), (b[2], b[3])]
            if not pts:
                raise InteractiveError(f"slice {z} has only negative prompts and nothing to correct; "
                                       "add a positive click, a box or extreme points")
            ys, xs = zip(*pts)
            cy, cx = (min(ys) + max(ys)) / 2, (min(xs) + max(xs)) / 2
            half = max(CLICK_HALF, (max(ys) - min(ys)) / 2, (max(xs) - min(xs)) / 2)
            # clicks alone do not say how big the object is, and the network takes the crop's scale
            # for it: wider crops are tried too (below)
            halves = _click_halves(half, self.shape[1:]) if ref is None and CLICK_SCALE_GAIN > 0 else [half]
            rois = [roi_from_bbox(int(cy - h), int(cx - h), int(cy + h), int(cx + h)) for h in halves]
        mem = []
        near = [a for a in s.annotations if a != z and abs(a - z) <= MEMORY_REACH]
        if near:
            a = min(near, key=lambda a: abs(a - z))
            mem.append((a, s.annotations[a]))
        if current is not None and box is None:
            # clicks refine the current mask; a box or extreme points redefine the object on this
            # slice, and a wrong current mask in memory would only pull the result back towards it
            mem.append((z, current))
        runs = [self._run_net(z, r, p, box, mem) for r in rois]
        # a wider crop only where the quality head is clearly surer of it than of the first
        best = max(range(len(runs)), key=lambda i: runs[i][1])
        new, q = runs[best if runs[best][1] >= runs[0][1] + CLICK_SCALE_GAIN else 0]
        return self._finish(new, p, current, box), q

    def _run_net(self, z: int, roi, p, box, mem) -> tuple[np.ndarray, float]:
        """The prompt network on slice z's crop ``roi``: the slice's mask and the predicted Dice."""
        zs = [z] + [m[0] for m in mem]
        crops = self._read(zs, roi)
        anchor = crops[1] if mem else crops[0]
        S = self.net.size
        images = network_images(crops, S, zscore_stats(anchor)).to(self.device)
        pos = list(p.pos) + list(p.extreme or [])
        guide = torch.from_numpy(guidance_maps(roi, S, pos=pos, neg=p.neg, box=box, pos_mask=p.pos_mask,
                                               neg_mask=p.neg_mask))[None].to(self.device)
        k = len(mem)
        if k:
            masks = resize(crop_stack(np.stack([m for _, m in mem]).astype(np.float32), roi, 0), S)
            mi, mm = images[1:][None], masks.to(self.device)[None]
        else:
            mi = mm = images.new_zeros(1, 0, 1, S, S)
        valid = torch.ones(1, k, dtype=torch.bool, device=self.device)
        # the nearest memory slice's mask (the slice's own when clicks refine it), for prev_input networks
        prev = mm[:, min(range(k), key=lambda i: abs(mem[i][0] - z))] if k else images.new_zeros(1, 1, S, S)
        with torch.no_grad():
            logits, q = self.net(images[:1], guide, mi, mm, valid, prev)
            if self.tta:
                mirrored, q2 = self.net(images[:1].flip(-1), guide.flip(-1), mi.flip(-1), mm.flip(-1), valid,
                                        prev.flip(-1))
                logits, q = (logits + mirrored.flip(-1)) / 2, (q + q2) / 2
        return paste_logits(logits[0, 0].cpu(), roi, self.shape[1:]), float(q.reshape(-1)[0])

    def _finish(self, new: np.ndarray, p, current, box) -> np.ndarray:
        if MONOTONE_CLICKS and current is not None and box is None and len(p.new_signs) == 1:
            # the mask being corrected: positive clicks ask for more of the object, negative ones for
            # less; given both at once, the network's answer stands
            new = (new | current) if True in p.new_signs else (new & current)
        # what the user stroked is what they said: the network left out 15 % of stroked pixels (some
        # strokes wholly); keeping them lifts slice Dice, most after extreme points (benchmarks/README.md,
        # "Strokes instead of clicks")
        if p.pos_mask is not None:
            new |= p.pos_mask
        if p.neg_mask is not None:
            new &= ~p.neg_mask
        return new

    def segment_slice(self, z) -> np.ndarray:
        """Segment slice z from its prompts (and its annotated neighbours); the slice joins the memory."""
        z = self._z(z)
        mask = self._segment(self._s, z)          # may raise: state untouched
        s = self._push()
        s.annotations[z] = mask
        s.prompts[z].segmented, s.prompts[z].new_signs = True, set()
        s.painted.discard(z)
        s.pending.discard(z)
        if s.prediction is not None:
            s.prediction = with_slices(s.prediction, {z: mask})
        return mask.copy()

    def try_box(self, z, box) -> tuple[np.ndarray, float]:
        """What slice z would be segmented as from ``box`` (y0, x0, y1, x1) alone, and the prompt
        network's predicted Dice of it; the session is unchanged (a trial: where to put a box that
        is not known, carry.find_again)."""
        z = self._z(z)
        trial = self._s.copy()
        trial.prompts[z] = _Prompts(box=self._box(*box))
        trial.annotations.pop(z, None)
        return self._segment_judged(trial, z)

    def propagate(self, cancel=None) -> np.ndarray:
        """Segment pending prompted slices, then propagate through the volume. Returns a bool mask in
        the volume's orientation."""
        work = self._s.copy()
        for z in sorted(work.pending):
            work.annotations[z] = self._segment(work, z)
            work.prompts[z].segmented, work.prompts[z].new_signs = True, set()
            work.painted.discard(z)
        work.pending = set()
        if not any(m.any() for m in work.annotations.values()):
            if work.prior is None:
                raise InteractiveError("propagate needs at least one slice with the object: add a box, clicks, "
                                       "extreme points or a mask first")
            return self._apply_to_prior(work)   # only empty slices: nothing to propagate from
        roi = annotation_roi(work.annotations)
        column = self._column_of(roi)
        net = adapt_decoder(self.net, column, work.annotations, roi, self.device)
        args = (net, column, work.annotations, roi, self.device, cancel)
        zscale = distance_scale(self.spacing)
        kw = {"quality_stop": self.quality_stop, "stop_model": self.stop_model, "zscale": zscale,
              "ends": propagation.STRICT_ENDS if self.strict_ends else None}
        passes = [propagate_volume(*args, **kw)]
        if self.tta:
            passes.append(propagate_volume(*args, flip=True, **kw))
        self._column = (roi, column) if column.nbytes <= COLUMN_CACHE_BYTES else None
        prop = merge(*passes) if self.tta else passes[0]
        masks = to_volume_masks(prop, self.shape)
        pred = SliceMasks(self.shape)
        for z, m in masks.items():
            pred[z] = m
        quality = np.full(self.shape[0], np.nan)
        for z, q in prop.quality.items():
            quality[z] = q
        filled = self._fill_between_close(work, pred)
        for z, m in work.annotations.items():
            pred[z] = m
        work.features = slice_features(passes, pred, work.annotations, zscale)
        if self.quality_model is not None:
            for z, q in self.quality_model.predict(work.features, self.tta).items():
                quality[z] = q
        if work.prior is not None:
            # the prior stands where no correction reached; its slices' quality is not judged
            reached = set(prop.prob) | filled
            if prior_edit.PRIOR_MIN_QUALITY is not None:
                reached = {z for z in reached if z in filled or quality[z] >= prior_edit.PRIOR_MIN_QUALITY}
            pred, taken = keep_prior(work.prior, pred, reached, work.annotations, prior_edit.PRIOR_AGREE)
            for z in set(prop.prob) - taken:
                quality[z] = np.nan
            work.features = {z: f for z, f in work.features.items() if z in taken}
        for z in work.annotations:
            quality[z] = 1.0
        self._push()
        work.prediction, work.quality = pred, quality
        work.open_ends = dict(prop.open_ends or {})
        self._s = work
        return self._oriented(pred.dense())

    def _fill_between_close(self, s: _State, pred: SliceMasks) -> set:
        """Interpolate between close painted slices (PAINTED_GAP_MM) and close annotated ones
        (FILL_SEGMENTED_MM); returns the slices filled."""
        filled = set()
        # not for objects a few slices deep (strict_ends, touching nuclei): between two of their
        # slices the section is rounder than interpolation makes it (StarDist's nuclei at round 4:
        # 0.838 without, 0.825 with, 35 of 51 worse; benchmarks/README.md, "Filling between close
        # segmented slices")
        segmented = 0.0 if self.strict_ends else FILL_SEGMENTED_MM
        if not PAINTED_GAP_MM and not segmented:
            return filled
        zs = sorted(s.annotations)
        for a, b in zip(zs[:-1], zs[1:]):
            gap = (b - a) * self.spacing[0]
            if ((({a, b} <= s.painted and gap <= PAINTED_GAP_MM) or gap <= segmented)
                    and s.annotations[a].any() and s.annotations[b].any()):
                filling = interpolate_masks({0: s.annotations[a], b - a: s.annotations[b]},
                                            (b - a + 1,) + self.shape[1:])
                for i, m in enumerate(filling):
                    pred[a + i] = m
                filled.update(range(a + 1, b))
        return filled

    def _apply_to_prior(self, work: _State) -> np.ndarray:
        """A corrected prior whose corrections all say "not here": those slices emptied, no propagation."""
        pred = with_slices(work.prior, work.annotations)
        quality = np.full(self.shape[0], np.nan)
        for z in work.annotations:
            quality[z] = 1.0
        self._push()
        work.prediction, work.quality, work.features, work.open_ends = pred, quality, {}, {}
        self._s = work
        return self._oriented(pred.dense())

    def recommend_slice(self) -> int:
        """The not-yet-annotated slice of the predicted extent (or one beyond either end) where a
        correction is expected to fix most: the most expected wrong voxels with a quality model, the
        lowest predicted quality without (RECOMMEND_BY); when all of it is annotated, the slice just
        beyond its larger end. A session correcting a prior (start_from) judges only the slices its
        corrections changed."""
        if self._s.quality is None or self._s.prediction is None:
            raise InteractiveError("nothing to recommend yet: call propagate() first")
        zs = np.array(self._s.prediction.nonempty(), int)
        if not len(zs):
            raise InteractiveError("the current mask is empty; add a prompt and propagate first")
        lo, hi = max(zs.min() - 1, 0), min(zs.max() + 1, self.shape[0] - 1)
        q = self._s.quality.copy()
        cand = [z for z in range(lo, hi + 1) if z not in self._s.annotations and np.isfinite(q[z])]
        explore = self._explore(zs.min(), zs.max()) if EXPLORE else []
        if explore:
            best = min(explore)
            if not cand or best[0] < min(q[z] for z in cand):
                return int(best[1])
        by = RECOMMEND_BY if RECOMMEND_BY != "auto" else ("voxels" if self.quality_model is not None else "quality")
        if cand and by == "voxels":
            area = self._s.prediction.areas().astype(float)
            local = np.maximum(area, np.maximum(np.r_[0.0, area[:-1]], np.r_[area[1:], 0.0]))
            return int(max(cand, key=lambda z: ((1 - q[z]) * local[z], -z)))
        if cand:
            return int(min(cand, key=lambda z: (q[z], z)))
        if self._s.prior is not None:
            raise InteractiveError("no slice the corrections changed is left to check; the rest is the mask "
                                   "the session started from, which the tool does not judge")
        # every predicted slice is annotated: the sweeps stopped there, but the object may go on;
        # check the slice beyond the end where it is larger first
        area = self._s.prediction.areas()
        ends = sorted(((zs.min() - 1, area[zs.min()]), (zs.max() + 1, area[zs.max()])), key=lambda e: -e[1])
        beyond = [z for z, _ in ends if 0 <= z < self.shape[0] and z not in self._s.annotations]
        if not beyond:
            raise InteractiveError("every slice of the object and the slices on either side of it are "
                                   "annotated; nothing left to recommend")
        return int(beyond[0])

    def _explore(self, lo, hi):
        """(score, slice) beyond each open end: a jump of EXPLORE x the extent, or halfway to the
        nearest annotated slice beyond it."""
        out = []
        n = hi - lo + 1
        for d, qrej in self._s.open_ends.items():
            end = hi if d == 1 else lo
            beyond = [a for a in self._s.annotations if (a - end) * d > 0]
            limit = min(beyond, key=lambda a: abs(a - end)) if beyond else (self.shape[0] if d == 1 else -1)
            gap = abs(limit - end) - 1
            if gap < 1:
                continue
            step = max(2, int(round(EXPLORE * n)))
            if beyond:
                step = min(step, (gap + 1) // 2)
            step = min(step, gap)
            out.append((qrej, end + d * step))
        return out

    # -- session files -------------------------------------------------------------------------------
    def save_session(self, path):
        """Save prompts, trusted masks and the last propagation to ``path`` (.npz, no pickle), to go on
        later with from_session; returns the path written. The undo history is not saved."""
        from . import session_file
        try:
            return session_file.save(self, path)
        except ValueError as exc:
            raise InteractiveError(str(exc)) from exc

    @classmethod
    def from_session(cls, path, volume, **kwargs) -> "InteractiveSegmenter":
        """A session as saved by save_session, on ``volume`` (checked to be the same image: shape and
        the annotated slices' contents) and sliced across the saved axis; the other arguments are
        the constructor's (spacing defaults to the saved one). The last propagation comes back when
        the weights are the same (``restored_propagation``); with other weights call propagate()."""
        from . import session_file
        try:
            head = session_file.read_header(path)
        except ValueError as exc:
            raise InteractiveError(str(exc)) from exc
        if kwargs.get("axis", head["axis"]) != head["axis"]:
            raise InteractiveError(f"the session slices across axis {head['axis']}, not {kwargs['axis']}")
        kwargs.setdefault("spacing", tuple(head["spacing"]))
        seg = cls(volume, **{**kwargs, "axis": head["axis"]})
        try:
            seg._s, seg.restored_propagation = session_file.load_state(path, seg, head)
        except ValueError as exc:
            raise InteractiveError(str(exc)) from exc
        return seg

    def undo(self):
        """Back to the state before the last step (prompt, mask, segmentation, propagation or reset);
        redo() goes forward again until a new step is taken. States are never changed once stored
        (the live one is a copy), so both are a swap."""
        if not self._history:
            raise InteractiveError("nothing to undo")
        self._future.append(self._s)
        del self._future[:-HISTORY]
        self._s = self._history.pop()

    def redo(self):
        """The step the last undo() took back, again."""
        if not self._future:
            raise InteractiveError("nothing to redo")
        self._history.append(self._s)
        self._s = self._future.pop()

    def clear_redo(self):
        """Forget what undo() took back (a view that handled the undone step itself, e.g. a committed
        object taken back into the session, cannot redo it from here)."""
        self._future.clear()

    def reset(self):
        """Forget every prompt and mask of this object (undoable)."""
        self._push()
        self._s = _State()


def axis_order(axis: int) -> tuple[int, int, int]:
    """The volume's axes in a session's order: the slicing axis first, then the other two."""
    return (axis,) + tuple(a for a in range(3) if a != axis)


class AxisView:
    """A 3D array read with ``axis`` first, without copying or loading it: zarr and other arrays that
    cannot transpose lazily are indexed through it (numpy and dask could, but one path serves all)."""

    def __init__(self, array, axis: int):
        self.array, self.order = array, axis_order(axis)
        self.shape = tuple(int(array.shape[a]) for a in self.order)
        self.dtype = array.dtype
        self.ndim = 3

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        if len(key) != 3 or any(not isinstance(k, (slice, int, np.integer)) for k in key):
            raise IndexError(f"AxisView takes up to 3 ints or slices, got {key!r}")
        source = [slice(None)] * 3
        for k, a in zip(key, self.order):
            source[a] = k
        block = np.asarray(self.array[tuple(source)])
        kept = [a for k, a in zip(key, self.order) if isinstance(k, slice)]   # in the session's order
        return block.transpose([sorted(kept).index(a) for a in kept])


def _crop_read(block: np.ndarray, roi: ROI, origin) -> np.ndarray:
    """The ROI out of a block read at ``origin``, edge-padded where the ROI passes the slice border."""
    return crop_stack(block, ROI(roi.y0 - origin[0], roi.x0 - origin[1], roi.side))
