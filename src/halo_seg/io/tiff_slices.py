"""A folder of 2D TIFF slices, one file per z (how light-sheet, serial-section EM, micro-CT and
Fiji's "Save As > Image Sequence" export a stack), as one lazy (Z, Y, X) volume.

Files are stacked in natural order of their names (img_2 before img_10). A folder whose names
skip a number, mix several series, or whose files differ in size or type is refused with the
files named: a missing slice would shift every slice after it and make lengths and volumes
wrong, and a mixed folder would stack two images into one. Every file's header is read once;
pixels are read a file at a time when a block of the volume needs them.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .volume import TIFF_SUFFIXES, Volume, VolumeError, is_zarr_dir, named_from_zarr, tiff_spacing

_NUMBER = re.compile(r"(\d+)")


def slice_files(folder) -> list[Path]:
    """The TIFF files directly in ``folder`` (not hidden, not macOS's ``._`` twins), in natural order."""
    files = [p for p in Path(folder).iterdir()
             if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(TIFF_SUFFIXES)]
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t.lower() for t in _NUMBER.split(p.name)])


def _is_slice(shape, axes: str) -> bool:
    """Whether a TIFF series of ``shape`` and tifffile ``axes`` is one 2D image, grey or colour."""
    return len(shape) == 2 or (len(shape) == 3 and axes.upper().endswith("S"))


def _holds_one_slice(path: Path) -> bool:
    import tifffile
    try:
        with tifffile.TiffFile(str(path)) as tf:
            return _is_slice(tf.series[0].shape, tf.series[0].axes)
    except Exception:
        return False


def looks_like_slices(path) -> bool:
    """Whether ``path`` is a folder of 2D TIFF slices: two or more TIFF files, the first holding one
    2D image (grey or colour), and their names not numbering time points (t000.tif ...: a time-lapse).
    A folder of 3D stacks is a folder of volumes (halo_seg.batch)."""
    path = Path(path)
    if not path.is_dir() or is_zarr_dir(path):
        return False
    files = slice_files(path)
    from .tiff_frames import time_word
    # t000.tif ... are time points (tiff_frames.py), whatever each holds
    return len(files) >= 2 and _holds_one_slice(files[0]) and time_word(files) is None


def _check_numbering(folder: Path, files: list[Path]) -> None:
    parts = [_NUMBER.split(p.name) for p in files]
    templates = {}
    for p, t in zip(files, parts):
        templates.setdefault("".join("#" if s.isdigit() else s for s in t), []).append(p.name)
    if len(templates) > 1:
        if not any("#" in t for t in templates):
            return   # names without numbers: stacked by name
        kinds = sorted(templates.items(), key=lambda kv: -len(kv[1]))
        named = "; ".join(f"{len(v)} like {v[0]}" for _, v in kinds[:4])
        raise VolumeError(f"{folder} holds TIFF files of {len(templates)} series ({named}): stacking them would "
                          "mix images; put each series in a folder of its own")
    numbers = np.array([[int(s) for s in t if s.isdigit()] for t in parts], dtype=np.int64).reshape(len(files), -1)
    varying = [numbers[:, j] for j in range(numbers.shape[1]) if len(set(numbers[:, j])) > 1]
    if not varying or any(len(set(np.diff(v))) == 1 for v in varying):
        return   # unnumbered names, or a number stepping evenly (an index, a position in µm)
    if len(varying) > 1:
        raise VolumeError(f"{folder}: the file names number several things ({files[0].name} ... {files[-1].name}), "
                          "none in even steps: a time series or tiles rather than one stack of slices; put the "
                          "slices of one volume in a folder of their own")
    v = varying[0]
    step = int(np.diff(v).min())
    missing = sorted(set(range(int(v[0]), int(v[-1]) + 1, step)) - set(v.tolist())) if step > 0 else []
    if missing:
        shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        raise VolumeError(f"{folder}: slice number{'s' if len(missing) > 1 else ''} {shown} missing between "
                          f"{files[0].name} and {files[-1].name} ({len(files)} files): every slice after a gap "
                          "would sit one place too high and lengths and volumes would be wrong; restore the "
                          "missing files")
    raise VolumeError(f"{folder}: the file numbers ({files[0].name} ... {files[-1].name}) do not step evenly "
                      "and cannot say where each slice lies; number the slices in order")


def same_headers(folder: Path, files: list[Path], what: str, whole: str, each=None) -> tuple:
    """Each TIFF file's first series read once (a file a ``what``, e.g. "slice", of ``whole``):
    ((first file, shape, dtype, axes), the first's calibration (spacing, unit, known)); a file that
    cannot be read, or of another size or type than the first, refused naming it. ``each(path,
    shape, axes)``: a further check of every file."""
    import tifffile
    first = calibration = None
    for p in files:
        try:
            with tifffile.TiffFile(str(p)) as tf:
                s = tf.series[0]
                shape, dtype, axes = tuple(s.shape), np.dtype(s.dtype), s.axes
                if first is None:
                    calibration = tiff_spacing(tf)
        except Exception as exc:
            raise VolumeError(f"cannot read TIFF {what} {p}: {exc}") from None
        if each is not None:
            each(p, shape, axes)
        if first is None:
            first = (p, shape, dtype, axes)
        elif (shape, dtype) != first[1:3]:
            raise VolumeError(f"{folder}: {p.name} is {shape} {dtype} but {first[0].name} is {first[1]} {first[2]}: "
                              f"{whole} share one size and type")
    return first, calibration


def open_slices(folder) -> Volume:
    """The TIFF slices in ``folder`` as one lazy volume, its voxel size from the first slice's ImageJ
    calibration (the slice spacing is known only when that records it)."""
    import tifffile
    import zarr

    from .axes import tiff_axes

    folder = Path(folder)
    files = slice_files(folder)
    if len(files) < 2:
        raise VolumeError(f"{folder} holds {len(files)} TIFF file{'s' if len(files) != 1 else ''}; a folder of "
                          "slices needs one file per slice (open a single stack file itself)")
    _check_numbering(folder, files)

    def one_slice(p, shape, axes):
        if not _is_slice(shape, axes):
            raise VolumeError(f"{p} holds a {axes} stack of shape {shape}, not one 2D slice: a folder of slices "
                              "needs one image per file (a folder of stacks is a batch of volumes)")
    first, (spacing, unit, known) = same_headers(folder, files, "slice", "the slices of one volume", one_slice)
    seq = tifffile.TiffSequence([str(p) for p in files], pattern=None)
    arr = zarr.open(seq.aszarr(), mode="r")
    data = named_from_zarr(arr, folder).reshape((len(files),) + first[1])   # a bad slice's read named
    return Volume(data, spacing=spacing, source=str(folder), spacing_known=known,
                  meta={"format": "tiff slices", "unit": unit, "axes": ["z"] + tiff_axes(first[3]),
                        "files": len(files)})
