"""napari layers of a time-lapse's labels read from a file or a folder of frames: a Cell Tracking
Challenge result (mask000.tif ..., res_track.txt) or ground truth (man_track000.tif ...,
man_track.txt), or any labels file whose axes name t. One (T, Z, Y, X) Labels layer and, where a
lineage lies beside the masks, the tracks' paths with their lineage as a Tracks layer (a
daughter's path starts from her mother's), as a `track` output opens; Edit tracks corrects such a
tracking, made a `track` output (in a temporary folder) on its first edit.

A 2D movie's frames are planes (T, 1, Y, X), as `track` reads and writes them, so that its labels,
its tracks and its image layer share their axes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from halo_seg.io.axes import AxisChoiceError, arrange
from halo_seg.io.volume import VolumeError

from ._objects_series import CTC_TRACKING
from ._measure import file_features
from ._paintable import paintable


def as_planes(raw, names: list):
    """A 2D time-lapse (axes t, y, x, perhaps c), or one 2D image (a microscope's field: y, x, perhaps
    c), given a z axis of one plane before y, so that the widgets (the interactive one segments it as
    a volume of one slice) and `track` take it; else as it is. An RGB photo (its last axis 3 or 4
    colours) stays as it is: napari's own reader shows it in colour."""
    if "z" in names or not {"y", "x"} <= set(names):
        return raw, names
    if "t" not in names and names[-1] == "c" and raw.data.shape[-1] in (3, 4):
        return raw, names
    import dask.array as da
    from dataclasses import replace
    at = names.index("y")
    names = names[:at] + ["z"] + names[at:]
    return replace(raw, data=da.expand_dims(raw.data, at), meta={**raw.meta, "axes": names, "planes": True}), names


def track_rows(labels) -> np.ndarray:
    """napari Tracks rows (track, t, z, y, x) of (T, Z, Y, X) track ids: each track's centroid at
    each time point it is in."""
    from halo_seg.io.track_output import in_order
    from halo_seg.tracking.frames import frame_objects
    rows = []
    for t in range(labels.shape[0]):
        obj = frame_objects(labels[t], t)
        rows.append(np.column_stack([obj.ids, np.full(len(obj.ids), t), obj.centroids]))
    return in_order(np.concatenate(rows).astype(float)) if rows else np.zeros((0, 5))


def timelapse_labels_layers(p: Path, raw, names: list, place: dict, meta: dict) -> list:
    """The layers of labels with a t axis (``place`` and ``meta``: the reader's for a time-lapse)."""
    import warnings

    from halo_seg.io.ctc_tracking import lineage_file, read_lineage
    try:
        data, kept = arrange(raw.data, names, str(p))
    except AxisChoiceError as exc:
        raise VolumeError(str(exc)) from None
    if kept != ["t", "z", "y", "x"]:
        raise VolumeError(f"{p}: labels of {', '.join(kept)} axes; a time-lapse's labels are one id volume per time "
                          "point (no channels)")
    data, note = paintable(data)
    if note:
        warnings.warn(f"{p}: {note}")
    # a ground truth's TRA folder named with its dataset's (01_GT TRA), not as every dataset's is
    name = f"{p.parent.name} {p.name}" if p.name.upper() in ("TRA", "SEG") else p.name.split(".")[0]
    text = lineage_file(p) if p.is_dir() else None
    if text is not None:   # a tracking: Edit tracks makes it a `track` output on its first edit
        meta = {**meta, CTC_TRACKING: str(p)}
    layers = [(data, {"name": name, **place, "metadata": meta, **file_features(raw.meta)}, "labels")]
    if text is not None and not note:
        lineage = read_lineage(text)
        points = track_rows(data)
        known = set(lineage[:, 0].tolist())
        unlisted = sorted(set(points[:, 0].astype(int).tolist()) - known)
        if unlisted:
            warnings.warn(f"{text} lists no track {', '.join(map(str, unlisted[:5]))} found in the masks; their "
                          "paths are shown without a mother")
        present = set(points[:, 0].astype(int).tolist())
        graph = {int(k): [int(par)] for k, _, _, par in lineage.tolist() if par and k in present and par in present}
        if len(points):
            layers.append((points, {"name": f"{name} tracks", **place, "graph": graph, "tail_length": 10,
                                    "metadata": {"source": str(p), "lineage": str(text), CTC_TRACKING: str(p),
                                                 "tracks": len(lineage),
                                                 "divisions": len(set(lineage[lineage[:, 3] > 0, 3].tolist()))}},
                           "tracks"))
    return layers
