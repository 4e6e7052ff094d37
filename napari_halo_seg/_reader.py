"""napari reader: any volume halo_seg opens, as a lazy (dask) layer with its voxel spacing.

A scan's geometry (io.geometry: where its voxels lie in the world) rides in the layer's metadata,
so that labels drawn or computed on it are saved where it lies (_writer.py)."""
from __future__ import annotations

from pathlib import Path

from halo_seg.engine.output import UNCERTAINTY
from halo_seg.io import open_volume
from halo_seg.io.dicom import looks_like_series
from halo_seg.io.dicom_seg import SERIES_KEY
from halo_seg.io.geometry import KEY as GEOMETRY
from halo_seg.io.volume import SUPPORTED


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    name = str(path).lower().rstrip("/")
    zarr_dir = Path(path).is_dir() and any((Path(path) / f).exists() for f in ("zarr.json", ".zgroup", ".zarray"))
    if not (name.endswith(SUPPORTED) or zarr_dir or looks_like_series(Path(path))):
        return None
    return read_volume


def read_volume(path):
    if isinstance(path, list):
        path = path[0]
    p = Path(path)
    vol = open_volume(p)  # a VolumeError names the problem; napari shows it to the user
    meta = {"source": str(p), "format": vol.meta.get("format")}
    if vol.meta.get("unit"):   # the spacing's length unit: objects measure in mL or µm³ (_measure.py)
        meta["unit"] = vol.meta["unit"]
    if GEOMETRY in vol.meta:
        meta[GEOMETRY] = vol.meta[GEOMETRY]
    if vol.meta.get("format") == "dicom":   # labels drawn on it can go back as DICOM SEG (_writer.py)
        meta[SERIES_KEY] = vol.source
    # a halo-seg output group, or a NIfTI file that says it holds labels: a Labels layer
    is_output = p.is_dir() and ((p / "labels" / "zarr.json").exists() or (p / "labels" / ".zarray").exists()) \
        and not (p / "image").exists()
    if is_output or vol.meta.get("labels"):
        layers = [(vol.data, {"name": p.stem + " labels" if is_output else p.name.split(".")[0],
                              "scale": vol.spacing, "metadata": meta}, "labels")]
        if is_output and (p / UNCERTAINTY).is_dir():   # where the labels are likely wrong, shown on demand
            import dask.array as da
            import zarr
            layers.append((da.from_zarr(zarr.open_group(str(p), mode="r")[UNCERTAINTY]),
                           {"name": p.stem + " uncertainty", "scale": vol.spacing, "colormap": "inferno",
                            "contrast_limits": (0, 50), "blending": "additive", "visible": False}, "image"))
        return layers
    kw = {}
    if vol.meta.get("window"):   # the window a DICOM series was stored with (a CT in HU is unreadable without)
        c, w = vol.meta["window"]
        kw["contrast_limits"] = [c - w / 2, c + w / 2]
    return [(vol.data, {"name": p.name.split(".")[0], "scale": vol.spacing, "metadata": meta, **kw}, "image")]
