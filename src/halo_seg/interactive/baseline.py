""""Fill between slices": signed-distance interpolation between exact 2D masks (3D Slicer's way).

The baseline the interactive networks are measured against (DESIGN.md, evaluation protocol).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..metrics import dice


def signed_distance(mask2d: np.ndarray) -> np.ndarray:
    """Negative inside, positive outside; an empty mask is 'far outside' everywhere."""
    m = np.asarray(mask2d, bool)
    if not m.any():
        return np.full(m.shape, 1e6, np.float32)
    if m.all():
        return np.full(m.shape, -1e6, np.float32)
    return (ndi.distance_transform_edt(~m) - ndi.distance_transform_edt(m)).astype(np.float32)


def interpolate_masks(annotated: dict[int, np.ndarray], shape) -> np.ndarray:
    """Linear interpolation of signed distances between consecutive annotated slices.

    Slices outside the annotated range stay empty: the user has not said the object goes on.
    """
    out = np.zeros(shape, bool)
    zs = sorted(annotated)
    if not zs:
        return out
    sdf = {z: signed_distance(annotated[z]) for z in zs}
    for z in zs:
        out[z] = annotated[z]
    for a, b in zip(zs[:-1], zs[1:]):
        for z in range(a + 1, b):
            t = (z - a) / (b - a)
            out[z] = (1 - t) * sdf[a] + t * sdf[b] < 0
    return out


def evenly_spaced_slices(truth: np.ndarray, k: int) -> list[int]:
    """k slices spread over the object's z-extent (k = 1: the slice where the object is largest)."""
    area = truth.reshape(len(truth), -1).sum(1)
    zs = np.flatnonzero(area)
    if k == 1:
        return [int(area.argmax())]
    return sorted(set(int(round(v)) for v in np.linspace(zs[0], zs[-1], k)))


def fill_between_curve(truth: np.ndarray, rounds: int = 6) -> list[float]:
    """Dice of the baseline with exact masks on 1..rounds evenly spaced slices."""
    truth = np.asarray(truth, bool)
    out = []
    for k in range(1, rounds + 1):
        zs = evenly_spaced_slices(truth, k)
        pred = interpolate_masks({z: truth[z] for z in zs}, truth.shape)
        out.append(dice(pred, truth))
    return out
