"""Every object of one time point of a time-lapse carried to the next (or the one before) in one go:
each as Next time point carries one (carry.find_again: its box where it was and moved by its last
step, each boxed again, the one the network is surer of, widened where the cell grew out of it;
then propagated), so that a field of cells segmented once is followed a keystroke a time point,
and only what went wrong is corrected (the interactive widget's "All to next time point")."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .carry import (Found, InBox, OneLabel, carried_boxes, carry_record, contrast, faded, find_again, noise_level,
                    part_sources, recorded_contrast, recorded_noise, touching_parts)


@dataclass
class Carried:
    label: int                   # the object carried: its id at the time point it came from
    found: Found | None          # where it was looked for (None: its boxes found nothing; the last was the prompt)
    box: tuple | None            # (slices, the volume's axes) where its mask lies there; None: nothing
    mask: np.ndarray | None      # bool, of ``box``
    record: dict | None          # what a further carry takes (carry_record, its label the one carried)
    two: bool = False            # it looks like two cells touching there (two_cells: a division?)
    was: tuple | None = None     # (slices) where the object lay at the time point it came from
    left: int | None = None      # the object whose part it found was left to it (drop_neighbours)
    contrast: tuple = (None, None)   # (where it came from, where it was carried to): carry.contrast
    faded: bool = False          # faded into the background there (carry.faded): its cell left or is gone
    noise: tuple = (None, None)  # the noise levels the contrasts are compared in (carry.noise_level)
    took_in: bool = False        # it had grown over a touching cell there, left out of it (carry.grown_over)
    grown_from: int | None = None  # a cell left out of this object (keep_own): its own object where none holds it


# a cell left out of an object that grew over it is written as its own object where at least this
# share of it is free: where its cell's own object found it, that one holds it
LEFT_OUT_FREE = 0.5


@dataclass
class Placed:
    id: int                      # the id it was written under
    carried: Carried
    free: np.ndarray             # bool, of carried.box: the voxels it got (where no object was)


def place_all(carried: list, here, first: int) -> tuple[list, list, list, list]:
    """The carried objects written into ``here`` (the ids at the time point they were carried to,
    written in place) under ids from ``first`` on, each where no object is yet: one carried before
    it, or there already, keeps its voxels; none that faded into the background there. A cell left
    out of an object that grew over it (Carried.grown_from, keep_own's) comes after every other
    and is written where at least half of it is free (LEFT_OUT_FREE): carried from the object it
    lies where it was, where that one's own carry went nowhere else (found nothing, only where
    another object is, or faded: it is no longer said so), else a new cell carried from nothing.
    Returns (the Placed, the ids carried that found nothing, those found only where another object
    is, those that faded)."""
    placed, gone, covered, dim = [], [], [], []
    for c in sorted(carried, key=lambda c: c.grown_from is not None):   # stable: the others in their order
        if c.box is None:
            gone.append(c.label)
            continue
        if c.faded:
            dim.append(c.label)
            continue
        free = c.mask & (np.asarray(here[c.box]) == 0)
        if c.grown_from is not None:
            if free.sum() < LEFT_OUT_FREE * c.mask.sum():
                continue   # its cell's own object holds it, or another one: nothing of it lost
            if c.label and any(p.carried.label == c.label for p in placed):   # carried on elsewhere already
                c = replace(c, label=0, record={**c.record, "label": 0, "step": None, "source": None})
            gone, covered, dim = ([k for k in ks if k != c.label or not c.label] for ks in (gone, covered, dim))
        elif not free.any():
            covered.append(c.label)
            continue
        k = first + len(placed)
        here[c.box][free] = k
        placed.append(Placed(k, c, free))
    return placed, gone, covered, dim


def _tight(box: tuple, mask: np.ndarray) -> tuple[tuple, np.ndarray]:
    """``mask`` (of ``box``) and the box, cut to where it lies."""
    from scipy import ndimage as ndi
    inner = ndi.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner)), mask[inner]


def own_part(parts, box, labels, label: int) -> tuple[tuple, np.ndarray, int | None]:
    """Of an object carried from ``label`` that looks like two cells touching (``parts``: two_cells's,
    masks of ``box``), the part of its own where the other lies where another object of ``labels``
    (the time point it came from) was (carry.part_sources): that object's cell, which it carries
    itself. Returns (its box, its mask there, the other object's id); where both parts are its own
    (a division) or both another's, (``box``, both parts, None)."""
    sources = part_sources(parts, box, labels, label)
    mine = [p for p, k in zip(parts, sources) if k == label]
    if len(mine) != 1:
        return box, parts[0] | parts[1], None
    return (*_tight(box, mine[0]), next(k for k in sources if k != label))


def _source(seg):
    """The volume a session segments, in its own orientation (a session across another axis reads
    it through an AxisView)."""
    return getattr(seg.volume, "array", seg.volume)


def object_boxes(labels) -> dict[int, tuple]:
    """Each object of ``labels`` (ids, a volume): its bounding box (slices)."""
    from scipy import ndimage as ndi
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"the objects are {labels.dtype} values, not integer ids")
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not len(ids):
        return {}
    dense = np.searchsorted(ids, labels) + 1   # ids as 1..n: find_objects makes a list as long as the largest
    dense[labels == 0] = 0
    return {int(k): box for k, box in zip(ids, ndi.find_objects(dense)) if box is not None}


