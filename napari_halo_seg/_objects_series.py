"""The Objects widget on a time-lapse's labels ((T, Z, Y, X), as the automatic widget makes them): the
objects of each time point, numbered on after those of the time points before (so that one table
holds them all, a row per object with its time point, and napari shows each one's size under the
cursor), or followed over time (halo_seg.tracking: an id per cell that stays with it, and its
lineage), and the labels measured as they are at each time point."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from halo_seg.measure import by_timepoint

TRACK_OUTPUT = "track_output"   # a tracked layer's `track` output (metadata): the file Edit tracks changes
CTC_TRACKING = "ctc_tracking"   # a Cell Tracking Challenge folder's layers: made a `track` output on the first edit


def series_image(image_layer, labels_shape) -> np.ndarray | None:
    """The intensities under a time-lapse's labels: an image layer of the same (T, Z, Y, X) grid;
    anything else is refused (which time point of another image would be a guess)."""
    if image_layer is None:
        return None
    from ._timelapse import timelapse_data
    data = timelapse_data(image_layer)
    if data is None or tuple(data.shape) != tuple(labels_shape):
        shape = tuple(image_layer.data.shape)
        raise ValueError(f"the labels hold {labels_shape[0]} time points of {tuple(labels_shape[1:])}; the image "
                         f"{image_layer.name!r} {shape} is not that time-lapse: choose it, or (none)")
    return data


def label_series(data, out: Path, spacing, unit, image, progress, cancel, split=False, **kw):
    """In the worker: each time point's objects (halo_seg.instances), measured; returns ((T, Z, Y, X)
    object ids, table, objects per time point), or the exception, handed back as a value."""
    try:
        import zarr

        from halo_seg.instances import label_instances, split_touching
        from halo_seg.measure import measure_labels

        from ._paintable import too_large_for_memory
        n = data.shape[0]
        nbytes = int(np.prod(data.shape)) * 4   # every time point's ids (uint32), held as one layer
        avail = too_large_for_memory(nbytes)
        if avail is not None:
            raise ValueError(f"the objects of {n} time points ({nbytes / 2 ** 30:.1f} GiB) do not fit in memory "
                             f"({avail / 2 ** 30:.1f} GiB available); count the objects of a time point at a time "
                             "with `halo-seg instances OUT.zarr/t0000 objects.zarr`")
        ids = np.zeros(data.shape, np.uint32)
        tables, counts, offset = [], [], 0

        def step(k):
            return None if progress is None else (lambda done, total, *_: progress(k * total + done, n * total))
        for t in range(n):
            res = label_instances(data[t], out / f"t{t:04d}.zarr", spacing=spacing, unit=unit, progress=step(t),
                                  cancel=cancel, dtype=np.uint32, **kw)
            if split:
                res.objects = split_touching(res.path, spacing=spacing, cancel=cancel)
            frame = zarr.open_array(str(res.path), mode="r")[...]
            ids[t] = np.where(frame > 0, frame.astype(np.uint32) + offset, 0)
            table = measure_labels(ids[t], spacing, image=None if image is None else image[t], unit=unit,
                                   cancel=cancel)
            tables.append((t, table))
            counts.append(int(res.objects))
            offset += int(res.objects)
        return (ids, by_timepoint(tables), counts), None
    except Exception as exc:   # shown to the user; the layers are untouched
        return None, exc


def track_series(data, out: Path, spacing, unit, image, progress, cancel, split=False, **kw):
    """In the worker: the objects followed over the time points (halo_seg.tracking); returns (the
    result, its labels as layer data and a note, a row per track, napari Tracks data and graph),
    or the exception, handed back as a value."""
    try:
        import zarr

        from halo_seg.io.track_output import track_points
        from halo_seg.tracking import track_objects
        from halo_seg.tracking.summary import per_track

        from ._paintable import paintable
        res = track_objects(data, out, spacing=spacing, unit=unit, image=image, split=0.25 if split else None,
                            progress=progress, cancel=cancel, **kw)
        labels = paintable(zarr.open_group(str(out), mode="r")["labels"])
        return (res, labels, per_track(res.table, res.lineage, spacing), track_points(out)), None
    except Exception as exc:   # shown to the user; the layers are untouched
        import shutil

        from halo_seg.tracking.checkpoint import partial_dir
        shutil.rmtree(partial_dir(out), ignore_errors=True)   # in the widget's temporary folder: never resumed
        return None, exc


def track_features(rows: dict, unit: str | None) -> dict:
    """A tracked Labels layer's features, shown under the cursor: the track, when it was seen, where
    it came from and how fast it moves (rows: tracking.summary.per_track's)."""
    from halo_seg.measure import millilitres_per

    from ._measure import size_column
    per_ml = millilitres_per(unit) or 1.0
    return {"index": rows["track"], "parent": rows["parent"], "first": rows["first"], "last": rows["last"],
            "mean " + size_column(unit): np.round(rows["mean_volume"] * per_ml, 4),
            f"speed ({unit or 'voxels'} per time point)": np.round(rows["speed"], 3)}


def measure_series(data, spacing, unit, image, cancel):
    """In the worker: each label value measured at each time point, one table with its time point."""
    try:
        from halo_seg.measure import measure_labels
        return by_timepoint([(t, measure_labels(data[t], spacing, image=None if image is None else image[t],
                                              unit=unit, cancel=cancel)) for t in range(data.shape[0])]), None
    except Exception as exc:   # shown to the user; the layers are untouched
        return None, exc


def tracking_text(tracks: int, divisions: int) -> str:
    """ "12 tracks, 1 division" """
    return f"{tracks} track{'s' if tracks != 1 else ''}, {divisions} division{'s' if divisions != 1 else ''}"


def counts_text(counts: list[int]) -> str:
    """Objects per time point, e.g. "12, 13, 12 per time point (t0 to t2)", shortened past 12 of them."""
    shown = ", ".join(map(str, counts[:12])) + (" ..." if len(counts) > 12 else "")
    return f"{shown} per time point (t0 to t{len(counts) - 1})"
