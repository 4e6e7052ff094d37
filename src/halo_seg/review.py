"""Which slices of an automatic segmentation to check first.

The engine writes, beside the labels, each voxel's probability of being wrong (engine/output.py:
100 x (1 - the largest class probability)). Summed over a slice that is the slice's expected number
of wrong voxels, and the slices with the most are where a reviewer's corrections pay most, as the
interactive tool's recommendation does for a propagated object. On the default model's held-out
hemisphere the 10 axial slices ranked this way hold about 0.9 of the errors that the 10 truly worst
slices hold (benchmarks/review.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .engine.output import UNCERTAINTY
from .io.labels import slabs
from .io.volume import VolumeError

AXES = {"z": 0, "y": 1, "x": 2, "0": 0, "1": 1, "2": 2}


def parse_axis(axis) -> int:
    key = str(axis).lower()
    if key not in AXES:
        raise VolumeError(f"axis {axis!r}: use z, y or x (or 0, 1, 2)")
    return AXES[key]


def open_uncertainty(output):
    """The `uncertainty` array of a `segment` output group, or a VolumeError saying why there is none."""
    import zarr
    path = Path(output)
    if not (path / "zarr.json").exists():
        raise VolumeError(f"{path} is not a zarr group written by `halo-seg segment`")
    grp = zarr.open_group(str(path), mode="r")
    from .io.series_output import SERIES, series_hint
    if SERIES in grp.attrs:   # every time point of a time-lapse: each is an output of its own
        raise VolumeError(series_hint(path, dict(grp.attrs[SERIES])))
    if UNCERTAINTY not in grp:
        raise VolumeError(f"{path} has no '{UNCERTAINTY}' array: it was written by an older version; "
                          f"run `halo-seg segment` again")
    if "done" in grp and not np.asarray(grp["done"][...]).all():
        raise VolumeError(f"{path}: some blocks were never written (a run that stopped); finish it with --resume")
    return grp[UNCERTAINTY]


def expected_errors(uncertainty, slab_voxels: int = 1 << 24, cancel=None) -> tuple[np.ndarray, ...]:
    """Expected wrong voxels per slice along z, y and x, read once in slabs of whole z-slices
    (bounded memory on any volume). ``uncertainty``: percent values, (Z, Y, X), any array type."""
    shape = tuple(int(s) for s in uncertainty.shape)
    if len(shape) != 3:
        raise VolumeError(f"uncertainty must be a 3D (Z, Y, X) volume, got shape {shape}")
    sums = [np.zeros(n, np.float64) for n in shape]
    step, starts = slabs(shape, slab_voxels)
    for z0 in starts:
        if cancel is not None and cancel():
            raise InterruptedError("stopped before the whole volume was read")
        slab = np.asarray(uncertainty[z0:z0 + step])
        acc = np.int64 if np.issubdtype(slab.dtype, np.integer) else np.float64   # no float copy of a uint8 slab
        sums[0][z0:z0 + len(slab)] = slab.sum((1, 2), dtype=acc)
        sums[1] += slab.sum((0, 2), dtype=acc)
        sums[2] += slab.sum((0, 1), dtype=acc)
    return tuple(s / 100.0 for s in sums)


def review_order(per_slice: np.ndarray, top: int | None = None) -> list[int]:
    """Slice indices from the most expected wrong voxels down, slices expecting none left out;
    ties keep the lower index first."""
    per_slice = np.asarray(per_slice, np.float64)
    order = [int(i) for i in np.argsort(-per_slice, kind="stable") if per_slice[i] > 0]
    return order if top is None else order[:top]