def carry_all(make_seg, labels, t: int, records: dict | None = None, direction: int = 1, axis: int = 0,
              cancel=None, progress=None, drop_neighbours: bool = False, image=None,
              keep_own: bool = True) -> list[Carried]:
    """Every object of ``labels`` (the ids at time point ``t``, (Z, Y, X)) carried to time point
    ``t + direction``: ``make_seg()`` gives a new InteractiveSegmenter on that time point's volume
    (slicing across ``axis``), one per object; ``records`` (id -> carry_record at ``t``) gives an
    object's last step where it was itself carried, else it is carried from where it is (no step).
    ``cancel()`` is asked between objects and inside each propagation (InterruptedError);
    ``progress(done, total)`` is told after each. Objects in the order of their ids. Each carried
    object's contrast there (carry.contrast) goes into its record; it has faded (Carried.faded:
    carry.faded) where that is under FADED_BELOW of its contrast at ``t``: its record's, where it
    was carried there itself, else measured in ``image`` (the volume at ``t``; None: not judged).
    ``drop_neighbours``: where an object looks like two cells touching and one part lies where
    another object was (own_part), that part is left to it. Not the default: on fresh procedural
    time-lapses (benchmarks/carry_all.py, seeds 702-705, 11 carries, no correction) it moved the
    mean Dice from 0.864 to 0.869, under the +0.01 set for it before the run, though it cut the
    "looks like two" false alarms from 22 to 3 (on the tuning seeds 700-701: 0.849 to 0.873).
    ``keep_own`` (the default): where an object grew over a touching cell (carry.grown_over: much
    larger than it was and looking like two cells, one lying where it was not), that cell is left
    out of it (Carried.took_in) and comes after every object carried as a Carried of its own
    (grown_from: that object; label: the object of ``labels`` it lies where it was, else 0), which
    place_all writes where its own object does not hold it. On fresh procedural time-lapses (seeds
    950-953, 2.5 voxels a time point, 11 carries, no correction; benchmarks/README.md) among 30
    cells the mean Dice rose from 0.753 to 0.765, lost objects fell from 14.8 % to 13.5 % and the
    "looks like two" false alarms from 65 to 3, cells covered 1299 to 1295 of 1385; among 14 cells
    0.843 to 0.841, cells covered 641 to 653 of 691. Left out alone (not written), it had left 1 %
    more cells uncovered (seeds 940-943)."""
    records = records or {}
    boxes = object_boxes(labels)
    out, left_out = [], []
    noise = {}   # each volume's noise level, measured once, where first needed

    def noise_at(key, volume):
        if key not in noise:
            noise[key] = noise_level(volume)
        return noise[key]
    for i, (label, box) in enumerate(sorted(boxes.items())):
        if cancel is not None and cancel():
            raise InterruptedError(f"cancelled after {i} of {len(boxes)} objects")
        record = _record_at(records, labels, label, box, t, axis)
        seg = make_seg()
        before = recorded_contrast(record, image, labels)
        was_noise = recorded_noise(record)   # the record's own, else measured once in the volume before
        if was_noise is None and image is not None:
            was_noise = noise_at("before", image)
        if seg.axis != axis:
            raise ValueError(f"the session slices across axis {seg.axis}; the objects' records across {axis}")
        found = find_again(seg, carried_boxes(record, seg.shape, direction), record["area"])
        pred = seg.propagate(cancel=cancel)
        where = seg.mask_box()
        if where is None:
            out.append(Carried(label, found, None, None, None, was=box, contrast=(before, None)))
        else:
            mask = pred[where]
            parts, own = touching_parts(mask, where, seg.volume_spacing, labels if keep_own else None, label, box)
            left, took = None, False
            if own is not None:
                left_out.append((label, *_tight(where, parts[1 - own]), _source(seg)))
                where, mask = _tight(where, parts[own])
                pred, parts, took = InBox(where, mask), None, True   # carry_record reads the part kept
            if parts is not None and drop_neighbours:
                where, mask, left = own_part(parts, where, labels, label)
                if left is not None:
                    pred = InBox(where, mask)   # carry_record reads the kept part's box alone
            after, now_noise = contrast(_source(seg), mask, where), noise_at("after", _source(seg))
            out.append(Carried(label, found, where, mask,
                               {**carry_record(pred, t + direction, record, axis, label, box=where), "contrast": after,
                                "noise": now_noise},
                               parts is not None and left is None, box, left, (before, after),
                               faded(before, after, noise=(was_noise, now_noise)), (was_noise, now_noise), took))
        if progress is not None:
            progress(i + 1, len(boxes))
    for grower, where, mask, volume in left_out:
        out.append(_left_out(grower, where, mask, volume, labels, boxes, records, t, direction, axis, noise_at))
    return out


def _record_at(records: dict, labels, label: int, box: tuple, t: int, axis: int) -> dict:
    """The record of object ``label`` of ``labels`` (time point ``t``, lying in ``box``): its own
    in ``records`` where it was carried there itself (its last step kept), else made from where it
    is (no step)."""
    record = records.get(label)
    if record is None or record["t"] != t or record["axis"] != axis:
        record = carry_record(OneLabel(labels, label), t, None, axis, label, box=box)
    return record


def _left_out(grower: int, where: tuple, mask: np.ndarray, volume, labels, boxes: dict, records: dict, t: int,
              direction: int, axis: int, noise_at) -> Carried:
    """The cell ``grower``'s carry took in and left out (``mask`` of ``where``), as the object
    carried from the one of ``labels`` (time point ``t``) it lies where it was (a fifth of it at
    least; place_all decides whether it is that one's), else from nothing (label 0); ``volume``: the
    one it was found in."""
    source = part_sources([mask], where, labels, 0)[0]
    source = 0 if source == grower else source
    record = _record_at(records, labels, source, boxes[source], t, axis) if source else None
    after, now_noise = contrast(volume, mask, where), noise_at("after", volume)
    return Carried(source, None, where, mask,
                   {**carry_record(InBox(where, mask), t + direction, record, axis, source, box=where),
                    "contrast": after, "noise": now_noise},
                   contrast=(None, after), noise=(None, now_noise), grown_from=grower)
