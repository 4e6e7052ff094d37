"""Write label volumes: chunk-aligned zarr (concurrent writers never share a chunk) or NIfTI."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import dask.array as da
import numpy as np

from .geometry import KEY as GEOMETRY, check, to_nifti
from .volume import (ITK_WRITE, NIFTI_SUFFIXES, SEGMENT_NAMES, TIFF_SUFFIXES, Volume, VolumeError, names_attr,
                     open_volume)


def check_label_dtype(dtype, what: str = "the array") -> None:
    """Labels are integer or boolean ids; anything else (intensities, probabilities) is refused."""
    if not (np.issubdtype(dtype, np.integer) or np.dtype(dtype) == bool):
        raise VolumeError(f"{what} holds {dtype} values, not labels: labels must be integer or boolean")


def whole_labels(labels, what: str = "the label volume", slab_voxels: int = 2 ** 25):
    """Labels stored as floats (FSL and SPM write masks as float32; many NIfTI labels are) as
    integers, when every value is a whole number >= 0; integer and boolean labels are returned as
    they are. Anything else (a probability map, labels resampled with interpolation, NaN) is refused
    naming a value, before any result is computed: casting would truncate 0.5 to background. A
    float volume is read once slab-wise for the check (a lazy one stays lazy: it is cast per chunk)."""
    dtype = np.dtype(labels.dtype)
    if np.issubdtype(dtype, np.integer) or dtype == bool:
        return labels
    if not np.issubdtype(dtype, np.floating):
        check_label_dtype(dtype, what)
    shape = tuple(int(s) for s in labels.shape)
    rows = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    step = max(1, slab_voxels // max(1, rows))
    top = float(np.iinfo(np.uint32).max)
    for z0 in range(0, shape[0] if shape else 1, step):
        slab = np.asarray(labels[z0:z0 + step] if shape else labels)
        bad = ~np.isfinite(slab) | (slab < 0) | (slab > top) | (slab != np.round(slab))
        if bad.any():
            v = slab[bad].flat[0]
            raise VolumeError(f"{what} holds {dtype} values that are not labels (e.g. {v:g}): label ids are "
                              "whole numbers >= 0; threshold a probability map, or resample labels with "
                              "nearest neighbour, first")
    return labels.astype(np.uint32) if isinstance(labels, (np.ndarray, da.Array)) else da.asarray(labels).astype(np.uint32)


def open_labels(source, **choice) -> Volume:
    """A label volume (a file, a folder or an array) opened like any volume (``choice``: open_volume's
    timepoint, planes), float-stored labels as integers (whole_labels)."""
    vol = open_volume(source, **choice)
    if vol.meta.get("incomplete"):   # measured, compared or exported, the missing blocks would count as background
        raise VolumeError(f"{source} is the output of a `halo-seg segment` run that stopped ({vol.meta['incomplete']}); "
                          "finish it with `halo-seg segment ... --resume` first")
    vol.data = whole_labels(vol.data, str(source) if isinstance(source, (str, Path)) else "the label volume")
    return vol


def smaller_on_top(structures: dict, shape) -> tuple[np.ndarray, int]:
    """One label volume of structures that may overlap (an organ inside the body outline): label ->
    its pieces, [(where, mask)] with ``where`` a slice index or ``...`` for the whole volume. The
    larger are painted first, so a smaller one is kept where two overlap and none disappears under
    another; returns the labels and the number of voxels two structures claimed."""
    size = {label: sum(int(m.sum()) for _, m in pieces) for label, pieces in structures.items()}
    labels = np.zeros(shape, np.uint16)
    overlap = 0
    for label in sorted(structures, key=lambda k: -size[k]):
        for where, mask in structures[label]:
            region = labels[where]
            overlap += int((mask & (region != 0)).sum())
            region[mask] = label
    return labels, overlap


def check_label_volume(labels, what: str = "the label volume") -> tuple[int, int, int]:
    """The shape of a (Z, Y, X) label volume (any array type), or a VolumeError naming the problem."""
    shape = tuple(int(s) for s in getattr(labels, "shape", ()))
    if len(shape) != 3:
        raise VolumeError(f"{what} must be a 3D (Z, Y, X) volume, got shape {shape}")
    check_label_dtype(np.dtype(labels.dtype), what)
    return shape


def slabs(shape, slab_voxels: int) -> tuple[int, list[int]]:
    """Slices per slab (whole slices, about ``slab_voxels`` voxels) and the slabs' first slices."""
    step = max(1, slab_voxels // max(1, shape[1] * shape[2]))
    return step, list(range(0, shape[0], step))


def read_label_slab(labels, z0: int, step: int, cancel=None, what: str = "the label volume") -> np.ndarray:
    """Slices z0 .. z0 + step of a label volume as integers (booleans as uint8, uint64 as int64),
    refusing negative ids; ``cancel()`` True stops before reading (InterruptedError)."""
    if cancel is not None and cancel():
        raise InterruptedError("stopped before the whole volume was read")
    slab = np.asarray(labels[z0:z0 + step])
    if slab.dtype == bool:
        return slab.view(np.uint8)
    if np.issubdtype(slab.dtype, np.signedinteger) and (slab < 0).any():
        raise VolumeError(f"{what} holds negative values; label ids must be >= 0")
    if slab.dtype == np.uint64 and slab.size and int(slab.max()) > np.iinfo(np.int64).max:
        # measured and compared as int64, such an id came out negative (a hashed connectomics id?)
        raise VolumeError(f"{what} holds the id {int(slab.max())}, above 2**63 - 1, the largest id these tools "
                          "keep; relabel the objects first (e.g. skimage.segmentation.relabel_sequential)")
    if slab.dtype == np.uint64:   # numpy compares uint64 with int64 (np.isin, searchsorted) as float64,
        return slab.astype(np.int64)   # which merges ids past 2**53
    return slab


def label_ids(labels, cancel=None, slab_voxels: int = 2 ** 25, what: str = "the label volume") -> list[int]:
    """The nonzero ids a (Z, Y, X) label volume holds, ascending. Read a slab at a time (a lazy volume
    is never read whole) and only the nonzero voxels are sorted: on a mostly empty layer of 600 x 1024
    x 1024 that is a pass over the memory instead of np.unique's sort of every voxel (5.6 s)."""
    shape = check_label_volume(labels, what)
    step, starts = slabs(shape, slab_voxels)
    found = set()
    for z0 in starts:
        slab = read_label_slab(labels, z0, step, cancel, what)
        inside = slab[slab != 0]
        if inside.size:
            found.update(np.unique(inside).tolist())
    return sorted(int(k) for k in found)


LABELS_ATTR = "labels"   # a zarr array's attribute saying its values are label ids (the reader opens it as Labels)


def mark_labels(arr, unit: str | None = None) -> None:
    """Mark a zarr array as labels, with the length unit of its spacing when known."""
    arr.attrs[LABELS_ATTR] = True
    if unit:
        arr.attrs["unit"] = unit


def label_dtype(max_label: int) -> np.dtype:
    return np.dtype(np.uint8 if max_label < 256 else np.uint16 if max_label < 65536 else np.uint32)


def create_zarr_array(path: str | Path, shape: Sequence[int], chunks: Sequence[int], dtype,
                      name: str | None = None, spacing=(1.0, 1.0, 1.0), overwrite: bool = False,
                      fill_value=0, geometry: dict | None = None):
    """Create (or reopen, when ``overwrite`` is False and it matches) an on-disk zarr array.

    With ``name`` the array lives inside a group at ``path`` so labels and probabilities sit
    side by side; the group also carries the spacing. ``geometry``: the scan geometry of the image
    these labels were computed on (io.geometry), kept so that they can be exported where it lies.
    """
    import zarr
    path = str(path)
    if name is None:
        arr = zarr.open_array(path, mode="w" if overwrite else "a", shape=tuple(shape),
                              chunks=tuple(chunks), dtype=dtype, fill_value=fill_value)
    else:
        grp = zarr.open_group(path, mode="a")
        if name in grp and not overwrite:
            arr = grp[name]
            if tuple(arr.shape) != tuple(shape) or tuple(arr.chunks) != tuple(chunks):
                raise VolumeError(f"{path}/{name} exists with shape {arr.shape} chunks {arr.chunks}; "
                                  f"expected {tuple(shape)} / {tuple(chunks)} (use a new output)")
        else:
            arr = grp.create_array(name, shape=tuple(shape), chunks=tuple(chunks), dtype=dtype,
                                   fill_value=fill_value, overwrite=True)
        grp.attrs["spacing"] = list(map(float, spacing))
        if geometry is not None:
            grp.attrs[GEOMETRY] = geometry
    arr.attrs["spacing"] = list(map(float, spacing))
    if geometry is not None:
        arr.attrs[GEOMETRY] = geometry
    return arr


_NIFTI_UNITS = {"mm": "mm", "µm": "micron", "m": "meter"}   # the length units NIfTI's header can name


def set_nifti_unit(img, unit: str | None) -> None:
    """Name the spacing's length unit in a NIfTI header, where NIfTI can name it."""
    if unit in _NIFTI_UNITS:
        img.header.set_xyzt_units(xyz=_NIFTI_UNITS[unit])


def write_labels(labels, path: str | Path, spacing=(1.0, 1.0, 1.0), chunks: Sequence[int] | None = None,
                 affine: np.ndarray | None = None, overwrite: bool = True, geometry: dict | None = None,
                 unit: str | None = None, names: dict | None = None) -> Path:
    """Write a (Z, Y, X) label volume to ``.zarr`` (chunked, written chunk by chunk), ``.nii[.gz]``,
    ``.nrrd`` / ``.mha`` (io.itk_image) or ``.tif[f]`` (for Fiji: io.tiff_labels; the voxel size and
    unit, no scan placement).

    A dask input is streamed chunk by chunk into zarr, so a label volume larger than memory is fine.
    ``geometry`` (io.geometry, e.g. ``open_volume(scan).meta["geometry"]``): the scan these labels
    belong to; a NIfTI file is then written with that scan's affines and codes, so it overlays the
    scan in any viewer, and a zarr keeps it as an attribute. It must be for a volume of this shape.
    ``affine``: a bare 4x4 affine instead (codes 'aligned'); without either, the voxel size alone.
    ``unit``: the length unit of the spacing ("mm", "µm", ...), kept in the file for measurements.
    ``names``: label id -> name (a SEG's segments, a model's classes), kept by a zarr and a NRRD (as 3D
    Slicer's segment names).
    """
    path = Path(path)
    if labels.ndim != 3:
        raise VolumeError(f"labels must be 3D (Z, Y, X), got shape {tuple(labels.shape)}")
    check_label_dtype(labels.dtype)
    if geometry is not None:
        geometry = check(geometry, labels.shape, what="the geometry given for these labels")
    name = path.name.lower()
    if name.endswith(TIFF_SUFFIXES):
        from .tiff_labels import write_tiff_labels
        return write_tiff_labels(labels, path, spacing=spacing, unit=unit)
    if name.endswith(ITK_WRITE):   # 3D Slicer, ITK-SNAP: placed on the scan like NIfTI
        from .itk_image import write_itk_labels
        return write_itk_labels(labels, path, spacing=spacing, geometry=geometry, unit=unit, names=names)
    if name.endswith(NIFTI_SUFFIXES):
        import nibabel as nib
        arr = np.asarray(labels)
        dt = label_dtype(int(arr.max()) if arr.size else 0)
        if affine is not None and geometry is None:
            img = nib.Nifti1Image(arr.astype(dt).transpose(2, 1, 0), np.asarray(affine, float))
            img.header.set_intent("label")
        else:
            img = to_nifti(arr.astype(dt), geometry, spacing)
        set_nifti_unit(img, unit)
        # beside, then renamed over: an error (a full disk) leaves the file that was there
        tmp = path.with_name(f".{path.name}.writing-{os.getpid()}{''.join(path.suffixes)}")
        try:
            nib.save(img, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
    if not name.endswith(".zarr"):
        raise VolumeError(f"cannot write labels to '{path.name}': use a .zarr, .nii, .nii.gz, .nrrd, .mha or .tif path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    from .ome_labels import is_ome_image
    if is_ome_image(path):   # never replace a user's image with its labels
        raise VolumeError(f"{path} is an OME-Zarr image; labels go into it (io.ome_labels.write_ome_labels, "
                          f"`halo-seg export LABELS {path.name}`), never over it")
    if path.exists():
        check_replaceable(path)
    src = labels if isinstance(labels, da.Array) else da.from_array(np.asarray(labels),
                                                                   chunks=chunks or "auto")
    if chunks is not None:
        src = src.rechunk(tuple(chunks))
    dt = np.dtype(np.uint32) if src.dtype.itemsize > 4 else (np.dtype(np.uint8) if src.dtype == bool else src.dtype)
    # written beside and swapped in at the end: the labels may be read lazily from the very store
    # they replace (a layer opened from it and saved back), and an error leaves the old store whole
    with written_beside(path) as tmp:
        out = create_zarr_array(tmp, src.shape, [c[0] for c in src.chunks], dt, spacing=spacing,
                                overwrite=True, geometry=geometry)
        mark_labels(out, unit)
        if names:
            out.attrs[SEGMENT_NAMES] = names_attr(names)
        da.store(src.astype(dt), out, lock=False)
    return path


def zarr_node(path: Path):
    """The zarr array or group at ``path``, or None when there is none (no folder, not a store)."""
    import zarr
    try:
        return zarr.open(str(path), mode="r") if Path(path).is_dir() else None
    except Exception:   # not a zarr store
        return None


def check_replaceable(path: Path) -> None:
    """Labels replace only labels: a zarr array this package marked as labels. An image, another
    tool's array, a segment output group (it keeps its uncertainty) or any other file is refused."""
    import zarr
    node = zarr_node(path)
    if node is None:
        raise VolumeError(f"{path} exists and is not a zarr store of labels; labels are not written over it: "
                          "choose a new path")
    if isinstance(node, zarr.Array) and node.attrs.get(LABELS_ATTR):
        return
    what = "a zarr group" if not isinstance(node, zarr.Array) else f"a {node.dtype} zarr array not marked as labels"
    raise VolumeError(f"{path} exists and holds {what}; labels replace only labels written here: choose a new path")


@contextmanager
def written_beside(path: Path):
    """A folder to write ``path``'s new store into; on success it takes the place of what was at
    ``path`` (removed only then), on an error it is removed and ``path`` is left as it was."""
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
