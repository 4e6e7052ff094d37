"""Balls as labelled cells, the time-lapse tests' shapes (a helper module, not a test file)."""
import numpy as np


def balls(shape, centres, radius=5) -> np.ndarray:
    """uint16 ids 1, 2, ... of balls of ``radius`` voxels around ``centres`` (z, y, x) in ``shape``;
    where two overlap, the later one's."""
    zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in shape)]
    out = np.zeros(shape, np.uint16)
    for k, c in enumerate(centres, 1):
        out[((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= radius ** 2] = k
    return out
