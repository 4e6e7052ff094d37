"""napari writer: a Labels layer to chunked zarr or NIfTI, placed where its scan lies when the layer
carries that scan's geometry (the reader puts it on image layers, the widgets on the labels they make),
or to DICOM SEG (or an RT structure set: a name ending .rtstruct.dcm, or labels read from one) beside
the DICOM series it was drawn on, or into the OME-Zarr image it was drawn on."""
from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from halo_seg.io import VolumeError, write_labels as _write
from halo_seg.io.dicom_seg import SEG_SUFFIXES, SERIES_KEY, write_dicom_seg
from halo_seg.io.geometry import KEY as GEOMETRY, check
from halo_seg.io.ome_labels import is_ome_image, write_ome_labels
from halo_seg.io.rtstruct import wants_rtstruct, write_rtstruct

from ._measure import layer_names


class WriteError(RuntimeError):
    """A layer that cannot be saved as asked. Not a ValueError: napari takes those from a writer to
    mean 'not my format' and would tell the user only that the plugin is no valid writer."""


def write_labels(path: str, data, meta: dict) -> list[str]:
    try:
        return _write_layer(path, data, meta)
    except VolumeError as exc:
        raise WriteError(f"cannot save {path}: {exc}") from exc


def _write_layer(path: str, data, meta: dict) -> list[str]:
    scale = tuple(meta.get("scale", (1.0, 1.0, 1.0)))[-3:]
    if isinstance(data, Sequence):   # a multiscale (pyramid) layer, whose np.asarray is its coarsest level
        data = data[0]
    arr = data if hasattr(data, "dask") else np.asarray(data)
    if arr.ndim == 4:   # a time-lapse's labels (_timelapse.py, the reader's series): a file per time point
        return _write_time_points(path, arr, meta)
    if is_ome_image(Path(path)):   # saved onto an OME-Zarr image: into its labels/, named as the layer
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(meta.get("name") or "labels")).strip("._") or "labels"
        write_ome_labels(arr, path, name=name)
        return [path]
    if str(path).lower().endswith(SEG_SUFFIXES):
        info = meta.get("metadata") or {}
        rt = wants_rtstruct(path, info.get("format"))   # a structure set read in goes back as one
        series = info.get(SERIES_KEY)
        if not series:
            raise VolumeError(f"this layer was not drawn on a DICOM series opened with Halo Seg, so it "
                              f"cannot be {'an RT structure set' if rt else 'a DICOM SEG'}; save it as .nii.gz "
                              "or .zarr")
        write = write_rtstruct if rt else write_dicom_seg
        write(np.asarray(arr), series, path, names=layer_names(meta.get("features")))
        return [path]
    geometry = (meta.get("metadata") or {}).get(GEOMETRY)
    if geometry is not None:
        try:
            geometry = check(geometry, arr.shape)
        except VolumeError as exc:
            # the layer no longer matches its scan's grid: say so, and keep the user's labels
            warnings.warn(f"{exc}; saving {path} with the voxel size alone")
            geometry = None
    _write(arr, path, spacing=scale, geometry=geometry, unit=(meta.get("metadata") or {}).get("unit"),
           names=layer_names(meta.get("features")))
    return [path]


def _write_time_points(path: str, arr, meta: dict) -> list[str]:
    """(T, Z, Y, X) labels as one file per time point, the time point in each name (``cells.nii.gz``
    -> ``cells_t0000.nii.gz``, ...), each placed and named as a 3D layer's file is. The formats that
    describe one scan (DICOM SEG, an RT structure set, an OME-Zarr image's labels) are refused."""
    from halo_seg.io.volume import known_suffix
    name = Path(path).name
    if name.lower().endswith(SEG_SUFFIXES) or is_ome_image(Path(path)):
        raise VolumeError(f"the layer holds the labels of {arr.shape[0]} time points, and {name} holds those of one "
                          "scan; save it as .nii.gz, .nrrd, .tif or .zarr (a file per time point)")
    suffix = known_suffix(name) or Path(name).suffix
    stem = name[:-len(suffix)] if suffix else name
    written = []
    for t in range(arr.shape[0]):
        one = str(Path(path).with_name(f"{stem}_t{t:04d}{suffix}"))
        written += _write_layer(one, arr[t], meta)
    return written
