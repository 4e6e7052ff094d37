"""The image column of an object: its region of interest through the stack, read block by block
when a propagation's sweeps first reach it.

Reading the whole column up front made every propagation cost the stack's height: on a 600-slice
light-sheet stack a small object's column took 1.7 s to read and 1 s to encode, most of it slices no
sweep reached. Blocks start at multiples of ``BLOCK``, which is also the encoder's batch, so the
features are those of the whole column encoded at once, bit for bit."""
from __future__ import annotations

from typing import Callable

import numpy as np

BLOCK = 64   # slices per read and per encoder batch


class ColumnReader:
    """A (Z, side, side) float32 column read ``BLOCK`` slices at a time through ``read(z0, z1)``,
    each block once. Indexing with an int or a slice reads only the blocks it needs; ``reads``
    lists the (z0, z1) of every read."""

    def __init__(self, read: Callable[[int, int], np.ndarray], nz: int, side: int):
        self._read = read
        self.shape = (int(nz), int(side), int(side))
        self._blocks: dict[int, np.ndarray] = {}
        self.reads: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._blocks.values())

    def block(self, b: int) -> np.ndarray:
        if b not in self._blocks:
            z0, z1 = b * BLOCK, min((b + 1) * BLOCK, self.shape[0])
            if not 0 <= z0 < z1:
                raise IndexError(f"block {b} lies outside the {self.shape[0]} slices")
            block = np.asarray(self._read(z0, z1), np.float32)
            if block.shape != (z1 - z0,) + self.shape[1:]:
                raise ValueError(f"read({z0}, {z1}) gave shape {block.shape}, expected "
                                 f"{(z1 - z0,) + self.shape[1:]}")
            self.reads.append((z0, z1))
            self._blocks[b] = block
        return self._blocks[b]

    def __getitem__(self, key):
        nz = self.shape[0]
        if isinstance(key, (int, np.integer)):
            z = int(key) + nz if key < 0 else int(key)
            if not 0 <= z < nz:
                raise IndexError(f"slice {key} outside the {nz} slices")
            return self.block(z // BLOCK)[z % BLOCK]
        if isinstance(key, slice):
            z0, z1, step = key.indices(nz)
            if step != 1:
                raise IndexError("a column is read in contiguous slices (step 1)")
            if z1 <= z0:
                return np.zeros((0,) + self.shape[1:], np.float32)
            parts = [self.block(b)[max(z0 - b * BLOCK, 0):z1 - b * BLOCK]
                     for b in range(z0 // BLOCK, (z1 - 1) // BLOCK + 1)]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)
        raise TypeError(f"a column is indexed by an int or a slice, not {type(key).__name__}")

    def __array__(self, dtype=None, copy=None):
        out = self[0:self.shape[0]]
        return out if dtype is None else out.astype(dtype)

