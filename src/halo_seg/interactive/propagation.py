"""Memory propagation through a volume (DESIGN.md section 2).

Two sweeps, upward from the lowest slice annotated with the object and downward from the highest. At every query
slice the memory holds the nearest annotated slices (always) and the slice just predicted (it
carries the local shape). Between two annotated slices the sweeps are blended, each weighted by
its closeness to the annotated slice it started from; outside them a sweep stops after two empty
slices in a row, at any slice the user annotated as empty, where a shrinking object starts to
grow again (a leak into neighbouring tissue, see ``SHRUNK``/``REGROWN``), and where the predicted
Dice falls below a threshold: the quality model's (quality.py, ``MODEL_STOP``) when the session has
one, else the head's (``QUALITY_STOP``); both chosen on validation regions (benchmarks/). A
session's ``strict_ends`` option tightens the unimodal rule and adds a contrast rule
(``STRICT_ENDS``), for touching objects of equal brightness.
Everything happens inside one square ROI around the annotated masks, each slice read and encoded
once, when a sweep first reaches it (column.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .baseline import signed_distance
from . import column as columns
from .memnet import MemSegNet
from .quality import feature_vector
from .roi import ROI, crop_stack, mask_bbox, network_images, paste_logits, resize, roi_from_bbox, zscore_stats

N_ANNOTATED = 2     # annotated memory entries per query, the nearest ones
EMPTY_STOP = 2      # consecutive empty predictions that end a sweep
EMPTY_AREA = 2.0    # crop pixels: below this a predicted slice counts as empty
SHRUNK, REGROWN = 0.7, 1.5   # the unimodal-extent rule, see propagate_volume
QUALITY_STOP = 0.5  # past the annotated slices a sweep ends where the predicted Dice falls below this
# Switches scored on the validation regions by benchmarks/interactive_variants.py; the defaults won
BETWEEN_BLEND = 0.0     # weight of the shape interpolated between annotated slices
BOX_MARGIN = None       # crop pixels around the boxes interpolated between annotated slices
EMPTY_IN_MEMORY = True  # empty annotated slices also join the memory (they suppress leaks)
QUALITY_PATIENCE = 1    # slices in a row below QUALITY_STOP that end a sweep (the run is dropped)
MODEL_STOP = 0.4        # QUALITY_STOP's counterpart when a quality model judges the slices
STOP_BY_MODEL = True    # a session with a quality model lets it judge (False: the head always does)
N_PREVIOUS = 1          # the most recent slices of a sweep (with their predictions) held in memory
ANNOTATED_REACH = None  # annotated slices farther than this from the query leave its memory (None: never)
CONTRAST_STOP = None    # past the annotations, end a sweep where the predicted mask looks more like the
CONTRAST_MIN = 0.5      # ring around the annotated object than like the object (its position on the
                        # ring-to-object intensity scale below this), for objects with this much contrast
# (SHRUNK, REGROWN, CONTRAST_STOP) of a session's strict_ends option, for touching objects of equal
# brightness such as nuclei: benchmarks/microscopy.py +0.02 to +0.07 Dice from one box there, while on
# the MRI validation regions it moved Dice by -0.007 to +0.002, so it is not the default
STRICT_ENDS = (0.9, 1.1, 0.5)


@dataclass
class Propagation:
    roi: ROI
    prob: dict      # z -> (S, S) foreground probability in crop space
    quality: dict   # z -> predicted Dice
    open_ends: dict = None  # direction (+1 up, -1 down) -> predicted Dice of the slice a stop rule
                            # rejected: the sweep ended while the object may go on


def annotation_roi(annotations: dict[int, np.ndarray]) -> ROI:
    boxes = [b for b in (mask_bbox(m) for m in annotations.values()) if b is not None]
    if not boxes:
        raise ValueError("no annotated slice contains the object")
    b = np.array(boxes)
    return roi_from_bbox(b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())


class _Encoded:
    """Normalised images, features and keys of the ROI's slices, computed a block of slices at a time
    (columns.BLOCK, the encoder's batch) when a sweep first asks for one of them."""

    def __init__(self, net: MemSegNet, column, stats, size: int, device, flip: bool = False):
        self.net, self.column, self.stats, self.size, self.device, self.flip = net, column, stats, size, device, flip
        self.blocks: dict[int, tuple] = {}   # block -> (images, (f0, f1, f2), keys)

    def _slot(self, z: int):
        n = columns.BLOCK
        b = int(z) // n
        if b not in self.blocks:
            images = network_images(self.column[b * n:(b + 1) * n], self.size, self.stats)
            images = images.to(self.device)
            if self.flip:
                images = images.flip(-1)
            f, k = self.net.encode_image(images)
            self.blocks[b] = (images, f, k)
        return self.blocks[b], int(z) - b * n

    def image(self, z: int) -> torch.Tensor:
        """(1, 1, S, S)"""
        (images, _, _), i = self._slot(z)
        return images[i:i + 1]

    def key(self, z: int) -> torch.Tensor:
        (_, _, k), i = self._slot(z)
        return k[i]

    def keys(self, zs) -> torch.Tensor:
        return torch.stack([self.key(z) for z in zs])

    def level(self, z: int, j: int) -> torch.Tensor:
        """(1, ...) features of slice z at encoder level j"""
        (_, f, _), i = self._slot(z)
        return f[j][i:i + 1]

    def feats(self, zs):
        return tuple(torch.cat([self.level(z, j) for z in zs]) for j in range(3))


def _annotation_inputs(column, annotations: dict, roi: ROI):
    """Annotated masks at ROI resolution and the z-score statistics of their image crops."""
    ann = sorted(annotations)
    ann_crops = {z: crop_stack(annotations[z][None].astype(np.float32), roi, 0)[0] for z in ann}
    ref = [column[z] for z in ann if ann_crops[z].any()] or [column[z] for z in ann]
    return ann_crops, zscore_stats(np.stack(ref))


def network_inputs(column: np.ndarray, annotations: dict, roi: ROI, size: int, device):
    """Normalised (Z, 1, S, S) images of the whole ROI column, annotated masks in crop space
    (z -> (1, 1, S, S)) and the annotated masks at ROI resolution; for test-time adaptation."""
    ann_crops, stats = _annotation_inputs(column, annotations, roi)
    images = network_images(np.asarray(column[0:len(column)]), size, stats).to(device)
    ann_masks = {z: resize(ann_crops[z][None], size).to(device) for z in ann_crops}
    return images, ann_masks, ann_crops


@torch.no_grad()
def propagate_volume(net: MemSegNet, column: np.ndarray, annotations: dict[int, np.ndarray],
                     roi: ROI, device="cpu", cancel=None, flip: bool = False,
                     quality_stop: float = QUALITY_STOP, stop_model=None, zscale: float = 1.0,
                     ends: tuple | None = None) -> Propagation:
    """column: (Z, side, side) image crops of the ROI, an array or a column.ColumnReader (read only
    where the sweeps go); annotations: z -> full-slice bool masks.

    ``flip`` runs on the left-right mirrored crops (test-time augmentation) and mirrors back.
    ``quality_stop``: past the annotated slices, the first slice predicted below this Dice ends the
    sweep and is not kept (0 disables the rule); the prediction is the head's, or ``stop_model``'s
    (a quality.QualityModel, single-pass features) when given. ``zscale``: slice spacing over pixel
    spacing, which converts its distances in slices to pixels (quality.distance_scale). ``ends``:
    (shrunk, regrown, contrast) of the end rules past the annotations, e.g. STRICT_ENDS; None: the
    module's SHRUNK, REGROWN and CONTRAST_STOP.
    """
    shrunk, regrown_by, contrast_stop = ends if ends is not None else (SHRUNK, REGROWN, CONTRAST_STOP)
    S = net.size
    nz = column.shape[0]
    ann = sorted(annotations)
    ann_crops, stats = _annotation_inputs(column, annotations, roi)
    ann_masks = {z: resize(ann_crops[z][None], S).to(device) for z in ann}
    if flip:
        ann_masks = {z: m.flip(-1) for z, m in ann_masks.items()}
    enc = _Encoded(net, column, stats, S, device, flip)
    ann_values = {}

    def ann_value(a):
        """The memory value of annotated slice a, encoded when first needed: an annotation far from
        where the sweeps go (an empty slice marking where the object is not) is never read."""
        if a not in ann_values:
            ann_values[a] = net.encode_value(enc.image(a), ann_masks[a], enc.level(a, 2))
        return ann_values[a]
    nonempty = [z for z in ann if ann_crops[z].any()]
    lo_obj, hi_obj = min(nonempty), max(nonempty)
    peak_area = max(float(ann_masks[z].sum()) for z in nonempty)
    contrast = ({z: _object_contrast(enc.image(z)[0, 0], ann_masks[z][0, 0] > 0.5) for z in (lo_obj, hi_obj)}
                if contrast_stop is not None else {})

    def memory(z, recent):
        """recent: the sweep's last slices as [z, mask, value or None] (value encoded here, once)."""
        near = sorted(ann if EMPTY_IN_MEMORY else nonempty, key=lambda a: (abs(a - z), a))[:N_ANNOTATED]
        if ANNOTATED_REACH is not None and recent:
            near = [a for a in near if abs(a - z) <= ANNOTATED_REACH]
        keys = [enc.key(a) for a in near]
        vals = [ann_value(a)[0] for a in near]
        marea = [ann_masks[a].mean() for a in near]
        for entry in recent[-N_PREVIOUS:]:
            pz, pmask = entry[0], entry[1]
            if entry[2] is None:
                entry[2] = net.encode_value(enc.image(pz), pmask, enc.level(pz, 2))[0]
            keys.append(enc.key(pz))
            vals.append(entry[2])
            marea.append(pmask.mean())
        return keys, vals, torch.stack(marea).mean()

    def step(queries):
        """One batched step for the active sweeps: queries = [(z, recent slices), ...]."""
        mems = [memory(z, recent) for z, recent in queries]
        t = max(len(k) for k, _, _ in mems)
        b = len(queries)
        zs = [z for z, _ in queries]
        qk = enc.keys(zs)
        mk = torch.zeros(b, t, *qk.shape[1:], device=device)
        mv = torch.zeros(b, t, *next(v for _, vs, _ in mems for v in vs).shape, device=device)
        valid = torch.zeros(b, t, dtype=torch.bool, device=device)
        for i, (k, v, _) in enumerate(mems):
            mk[i, :len(k)] = torch.stack(k)
            mv[i, :len(v)] = torch.stack(v)
            valid[i, :len(k)] = True
        readout, conf = net.read(qk, mk, mv, valid)
        prev = None
        if net.prev_input:   # where the object was on the sweep's last slice
            prev = torch.cat([recent[-1][1].reshape(1, 1, S, S) if recent else torch.zeros(1, 1, S, S, device=device)
                              for _, recent in queries])
        logits, dfeat = net.decode(enc.feats(zs), readout, torch.zeros(b, 3, S, S, device=device), valid.any(1), prev)
        q = net.predict_quality(logits, dfeat, conf, torch.stack([m for _, _, m in mems]))
        return torch.sigmoid(logits), q.tolist()

    # the upward and downward sweeps advance in lockstep, batched together; they start from the
    # outermost slices that show the object, and an empty annotated slice ends a sweep
    sweeps = []
    for direction, start, last in ((1, lo_obj, hi_obj), (-1, hi_obj, lo_obj)):
        sweeps.append({"dir": direction, "z": start, "recent": [], "empty": 0, "prob": {}, "qual": {}, "on": True,
                       "peak": peak_area, "trough": float(ann_masks[last].sum()), "low": []})
    while any(sw["on"] for sw in sweeps):
        if cancel is not None and cancel():
            raise InterruptedError("propagation cancelled")
        queries = []
        for sw in sweeps:
            while sw["on"]:
                z = sw["z"]
                if not 0 <= z < nz:
                    sw["on"] = False
                elif z in annotations:
                    if not ann_crops[z].any():
                        sw["on"] = False   # the user said the object is not here
                    sw["recent"], sw["empty"] = (sw["recent"] + [[z, ann_masks[z], None]])[-N_PREVIOUS:], 0
                    sw["z"] += sw["dir"]
                else:
                    queries.append(sw)
                    break
        if not queries:
            break
        probs, quals = step([(sw["z"], sw["recent"]) for sw in queries])
        for sw, p, q in zip(queries, probs, quals):
            z = sw["z"]
            hard = (p[None] > 0.5).float()
            area = float(hard.sum())
            beyond = z > hi_obj if sw["dir"] == 1 else z < lo_obj
            if beyond:
                # Unimodal extent: past the annotated slices an object that has shrunk well below its
                # largest annotated section does not grow back; when the prediction does, it has
                # leaked into neighbouring tissue, and the sweep stops there.
                leaked = sw["trough"] < shrunk * sw["peak"] and area > regrown_by * sw["trough"] + 4
                if contrast_stop is not None and area >= EMPTY_AREA:
                    # the mask has left the object for tissue that looks like its surroundings
                    obj, ring = contrast[hi_obj if sw["dir"] == 1 else lo_obj]
                    if abs(obj - ring) >= CONTRAST_MIN:
                        inside = float(enc.image(z)[0, 0][hard[0, 0] > 0].mean())
                        leaked = leaked or (inside - ring) / (obj - ring) < contrast_stop
                judged = q if stop_model is None else _sweep_quality(stop_model, p[0], q, z, area, sw, lo_obj, hi_obj,
                                                                      ann_masks, zscale, roi.side / S)
                distrusted = judged < quality_stop and area >= EMPTY_AREA
                # distrusted: the quality model (or, without one, the head) judges this slice more
                # likely wrong than right: the object has ended or the sweep leaked
                sw["low"] = sw["low"] + [z] if distrusted else []
                if leaked or len(sw["low"]) >= QUALITY_PATIENCE:
                    for zl in sw["low"][:-1]:   # distrusted slices kept on patience go too
                        del sw["prob"][zl], sw["qual"][zl]
                    sw["on"], sw["open"] = False, judged
                    continue
                if area > sw["peak"]:
                    sw["peak"] = sw["trough"] = area
                else:
                    sw["trough"] = min(sw["trough"], area)
            sw["prob"][z], sw["qual"][z] = p[0], q
            sw["recent"] = (sw["recent"] + [[z, hard, None]])[-N_PREVIOUS:]
            sw["empty"] = sw["empty"] + 1 if area < EMPTY_AREA else 0
            if beyond and sw["empty"] >= EMPTY_STOP:
                sw["on"] = False
            sw["z"] += sw["dir"]
    open_ends = {sw["dir"]: sw["open"] for sw in sweeps if "open" in sw}
    sweeps = [(sw["prob"], sw["qual"]) for sw in sweeps]

    (pu, qu), (pd, qd) = sweeps
    prob, qual = {}, {}
    for z in set(pu) | set(pd):
        if z in pu and z in pd:
            # both sweeps reached z: weight each by its closeness to the annotated slice it came from
            below = max(a for a in nonempty if a < z)
            above = min(a for a in nonempty if a > z)
            wu, wd = 1.0 / (z - below), 1.0 / (above - z)
            prob[z] = (wu * pu[z] + wd * pd[z]) / (wu + wd)
            qual[z] = (wu * qu[z] + wd * qd[z]) / (wu + wd)
        else:
            prob[z], qual[z] = (pu[z], qu[z]) if z in pu else (pd[z], qd[z])
    prob = _between_prior(prob, {z: m for z in nonempty if (m := ann_masks[z][0, 0] > 0.5).any()})
    if flip:
        prob = {z: p.flip(-1) for z, p in prob.items()}
    return Propagation(roi, prob, qual, open_ends)


def _object_contrast(image: torch.Tensor, mask: torch.Tensor, ring: int = 3) -> tuple[float, float]:
    """Mean normalised intensity inside an annotated crop-space mask and in a ring around it."""
    grown = torch.nn.functional.max_pool2d(mask[None, None].float(), 2 * ring + 1, 1, ring)[0, 0] > 0
    band = grown & ~mask
    if not mask.any() or not band.any():
        return 0.0, 0.0
    return float(image[mask].mean()), float(image[band].mean())


def _sweep_quality(model, p, q, z, area, sw, lo, hi, ann_masks, zscale=1.0, px_per_crop=1.0) -> float:
    """The quality model's single-pass prediction for a slice past the annotations, from what the
    sweep knows there: crop-space areas, the area change against the previous slice only;
    ``px_per_crop``: volume pixels per crop pixel along a side."""
    end = hi if sw["dir"] == 1 else lo
    prev = float(sw["recent"][-1][1].sum()) if sw["recent"] else area
    end_area = float(ann_masks[end].sum())
    x = feature_vector(q, 0.0, 0.0, p.float().cpu().numpy(), abs(z - end), hi - lo + 1, True, area,
                       end_area, prev, EMPTY_AREA, zscale, end_area * px_per_crop ** 2)
    return model.predict({z: x}, tta=False)[z]


def _between_prior(prob: dict, ann: dict) -> dict:
    """Between consecutive annotated slices (crop-space bool masks ``ann``), mix in the interpolated
    shape (BETWEEN_BLEND) and/or cut to the interpolated boxes (BOX_MARGIN); off by default."""
    if not BETWEEN_BLEND and BOX_MARGIN is None:
        return prob
    zs = sorted(ann)
    sdf = {z: torch.from_numpy(signed_distance(ann[z].cpu().numpy())) for z in zs}
    box = {}
    for z in zs:
        ys, xs = torch.nonzero(ann[z], as_tuple=True)
        box[z] = torch.tensor([ys.min(), xs.min(), ys.max(), xs.max()], dtype=torch.float32)
    out = dict(prob)
    for a, b in zip(zs[:-1], zs[1:]):
        for z in range(a + 1, b):
            if z not in out:
                continue
            t = (z - a) / (b - a)
            p = out[z]
            if BETWEEN_BLEND:
                d = (1 - t) * sdf[a] + t * sdf[b]
                prior = torch.sigmoid(-d / 1.5).to(p.device, p.dtype)
                p = (1 - BETWEEN_BLEND) * p + BETWEEN_BLEND * prior
            if BOX_MARGIN is not None:
                bb = (1 - t) * box[a] + t * box[b]
                n = p.shape[-1]
                yy = torch.arange(n, dtype=torch.float32)
                my = (yy >= bb[0] - BOX_MARGIN) & (yy <= bb[2] + BOX_MARGIN)
                mx = (yy >= bb[1] - BOX_MARGIN) & (yy <= bb[3] + BOX_MARGIN)
                p = p * (my[:, None] & mx[None, :]).to(p.device, p.dtype)
            out[z] = p
    return out


def merge(a: Propagation, b: Propagation) -> Propagation:
    """Average two propagations of the same ROI (e.g. plain and mirrored); a slice only one of them
    reached keeps that one's prediction."""
    prob, qual = {}, {}
    for z in set(a.prob) | set(b.prob):
        if z in a.prob and z in b.prob:
            prob[z] = (a.prob[z] + b.prob[z]) / 2
            qual[z] = (a.quality[z] + b.quality[z]) / 2
        else:
            src = a if z in a.prob else b
            prob[z], qual[z] = src.prob[z], src.quality[z]
    ends = {}
    for e in (a.open_ends or {}, b.open_ends or {}):
        for d, q in e.items():
            ends[d] = min(q, ends.get(d, q))
    return Propagation(a.roi, prob, qual, ends)


def to_volume_masks(prop: Propagation, shape) -> dict[int, np.ndarray]:
    """Crop-space probabilities -> full-slice boolean masks."""
    out = {}
    for z, p in prop.prob.items():
        logit = torch.logit(p.float().cpu().clamp(1e-6, 1 - 1e-6))
        out[z] = paste_logits(logit, prop.roi, shape[1:])
    return out
