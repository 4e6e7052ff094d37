"""napari writer: a Labels layer to chunked zarr or NIfTI."""
from __future__ import annotations

import numpy as np

from halo_seg.io import write_labels as _write


def write_labels(path: str, data, meta: dict) -> list[str]:
    scale = tuple(meta.get("scale", (1.0, 1.0, 1.0)))[-3:]
    arr = data if hasattr(data, "dask") else np.asarray(data)
    _write(arr, path, spacing=scale)
    return [path]
