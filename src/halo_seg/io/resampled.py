"""`halo-seg resample`: a volume written on another voxel grid of the same extent, placed where the
original lies (its scan geometry follows), so that it can be segmented under torchrun at a model's
voxel size, or training volumes brought to one spacing. Images are interpolated trilinearly, labels
take the nearest voxel's value (engine/resample.py); zarr outputs are written chunk by chunk.

Onto a scan's own grid (write_onto): where both volumes carry a scan geometry and the grids are
not one extent resampled (labels saved cropped to their objects, as 3D Slicer can save a
segmentation, or on another placement in the same world), each voxel of the scan takes the value at
its world position, and 0 outside the volume."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..engine import resample as rs
from . import geometry as geo
from .labels import create_zarr_array, set_nifti_unit, write_labels, written_beside, zarr_node
from .volume import NIFTI_SUFFIXES, VolumeError

CHUNK = 64
MARK = "halo_seg_resampled"   # on the group resample writes: only such a group is replaced by a new run


def write_resampled(vol, out, shape, labels: bool = False) -> tuple[Path, tuple[float, float, float]]:
    """Write the opened volume ``vol`` resampled to ``shape`` voxels to ``out`` (.zarr, .nii, .nii.gz);
    ``labels``: nearest-neighbour, keeping the label values. Returns the path and the new spacing."""
    shape = tuple(int(s) for s in shape)
    out = _checked_output(out, vol, shape, labels)
    got = resampled_lazy(vol, shape, labels)
    return _write(got.data, out, shape, got.spacing, got.geometry, got.unit, labels), got.spacing


class Regridded(NamedTuple):
    """A volume on a new voxel grid, lazily (a dask array), with that grid's voxel size, scan
    geometry (None where the volume had none) and unit; ``placed``: each voxel taken from its world
    position (placed_lazy), else the same extent resampled (resampled_lazy)."""
    data: object
    spacing: tuple
    geometry: dict | None
    unit: str | None
    placed: bool


def resampled_lazy(vol, shape, labels: bool = False) -> Regridded:
    """``vol`` resampled to ``shape`` voxels over its own extent (trilinear, or the nearest voxel for
    ``labels``), its geometry following."""
    shape = tuple(int(s) for s in shape)
    g = vol.meta.get(geo.KEY)
    lazy = rs.lazy_resample(rs.ArrayReader(vol.data), shape, CHUNK, nearest=labels, dtype=vol.data.dtype)
    return Regridded(lazy, rs.grid_spacing(vol.shape, vol.spacing, shape), geo.resampled(g, shape) if g else None,
                     vol.meta.get("unit"), False)


def same_world_grid(vol, like) -> bool:
    """Whether ``vol`` resampled to ``like``'s voxel count lies on ``like``'s grid (the same extent
    and placement), judged by their scan geometries: no corner voxel of the grid a hundredth of a
    voxel away (a 2 mm grid of 91 voxels spans 182 mm, a 1 mm grid of 181 only 181: per voxel they
    differ by half a percent, but by a whole voxel at the far end)."""
    g = geo.resampled(vol.meta[geo.KEY], like.shape)
    to_like = np.linalg.solve(geo.best_affine(like.meta[geo.KEY]), geo.best_affine(g))
    corners = geo.grid_corners(like.shape)
    return bool(np.abs(corners @ to_like.T - corners).max() < 1e-2)


def onto_grid_of(vol, like, labels: bool = False, name: str = "the volume", name_like: str = "the other",
                 step: int = CHUNK) -> Regridded:
    """``vol`` on ``like``'s voxel grid, lazily: by world position where both carry a scan geometry
    and are not one extent on two grids (a crop, another placement or orientation, another voxel
    size: placed_lazy, ``step`` slices a block), else its extent resampled to like's voxel count
    (blocks of CHUNK voxels a side). A VolumeError where two known extents differ and nothing
    records where each lies."""
    if vol.meta.get(geo.KEY) is not None and like.meta.get(geo.KEY) is not None and not same_world_grid(vol, like):
        g = like.meta[geo.KEY]
        return Regridded(placed_lazy(vol, like, labels, step), geo.spacing_of(g), g, like.meta.get("unit") or "mm", True)
    if vol.spacing_known and like.spacing_known:   # the same extent, or the voxels would not line up
        ext = [n * s for n, s in zip(vol.shape, vol.spacing)]
        other = [n * s for n, s in zip(like.shape, like.spacing)]
        if any(abs(e - o) > max(s, t) for e, o, s, t in zip(ext, other, vol.spacing, like.spacing)):
            raise VolumeError(f"{name} spans {' x '.join(f'{e:.4g}' for e in ext)} and {name_like} "
                              f"{' x '.join(f'{e:.4g}' for e in other)}: not the same extent, and without a scan "
                              "geometry in both (NIfTI, NRRD, DICOM) where each lies is not known")
    return resampled_lazy(vol, like.shape, labels)


def write_onto(vol, like, out, labels: bool = False, name: str = "the volume",
               name_like: str = "the other") -> tuple[Path, Regridded]:
    """Write ``vol`` on the grid of ``like`` (onto_grid_of) to ``out``; returns the path and what
    was written (its ``placed`` says how)."""
    shape = tuple(int(n) for n in like.shape)
    out = _checked_output(out, vol, shape, labels)
    got = onto_grid_of(vol, like, labels, name, name_like)
    return _write(got.data, out, shape, got.spacing, got.geometry, got.unit, labels), got


def placed_lazy(vol, like, labels: bool = False, step: int = CHUNK):
    """``vol`` on the grid of ``like`` (both with a scan geometry), a dask array of ``step`` slices
    a block: each of like's voxels takes the value at its world position in vol (the nearest voxel
    for labels, keeping vol's type; trilinear for images, float32), 0 outside vol."""
    import dask
    import dask.array as da
    shape = tuple(int(n) for n in like.shape)
    dtype = np.dtype(vol.data.dtype) if labels else np.dtype(np.float32)
    to_source = np.linalg.solve(geo.best_affine(vol.meta[geo.KEY]), geo.best_affine(like.meta[geo.KEY]))
    swap = np.eye(4)[[2, 1, 0, 3]]   # the affines' (x, y, z) <-> the arrays' (z, y, x)
    m = swap @ to_source @ swap
    step = max(1, min(step, shape[0]))
    slabs = [da.from_delayed(dask.delayed(_placed_slab)(vol.data, m, z0, min(z0 + step, shape[0]), shape[1:],
                                                         labels, dtype),
                             (min(z0 + step, shape[0]) - z0,) + shape[1:], dtype=dtype)
             for z0 in range(0, shape[0], step)]
    return da.concatenate(slabs)


