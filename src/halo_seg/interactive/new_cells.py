"""Cells that no object holds at a time point of a time-lapse: cells that came into the field, or
a daughter her mother's object left out, after every object there was carried on (carry_all). A
region is one where it is as bright as the objects (darker, where they are dark): the image
smoothed, over the level half way between the objects' voxels and what lies around them
(carry.levels, measured on the objects themselves), away from every object, and at least a share
of an object's typical size. What "All to next time point" points at and `halo-seg carry
--add-new` adds as new objects."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# looked for on a grid strided to at most this many voxels: a light-sheet time point of 10^9 voxels
# is smoothed and labelled at 1/64 of it (cells of a few voxels across at that grid are missed)
MAX_VOXELS = 16_000_000


@dataclass
class NewCell:
    box: tuple          # slices of the volume where the region lies
    mask: np.ndarray    # bool, of ``box``: the region (at the stride's grid, repeated to the voxels)
    slice: int          # its largest slice (across axis 0)
    box2d: tuple        # (y0, x0, y1, x1) of it on that slice, inclusive: a box prompt there
    voxels: int
    centre: tuple       # (z, y, x) voxels


def new_cells(image, objects, min_share: float = 0.3, keep_off: int = 2, sample: int = 64,
              before: tuple | None = None) -> list[NewCell]:
    """The regions of ``image`` ((Z, Y, X)) that look like the objects of ``objects`` (ids on its
    grid: the objects at that time point) and no object holds: the image smoothed (a Gaussian of one
    voxel) beyond the level half way between the objects' median and their surroundings' (the
    medians over up to ``sample`` objects, carry.levels), more than ``keep_off`` voxels from every
    object (an object's own blurred rim is not a cell), each connected region of at least
    ``min_share`` of the objects' median size. ``before``: (the image, the objects) of the time
    point the objects were carried from: a region that overlaps one no object held there either is
    left out (a cell not followed on purpose, or missed there, is no new one). Largest first. None
    found where there are no objects to learn the levels from, or they do not stand out."""
    from scipy import ndimage as ndi

    from .carry import levels
    from .carry_all import object_boxes
    objects = np.asarray(objects)
    if objects.shape != tuple(image.shape):
        raise ValueError(f"the objects are {objects.shape}, the image {tuple(image.shape)}: they must lie on its grid")
    boxes = object_boxes(objects)
    if not boxes:
        return []
    picked = sorted(boxes)[:: max(1, len(boxes) // sample)][:sample]
    both = [levels(image, objects[boxes[k]] == k, boxes[k]) for k in picked]
    both = np.array([b for b in both if b is not None])
    if not len(both):
        return []
    inside, around = np.median(both[:, 0]), np.median(both[:, 1])
    if inside == around:
        return []
    ids, voxels = np.unique(objects, return_counts=True)   # not a bincount: ids may run to billions
    typical = float(np.median(voxels[ids > 0]))
    step = max(1, int(np.ceil((objects.size / MAX_VOXELS) ** (1 / 3))))

    def unheld(image, objects):
        """Where, on the strided grid, it looks like the objects and no object is near."""
        grid = (slice(None, None, step),) * 3
        smooth = ndi.gaussian_filter(np.asarray(image[grid], np.float32), 1.0)
        level = (inside + around) / 2
        out = smooth > level if inside > around else smooth < level
        return out & ~ndi.binary_dilation(np.asarray(objects[grid]) > 0, iterations=max(1, round(keep_off / step)))
    def large(found):
        """Its connected regions, and their sizes, those under ``min_share`` of an object zeroed."""
        regions, _ = ndi.label(found)
        counts = np.bincount(regions.ravel())
        counts[counts * step ** 3 < min_share * typical] = 0
        counts[0] = 0
        return regions, counts

    regions, counts = large(unheld(image, objects))
    if before is not None:   # regions lying where a region no object held lay a time point before: not new
        if tuple(before[0].shape) != objects.shape or tuple(np.shape(before[1])) != objects.shape:
            raise ValueError("the image and objects before must be of the image's shape")
        old, sizes = large(unheld(*before))   # a sliver of a cell coming in at the field's edge is none yet
        counts[np.unique(regions[sizes[old] > 0])] = 0
    out = []
    for k, where in enumerate(ndi.find_objects(regions), 1):
        if where is None or not counts[k]:
            continue
        part = regions[where] == k
        box = tuple(slice(w.start * step, min(s, w.stop * step)) for w, s in zip(where, objects.shape))
        full = np.kron(part, np.ones((step,) * 3, bool))[tuple(slice(0, b.stop - b.start) for b in box)] \
            if step > 1 else part
        z = int(full.sum((1, 2)).argmax())
        ys, xs = np.nonzero(full[z])
        centre = tuple(float(c + b.start) for c, b in zip(ndi.center_of_mass(full), box))
        out.append(NewCell(box, full, z + box[0].start,
                           (int(ys.min()) + box[1].start, int(xs.min()) + box[2].start,
                            int(ys.max()) + box[1].start, int(xs.max()) + box[2].start),
                           int(full.sum()), centre))
    return sorted(out, key=lambda c: -c.voxels)


def segment_new(make_seg, cells: list, t: int, cancel=None, noise: float | None = None) -> list:
    """Each of ``cells`` (new_cells's, at time point ``t``) segmented as a new object: a box prompt on
    its largest slice (``make_seg()``: a new InteractiveSegmenter on that time point's volume, slicing
    across axis 0), propagated. Returns carry_all.Carried with label 0 (carried from nothing), each
    with its record (carry.carry_record, its contrast there) to be carried on; where the network
    finds nothing, none. ``noise``: the volume's noise level (carry.noise_level), measured once
    where not given."""
    from .carry import carry_record, contrast, noise_level
    from .carry_all import Carried, _source
    out, level = [], {} if noise is None else {"level": noise}
    for cell in cells:
        if cancel is not None and cancel():
            raise InterruptedError("cancelled while the new cells were segmented")
        seg = make_seg()
        if seg.axis != 0:
            raise ValueError(f"the session slices across axis {seg.axis}; new cells are boxed on slices across 0")
        seg.add_box(cell.slice, *cell.box2d)
        pred = seg.propagate(cancel=cancel)
        where = seg.mask_box()
        if where is None:
            continue
        mask = pred[where]
        after = contrast(_source(seg), mask, where)
        if "level" not in level:   # one volume: its noise level once
            level["level"] = noise_level(_source(seg))
        out.append(Carried(0, None, where, mask, {**carry_record(pred, t, None, 0, 0, box=where), "contrast": after,
                                                  "noise": level["level"]},
                           contrast=(None, after), noise=(None, level["level"])))
    return out
