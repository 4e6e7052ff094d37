"""napari reader: any volume halo_seg opens, as a lazy (dask) layer with its voxel spacing."""
from __future__ import annotations

from pathlib import Path

from halo_seg.io import open_volume
from halo_seg.io.volume import SUPPORTED


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    name = str(path).lower().rstrip("/")
    if not (name.endswith(SUPPORTED) or (Path(path).is_dir() and (Path(path) / "zarr.json").exists())):
        return None
    return read_volume


def read_volume(path):
    if isinstance(path, list):
        path = path[0]
    p = Path(path)
    # a halo-seg output group: show its labels as a Labels layer
    if p.is_dir() and ((p / "labels" / "zarr.json").exists() or (p / "labels" / ".zarray").exists()) \
            and not (p / "image").exists():
        vol = open_volume(p)
        return [(vol.data, {"name": p.stem + " labels", "scale": vol.spacing}, "labels")]
    vol = open_volume(p)  # a VolumeError names the problem; napari shows it to the user
    return [(vol.data, {"name": p.name.split(".")[0], "scale": vol.spacing,
                        "metadata": {"source": str(p), "format": vol.meta.get("format")}}, "image")]
