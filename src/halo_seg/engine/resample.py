"""Bring a volume to the voxel size a network was trained at, and its result back.

A network learns its objects at one voxel size: the default model's deep grey matter is a few
2 mm voxels thick, and on a 1 mm scan it sees twice that and misses it. `segment` therefore
resamples the input to the model's spacing (recorded in its weights by `halo-seg train`), runs the
engine on that grid, and resamples the class probabilities back to the input's grid before the
argmax, as nnU-Net does.

The interpolation is trilinear with PyTorch's ``align_corners=False`` convention (voxel centres at
``(i + 0.5) * spacing``), computed separably block by block: every output voxel is the same
arithmetic on the same input voxels whatever block it falls in, so a block-wise result equals the
whole-array one bit for bit, and each block reads only the input it needs (lazy volumes stay lazy).
Nothing is low-pass filtered before downsampling: halving averages 2 x 2 x 2 voxels, but a larger
factor leaves some voxels out (a 0.5 mm scan seen at 2 mm uses half of its voxels along each axis).
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np

from ..io.volume import METRES as _METRES   # one table of length units for the package

TOLERANCE = 0.1          # resample when a spacing differs from the model's by more than 10 % on an axis
POLICIES = ("auto", "on", "off")


class ResampleError(ValueError):
    """The volume cannot be brought to the model's voxel size (unknown spacing, too small, ...)."""


def spacing_text(spacing, digits: int = 3, unit: str | None = None, sep: str = " x ") -> str:
    """"2 x 2 x 2 mm": a spacing as messages show it."""
    return sep.join(f"{s:.{digits}g}" for s in spacing) + (f" {unit}" if unit else "")


def model_spacing(meta: dict) -> tuple[tuple[float, float, float] | None, str | None]:
    """The voxel size (z, y, x) the weights were trained at and its unit, or (None, None) for weights
    trained before it was recorded."""
    tr = meta.get("training") or {}
    sp = tr.get("spacing")
    return (tuple(float(s) for s in sp), tr.get("unit")) if sp else (None, None)


def target_spacing(spacing, unit, model_sp, model_unit, policy: str = "auto",
                   tolerance: float = TOLERANCE) -> tuple[float, float, float] | None:
    """The spacing, in the volume's unit, to resample the volume to before the network; None to run it
    as it is. ``spacing`` is None when the volume's voxel size is unknown (a bare array, a file that
    records none). ``policy``: "auto" resamples when an axis differs by more than ``tolerance``,
    "on" whenever they differ at all, "off" never; "on" refuses what it cannot do."""
    if policy not in POLICIES:
        raise ResampleError(f"unknown resample policy {policy!r}; use one of {', '.join(POLICIES)}")
    if policy == "off":
        return None
    if model_sp is None:
        if policy == "on":
            raise ResampleError("these weights do not record the voxel size they were trained at (weights "
                                "trained before halo-seg recorded it); resample the volume yourself or use "
                                "--resample off")
        return None
    if spacing is None:
        if policy == "on":
            raise ResampleError("the volume's voxel size is unknown (the file records none): give it with "
                                "--spacing Z,Y,X")
        return None
    target = tuple(float(s) for s in model_sp)
    if unit in _METRES and model_unit in _METRES:   # both named: compare lengths, not numbers
        target = tuple(s * _METRES[model_unit] / _METRES[unit] for s in target)
    ratios = [s / t for s, t in zip(spacing, target)]
    if policy == "auto" and all(abs(math.log(r)) <= math.log1p(tolerance) for r in ratios):
        return None
    if policy == "on" and all(r == 1.0 for r in ratios):
        return None
    return target


def target_for(vol, meta: dict, policy: str = "auto") -> tuple[float, float, float] | None:
    """target_spacing for an opened volume (its spacing only where known) and weights' metadata."""
    return target_spacing(vol.spacing if vol.spacing_known else None, vol.meta.get("unit"), *model_spacing(meta),
                          policy)


def training_spacing(volumes, log=print) -> dict:
    """What a model trained on ``volumes`` (opened Volumes) records of their voxel size: {"spacing",
    "unit"}, the median over those whose spacing is known; {} when none is known. Volumes of
    different voxel sizes are said to differ: the network then learns objects at several scales."""
    known = [v for v in volumes if v.spacing_known]
    if not known:
        return {}
    sps = np.array([v.spacing for v in known], float)
    med = np.median(sps, axis=0)
    if np.any(np.abs(np.log(sps / med)) > math.log1p(TOLERANCE)):
        log(f"the training volumes differ in voxel size ({'; '.join(' x '.join(f'{x:g}' for x in sp) for sp in sps)}); "
            f"the model records the median, {' x '.join(f'{x:g}' for x in med)}, and segment resamples to it "
            f"(halo-seg resample brings volumes to one voxel size)")
    units = {v.meta.get("unit") for v in known}
    return {"spacing": [float(x) for x in med], **({"unit": units.pop()} if len(units) == 1 and None not in units else {})}


