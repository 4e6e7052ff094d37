"""`halo-seg resample`: a volume written on another voxel grid of the same extent, placed where the
original lies (its scan geometry follows), so that it can be segmented under torchrun at a model's
voxel size, or training volumes brought to one spacing. Images are interpolated trilinearly, labels
take the nearest voxel's value (engine/resample.py); zarr outputs are written chunk by chunk."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import resample as rs
from . import geometry as geo
from .labels import create_zarr_array, set_nifti_unit, write_labels
from .volume import NIFTI_SUFFIXES, VolumeError

CHUNK = 64


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
    if out.exists():
        import shutil
        if not (out / "zarr.json").exists():
            raise VolumeError(f"{out} exists and is not a zarr written here; choose a new path")
        shutil.rmtree(out)
    arr = create_zarr_array(out, shape, tuple(min(CHUNK, s) for s in shape), np.float32, name="image",
                            spacing=spacing, geometry=g)
    if unit:
        arr.attrs["unit"] = unit
        zarr.open_group(str(out), mode="a").attrs["unit"] = unit
    da.store(lazy, arr, lock=False)
    return out, spacing
