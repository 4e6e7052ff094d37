"""The classical baselines the interactive networks are measured against.

* "Fill between slices": signed-distance interpolation between exact 2D masks (3D Slicer's way,
  DESIGN.md evaluation protocol).
* Optical-flow label propagation: the mask of one slice warped outwards slice by slice along the
  flow between neighbours (registration-based propagation, no training; benchmarks/flow_baseline.py).
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


def flow_propagate(image, z0: int, mask0: np.ndarray, stop=None, radius: int = 4, margin: int = 32) -> np.ndarray:
    """(Z, Y, X) bool: ``mask0`` on slice ``z0`` carried up and down the volume by optical flow
    (scikit-image's iterative Lucas-Kanade, window ``radius``) between neighbouring slices.

    Each step warps the (soft) mask of the last slice onto the next; a direction ends where the
    mask vanishes, at the volume's end, or where ``stop(z)`` is true. The flow
    is computed in a window of ``margin`` pixels around the first mask, on intensities z-scored
    over that window, so the baseline is as local as the network's ROI.
    """
    # imported here: propagation imports this module, and nothing on its path needs optical flow
    from skimage.registration import optical_flow_ilk
    from skimage.transform import warp
    image = np.asarray(image)
    mask0 = np.asarray(mask0, bool)
    if image.ndim != 3 or mask0.shape != image.shape[1:]:
        raise ValueError(f"need a (Z, Y, X) image and a (Y, X) mask of its slices, got {image.shape} and {mask0.shape}")
    if not mask0.any():
        raise ValueError("the starting mask is empty: nothing to propagate")
    ys, xs = np.nonzero(mask0)
    y0, x0 = max(int(ys.min()) - margin, 0), max(int(xs.min()) - margin, 0)
    y1, x1 = min(int(ys.max()) + margin + 1, image.shape[1]), min(int(xs.max()) + margin + 1, image.shape[2])
    col = np.asarray(image[:, y0:y1, x0:x1], np.float32)
    col = (col - col.mean()) / (col.std() + 1e-6)
    rows, cols = np.meshgrid(np.arange(y1 - y0), np.arange(x1 - x0), indexing="ij")
    out = np.zeros(image.shape, bool)
    out[z0] = mask0
    for step in (1, -1):
        cur, z = mask0[y0:y1, x0:x1].astype(np.float32), z0
        while 0 <= z + step < len(col):
            nxt = z + step
            if stop is not None and stop(nxt):
                break
            # flow from the next slice back to this one: where each of its pixels comes from
            v, u = optical_flow_ilk(col[nxt], col[z], radius=radius)
            cur = warp(cur, np.array([rows + v, cols + u]), mode="constant", order=1)
            hard = cur > 0.5
            if hard.sum() < 2:
                break
            out[nxt, y0:y1, x0:x1] = hard
            z = nxt
    return out
