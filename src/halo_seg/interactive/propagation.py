"""Memory propagation through a volume (DESIGN.md section 2).

Two sweeps, upward from the lowest annotated slice and downward from the highest. At every query
slice the memory holds the nearest annotated slices (always) and the slice just predicted (it
carries the local shape). Between two annotated slices the sweeps are blended, each weighted by
its closeness to the annotated slice it started from; outside them a sweep stops after two empty
slices in a row. Everything happens inside one square ROI around the annotated masks, encoded once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .memnet import MemSegNet
from .roi import ROI, crop_stack, mask_bbox, normalise, paste_logits, resize, roi_from_bbox

N_ANNOTATED = 2     # annotated memory entries per query, the nearest ones
EMPTY_STOP = 2      # consecutive empty predictions that end a sweep
EMPTY_AREA = 2.0    # crop pixels: below this a predicted slice counts as empty


@dataclass
class Propagation:
    roi: ROI
    prob: dict      # z -> (S, S) foreground probability in crop space
    quality: dict   # z -> predicted Dice


def annotation_roi(annotations: dict[int, np.ndarray]) -> ROI:
    boxes = [b for b in (mask_bbox(m) for m in annotations.values()) if b is not None]
    if not boxes:
        raise ValueError("no annotated slice contains the object")
    b = np.array(boxes)
    return roi_from_bbox(b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())


class _Encoded:
    """Image features and keys of every ROI slice, computed once per propagation."""

    def __init__(self, net: MemSegNet, images: torch.Tensor, batch: int = 64):
        fs, ks = [], []
        for i in range(0, len(images), batch):
            f, k = net.encode_image(images[i:i + batch])
            fs.append(f)
            ks.append(k)
        self.f = tuple(torch.cat([f[j] for f in fs]) for j in range(3))
        self.key = torch.cat(ks)
        self.images = images

    def feats(self, idx):
        return tuple(f[idx] for f in self.f)


@torch.no_grad()
def propagate_volume(net: MemSegNet, column: np.ndarray, annotations: dict[int, np.ndarray],
                     roi: ROI, device="cpu", cancel=None) -> Propagation:
    """column: (Z, side, side) image crops of the ROI; annotations: z -> full-slice bool masks."""
    S = net.size
    nz = column.shape[0]
    ann = sorted(annotations)
    ann_crops = {z: crop_stack(annotations[z][None].astype(np.float32), roi, 0)[0] for z in ann}
    ref = [column[z] for z in ann if ann_crops[z].any()] or [column[z] for z in ann]
    images = resize(normalise(column, np.stack(ref)), S).to(device)
    enc = _Encoded(net, images)
    ann_masks = {z: resize(ann_crops[z][None], S).to(device) for z in ann}
    ann_values = {z: net.encode_value(images[z:z + 1], ann_masks[z], enc.f[2][z:z + 1]) for z in ann}
    nonempty = [z for z in ann if ann_crops[z].any()]
    lo_obj, hi_obj = min(nonempty), max(nonempty)

    def step(z, prev):
        near = sorted(ann, key=lambda a: (abs(a - z), a))[:N_ANNOTATED]
        keys = [enc.key[a:a + 1] for a in near]
        vals = [ann_values[a] for a in near]
        marea = [ann_masks[a].mean() for a in near]
        if prev is not None:
            pz, pmask = prev
            keys.append(enc.key[pz:pz + 1])
            vals.append(net.encode_value(images[pz:pz + 1], pmask, enc.f[2][pz:pz + 1]))
            marea.append(pmask.mean())
        mk = torch.stack(keys, 1)
        mv = torch.stack(vals, 1)
        valid = torch.ones(1, mk.shape[1], dtype=torch.bool, device=mk.device)
        readout, conf = net.read(enc.key[z:z + 1], mk, mv, valid)
        zero_guide = images.new_zeros(1, 3, S, S)
        logits, dfeat = net.decode(enc.feats(slice(z, z + 1)), readout, zero_guide, valid.any(1))
        q = net.predict_quality(logits, dfeat, conf, torch.stack(marea).mean().view(1))
        return torch.sigmoid(logits), float(q)

    sweeps = []
    for direction, start in ((1, ann[0]), (-1, ann[-1])):
        prob, qual = {}, {}
        prev, empty_run, z = None, 0, start
        while 0 <= z < nz:
            if cancel is not None and cancel():
                raise InterruptedError("propagation cancelled")
            if z in annotations:
                prev, empty_run = (z, ann_masks[z]), 0
                past = z > hi_obj if direction == 1 else z < lo_obj
                if past and not ann_crops[z].any():
                    break   # the user said the object has ended here
            else:
                p, q = step(z, prev)
                prob[z], qual[z] = p[0, 0], q
                hard = (p > 0.5).float()
                prev = (z, hard)
                beyond = z > hi_obj if direction == 1 else z < lo_obj
                empty_run = empty_run + 1 if float(hard.sum()) < EMPTY_AREA else 0
                if beyond and empty_run >= EMPTY_STOP:
                    break
            z += direction
        sweeps.append((prob, qual))

    (pu, qu), (pd, qd) = sweeps
    prob, qual = {}, {}
    for z in set(pu) | set(pd):
        if z in pu and z in pd:
            below = max(a for a in ann if a < z)
            above = min(a for a in ann if a > z)
            wu, wd = 1.0 / (z - below), 1.0 / (above - z)
            prob[z] = (wu * pu[z] + wd * pd[z]) / (wu + wd)
            qual[z] = (wu * qu[z] + wd * qd[z]) / (wu + wd)
        else:
            prob[z], qual[z] = (pu[z], qu[z]) if z in pu else (pd[z], qd[z])
    return Propagation(roi, prob, qual)


def to_volume_masks(prop: Propagation, shape) -> dict[int, np.ndarray]:
    """Crop-space probabilities -> full-slice boolean masks."""
    out = {}
    for z, p in prop.prob.items():
        logit = torch.logit(p.float().cpu().clamp(1e-6, 1 - 1e-6))
        out[z] = paste_logits(logit, prop.roi, shape[1:])
    return out
