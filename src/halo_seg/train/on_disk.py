"""Prepared training volumes kept on disk, memory-mapped, for datasets larger than the RAM.

The unpartitioned trainer prepares each volume once (normalised image, labels, U-Net weight map,
each class's voxels) and draws patches from them at random. In RAM that is about 9 bytes a voxel
of the whole dataset; written to a folder and memory-mapped, the RAM holds only the pages the
patches touch, which the kernel evicts as it needs (nnU-Net trains from preprocessed files for the
same reason). The files are read as patches are drawn, so the folder belongs on a local disk with
room for them; it is removed when training ends.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np


class DiskStore:
    """A scratch folder inside ``folder`` for one run's prepared volumes; ``keep`` writes arrays
    there and gives back read-only memory maps of them; ``close`` removes the folder."""

    def __init__(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="halo-seg-prepared-", dir=folder))

    def keep(self, name: str, *arrays):
        """Each array (or dict of arrays) written as ``name``'s and memory-mapped back, in order."""
        out = []
        for j, a in enumerate(arrays):
            if isinstance(a, dict):
                out.append({k: self._mapped(f"{name}_{j}_{k}", v) for k, v in a.items()})
            else:
                out.append(self._mapped(f"{name}_{j}", a))
        return out

    def _mapped(self, name: str, a: np.ndarray) -> np.ndarray:
        if not any(a.strides) and a.size > 1:   # a view of one value (everywhere()): nothing to write
            return a
        path = self.path / f"{name}.npy"
        np.save(path, np.ascontiguousarray(a))
        return np.load(path, mmap_mode="r")

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