def _placed_slab(data, m: np.ndarray, z0: int, z1: int, shape_yx, labels: bool, dtype) -> np.ndarray:
    """Slices z0 .. z1 of the target grid, from the part of ``data`` they map into (``m``: target
    (z, y, x, 1) -> source)."""
    from scipy import ndimage
    ny, nx = shape_yx
    corners = np.array([[z, y, x, 1.0] for z in (z0, z1 - 1) for y in (0, ny - 1) for x in (0, nx - 1)])
    src = (corners @ m.T)[:, :3]
    lo = np.clip(np.floor(src.min(0)).astype(int) - 1, 0, data.shape)
    hi = np.clip(np.ceil(src.max(0)).astype(int) + 2, 0, data.shape)
    if (hi <= lo).any():   # the slab lies outside the volume
        return np.zeros((z1 - z0, ny, nx), dtype)
    region = np.asarray(data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
    offset = m[:3, 3] + m[:3, :3] @ np.array([z0, 0.0, 0.0]) - lo
    # grid-constant: 0 beyond the volume's voxels, and for labels a point half a voxel outside its
    # edge still takes the edge voxel, as the nearest voxel it is
    return ndimage.affine_transform(region if labels else region.astype(np.float32), m[:3, :3], offset=offset,
                                    output_shape=(z1 - z0, ny, nx), order=0 if labels else 1,
                                    mode="grid-constant", cval=0, prefilter=False).astype(dtype, copy=False)


def _write(lazy, out: Path, shape, spacing, g, unit, labels: bool) -> Path:
    """Write a lazily computed volume on a new grid (geometry ``g``) as labels or a float image."""
    name = out.name.lower()
    if labels:
        return write_labels(lazy, out, spacing=spacing, geometry=g, unit=unit)
    if name.endswith(NIFTI_SUFFIXES):
        import nibabel as nib
        img = geo.to_nifti(np.asarray(lazy), g, spacing, labels=False)
        set_nifti_unit(img, unit)
        nib.save(img, str(out))
        return out
    import dask.array as da
    import zarr
    if out.exists() and not _is_resampled(out):   # another image, the user's data: never removed
        raise VolumeError(f"{out} exists and is not an output of halo-seg resample; choose a new path")
    with written_beside(out) as tmp:   # an error leaves what was there
        arr = create_zarr_array(tmp, shape, tuple(min(CHUNK, s) for s in shape), np.float32, name="image",
                                spacing=spacing, geometry=g)
        grp = zarr.open_group(str(tmp), mode="a")
        grp.attrs[MARK] = True
        if unit:
            arr.attrs["unit"] = unit
            grp.attrs["unit"] = unit
        da.store(lazy, arr, lock=False)
    return out


def _checked_output(out, vol, shape, labels: bool) -> Path:
    """``out`` as a Path, once it is a format written here, not the input, and has room for
    ``shape`` voxels of labels (vol's type) or of a float image."""
    out = Path(out)
    if not out.name.lower().endswith((".zarr",) + NIFTI_SUFFIXES):
        raise VolumeError(f"cannot write '{out.name}': use a .zarr, .nii or .nii.gz path")
    if out.resolve() == Path(str(vol.source or "")).resolve():
        raise VolumeError(f"{out} is the input; write the resampled volume to a new path")
    _check_room(out, shape, np.dtype(vol.data.dtype if labels else np.float32), vol)
    return out


def _check_room(out: Path, shape, dtype, vol) -> None:
    """A voxel size given in the wrong unit (µm for mm) asks for a billion times the voxels: refused,
    with the numbers, before dask builds a graph of that many blocks (which alone ran out of memory).
    A NIfTI is built in memory; a zarr is written block by block to disk (counted uncompressed)."""
    import shutil
    from ..engine.memory import fmt_bytes, host_available
    need = float(np.prod([float(s) for s in shape])) * dtype.itemsize
    if out.name.lower().endswith(NIFTI_SUFFIXES):
        room, where = host_available(), "the memory available"
    else:
        parent = out.resolve().parent
        room, where = (shutil.disk_usage(parent).free if parent.is_dir() else None), f"the free disk at {parent}"
    if room is not None and need > room:
        raise VolumeError(f"resampled, {vol.source or 'the volume'} would be {' x '.join(map(str, shape))} voxels "
                          f"({fmt_bytes(need)}, from {' x '.join(map(str, vol.shape))}), more than {where} "
                          f"({fmt_bytes(room)}); is the voxel size in the volume's unit "
                          f"({vol.meta.get('unit') or 'unknown'})?")


def _is_resampled(path: Path) -> bool:
    import zarr
    node = zarr_node(path)
    return isinstance(node, zarr.Group) and bool(node.attrs.get(MARK))
