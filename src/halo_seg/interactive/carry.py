"""Following an object from one time point of a time-lapse to the next (or the one before): the box
of the object segmented at one time point, where it was on its largest slice and moved by its last
step, as the prompt there (the interactive widget's Next and Previous time point;
benchmarks/carry.py measures it)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


def carry_record(pred: np.ndarray, t: int, source: dict | None = None, axis: int = 0, label: int = 1,
                 box: tuple | None = None) -> dict:
    """What "Next time point" carries of an object segmented at time point ``t`` (its prediction
    ``pred`` in the volume's axes; ``box``: where it lies, when known, else found), in the session's
    (z, y, x) across ``axis``: its largest slice, that slice's box and area, its centroid, its last step
    (from ``source``, the record of the object it was carried from, one time point before or after:
    per time point forward) to move the box by at the next time point. ``label``: its id, kept;
    ``bounds``: ``box``, where it lies in the volume's axes."""
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
    return {"t": t, "label": int(label), "axis": axis, "bounds": tuple(box), "z": z + int(at[0]),
            "area": int(inside[z].sum()),
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


def carried_boxes(record: dict, shape, direction: int = 1) -> list[tuple[int, tuple]]:
    """The boxes Next time point tries (find_again): where the object was, and where its last step
    takes it (where it has one and the two differ)."""
    boxes = [carried_box(dict(record, step=None), shape, direction)]
    if record["step"] is not None:
        moved = carried_box(record, shape, direction)
        if moved != boxes[0]:
            boxes.append(moved)
    return boxes


# how much a box's found area unlike the object's (ln of the ratio) costs against the predicted Dice:
# a box again that took in a touching neighbour too is sure of the two (a daughter followed after a
# division went back to both); on the tuning seeds 0.25 to 1 all within 0.004 of the Dice alone
AREA_WEIGHT = 0.5


# a carried box that the object grew out of (a cell changing shape) clips what the slice's
# segmentation finds in it, and the tight box of that can only shrink: with find_again's grow, widened
# by this share of its side on each side the found object reaches, at most GROW_TIMES times, while it
# still reaches one
GROW_SHARE = 0.3
GROW_TIMES = 3


def _widened(seg, z: int, box: tuple, mask: np.ndarray) -> np.ndarray:
    """What slice ``z`` is segmented as from ``box`` (``mask``, found from it as it is), the box
    widened on each side the found object reaches (GROW_SHARE of its side) until it reaches none,
    or GROW_TIMES times."""
    from .roi import mask_bbox
    height, width = seg.shape[1:]   # the session's (z, y, x), as its boxes
    for _ in range(GROW_TIMES):
        if not mask.any():
            break
        y0, x0, y1, x1 = box
        my0, mx0, my1, mx1 = mask_bbox(mask)
        dy, dx = max(2, int(GROW_SHARE * (y1 - y0 + 1))), max(2, int(GROW_SHARE * (x1 - x0 + 1)))
        wider = (max(0, y0 - dy) if my0 <= y0 else y0, max(0, x0 - dx) if mx0 <= x0 else x0,
                 min(height - 1, y1 + dy) if my1 >= y1 else y1, min(width - 1, x1 + dx) if mx1 >= x1 else x1)
        if wider == box:
            break
        box = wider
        mask, _ = seg.try_box(z, box)
    return mask


# find_again's widen: the box chosen, where what it finds is under this share of the object's area
# (clipped by a box the object grew out of), tried once more widened where the object reaches its
# sides; only that box (widening every box gave a wrong slice's neighbour more chances to win)
WIDEN_BELOW = 0.85


class Found(NamedTuple):
    """Where find_again found the object: the slice, the box prompted there, its index in the
    carried boxes, and whether that box was widened where the object grew out of it."""
    slice: int
    box: tuple
    which: int
    widened: bool = False


def find_again(seg, boxes, area: int | None = None, grow: bool = False,
               widen: float | None = WIDEN_BELOW) -> Found | None:
    """Of the carried ``boxes`` ((slice, box) each, carried_boxes), the one where the object is
    found again, added to ``seg`` (an InteractiveSegmenter at the new time point) as its prompt:
    each replaced by the tight box of what the slice's segmentation finds in it (a carried box is off
    by however the object moved and changed, and the prompt network expects a tight one), the one
    kept whose segmentation the prompt network predicts the better Dice of, less AREA_WEIGHT times
    how unlike ``area`` (the object's on its largest slice, the record's) its area is. A cell
    crawling on is where its last step takes it, one wandering at random rather where it was: at 3
    voxels a time point, radius 5, moving the box lost 31 % of a random walk's time points and not
    moving it 31 % of a crawl's; chosen so, 0 % and 5 % (tuning seeds of benchmarks/carry.py).
    With ``grow``, each box's tight box is also taken from what it finds once widened where the
    found object reaches its sides (_widened), and the network chooses between the two: for cells
    that change shape (ellipsoid axes drifting by a fifth a time point) at 3 voxels a time point,
    mean Dice 0.825 to 0.862 and none lost (5 % before) on fresh seeds, but crawling balls 0.917 to
    0.895 and random walks 0.899 to 0.876 (5 % lost), so it is not the default (benchmarks/carry.py,
    2026-12-07; on the tuning seeds balls and walks had not moved). With ``widen`` (the default,
    WIDEN_BELOW; None: not), only the box chosen is widened so, where what it finds is under
    ``widen`` times ``area``, and kept widened where the network (less the area cost) prefers it:
    on fresh seeds at 3 voxels a time point, cells changing shape 0.847 to 0.884 (5 % to 1 % lost),
    random walks 0.895 to 0.907, crawling balls 0.890 to 0.892, at 1.5 all within 0.003
    (benchmarks/carry.py, seeds 500-503, 2026-12-07). Returns a Found (slice, box, which: its index
    in ``boxes``, widened: by ``widen``), or None where none found anything (the last box is then the
    prompt, as carried)."""
    from .roi import mask_bbox
    best = None
    for i, (z, box) in enumerate(boxes):
        mask, _ = seg.try_box(z, box)
        if not mask.any():
            continue
        tights = [mask_bbox(mask)]
        wide = _widened(seg, z, box, mask) if grow else mask
        if wide.any() and mask_bbox(wide) not in tights:
            tights.append(mask_bbox(wide))
        for k, tight in enumerate(tights):   # the second: widened (grow)
            found, q = seg.try_box(z, tight)
            if area is not None:
                q -= AREA_WEIGHT * abs(np.log((found.sum() + 1) / (area + 1)))
            if best is None or q > best[0]:
                best = (q, z, tight, i, box, mask, int(found.sum()), k > 0)
    if best is None:
        seg.add_box(boxes[-1][0], *boxes[-1][1])
        return None
    q, z, tight, i, box, mask, got, widened = best
    if widen is not None and area is not None and got < widen * area:
        wide = _widened(seg, z, box, mask)
        if wide.any() and mask_bbox(wide) != tight:
            found, q2 = seg.try_box(z, mask_bbox(wide))
            if q2 - AREA_WEIGHT * abs(np.log((found.sum() + 1) / (area + 1))) > q:
                tight, widened = mask_bbox(wide), True
    seg.add_box(z, *tight)
    return Found(z, tight, i, widened)


def two_cells(mask: np.ndarray, spacing=None, at_neck: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """Where an object carried to a time point looks like two cells touching (a division: the mother's
    box takes in both daughters), the two as boolean masks of ``mask``'s shape, else None. Its
    distance map's peaks (at least 0.4 of its equivalent radius apart, each at least half the
    highest) split it by watershed; it is two when the second largest part holds a quarter of it
    and the neck between the two largest is under 0.95 of the lower one's peak. Chosen on
    procedural time-lapses, seeds 0-3: 8 of the 10 divisions whose daughters the carried object
    took in, no alarm at 400 time points of cells that do not divide; on fresh seeds
    (benchmarks/carry.py) 5 of 7, and 3 alarms at 200 time points. Not instances.split_touching's
    rule (any maximum 0.25 voxels above its saddle seeds an object: right for thresholded nuclei):
    on these propagated masks it took 27 of the 400 single cells for several and found 6 of the 10
    divisions. ``spacing``: the voxel size (z, y, x), for distances in it. An object in one plane
    (a 2D image's) is split in 2D. Where there are more than two parts: split between the two
    largest (by default; the rule above was measured so), or ``at_neck``, at the lowest neck
    (_two_groups: three nuclei in a row come apart as one and two, not through the middle one; Commit
    as two). A piece apart from both goes with the nearer: no voxel is left out."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed
    mask = np.asarray(mask, bool)
    found = ndi.find_objects(mask.astype(np.uint8))
    if not found:
        return None
    box = found[0]
    # a plane (a 2D image's one, or an object one slice thick) in 2D: padded to three its distance map
    # is flat across it, and two cells in it were never told apart
    deep = [a for a in range(3) if box[a].stop - box[a].start > 1]
    if len(deep) < 2:
        return None
    sub = np.pad(mask[box].reshape([box[a].stop - box[a].start for a in deep]), 1)
    n = int(sub.sum())
    dist = ndi.distance_transform_edt(sub, sampling=None if spacing is None else [spacing[a] for a in deep])
    radius = (3 * n / (4 * np.pi)) ** (1 / 3) if len(deep) == 3 else np.sqrt(n / np.pi)   # of a ball, a disc
    apart = max(2, int(round(0.4 * radius)))
    peaks = peak_local_max(dist, min_distance=apart, threshold_abs=0.5 * dist.max(), labels=sub.astype(int),
                           exclude_border=False)
    if len(peaks) < 2:
        return None
    markers = np.zeros(sub.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    parts = watershed(-dist, markers, mask=sub)
    if at_neck:
        parts = _two_groups(parts, dist, len(peaks))
    else:
        sizes = np.bincount(parts.ravel(), minlength=len(peaks) + 1)[1:]
        first, second = np.argsort(sizes)[::-1][:2]   # the two largest parts, the whole object split between them
        two = np.zeros(sub.shape, np.int32)
        two[tuple(peaks[first])], two[tuple(peaks[second])] = 1, 2
        parts = watershed(-dist, two, mask=sub)
    parts = _nearer(parts, sub)
    a, b = parts == 1, parts == 2
    if min(a.sum(), b.sum()) < 0.25 * n:
        return None
    border = a & ndi.binary_dilation(b)
    neck = dist[border].max() if border.any() else 0.0   # apart: two
    if neck >= 0.95 * min(dist[a].max(), dist[b].max()):
        return None
    inner = tuple(slice(1, -1) for _ in deep)
    out = []
    for part in (a, b):
        full = np.zeros(mask.shape, bool)
        full[box] = part[inner].reshape(mask[box].shape)
        out.append(full)
    return out[0], out[1]


def _two_groups(parts: np.ndarray, dist: np.ndarray, k: int, least: float = 0.25) -> np.ndarray:
    """The watershed's ``k`` parts (ids 1..k of ``parts``; ``dist``: the distance map they came from)
    joined into two (ids 1 and 2; 0 elsewhere) along the lowest neck (the height of the distance map
    where two parts touch) that leaves each side at least ``least`` of the object: the parts joined
    across their highest necks (a maximum spanning tree), then the tree cut at that neck (a small
    bump behind a low neck is not a side). Pieces apart: the two largest kept (the rest: _nearer)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
    necks = np.zeros((k + 1, k + 1))
    for axis in range(parts.ndim):
        lo = tuple(slice(0, -1) if d == axis else slice(None) for d in range(parts.ndim))
        hi = tuple(slice(1, None) if d == axis else slice(None) for d in range(parts.ndim))
        p, q = parts[lo], parts[hi]
        touch = (p != q) & (p > 0) & (q > 0)
        np.maximum.at(necks, (p[touch], q[touch]), np.minimum(dist[lo][touch], dist[hi][touch]))
    necks = np.maximum(necks, necks.T)[1:, 1:]   # between parts 1..k, as indices 0..k-1
    sizes = np.bincount(parts.ravel(), minlength=k + 1)[1:].astype(float)

    def groups(edges) -> np.ndarray:   # each part's group with ``edges`` (index pairs) joined
        rows, cols = (np.array(v, np.int64) for v in zip(*edges)) if edges else (np.zeros(0, np.int64),) * 2
        return connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(k, k)), directed=False)[1]
    # the highest necks first: scipy's minimum spanning tree of the necks turned around (an edge > 0 each)
    turned = np.where(necks > 0, necks.max() + 1 - necks, 0)
    tree = minimum_spanning_tree(np.triu(turned)).tocoo()
    edges = [(int(i), int(j)) for i, j in zip(tree.row, tree.col)]
    joined = groups(edges)
    if edges and not joined.any():   # one piece: cut the tree at the lowest neck leaving both sides
        cuts = []
        for e in edges:
            g = groups([f for f in edges if f != e])
            side = sizes[g == g[e[0]]].sum()
            cuts.append((min(side, sizes.sum() - side) < least * sizes.sum(), necks[e], g))
        joined = min(cuts, key=lambda c: c[:2])[2]
    first, second = np.argsort(np.bincount(joined, weights=sizes))[::-1][:2]
    keep = np.where(joined == first, 1, np.where(joined == second, 2, 0))
    return np.concatenate([[0], keep])[parts].astype(np.int32)


def _nearer(parts: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``parts`` (ids 1 and 2) with every voxel of ``inside`` they leave out (a piece apart from
    both, which a watershed from their markers never reaches) given to the nearer of them."""
    from scipy import ndimage as ndi
    if not (inside & (parts == 0)).any() or not (parts > 0).any():
        return parts
    nearest = ndi.distance_transform_edt(parts == 0, return_distances=False, return_indices=True)
    return np.where(inside, parts[tuple(nearest)], 0).astype(np.int32)


def part_sources(parts, box, before, followed: int) -> list[int]:
    """The object each of ``parts`` (masks of ``box``; two_cells's, of an object carried to a time
    point) was carried from: the object of the time point it was carried from (``before``: the
    objects' ids there, a volume) it lies in most (a fifth of it at least), where that is another
    object than the one ``followed`` (a daughter's box took in her touching sister too: the part
    lying where her sister was is her sister's); else the one followed (a mother's two daughters
    both lie where she was, and a cell that moved further than its size lies in none)."""
    region = np.asarray(before[box])
    out = []
    for part in parts:
        ids, counts = np.unique(region[part], return_counts=True)
        counts = counts[ids > 0]
        ids = ids[ids > 0]
        out.append(int(ids[counts.argmax()]) if len(ids) and counts.max() >= 0.2 * part.sum() else int(followed))
    return out


# an object carried to a time point that grew to GREW_OVER times its volume where it came from and
# looks like two cells touching, one of which lies mostly (all but IN_BEFORE_BELOW) where the object
# was not, took in a touching cell: a mother's object over her daughters keeps her volume, and a
# cell changing shape lies where it was. Chosen on the procedural cells of seeds 0-3 (following a
# cell among 30, 2.5 voxels a time point: every cut of 9 raised the Dice; among 10 cells changing
# shape, parts a fifth to three quarters inside were cut and the wrong part kept). carry_all's
# keep_own, the default (benchmarks/README.md)
GREW_OVER = 1.3
IN_BEFORE_BELOW = 0.25


class InBox:
    """A mask known in one box (``mask`` of ``box``), read as carry_record reads it (that box):
    no whole volume made for it."""

    def __init__(self, box: tuple, mask: np.ndarray):
        self.box, self.mask = box, mask

    def __getitem__(self, box):
        if box != self.box:
            raise IndexError(f"the mask is known in {self.box}, not {box}")
        return self.mask


class OneLabel:
    """``labels == label`` read box by box (carry_record and grown_over read the object's box only):
    no whole volume made per object."""

    def __init__(self, labels, label: int):
        self.labels, self.label = labels, label

    def __getitem__(self, box):
        return np.asarray(self.labels[box]) == self.label


def touching_parts(mask: np.ndarray, box: tuple, spacing=None, before=None, label: int = 0,
                   bounds: tuple | None = None) -> tuple[tuple | None, int | None]:
    """(parts, own) of an object carried to a time point (``mask``, bool of ``box``): two_cells's
    parts where it looks like two cells touching, else None; and, where it came from object
    ``label`` of ``before`` lying in ``bounds`` there (both given), took_in's index of its own part
    where it had grown over a touching cell, else None. What All to next time point, Next time
    point's note and the benchmarks ask of a carried object, in one place."""
    parts = two_cells(mask, spacing)
    if parts is None or before is None or bounds is None:
        return parts, None
    return parts, took_in(parts, box, before, label, bounds)


def took_in(parts, box, before, label: int, bounds: tuple) -> int | None:
    """Of an object carried from ``label`` (``before``: the objects' ids at the time point it came
    from, a volume; ``bounds``: where it lay there) that looks like two cells touching (``parts``:
    two_cells's, masks of ``box``), the index of its own part where it had grown over a touching cell
    (grown_over); None where it divided or changed shape, or is not within ``bounds`` there (erased
    since: nothing to compare with)."""
    volume = int((np.asarray(before[bounds]) == label).sum())
    own = grown_over(parts, box, OneLabel(before, label), volume) if volume else None
    return None if own is None else next(i for i, p in enumerate(parts) if p is own)


def grown_over(parts, box, before, volume_before: int) -> np.ndarray | None:
    """Of an object carried to a time point that looks like two cells touching (``parts``:
    two_cells's, masks of ``box``), its own part where it took in a touching cell: the object (both
    parts) is at least GREW_OVER times ``volume_before`` (its voxels where it came from) and the
    part lying less in ``before`` (the object where it came from, a bool volume) lies under
    IN_BEFORE_BELOW in it; else None (a division, or a cell changing shape)."""
    a, b = parts
    if a.sum() + b.sum() < GREW_OVER * volume_before:
        return None
    was = np.asarray(before[box], bool)
    keep, cut = (a, b) if (a & was).sum() >= (b & was).sum() else (b, a)
    return keep if (cut & was).sum() < IN_BEFORE_BELOW * cut.sum() else None


# an object carried to a time point whose contrast there is under this share of its contrast where
# it came from has faded into the background: its cell left the field or is gone, and what the box
# found is noise (the prompt network's predicted Dice does not tell: median 0.55 on such noise
# against 0.57 on cells). Procedural time-lapses, a third of the cells vanishing at each time point
# (benchmarks/carry_faded.py, tuning seeds 900-903): contrast ratios on noise at most 0.47, on
# cells at least 0.77 (0.5 was set on the contrast over the shell's spread first: 0.41 and 0.56).
# Compared in units of each volume's noise level (faded's noise), fresh seeds 932-935: the same
# time points 1 of 298 cells and 127 of 127 noise flagged; the time point carried to taken at 0.4
# of the exposure, 1 of 298 cells (297 in the image's units) and 127 of 127 noise
FADED_BELOW = 0.5


def levels(image, mask: np.ndarray, box: tuple, ring: int = 3) -> tuple[float, float] | None:
    """The median of an object's voxels (``mask``, bool of ``box``, slices of ``image``) and the
    median of a shell 2 to ``ring`` voxels out of it (a median: a touching neighbour in under half
    the shell does not move it). None where the object or its shell holds no voxel."""
    from scipy import ndimage as ndi
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    shape = image.shape
    wide = tuple(slice(max(0, b.start - ring - 1), min(n, b.stop + ring + 1)) for b, n in zip(box, shape))
    inner = tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, wide))
    whole = np.zeros([w.stop - w.start for w in wide], bool)
    whole[inner] = mask
    shell = ndi.binary_dilation(whole, iterations=ring) & ~ndi.binary_dilation(whole, iterations=1)
    if not shell.any():
        return None
    values = np.asarray(image[wide], np.float64)
    return float(np.median(values[whole])), float(np.median(values[shell]))


def contrast(image, mask: np.ndarray, box: tuple, ring: int = 3) -> float | None:
    """How far an object stands out of what lies around it, in the image's units: the median of
    its voxels less the median of the shell around it (levels; neighbours are not left out of the
    shell, for they are not known where the object is carried to). Negative for a dark object.
    None where the object or its shell holds no voxel."""
    both = levels(image, mask, box, ring)
    return None if both is None else both[0] - both[1]


def recorded_contrast(record: dict, image=None, labels=None) -> float | None:
    """An object's contrast at the time point of its ``record`` (carry_record's): the record's own
    (that of an object carried there), else measured in ``image`` (the volume there) where
    ``labels`` (the ids there) hold the record's label within its bounds; None where neither is
    known."""
    if record.get("contrast") is not None:
        return record["contrast"]
    if image is None or labels is None or record.get("bounds") is None:
        return None
    where = record["bounds"]
    return contrast(image, np.asarray(labels[where]) == record["label"], where)


TRIM = 0.9             # noise_level: the share of the neighbours' differences kept, the smaller
TRIMMED_SD = 0.7893    # a normal's standard deviation within its central 90 % (+-1.645 sd), as a share of it


def noise_level(image, planes: int = 8, most: int = 1 << 21) -> float | None:
    """How much the voxels of ``image`` (Z, Y, X) scatter about what they show, in its units: a
    standard deviation from the differences between neighbours along the last axis (the inside of
    a cell and its smooth edge hardly change from one voxel to the next; noise does; the largest
    tenth, edges, left out), over up to ``planes`` planes evenly spread across the first axis (a
    lazy volume is read there only). None where most neighbours are equal (an image without noise,
    a background clipped to zero, integer noise under a unit)."""
    n = image.shape[0]
    picked = np.unique(np.linspace(0, n - 1, min(planes, n)).round().astype(int))
    steps = []
    for z in picked:
        rows = np.asarray(image[int(z)])
        rows = rows.reshape(-1, rows.shape[-1]) if rows.ndim > 1 else rows[None]
        every = max(1, rows.size * len(picked) // most)   # rows left out, not read into float64: a large plane
        steps.append(np.abs(np.diff(rows[::every].astype(np.float64), axis=-1)).ravel())
    steps = np.concatenate(steps)
    if not len(steps) or np.median(steps) == 0:   # most neighbours equal: no noise to speak of (or clipped)
        return None
    # the root mean square of the smaller 90 % (edges, the larger steps, left out), a normal's so
    # trimmed: continuous, where the median of integer data jumps from 1 to 2 (x 2) as the noise grows
    kept = np.partition(steps, int(TRIM * len(steps)) - 1)[:int(TRIM * len(steps))]
    return float(np.sqrt(np.mean(kept ** 2)) / TRIMMED_SD / np.sqrt(2)) or None


def recorded_noise(record: dict, image=None) -> float | None:
    """The noise level (noise_level) of the volume where ``record``'s contrast was measured: the
    record's own, else measured in ``image`` (the volume at the record's time point); None where
    neither is known."""
    if record.get("noise") is not None:
        return record["noise"]
    return None if image is None else noise_level(image)


def faded(before: float | None, after: float | None, below: float = FADED_BELOW, noise=None) -> bool:
    """Whether an object whose contrast was ``before`` where it came from and is ``after`` where it
    was carried to (contrast) has faded into the background there: ``after`` under ``below`` times
    ``before``, of the same sign (a dark object darker than around it). ``noise``: (the noise level
    where it came from, where it was carried to; noise_level): where both are known, the contrasts
    are compared in those units, so that a time point taken brighter or darker as a whole (another
    exposure, laser power or gain: signal and noise scaled alike) does not read as every object
    faded. Not judged (False) where either contrast is unknown or it did not stand out before
    (contrast 0)."""
    if before is None or after is None or before == 0:
        return False
    scale = 1.0 if noise is None or None in noise or not all(noise) else noise[0] / noise[1]
    return after / before * scale < below
