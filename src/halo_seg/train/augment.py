"""Spatial and intensity augmentation for (image, label[, weight]) patches, all in numpy."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def random_flip_rot(arrs, rng, flip_axes=(0, 1, 2), rot_axes=((1, 2),)):
    for ax in flip_axes:
        if rng.random() < 0.5:
            arrs = [np.flip(a, ax) for a in arrs]
    for axes in rot_axes:
        k = int(rng.integers(4))
        arrs = [np.rot90(a, k, axes) for a in arrs]
    return [np.ascontiguousarray(a) for a in arrs]


def elastic_scale(arrs, rng, alpha: float = 4.0, sigma: float = 6.0, scale=(0.85, 1.15), p: float = 0.3,
                  linear: int = 1):
    """Smooth random displacement plus isotropic scaling; the first ``linear`` arrays (the image's
    channels) interpolated linearly, the rest (labels, weights) by nearest neighbour."""
    if rng.random() >= p:
        return arrs
    shape = arrs[0].shape
    s = rng.uniform(*scale)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    centre = [(n - 1) / 2 for n in shape]
    coords = []
    for g, c in zip(grid, centre):
        disp = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma) * alpha * sigma
        coords.append((g - c) / s + c + disp)
    out = [ndi.map_coordinates(a, coords, order=1, mode="reflect") for a in arrs[:linear]]
    out += [ndi.map_coordinates(a, coords, order=0, mode="nearest") for a in arrs[linear:]]
    return out


def intensity(img, rng, gamma=(0.7, 1.5), noise=0.1, contrast=(0.75, 1.25)):
    """Gamma on the min-max rescaled patch, contrast around the mean, Gaussian noise."""
    lo, hi = float(img.min()), float(img.max())
    if hi > lo and rng.random() < 0.3:
        img = ((img - lo) / (hi - lo)) ** rng.uniform(*gamma) * (hi - lo) + lo
    if rng.random() < 0.3:
        m = img.mean()
        img = (img - m) * rng.uniform(*contrast) + m
    if rng.random() < 0.3:
        img = img + rng.normal(0, noise * (img.std() + 1e-6), img.shape)
    return img.astype(np.float32)