def resampled_shape(shape, spacing, target) -> tuple[int, int, int]:
    """The grid covering the same extent at (about) ``target`` spacing."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def grid_spacing(shape, spacing, new_shape) -> tuple[float, float, float]:
    """The exact spacing of ``new_shape`` voxels over the extent of ``shape`` voxels of ``spacing``."""
    return tuple(float(s) * n / m for s, n, m in zip(spacing, shape, new_shape))


def _axis(n_in: int, n_out: int, start: int, stop: int, nearest: bool = False):
    """Source indices and weights of output voxels start..stop-1 along one axis (torch's
    align_corners=False linear interpolation: centres matched, clamped at the edges; ``nearest``:
    the source voxel holding the output voxel's centre, torch's "nearest-exact")."""
    if nearest:
        i0 = np.minimum(np.floor((np.arange(start, stop) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)
        return i0, i0, np.zeros(len(i0), np.float32)
    src = (np.arange(start, stop, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def source_region(in_shape, out_shape, region, nearest: bool = False) -> tuple[slice, ...]:
    """The input voxels the output ``region`` (slices) is interpolated from."""
    out = []
    for n_in, n_out, r in zip(in_shape, out_shape, region):
        i0, i1, _ = _axis(n_in, n_out, r.start, r.stop, nearest)
        out.append(slice(int(i0.min()), int(i1.max()) + 1))
    return tuple(out)


def resample_block(read: Callable[[tuple], np.ndarray], in_shape, out_shape, region,
                   nearest: bool = False) -> np.ndarray:
    """The output ``region`` (three slices of the ``out_shape`` grid) of the trilinear resampling of an
    ``in_shape`` volume, reading only what it needs through ``read(slices)``; float32 (``nearest``:
    nearest-neighbour, in the input's dtype, for labels). Leading axes of what ``read`` returns
    (classes) are carried along."""
    src = source_region(in_shape, out_shape, region, nearest)
    x = np.asarray(read(src))
    lead = x.ndim - 3
    if nearest:
        for ax, (n_in, n_out, r, s) in enumerate(zip(in_shape, out_shape, region, src)):
            x = np.take(x, _axis(n_in, n_out, r.start, r.stop, True)[0] - s.start, axis=lead + ax)
        return x
    x = x.astype(np.float32, copy=False)
    for ax, (n_in, n_out, r, s) in enumerate(zip(in_shape, out_shape, region, src)):
        i0, i1, w = _axis(n_in, n_out, r.start, r.stop)
        shape = [1] * x.ndim
        shape[lead + ax] = -1
        w = w.reshape(shape)
        a = np.take(x, i0 - s.start, axis=lead + ax)
        b = np.take(x, i1 - s.start, axis=lead + ax)
        x = a * (1.0 - w) + b * w
    return x


def blocks(shape, chunks):
    """(chunk coordinates, region slices) of every chunk of a ``shape`` grid."""
    counts = [math.ceil(n / c) for n, c in zip(shape, chunks)]
    for idx in itertools.product(*map(range, counts)):
        yield idx, tuple(slice(i * c, min(n, (i + 1) * c)) for i, c, n in zip(idx, chunks, shape))


class ArrayReader:
    """Reads source regions of an array (numpy, dask or zarr). Dask must not see the array as a
    dependency of each block (it would read all of it), so it is held here, out of its sight."""

    def __init__(self, array):
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)

    def __call__(self, region):
        block = self.array[region]
        return block.compute() if hasattr(block, "compute") else np.asarray(block)


class SourceReader(ArrayReader):
    """Reads source regions of a volume file, opened in whichever process reads (a spawned rank opens
    the file itself rather than receiving its data)."""

    def __init__(self, source, shape, channel=None, timepoint=None):
        self.source, self.channel, self.timepoint = source, channel, timepoint
        self.shape, self._array = tuple(shape), None

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    @property
    def array(self):
        if self._array is None:
            from ..io.volume import open_volume
            self._array = open_volume(self.source, channel=self.channel, timepoint=self.timepoint).data
        return self._array


def lazy_resample(reader: ArrayReader, out_shape, chunks=64, nearest: bool = False, dtype=np.float32):
    """The volume ``reader`` reads, resampled to ``out_shape``, as a lazy float32 dask array (``nearest``:
    nearest-neighbour, of ``dtype``): nothing is read until a block is asked for, and a block reads
    only its source region."""
    import dask.array as da
    in_shape, out_shape = reader.shape, tuple(int(s) for s in out_shape)
    if isinstance(chunks, int):
        chunks = (chunks,) * 3
    dtype = np.dtype(dtype if nearest else np.float32)
    template = da.zeros(out_shape, chunks=tuple(min(c, n) for c, n in zip(chunks, out_shape)), dtype=dtype)
    return da.map_blocks(_Block(reader, in_shape, out_shape, nearest), template, dtype=dtype)


class _Block:
    """One block of lazy_resample (a class, not a closure: spawned ranks receive it pickled)."""

    def __init__(self, reader, in_shape, out_shape, nearest=False):
        self.reader, self.in_shape, self.out_shape, self.nearest = reader, in_shape, out_shape, nearest

    def __call__(self, _, block_info=None):
        region = tuple(slice(a, b) for a, b in block_info[0]["array-location"])
        return resample_block(self.reader, self.in_shape, self.out_shape, region, self.nearest)
