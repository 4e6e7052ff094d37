"""A session's 3D mask kept slice by slice, each slice as the bits of its bounding box.

An object fills a small part of a large volume, and every step of a session (a painted slice, a
segmented box, a propagation) changes the mask in a few slices. Held as one (Z, Y, X) array, each
step copied the whole volume and the undo history scanned it for its bounding box: on a
600 x 2048 x 2048 light-sheet stack one painted slice took 20 s and two full copies of memory.
Here a step costs what the slices it changes cost; states share the slices they have in common
(a SliceMasks is never changed once a session state holds it: copy() first), so the undo history
holds only what each step changed (benchmarks/big_volume.py).
"""
from __future__ import annotations

import numpy as np


class SliceMasks:
    """A boolean (Z, Y, X) mask; ``m[z]`` reads a slice (a new array), ``m[z] = mask2d`` writes one."""

    __slots__ = ("shape", "_slices")

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3:
            raise ValueError(f"SliceMasks needs a 3D shape, got {self.shape}")
        self._slices: dict[int, tuple] = {}   # z -> (y0, x0, h, w, packed bits, voxel count)

    @classmethod
    def from_dense(cls, volume: np.ndarray) -> "SliceMasks":
        volume = np.asarray(volume)
        out = cls(volume.shape)
        for z in np.flatnonzero(volume.any(axis=(1, 2))):   # no copy of a transposed view
            out[int(z)] = volume[z]
        return out

    @classmethod
    def from_volume(cls, volume, axis: int = 0, label: int | None = None, cancel=None,
                    slab_bytes: int = 64 * 2 ** 20) -> "SliceMasks":
        """The slices across ``axis`` of a (Z, Y, X) array of any kind (numpy, dask, zarr) where it is
        nonzero, or equals ``label``; read a slab of slices at a time, so a large label volume is never
        held whole, nor its boolean mask."""
        shape = tuple(int(n) for n in volume.shape)
        order = (axis,) + tuple(a for a in range(3) if a != axis)
        out = cls(tuple(shape[a] for a in order))
        plane = out.shape[1] * out.shape[2] * np.dtype(volume.dtype).itemsize
        step = max(1, slab_bytes // max(plane, 1))
        for z0 in range(0, out.shape[0], step):
            if cancel is not None and cancel():
                raise InterruptedError("reading the mask cancelled")
            index = [slice(None)] * 3
            index[axis] = slice(z0, min(z0 + step, out.shape[0]))
            slab = np.moveaxis(np.asarray(volume[tuple(index)]), axis, 0)
            slab = slab != 0 if label is None else slab == label
            for i in np.flatnonzero(slab.any(axis=(1, 2))):
                out[z0 + int(i)] = slab[i]
        return out

    def copy(self) -> "SliceMasks":
        out = SliceMasks(self.shape)
        out._slices = dict(self._slices)   # the entries are never changed, only replaced
        return out

    def __len__(self) -> int:
        return self.shape[0]

    def _index(self, z) -> int:
        z = int(z)
        if not 0 <= z < self.shape[0]:
            raise IndexError(f"slice {z} is outside 0..{self.shape[0] - 1}")
        return z

    def __getitem__(self, z) -> np.ndarray:
        out = np.zeros(self.shape[1:], bool)
        self._paste(out, self._index(z))
        return out

    def _paste(self, plane: np.ndarray, z: int) -> None:
        entry = self._slices.get(z)
        if entry is not None:
            y0, x0, h, w, bits, _ = entry
            plane[y0:y0 + h, x0:x0 + w] = np.unpackbits(bits, count=h * w).reshape(h, w).view(bool)

    def __setitem__(self, z, mask2d) -> None:
        m = np.asarray(mask2d, bool)
        if m.shape != self.shape[1:]:
            raise ValueError(f"a slice of this mask has shape {self.shape[1:]}, got {m.shape}")
        self._put(self._index(z), 0, 0, m)

    def _put(self, z: int, y0: int, x0: int, m: np.ndarray) -> None:
        """Slice z is ``m`` placed at (y0, x0) and empty elsewhere."""
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if not len(rows):
            self._slices.pop(z, None)
            return
        crop = m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        self._slices[z] = (int(y0 + rows[0]), int(x0 + cols[0]), crop.shape[0], crop.shape[1], np.packbits(crop),
                           int(crop.sum()))

    def nonempty(self) -> list[int]:
        """The slices with any voxel of the mask, in order."""
        return sorted(self._slices)

    def any(self) -> bool:
        return bool(self._slices)

    def areas(self) -> np.ndarray:
        """Voxels per slice, (Z,) int64."""
        out = np.zeros(self.shape[0], np.int64)
        for z, entry in self._slices.items():
            out[z] = entry[5]
        return out

    def bbox(self) -> tuple[slice, slice, slice] | None:
        """The (Z, Y, X) slices of the mask's bounding box; None when it is empty."""
        if not self._slices:
            return None
        e = np.array([(z, y0, y0 + h, x0, x0 + w) for z, (y0, x0, h, w, _, _) in self._slices.items()])
        zs = e[:, 0]
        return (slice(int(zs.min()), int(zs.max()) + 1), slice(int(e[:, 1].min()), int(e[:, 2].max())),
                slice(int(e[:, 3].min()), int(e[:, 4].max())))

    def region(self, box) -> np.ndarray:
        """The mask inside ``box`` ((Z, Y, X) slices with explicit bounds), a bool array of its shape."""
        (z0, z1), (y0, y1), (x0, x1) = ((b.start, b.stop) for b in box)
        out = np.zeros((z1 - z0, y1 - y0, x1 - x0), bool)
        for z in self._slices:
            if z0 <= z < z1:
                out[z - z0] = self[z][y0:y1, x0:x1]
        return out

    @classmethod
    def from_region(cls, shape, box, block: np.ndarray) -> "SliceMasks":
        """The mask of a volume of ``shape`` that is ``block`` inside ``box`` and empty elsewhere."""
        out = cls(shape)
        for i in np.flatnonzero(block.any(axis=(1, 2))):
            out._put(out._index(box[0].start + int(i)), box[1].start, box[2].start, np.asarray(block[i], bool))
        return out

    def dense(self) -> np.ndarray:
        """The whole (Z, Y, X) bool array."""
        out = np.zeros(self.shape, bool)
        for z in self._slices:
            self._paste(out[z], z)
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the slices' bits (what this mask holds beyond what it may share with others)."""
        return sum(entry[4].nbytes for entry in self._slices.values())


def slice_areas(mask) -> np.ndarray:
    """Voxels per slice of a (Z, Y, X) mask, a numpy array or a SliceMasks."""
    if isinstance(mask, SliceMasks):
        return mask.areas()
    return np.asarray(mask).sum(axis=(1, 2))
