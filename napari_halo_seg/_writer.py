"""napari writer: a Labels layer to chunked zarr or NIfTI, placed where its scan lies when the layer
carries that scan's geometry (the reader puts it on image layers, the widgets on the labels they make)."""
from __future__ import annotations

import warnings

import numpy as np

from halo_seg.io import VolumeError, write_labels as _write
from halo_seg.io.geometry import KEY as GEOMETRY, check


def write_labels(path: str, data, meta: dict) -> list[str]:
    scale = tuple(meta.get("scale", (1.0, 1.0, 1.0)))[-3:]
    arr = data if hasattr(data, "dask") else np.asarray(data)
    geometry = (meta.get("metadata") or {}).get(GEOMETRY)
    if geometry is not None:
        try:
            geometry = check(geometry, arr.shape)
        except VolumeError as exc:
            # the layer no longer matches its scan's grid: say so, and keep the user's labels
            warnings.warn(f"{exc}; saving {path} with the voxel size alone")
            geometry = None
    _write(arr, path, spacing=scale, geometry=geometry)
    return [path]
