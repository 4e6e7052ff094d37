"""From classes to objects: every connected component of a label volume gets its own id, so that
nuclei or lesions can be counted and measured one by one (halo_seg.measure).

The engine's output can be far larger than memory, so the volume is labelled in slabs of whole
slices, the classic two-pass way: each slab is labelled by scipy.ndimage.label, components that
touch across the face between two slabs are joined (scipy's connected components on that graph),
and a second pass writes each slab's final ids into a chunk-aligned zarr. The result is the same
partition of the voxels as labelling the whole array at once (tests compare it with
scipy.ndimage.label), with no seam at slab borders, in memory bounded by the slab. dask-image's
label does this for dask arrays but took 70 s on a 256^3 volume stored in 64^3 chunks, where this
takes 0.7 s (benchmarks/instances.py), so it is not used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .io.labels import check_label_volume, create_zarr_array, label_dtype, mark_labels, read_label_slab, slabs
from .io.volume import VolumeError

SLAB_VOXELS = 1 << 23   # voxels per slab: bounds memory (a few tens of MB), whatever the volume


INSTANCES_ATTR = "instances"   # marks an output of label_instances, which a later run may replace


def _check_output(out: Path) -> None:
    """Only a path that is free, or an earlier output of this function, is written: never a user's volume."""
    import zarr
    from .io.volume import check_own_output
    check_own_output(out, "instances", "a zarr label array",
                     lambda p: zarr.open_array(p, mode="r").attrs.get(INSTANCES_ATTR))


@dataclass
class InstanceResult:
    path: Path
    objects: int                                    # ids 1..objects in the output
    per_class: dict = field(default_factory=dict)   # class value -> number of objects
    removed: int = 0                                # components smaller than min_voxels


def _shifts(connectivity: int):
    """In-plane offsets (dy, dx) at which a voxel touches the next slice's voxels."""
    return [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if 1 + dy * dy + dx * dx <= connectivity]


def _slab_components(slab: np.ndarray, classes, structure, offset: int):
    """Provisional ids (offset + 1 ...) of the slab's components, one class at a time, and the class
    of each id."""
    prov = None
    cls = []
    for c in classes:
        lab, n = ndi.label(slab > 0 if c is None else slab == c, structure=structure, output=np.int64)
        if n:
            np.add(lab, offset + len(cls), out=lab, where=lab > 0)
            cls += [c] * n
        prov = lab if prov is None else prov + lab   # the classes' masks are disjoint
    return prov, cls


def _face_pairs(a_prov, b_prov, a_raw, b_raw, shifts):
    """Ids of components touching across two consecutive slices (a above b), of the same class."""
    pairs = []
    h, w = a_prov.shape
    for dy, dx in shifts:
        ya, yb = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
        xa, xb = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
        pa, pb = a_prov[ya, xa], b_prov[yb, xb]
        touch = (pa > 0) & (pb > 0) & (a_raw[ya, xa] == b_raw[yb, xb])
        if touch.any():
            pairs.append(np.stack([pa[touch], pb[touch]], 1))
    return pairs


