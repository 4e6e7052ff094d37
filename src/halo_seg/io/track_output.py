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


def write_ctc(path, folder) -> Path:
    """A track output as a Cell Tracking Challenge result folder: mask000.tif ... (uint16 track
    ids, one file per time point, 2D where the time-lapse has one plane as the challenge's 2D
    datasets do, else 3D; 4 digits past 999 time points) and res_track.txt, as the challenge's
    evaluation tools read them."""
    import tifffile
    import zarr
    grp = zarr.open_group(str(path), mode="r")
    labels = grp["labels"]
    lineage = np.asarray(grp["lineage"][...]).reshape(-1, 4)
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
        frame = np.asarray(labels[t]).astype(np.uint16)
        tifffile.imwrite(folder / f"mask{t:0{digits}d}.tif", frame[0] if frame.shape[0] == 1 else frame)
    (folder / "res_track.txt").write_text(ctc_lineage(lineage))
    return folder
