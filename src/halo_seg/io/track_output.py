"""A `track` output (tracking/run.py) read back: its (T, Z, Y, X) labels hold each object's track
id; beside them ``tracks`` (a row per object and time point: track, t, z, y, x centroid in
voxels, napari's Tracks layer data) and ``lineage`` (a row per track: track, first and last time
point, parent or 0). Written out for the Cell Tracking Challenge's tools as maskTTT.tif files and
res_track.txt."""
from __future__ import annotations

from pathlib import Path

import numpy as np

TRACKS = "halo_seg_tracks"   # the group attribute that marks a track output
PENDING = "halo_seg_track_edit"   # an edit (tracking.edit) written down, its voxels perhaps not all changed yet


def in_order(points: np.ndarray) -> np.ndarray:
    """Tracks rows (track, t, z, y, x) by time point, then track: the order `track` writes them in
    and every edit keeps."""
    return points[np.lexsort((points[:, 0], points[:, 1]))]


def is_tracks(attrs: dict) -> bool:
    return isinstance(attrs.get(TRACKS), dict)


def track_points(path) -> tuple[np.ndarray, dict]:
    """napari's Tracks data (track, t, z, y, x) and graph {daughter track: [parent track]}."""
    import zarr
    grp = zarr.open_group(str(path), mode="r")
    data = np.asarray(grp["tracks"][...], float).reshape(-1, 5)
    lineage = np.asarray(grp["lineage"][...]).reshape(-1, 4)
    return data, {int(k): [int(p)] for k, _, _, p in lineage.tolist() if p}


def ctc_lineage(lineage: np.ndarray) -> str:
    """The lineage as the Cell Tracking Challenge's res_track.txt: a line ``L B E P`` per track."""
    return "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in np.asarray(lineage).reshape(-1, 4).tolist())


def check_ctc_folder(folder) -> None:
    """A result folder is new, or holds only such a result (written over): never other files."""
    import re
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        from .volume import VolumeError
        raise VolumeError(f"{folder} is a file; give a folder for the Cell Tracking Challenge result")
    other = [f.name for f in folder.iterdir() if not re.fullmatch(r"mask\d{3,4}\.tif|res_track\.txt", f.name)] \
        if folder.is_dir() else []
    if other:
        from .volume import VolumeError
        raise VolumeError(f"{folder} holds other files ({', '.join(sorted(other)[:3])}); give a new or empty folder "
                          "for the Cell Tracking Challenge result")


def without_gaps(points: np.ndarray, lineage: np.ndarray) -> tuple[np.ndarray, dict]:
    """The lineage as the challenge has it, where a track is in every time point from its first
    to its last: a track continued over time points where its cell was missed (``track
    --max-gap``) is cut there, each later piece a new track whose parent is the piece before
    (the challenge's way of writing a gap), and the daughters' parent the last piece. Returns the
    lineage and {time point: {track id: new id}} for the masks."""
    lineage = np.asarray(lineage, np.int64).reshape(-1, 4)
    times: dict[int, list[int]] = {}
    for k, t in np.asarray(points)[:, :2].astype(np.int64).tolist():
        times.setdefault(k, []).append(t)
    rows, relabel, last = [], {}, {}
    free = int(lineage[:, 0].max()) + 1 if len(lineage) else 1
    for k, first, end, parent in lineage.tolist():
        ts = sorted(set(times.get(k, []))) or [first]
        runs = np.split(np.asarray(ts), np.nonzero(np.diff(ts) > 1)[0] + 1)
        ids = [k] + list(range(free, free + len(runs) - 1))
        free += len(runs) - 1
        for n, (run, new) in enumerate(zip(runs, ids)):
            rows.append([new, int(run[0]), int(run[-1]), parent if n == 0 else ids[n - 1]])
            if new != k:
                for t in run.tolist():
                    relabel.setdefault(t, {})[k] = new
        last[k] = ids[-1]
    out = np.array(rows, np.int64).reshape(-1, 4)
    for row in out:   # a track's first piece (its own id) keeps its mother: her last piece
        if row[0] in last and row[3]:
            row[3] = last[row[3]]
    return out, relabel


def write_ctc(path, folder) -> Path:
    """A track output as a Cell Tracking Challenge result folder: mask000.tif ... (uint16 track
    ids, one file per time point, 2D where the time-lapse has one plane as the challenge's 2D
    datasets do, else 3D; 4 digits past 999 time points) and res_track.txt, as the challenge's
    evaluation tools read them (a track over a gap written as two, the later the earlier's child:
    without_gaps)."""
    import tifffile
    import zarr
    grp = zarr.open_group(str(path), mode="r")
    labels = grp["labels"]
    lineage, relabel = without_gaps(np.asarray(grp["tracks"][...]).reshape(-1, 5),
                                    np.asarray(grp["lineage"][...]).reshape(-1, 4))
    if len(lineage) and int(lineage[:, 0].max()) > np.iinfo(np.uint16).max:
        from .volume import VolumeError
        raise VolumeError(f"{len(lineage)} tracks: the Cell Tracking Challenge's 16-bit masks hold 65535 at most")
    folder = Path(folder)
    check_ctc_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("mask*.tif"):   # an earlier result's, of perhaps more time points
        old.unlink()
    digits = 4 if labels.shape[0] > 1000 else 3
    for t in range(labels.shape[0]):
        frame = np.asarray(labels[t])
        for old_id, new_id in relabel.get(t, {}).items():
            frame[frame == old_id] = new_id
        frame = frame.astype(np.uint16)
        tifffile.imwrite(folder / f"mask{t:0{digits}d}.tif", frame[0] if frame.shape[0] == 1 else frame)
    (folder / "res_track.txt").write_text(ctc_lineage(lineage))
    return folder
