"""The automatic segmentation of a time-lapse layer (T, Z, Y, X): each time point in turn with the
engine (engine/series.py), in the widget's worker, and the result as one (T, Z, Y, X) Labels layer
over the time-lapse.

napari shows a 4D image layer with a slider along its first axis, and this plugin's reader gives a
time-lapse file (each channel) such a layer, so a 4D layer is taken as time points. The engine reads
each time point from the layer's file where it has one (the ranks read their blocks of it), else
from the layer's data."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from halo_seg.engine.output import UNCERTAINTY
from halo_seg.engine.series import frame_name, segment_series
from halo_seg.io.timepoints import parse_timepoints
from halo_seg.io.volume import names_in

from ._kept_objects import INTO_SERIES
from ._layers import ones_before
from ._paintable import paintable

SHOWN = "the one shown"
TIME_CHOICES = ("all", SHOWN)
SERIES_SOURCE = "series_source"   # a time-lapse layer's file (the reader puts it in the layer's metadata)


def timelapse_data(layer):
    """The layer's (T, Z, Y, X) data when it holds several 3D volumes along its first axis (axes of
    length 1 before them dropped), else None."""
    if getattr(layer, "rgb", False):
        return None
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data   # full resolution
    lead = ones_before(data.shape, 4)
    if data.ndim - lead != 4 or data.shape[lead] < 2:
        return None
    return data[(0,) * lead] if lead else data


def same_timelapse(a, b, why: str):
    """(a's (T, Z, Y, X) data, b's) of two layers over the same time points of one grid (one shape,
    one voxel size): an image and its labels, labels and their reference; else a ValueError naming
    both and ``why`` they must be so."""
    sa, sb = timelapse_data(a), timelapse_data(b)
    if sa is None or sb is None or tuple(sa.shape) != tuple(sb.shape):
        shapes = " and ".join(f"{lay.name!r} {tuple(lay.data.shape)}" for lay in (a, b))
        raise ValueError(f"{shapes}: {why}")
    if tuple(a.scale[-3:]) != tuple(b.scale[-3:]):
        raise ValueError(f"{a.name!r} has voxels of {tuple(a.scale[-3:])} and {b.name!r} of {tuple(b.scale[-3:])}: "
                         "they lie on different grids")
    return sa, sb


def series_source(layer):
    """What the engine reads the time points from: (the layer's file, {"channel": c}) where the
    reader noted one that still exists, else (its (T, Z, Y, X) data, {})."""
    meta = layer.metadata or {}
    src = meta.get(SERIES_SOURCE)
    if src and Path(src).exists():
        return src, ({"channel": meta["channel"]} if meta.get("channel") is not None else {})
    return timelapse_data(layer), {}


def chosen_timepoints(text: str, layer, viewer, n: int) -> list[int]:
    """The time points the widget's field names: "all", the one the viewer shows, or typed (0-9,20).
    A ValueError says what is wrong."""
    text = text.strip()
    if text == SHOWN:
        t = int(round(float(layer.world_to_data(viewer.dims.point)[layer.ndim - 4])))
        return [min(max(t, 0), n - 1)]
    return parse_timepoints(text, n)


def segment_timelapse_or_error(source, out, timepoints, unit=None, measure_spacing=(1.0, 1.0, 1.0), **kwargs):
    """In the worker: every chosen time point, then each class's volume at each of them (read back
    from the output); an exception is handed back as a value, as the widget's 3D path does."""
    from halo_seg.measure import measure_labels
    try:
        res = segment_series(source, out, timepoints=timepoints, **kwargs)
        import zarr
        stop = kwargs.get("cancel").is_set if kwargs.get("cancel") is not None else None
        volumes = {}
        for t in res.timepoints:
            grp = zarr.open_group(str(Path(out) / frame_name(t)), mode="r")
            table = measure_labels(grp["labels"], measure_spacing, unit=unit, cancel=stop)
            volumes[t] = dict(zip((int(k) for k in table["label"]), (float(v) for v in table["volume"])))
        from halo_seg.io.volume import file_contents
        labels = file_contents(out)   # the series as (T, Z, Y, X): time points not chosen are background
        return (res, volumes, paintable(labels.data), names_in(dict(grp["labels"].attrs))), None
    except Exception as exc:   # every engine error is shown in the status line, none is fatal to the viewer
        return None, exc


def volumes_text(volumes: dict, names: dict, unit) -> str:
    """Each class's smallest and largest volume (in ``unit``³) over the time points, as the 3D
    result's status line writes one: e.g. "brain: 1397 mL to 1402 mL"."""
    from halo_seg.measure import volume_text
    classes = sorted({k for v in volumes.values() for k in v})
    parts = []
    for k in classes[:8]:
        vals = [v.get(k, 0.0) for v in volumes.values()]
        lo, hi = min(vals), max(vals)
        span = volume_text(lo, unit) if np.isclose(lo, hi) else f"{volume_text(lo, unit)} to {volume_text(hi, unit)}"
        parts.append(f"{names.get(k) or f'class {k}'}: {span}")
    return "; ".join(parts)


def add_timelapse_result(viewer, layer, res, volumes, labels, names, unit, ran_on: str):
    """The (T, Z, Y, X) labels over ``layer`` (its scale and translation) and the uncertainty hidden;
    returns the labels layer, whether the brush's corrections on it go into the output (it is in
    memory), and the status line."""
    import zarr

    from halo_seg.io.series_output import series_stack
    data, note = labels
    place = {"scale": (1.0,) + tuple(layer.scale[-3:]), "translate": (0.0,) + tuple(layer.translate[-3:])}
    node = zarr.open_group(res.output, mode="r")
    doubt, _ = series_stack(node, dict(node.attrs), res.output, UNCERTAINTY)
    viewer.add_image(doubt, name=f"{layer.name} uncertainty (time points)", colormap="inferno",
                     contrast_limits=(0, 50), blending="additive", visible=False, **place)
    # in memory: each stroke goes into the output of the time point it was painted on (_kept_objects.py)
    meta = {"source": res.output, **({} if note else {INTO_SERIES: res.output})}
    out = viewer.add_labels(data, name=f"{layer.name} labels (time points)", metadata=meta, **place)
    n = len(res.timepoints)
    what = f"time point {res.timepoints[0]}" if n == 1 else f"{n} time points"
    skipped = f", {len(res.skipped)} already done" if res.skipped else ""
    sizes = volumes_text(volumes, names, unit)
    return out, not note, (f"done: {what} in {res.seconds:.1f}s (on {ran_on}{skipped}): {res.output}"
                           + (f"; {sizes}" if sizes else "")
                           + (f"; {note}" if note else "; corrections with the brush are kept in the output of the "
                              "time point they are painted on (t0000, ...)"))
