"""`halo-seg resample`: a volume written on another voxel grid of the same extent, placed where the
original lies (its scan geometry follows), so that it can be segmented under torchrun at a model's
voxel size, or training volumes brought to one spacing. Images are interpolated trilinearly, labels
take the nearest voxel's value (engine/resample.py); zarr outputs are written chunk by chunk."""
from __future__ import annotations

from pathlib import Path

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
    out = Path(out)
    name = out.name.lower()
    if not name.endswith((".zarr",) + NIFTI_SUFFIXES):
        raise VolumeError(f"cannot write '{out.name}': use a .zarr, .nii or .nii.gz path")
    if out.resolve() == Path(str(vol.source or "")).resolve():
        raise VolumeError(f"{out} is the input; write the resampled volume to a new path")
    shape = tuple(int(s) for s in shape)
    spacing = rs.grid_spacing(vol.shape, vol.spacing, shape)
    _check_room(out, shape, np.dtype(vol.data.dtype if labels else np.float32), vol)
    g = vol.meta.get(geo.KEY)
    g = geo.resampled(g, shape) if g else None
    unit = vol.meta.get("unit")
    lazy = rs.lazy_resample(rs.ArrayReader(vol.data), shape, CHUNK, nearest=labels, dtype=vol.data.dtype)
    if labels:
        return write_labels(lazy, out, spacing=spacing, geometry=g, unit=unit), spacing
    if name.endswith(NIFTI_SUFFIXES):
        import nibabel as nib
        img = geo.to_nifti(np.asarray(lazy), g, spacing, labels=False)
        set_nifti_unit(img, unit)
        nib.save(img, str(out))
        return out, spacing
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
    return out, spacing


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
