"""Following an object from one time point of a time-lapse to the next (or the one before): the box
of the object segmented at one time point, where it was on its largest slice and moved by its last
step, as the prompt there (the interactive widget's Next and Previous time point;
benchmarks/carry.py measures it)."""
from __future__ import annotations

import numpy as np


def carry_record(pred: np.ndarray, t: int, source: dict | None = None, axis: int = 0, label: int = 1,
                 box: tuple | None = None) -> dict:
    """What "Next time point" carries of an object segmented at time point ``t`` (its prediction
    ``pred`` in the volume's axes; ``box``: where it lies, when known, else found), in the session's
    (z, y, x) across ``axis``: its largest slice, that slice's box, its centroid, and its last step
    (from ``source``, the record of the object it was carried from, one time point before or after:
    per time point forward) to move the box by at the next time point. ``label``: its id, kept."""
    from scipy import ndimage as ndi

    from .roi import mask_bbox
    from .segmenter import axis_order
    if box is None:
        found = ndi.find_objects(np.asarray(pred).astype(np.uint8))
        if not found:
            raise ValueError("the object is empty: nothing to carry")
        box = found[0]
    order = list(axis_order(axis))
    inside = np.asarray(pred[box]).transpose(order)
    at = np.array([box[a].start for a in order], float)
    z = int(inside.sum((1, 2)).argmax())
    centroid = np.array(ndi.center_of_mass(inside)) + at
    step = None
    if source is not None and abs(source["t"] - t) == 1 and source["axis"] == axis:
        step = (centroid - source["centroid"]) * (t - source["t"])   # carried backward: its step forward
    y0, x0, y1, x1 = mask_bbox(inside[z])
    return {"t": t, "label": int(label), "axis": axis, "z": z + int(at[0]),
            "box": (y0 + int(at[1]), x0 + int(at[2]), y1 + int(at[1]), x1 + int(at[2])),
            "centroid": centroid, "step": step,
            "source": None if source is None else {**source, "source": None}}   # for an Undo of the commit


def carried_box(record: dict, shape, direction: int = 1) -> tuple[int, tuple]:
    """(slice, (y0, x0, y1, x1)) of the box ``record`` carries to the next time point (``direction``
    -1: the one before): where the object was, moved by its last step (a cell crawling on goes on:
    at 3 voxels a time point, radius 5, a box not moved lost 43 % of the time points, moved 8 %;
    benchmarks/carry.py), within a session volume of ``shape`` (z, y, x)."""
    step = np.zeros(3) if record["step"] is None else np.round(direction * record["step"]).astype(int)
    z = int(np.clip(record["z"] + step[0], 0, shape[0] - 1))
    y0, x0, y1, x1 = record["box"]
    y0, y1 = (int(np.clip(v + step[1], 0, shape[1] - 1)) for v in (y0, y1))
    x0, x1 = (int(np.clip(v + step[2], 0, shape[2] - 1)) for v in (x0, x1))
    return z, (y0, x0, y1, x1)



def box_again(seg, z: int) -> tuple | None:
    """The carried box on slice ``z`` of ``seg`` (an InteractiveSegmenter holding it) replaced by the
    tight box of what it segments there: a carried box is off by however the object moved and
    changed, and the prompt network expects a tight one (at 3 voxels a time point, radius 5: mean
    Dice 0.900 and no time point lost, against 0.823 and 8 % lost without, and 0.927 from a true box
    each time; benchmarks/carry.py). Returns the new box, or None (and the carried box stays) where
    it found nothing."""
    from .roi import mask_bbox
    mask = seg.segment_slice(z)
    if not mask.any():
        return None
    box = mask_bbox(mask)
    seg.add_box(z, *box)
    return box
