"""A tracking as the Cell Tracking Challenge keeps it, read back: a folder of frames holding each
object's track id (``mask000.tif`` ... of a result, ``man_track000.tif`` ... of a ground truth)
and its lineage text (``res_track.txt`` / ``man_track.txt``: a line ``L B E P`` per track: track,
first and last time point, parent or 0). A dataset's ``01_GT`` folder is taken for its ``TRA``
folder, the one holding the tracks. A `track` output (.zarr) reads the same way, so that either
can be scored against either (tracking.score) or shown in napari."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .volume import VolumeError, is_zarr_dir

LINEAGE_FILES = ("res_track.txt", "man_track.txt")


@dataclass
class Tracking:
    source: str
    labels: Any            # (T, Z, Y, X) track ids; a 2D time-lapse's frames as one plane each
    lineage: np.ndarray    # rows: track, first, last time point, parent (0: none)
    kind: str              # "track output" or "Cell Tracking Challenge"
    tracked: list | None = None   # the time points tracked, where not every one was (track --timepoint)
    spacing: tuple | None = None  # a CTC folder's voxel size where its TIFFs record one (z, y, x)
    unit: str | None = None


def lineage_file(folder) -> Path | None:
    folder = Path(folder)
    found = [folder / n for n in LINEAGE_FILES if (folder / n).is_file()]
    return found[0] if found else None


def read_lineage(path) -> np.ndarray:
    """``L B E P`` rows of a lineage text, checked: four whole numbers a line, B <= E, ids > 0."""
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            values = [int(v) for v in parts]
        except ValueError:
            values = []
        if len(values) != 4:
            raise VolumeError(f"{path} line {n} ({line.strip()!r}): a lineage line is four whole numbers, "
                              "track first last parent")
        if values[0] <= 0 or values[1] < 0 or values[2] < values[1] or values[3] < 0:
            raise VolumeError(f"{path} line {n} ({line.strip()!r}): the track id must be above 0, its first time "
                              "point at most its last, and the parent 0 or a track")
        rows.append(values)
    lineage = np.array(rows, np.int64).reshape(-1, 4)
    ids = set(lineage[:, 0].tolist())
    if len(ids) != len(lineage):
        raise VolumeError(f"{path}: a track id is listed twice")
    orphans = sorted(set(lineage[lineage[:, 3] > 0, 3].tolist()) - ids)
    if orphans:
        raise VolumeError(f"{path}: parent track{'s' if len(orphans) > 1 else ''} "
                          f"{', '.join(map(str, orphans[:5]))} not listed")
    return lineage


def open_tracking(path) -> Tracking:
    """A `track` output or a Cell Tracking Challenge tracking folder (a result, a ground truth's TRA
    folder, or the ``NN_GT`` folder above it)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tracking not found: {path}")
    if is_zarr_dir(path):
        import zarr

        from .track_output import TRACKS, is_tracks
        grp = zarr.open_group(str(path), mode="r")
        if not is_tracks(dict(grp.attrs)):
            raise VolumeError(f"{path} is not a `halo-seg track` output (no tracks in it)")
        tracked = [int(t) for t in grp.attrs[TRACKS].get("tracked", [])]
        return Tracking(str(path), grp["labels"], np.asarray(grp["lineage"][...], np.int64).reshape(-1, 4),
                        "track output", tracked if 0 < len(tracked) < grp["labels"].shape[0] else None)
    if path.is_dir() and lineage_file(path) is None and (path / "TRA").is_dir():
        path = path / "TRA"   # a dataset's 01_GT: its tracks, not its sparse SEG slices
    text = lineage_file(path) if path.is_dir() else None
    if text is None:
        raise VolumeError(f"{path} is neither a `halo-seg track` output (.zarr) nor a Cell Tracking Challenge "
                          f"tracking folder (mask000.tif ... with {' or '.join(LINEAGE_FILES)})")
    from .tiff_frames import open_frames
    frames = open_frames(path)
    if frames.meta["first_frame"] != 0:   # the lineage's B and E count from the file numbered 0
        raise VolumeError(f"{path}: the first frame is numbered {frames.meta['first_frame']}; a Cell Tracking "
                          "Challenge tracking numbers its frames from 0, as its lineage counts time points")
    data = frames.data if frames.data.ndim == 4 else frames.data[:, None]   # a 2D frame as one plane
    if data.ndim != 4 or not np.issubdtype(data.dtype, np.integer):
        raise VolumeError(f"{path}: the frames are {frames.data.shape} {frames.data.dtype}; a tracking's masks are "
                          "integer track ids, one 2D or 3D frame per time point")
    lineage = read_lineage(text)
    late = lineage[lineage[:, 2] >= data.shape[0]]
    if len(late):
        raise VolumeError(f"{text}: track {int(late[0, 0])} ends at time point {int(late[0, 2])} but {path} holds "
                          f"{data.shape[0]} frames")
    spacing = frames.spacing if frames.data.ndim == 4 else (1.0,) + tuple(frames.spacing[1:])   # a plane's z: 1
    return Tracking(str(path), data, lineage, "Cell Tracking Challenge",
                    spacing=tuple(spacing) if frames.spacing_known else None, unit=frames.meta.get("unit"))
