"""Another tracker's result or a ground truth in the Cell Tracking Challenge's format (TrackMate,
ultrack and others write it) made a `track` output, so that it can be corrected by hand
(tracking.edit, napari's Edit tracks), measured, scored and written back out.

The masks and the lineage must agree, as the challenge's own tools require: every id in the masks
is a listed track, and each listed track is in the masks from its first to its last time point as
listed (gaps between allowed). A disagreement is refused naming the track, since an edit keeps
the lineage's first and last time points and the voxels in step.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..io.ctc_tracking import open_tracking
from ..io.track_output import TRACKS, in_order
from ..io.volume import VolumeError
from .frames import frame_objects
from .run import TrackResult, check_track_output, label_chunks


def _check_spans(lineage: np.ndarray, seen: dict, where: str) -> None:
    listed = {int(k): (int(b), int(e)) for k, b, e, _ in lineage.tolist()}
    unlisted = sorted(set(seen) - set(listed))
    if unlisted:
        raise VolumeError(f"{where}: the masks hold track{'s' if len(unlisted) > 1 else ''} "
                          f"{', '.join(map(str, unlisted[:5]))} that the lineage does not list")
    for k, (b, e) in listed.items():
        span = seen.get(k)
        if span is None:
            raise VolumeError(f"{where}: the lineage lists track {k} ({b} to {e}) but no mask holds it")
        if span != (b, e):
            raise VolumeError(f"{where}: the lineage has track {k} from time point {b} to {e}, the masks from "
                              f"{span[0]} to {span[1]}; mend one of them (the challenge's tools refuse this too)")


def import_ctc(folder, out, spacing=None, unit: str | None = None, progress=None, cancel=None) -> TrackResult:
    """The tracking in ``folder`` (a result: mask000.tif ..., res_track.txt; a ground truth's TRA or
    the NN_GT folder above it) written as a `track` output ``out`` (.zarr), in voxels of ``spacing``
    (z, y, x; default the masks' calibration). Built beside ``out`` and moved there whole."""
    import time

    import zarr

    from ..io.labels import check_label_volume, create_zarr_array, mark_labels
    start = time.perf_counter()
    src = open_tracking(folder)
    if src.kind != "Cell Tracking Challenge":
        raise VolumeError(f"{folder} is a `halo-seg track` output already; copy it rather than import it")
    out = Path(out)
    check_track_output(out, folder)
    spacing = tuple(float(s) for s in (spacing or src.spacing or (1.0, 1.0, 1.0)))
    unit = unit or src.unit
    T, shape = src.labels.shape[0], tuple(src.labels.shape[1:])
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
    try:
        labels = create_zarr_array(work / "t.zarr", (T,) + shape, label_chunks(shape), np.uint32, name="labels",
                                   spacing=spacing)
        mark_labels(labels, unit)
        labels.attrs["axes"] = ["t", "z", "y", "x"]
        rows, counts, seen = [], [], {}
        for t in range(T):
            if cancel is not None and cancel():
                raise InterruptedError("stopped before every time point was imported")
            frame = np.asarray(src.labels[t])
            check_label_volume(frame, f"time point {t} of {src.source}")
            labels[t] = frame.astype(np.uint32)
            objs = frame_objects(frame, t)
            rows.append(np.column_stack([objs.ids, np.full(len(objs.ids), t), objs.centroids]))
            counts.append(len(objs.ids))
            for k in objs.ids.tolist():
                seen[k] = (seen[k][0], t) if k in seen else (t, t)
            if progress is not None:
                progress(t + 1, T)
        _check_spans(src.lineage, seen, str(src.source))
        lineage = src.lineage[np.argsort(src.lineage[:, 0])]
        divisions = len(set(lineage[lineage[:, 3] > 0, 3].tolist()))
        grp = zarr.open_group(str(work / "t.zarr"), mode="r+")
        grp.create_array("tracks", data=in_order(np.concatenate(rows).astype(float)) if rows else np.zeros((0, 5)))
        grp.create_array("lineage", data=lineage)
        grp.attrs[TRACKS] = {"input": str(Path(src.source).resolve()), "timepoints": T, "tracked": list(range(T)),
                             "tracks": len(lineage), "divisions": divisions,
                             "objects": "imported from a Cell Tracking Challenge tracking"}
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(work / "t.zarr"), str(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TrackResult(out, len(lineage), divisions, list(range(T)), counts, {}, lineage, spacing, unit,
                       time.perf_counter() - start, shape)
