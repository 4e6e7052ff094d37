"""A time series output of `segment` (engine/series.py) read as one (T, Z, Y, X) label volume.

Its time axis is the input's: a time point that was not segmented (or not finished) reads as
background, so the labels overlay the time-lapse they came from at every time point, and
``open_volume(OUT.zarr, timepoint=t)`` is that time point's labels. Each time point is also an
output group of its own (``OUT.zarr/t0003``)."""
from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np

SERIES = "halo_seg_series"   # the group attribute that marks a series output
# a Volume's meta key for it ("series" is a DICOM volume's series UID)
TIME_SERIES = "time_series"


def frame_name(t: int) -> str:
    """A time point's output group within the series group."""
    return f"t{int(t):04d}"


def is_series(attrs: dict) -> bool:
    return isinstance(attrs.get(SERIES), dict)


def series_hint(path, series: dict) -> str:
    """What to give instead of a whole series where one 3D volume is wanted."""
    done = series.get("segmented") or [0]
    listed = ", ".join(map(str, done[:6])) + (" ..." if len(done) > 6 else "")
    return (f"{path} holds the labels of a time-lapse ({series.get('timepoints')} time points, segmented: {listed}); "
            f"give one time point's output, e.g. {path}/{frame_name(done[0])}")


def frame_groups(node, attrs: dict) -> dict:
    """{time point: its output group} for the segmented time points whose group exists."""
    present = set(node.group_keys())
    return {int(t): node[frame_name(t)] for t in attrs[SERIES].get("segmented", []) if frame_name(t) in present}


def frame_done(group) -> bool:
    """Whether every block of a time point's run was written."""
    return "done" in group.array_keys() and bool(np.asarray(group["done"][...]).all())


def series_stack(node, attrs: dict, path, array: str = "labels") -> tuple[da.Array, dict]:
    """The ``array`` ("labels" or "uncertainty") of every time point stacked along t (zeros where a
    time point has none), and the first segmented time point's group (its voxel size, geometry,
    class names describe them all: one input)."""
    from .volume import VolumeError, named_from_zarr
    n = int(attrs[SERIES]["timepoints"])
    groups = {t: g for t, g in frame_groups(node, attrs).items() if array in g.array_keys()}
    if not groups:
        raise VolumeError(f"{path} is a time series output with no time point written yet; run "
                          "`halo-seg segment ... --resume` to segment them")
    first = groups[min(groups)][array]
    shape, dtype = tuple(first.shape), first.dtype
    frames = []
    for t in range(n):
        g = groups.get(t)
        arr = g[array] if g is not None else None
        if arr is None or tuple(arr.shape) != shape:
            frames.append(da.zeros(shape, dtype=dtype, chunks=first.chunks))
        else:
            frames.append(named_from_zarr(arr, Path(path) / frame_name(t) / array).astype(dtype))
    return da.stack(frames), groups[min(groups)]


def open_series(node, path: Path):
    """The series group at ``path`` as a Volume (T, Z, Y, X) of labels, "axes" naming t."""
    from .volume import Volume, _names, _zarr_geometry, length_unit
    attrs = dict(node.attrs)
    data, first = series_stack(node, attrs, path)
    labels = first["labels"]
    gattrs = dict(first.attrs)
    spacing = tuple(labels.attrs.get("spacing", gattrs.get("spacing", (1.0, 1.0, 1.0))))
    chosen = attrs[SERIES].get("segmented", [])
    groups = frame_groups(node, attrs)
    unfinished = [t for t in chosen if t not in groups or not frame_done(groups[t])]
    meta = {"format": "zarr", "array": "labels", "labels": True, "axes": ["t", "z", "y", "x"],
            TIME_SERIES: {"timepoints": int(attrs[SERIES]["timepoints"]), "segmented": list(chosen)},
            **_names(labels.attrs), "unit": length_unit(labels.attrs.get("unit", gattrs.get("unit"))),
            **_zarr_geometry({**gattrs, **dict(labels.attrs)}, labels.shape, path)}
    if unfinished:
        meta["incomplete"] = (f"time points {', '.join(map(str, unfinished[:8]))}"
                              f"{' ...' if len(unfinished) > 8 else ''} of {len(chosen)} not finished")
    return Volume(data, spacing=spacing, source=str(path),
                  spacing_known="spacing" in labels.attrs or "spacing" in gattrs, meta=meta)
