"""The Cell Tracking Challenge's SEG of a tracking's masks against the challenge's segmentation
ground truth (``NN_GT/SEG``): ``man_segTTT.tif``, a whole frame's cells drawn (the 2D datasets,
some 3D ones), or ``man_seg_TTT_ZZZ.tif``, plane ZZZ of frame TTT (most 3D datasets, whose cells
are drawn on a few planes: compared with that plane of the masks). Each reference cell scores its
IoU with the mask's object covering more than half of it, 0 where none does; SEG is the mean
over every reference cell of every file, as the challenge computes it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evaluate import seg_terms
from ..io.volume import VolumeError

_SEG_FILE = re.compile(r"man_seg_?(\d+)(?:_(\d+))?\.tiff?", re.I)


@dataclass
class SegScore:
    seg: float          # mean over the reference cells (nan where there are none)
    cells: int          # reference cells scored
    files: int          # ground-truth files read
    folder: str


def seg_folder(reference) -> Path | None:
    """The SEG folder that goes with a ground truth given as its NN_GT folder or its TRA folder."""
    reference = Path(reference)
    for folder in (reference / "SEG", reference.parent / "SEG"):
        if folder.is_dir() and seg_files(folder):
            return folder
    return None


def seg_files(folder) -> list[tuple[int, int | None, Path]]:
    """(frame, plane or None, file) of each ground-truth file in ``folder``, by frame and plane."""
    found = []
    for p in Path(folder).iterdir():
        m = _SEG_FILE.fullmatch(p.name)
        if m:
            found.append((int(m.group(1)), None if m.group(2) is None else int(m.group(2)), p))
    return sorted(found, key=lambda f: (f[0], -1 if f[1] is None else f[1]))


def seg_measure(labels, folder, timepoints=None, cancel=None) -> SegScore:
    """SEG of ``labels`` (T, Z, Y, X; a 2D time-lapse's frames as one plane) against the
    ground-truth files in ``folder`` (of ``timepoints`` only, where given: those tracked)."""
    import tifffile
    files = seg_files(folder)
    if not files:
        raise VolumeError(f"{folder} holds no segmentation ground truth (man_seg000.tif, man_seg_000_012.tif ...)")
    if timepoints is not None:
        files = [f for f in files if f[0] in set(timepoints)]
    T, shape = labels.shape[0], tuple(labels.shape[1:])
    total, cells = 0.0, 0
    for t, z, path in files:
        if cancel is not None and cancel():
            raise InterruptedError("stopped before every ground-truth file was compared")
        if t >= T:
            raise VolumeError(f"{path.name} is of time point {t}, but the masks hold {T} time points")
        try:
            ref = np.asarray(tifffile.imread(str(path)))
        except Exception as exc:
            raise VolumeError(f"cannot read {path}: {exc}") from None
        if z is not None:   # one plane of a 3D frame
            if not 0 <= z < shape[0] or ref.shape != shape[1:]:
                raise VolumeError(f"{path.name}: plane {z} of {ref.shape}, but the masks' frames are {shape} (Z, Y, X)")
            mask = np.asarray(labels[t, z])
        else:
            if ref.shape not in (shape, shape[1:]) or (ref.shape == shape[1:] and shape[0] != 1):
                raise VolumeError(f"{path.name} is {ref.shape}, but the masks' frames are {shape} (Z, Y, X)")
            mask = np.asarray(labels[t]).reshape(ref.shape)
        got, n = seg_terms(mask[None] if mask.ndim == 2 else mask, ref[None] if ref.ndim == 2 else ref, cancel)
        total, cells = total + got, cells + n
    return SegScore(total / cells if cells else float("nan"), cells, len(files), str(folder))