def label_instances(labels, out: str | Path, classes=None, min_voxels: int = 0, connectivity: int = 1,
                    spacing=(1.0, 1.0, 1.0), geometry: dict | None = None, unit: str | None = None,
                    progress=None, cancel=None, dtype=None) -> InstanceResult:
    """Write the connected components of ``labels`` (Z, Y, X; numpy, dask or zarr) to the zarr ``out``.

    ``classes``: the label values whose components become objects, each class on its own (a
    component never spans two classes); default: every value > 0 taken as one foreground.
    ``min_voxels``: smaller components are dropped (set to 0). ``connectivity``: 1 (faces), 2 (and
    edges) or 3 (and corners) as in scipy.ndimage.generate_binary_structure. ``progress(done, total)``
    after each slab of each pass; ``cancel()`` True stops between slabs (InterruptedError).
    ``dtype``: of the output ids (default: the smallest that holds them; wider leaves room for
    split_touching).
    """
    shape = check_label_volume(labels)
    if connectivity not in (1, 2, 3):
        raise VolumeError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    if min_voxels < 0:
        raise VolumeError(f"min_voxels must be >= 0, got {min_voxels}")
    classes = [None] if not classes else sorted({int(c) for c in classes})
    if any(c is not None and c <= 0 for c in classes):
        raise VolumeError(f"classes must be label values > 0, got {classes}")
    out = Path(out)
    _check_output(out)
    structure = ndi.generate_binary_structure(3, connectivity)
    shifts = _shifts(connectivity)
    step, starts = slabs(shape, SLAB_VOXELS)
    total = 2 * len(starts)

    def read(z0):
        return read_label_slab(labels, z0, step, cancel)

    # pass 1: provisional ids per slab, their sizes and classes, and the joins across slab faces
    offsets, sizes, cls, pairs = [], [np.zeros(1)], [0], []
    prev = None
    for i, z0 in enumerate(starts):
        slab = read(z0)
        offsets.append(len(cls) - 1)
        prov, c = _slab_components(slab, classes, structure, offsets[-1])
        sizes.append(np.bincount(prov[prov > 0] - offsets[-1] - 1, minlength=len(c)).astype(float))
        cls += c
        raw = slab > 0 if classes == [None] else slab   # what must be equal for two voxels to join
        if prev is not None:
            pairs += _face_pairs(prev[0], prov[0], prev[1], raw[0], shifts)
        prev = (prov[-1].copy(), raw[-1].copy())   # copies: views would keep the whole slab alive
        if progress is not None:
            progress(i + 1, total)
    n = len(cls)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)   # id 0 (background) is its own component
    size = np.bincount(comp, weights=np.concatenate(sizes))
    keep = size >= max(min_voxels, 1)
    keep[comp[0]] = False
    # final ids 1..K in the order components first appear: slab by slab, and within a slab class by
    # class, each in raster order (with one foreground, the volume's raster order)
    first = np.full(len(size), n, np.int64)
    np.minimum.at(first, comp, np.arange(n))
    kept = np.flatnonzero(keep)
    final = np.zeros(len(size), np.int64)
    final[kept[np.argsort(first[kept], kind="stable")]] = np.arange(1, len(kept) + 1)
    objects = len(kept)
    dtype = np.dtype(dtype) if dtype is not None else label_dtype(objects)
    if objects > np.iinfo(dtype).max:
        raise VolumeError(f"{objects} objects do not fit in {dtype}")
    lut = final[comp].astype(dtype)
    per_class = {}
    comp_class = np.zeros(len(size), object)
    comp_class[comp] = np.array(cls, object)
    for c in comp_class[kept]:
        key = "foreground" if c is None else int(c)
        per_class[key] = per_class.get(key, 0) + 1
    for c in classes:   # a class asked for that gave nothing is said, not left out (a typo reads as "none")
        per_class.setdefault("foreground" if c is None else c, 0)

    # pass 2: the same provisional ids again (labelling is deterministic), mapped to the final ones
    chunks = (step, min(shape[1], 512), min(shape[2], 512))   # slabs cover whole chunks: no two write one
    arr = create_zarr_array(out, shape, chunks, dtype, spacing=spacing, overwrite=True, geometry=geometry)
    mark_labels(arr, unit)
    arr.attrs[INSTANCES_ATTR] = True
    for i, z0 in enumerate(starts):
        prov, _ = _slab_components(read(z0), classes, structure, offsets[i])
        arr[z0:z0 + step] = lut[prov]
        if progress is not None:
            progress(len(starts) + i + 1, total)
    removed = len(size) - 1 - objects   # every component but the background's that was dropped
    return InstanceResult(out, objects, per_class, removed)


SPLIT_DEPTH = 0.25   # voxels: best on procedural touching balls (benchmarks/split_nuclei.py, F1 0.954)


def split_touching(path: str | Path, depth: float = SPLIT_DEPTH, spacing=(1.0, 1.0, 1.0), progress=None,
                   cancel=None) -> int:
    """Split objects of the instance zarr at ``path`` (label_instances' output) that are several
    touching ones, in place: the distance-transform watershed of microscopy. Each object's distance
    to its border is computed in ``spacing`` units; its maxima that stand more than ``depth`` voxels
    (of the finest axis) above the saddle to a higher one seed one object each. Works object by
    object on bounding boxes, so the volume may be any size. Returns the number of objects after
    splitting; new objects get ids after the existing ones."""
    import zarr
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed
    from .measure import bbox_slices, measure_labels
    if not depth > 0:
        raise VolumeError(f"the split depth must be > 0 voxels, got {depth}")
    h = float(depth) * min(float(v) for v in spacing)
    arr = zarr.open_array(str(path), mode="r+")
    table = measure_labels(arr, spacing)
    next_id = int(table["label"].max()) + 1 if len(table["label"]) else 1
    pieces = []
    for i, k in enumerate(table["label"].tolist()):
        if cancel is not None and cancel():
            raise InterruptedError("stopped before every object was split")
        box = bbox_slices(table, i)
        crop = arr[box]
        mask = np.pad(crop == k, 1)
        dist = ndi.distance_transform_edt(mask, sampling=spacing)
        seeds, n = ndi.label(h_maxima(dist, h) & mask)
        if n > 1:
            parts = watershed(-dist, seeds, mask=mask)[1:-1, 1:-1, 1:-1]
            ids = np.concatenate([[0, k], np.arange(next_id, next_id + n - 1)])
            crop = np.where(crop == k, ids[parts], crop)
            next_id += n - 1
            pieces.append(n)
            if next_id > np.iinfo(arr.dtype).max:
                raise VolumeError(f"splitting needs ids beyond {arr.dtype}'s range; label with more room first")
            arr[box] = crop.astype(arr.dtype)
        if progress is not None:
            progress(i + 1, len(table["label"]))
    return next_id - 1 if len(table["label"]) else 0
