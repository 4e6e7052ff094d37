"""A folder of TIFF files, one per time point, as one lazy time-lapse: (T, Z, Y, X) of 3D frames,
(T, Y, X) of 2D ones. This is how the Cell Tracking Challenge's datasets come (``01/t000.tif``,
a result's ``mask000.tif`` and its ground truth's ``man_track000.tif``) and how many microscopes
and Fiji export a time-lapse frame by frame.

A folder opens so, wherever a time-lapse file would (a hyperstack's t axis), when the word just
before the number its names share says time (t, tp, time, frame) or is one of the challenge's
(mask, man_track): ``img_001.tif`` ... stays a stack of z slices (tiff_slices.py). `track` takes any
folder of TIFF files as frames, the one reading a time-lapse tracker can mean (``open_frames``).

The number in a name is its time point counted from the first file's: a folder whose numbers
skip one, mix several series, or whose files differ in size or type is refused naming the files,
since a missing frame would make every later one a time point early (and a cell seem to jump).
Each file's header is read once; a frame's pixels when it is asked for.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .tiff_slices import same_headers, slice_files
from .volume import Volume, VolumeError, is_zarr_dir, named_from_zarr

_NUMBER = re.compile(r"(\d+)")
# the word before the frame number: at the name's start or after a non-letter (not "cut001")
_TIME_WORD = re.compile(r"(?:^|[^a-z])(t|tp|time|timepoint|frame|mask|man_track)[_\-]?$")
LABEL_WORDS = ("mask", "man_track")   # the challenge's results and ground truth hold object ids
FORMAT = "tiff frames"


def _varying(files: list[Path]) -> tuple[int, np.ndarray, list[str]] | None:
    """The one number that changes from file to file: its place among the name's parts, its values,
    and each name's parts; None where the names are not one series numbered in one place."""
    parts = [_NUMBER.split(p.name) for p in files]
    if len({tuple("#" if s.isdigit() else s for s in t) for t in parts}) != 1:
        return None
    digits = [j for j, s in enumerate(parts[0]) if s.isdigit()]
    changing = [j for j in digits if len({t[j] for t in parts}) > 1]
    if len(changing) != 1:
        return None
    j = changing[0]
    return j, np.array([int(t[j]) for t in parts], np.int64), parts[0]


def time_word(files: list[Path]) -> str | None:
    """The word before the number ``files``' names share, where it says they are time points."""
    found = _varying(files) if len(files) >= 2 else None
    if found is None:
        return None
    j, _, parts = found
    m = _TIME_WORD.search("".join(parts[:j]).lower())
    return m.group(1) if m else None


def looks_like_frames(path) -> bool:
    """Whether ``path`` is a folder of TIFF files named as time points (t000.tif, mask000.tif ...)."""
    path = Path(path)
    if not path.is_dir() or is_zarr_dir(path):
        return False
    return time_word(slice_files(path)) is not None


def holds_tiffs(path) -> bool:
    """Whether ``path`` is a plain folder (not a zarr) with two or more TIFF files in it."""
    path = Path(path)
    return path.is_dir() and not is_zarr_dir(path) and len(slice_files(path)) >= 2


def _numbers(folder: Path, files: list[Path]) -> np.ndarray:
    """Each file's time point number, checked to step by one from the first to the last."""
    found = _varying(files)
    if found is None:
        shapes = {"".join("#" if s.isdigit() else s for s in _NUMBER.split(p.name)) for p in files}
        raise VolumeError(f"{folder}: the TIFF file names ({files[0].name} ... {files[-1].name}, {len(shapes)} "
                          "pattern(s)) do not number time points in one place; a time-lapse's frames are one "
                          "series such as t000.tif, t001.tif ... (put other files elsewhere)")
    numbers = found[1]
    if len(set(numbers.tolist())) != len(numbers):
        raise VolumeError(f"{folder}: two files share a time point number ({files[0].name} ... {files[-1].name})")
    missing = sorted(set(range(int(numbers[0]), int(numbers[-1]) + 1)) - set(numbers.tolist()))
    if missing:
        shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        raise VolumeError(f"{folder}: time point{'s' if len(missing) > 1 else ''} {shown} missing between "
                          f"{files[0].name} and {files[-1].name} ({len(files)} files): every frame after a gap "
                          "would be taken a time point early and cells would seem to jump; restore the missing "
                          "files or move the frames after the gap to a folder of their own")
    return numbers


def open_frames(folder) -> Volume:
    """The TIFF files in ``folder`` as one lazy time-lapse, a file per time point (any folder of them:
    the caller has decided it is a time-lapse). Its voxel size is the first file's calibration."""
    import tifffile
    import zarr

    from .axes import tiff_axes

    folder = Path(folder)
    files = slice_files(folder)
    if len(files) < 2:
        raise VolumeError(f"{folder} holds {len(files)} TIFF file{'s' if len(files) != 1 else ''}; a time-lapse "
                          "folder needs one file per time point (at least two)")
    numbers = _numbers(folder, files)
    first, (spacing, unit, known) = same_headers(folder, files, "frame", "the frames of one time-lapse")
    names = tiff_axes(first[3])
    if "t" in names:
        raise VolumeError(f"{first[0]} holds a time-lapse itself (axes {first[3]}); a folder of frames holds one "
                          "time point per file")
    seq = tifffile.TiffSequence([str(p) for p in files], pattern=None)
    data = named_from_zarr(zarr.open(seq.aszarr(), mode="r"), folder).reshape((len(files),) + first[1])
    word = time_word(files)
    meta = {"format": FORMAT, "unit": unit, "axes": ["t"] + names, "files": len(files),
            "first_frame": int(numbers[0])}
    if word in LABEL_WORDS and np.issubdtype(first[2], np.integer):
        meta["labels"] = True   # the challenge's masks: object ids, shown and read as labels
    return Volume(data, spacing=spacing, source=str(folder), spacing_known=known, meta=meta)
