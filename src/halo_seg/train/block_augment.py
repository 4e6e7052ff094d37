"""Augmentation of a training patch that each rank computes for its own block only.

Partitioned training never assembles a patch: every rank reads its block. So each augmentation is a
function of an output voxel's position in the patch and of random numbers the ranks of a replica
draw alike (one generator, one order), never of the patch's other voxels:

- flips along each axis;
- a scale about the patch centre and a smooth elastic displacement (random vectors on control points
  every CONTROL voxels, a cubic B-spline between them, as elastix's B-spline transform), sampled from
  the volume around the patch, so the context is the volume's own, not a mirror of the patch; the
  volume's border repeats its edge. The spline is evaluated axis by axis with element-wise sums in
  a fixed order, so a voxel's displacement does not depend on the block it is computed in;
- intensity: a sign-keeping gamma, a contrast factor about 0 (inputs are normalised to mean 0) and
  Gaussian noise drawn per slice of the patch from a seed of its own, so a block's noise is its part
  of the whole patch's. Each input channel draws its own, as the unpartitioned trainer does (a T2's
  contrast says nothing of an ADC's).

The blocks of a patch, put together, equal the patch computed whole (tests), which keeps partitioned
training equal to unpartitioned training on the same draws. The probabilities and ranges follow the
unpartitioned trainer (augment.py): scale 0.85 to 1.15, each kind with chance 0.3.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

CONTROL = 16          # voxels between the displacement's control points
DISPLACEMENT = 1.0    # s.d. of a control point's displacement, voxels
P_SPATIAL = P_CONTRAST = P_NOISE = 0.3
SCALE = (0.85, 1.15)
CONTRAST = (0.75, 1.25)
NOISE = 0.1           # s.d. in the normalised units


@dataclass(frozen=True)
class Draw:
    """One patch's augmentation, drawn alike by every rank of a replica."""
    flips: tuple
    gamma: float
    scale: float = 1.0
    control: np.ndarray | None = None   # (3, nz, ny, nx) displacements at the control points, or None
    contrast: float = 1.0
    noise_seed: int | None = None
    # (gamma, contrast, noise_seed) of each input channel after the first
    others: tuple = ()

    @property
    def spatial(self) -> bool:
        return self.control is not None


def _intensity(rng: np.random.Generator, full: bool) -> tuple:
    gamma = float(np.exp(rng.normal(0, 0.15)))
    if not full:
        return gamma, 1.0, None
    contrast = float(rng.uniform(*CONTRAST)) if rng.random() < P_CONTRAST else 1.0
    return gamma, contrast, int(rng.integers(2 ** 63)) if rng.random() < P_NOISE else None


def draw(rng: np.random.Generator, patch, full: bool = True, channels: int = 1) -> Draw:
    """The draws for one patch of ``channels`` input channels. ``full`` False: flips and gamma only
    (the earlier recipe). The first channel's draws come in the order they always came, so one-channel
    runs draw as before; the other channels' after them."""
    flips = tuple(bool(rng.random() < 0.5) for _ in range(3))
    gamma = float(np.exp(rng.normal(0, 0.15)))
    if not full:
        return Draw(flips, gamma, others=tuple(_intensity(rng, False) for _ in range(channels - 1)))
    scale, control, contrast, noise = 1.0, None, 1.0, None
    if rng.random() < P_SPATIAL:
        scale = float(rng.uniform(*SCALE))
        n = [(p - 1) // CONTROL + 4 for p in patch]   # the spline's four taps around every voxel
        control = rng.standard_normal((3, *n)) * DISPLACEMENT
    if rng.random() < P_CONTRAST:
        contrast = float(rng.uniform(*CONTRAST))
    if rng.random() < P_NOISE:
        noise = int(rng.integers(2 ** 63))
    return Draw(flips, gamma, scale, control, contrast, noise,
                tuple(_intensity(rng, True) for _ in range(channels - 1)))


def _taps(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Control-point indices (N, 4) and cubic B-spline weights (N, 4) at positions ``q`` (voxels)."""
    u = q / CONTROL
    i = np.floor(u)
    t = u - i
    w = np.stack([(1 - t) ** 3, 3 * t ** 3 - 6 * t ** 2 + 4, -3 * t ** 3 + 3 * t ** 2 + 3 * t + 1, t ** 3], 1) / 6
    return i.astype(np.int64)[:, None] + np.arange(4), w


def _displacement(control: np.ndarray, q_axes) -> np.ndarray:
    """The B-spline displacement (3, nz, ny, nx) at the grid of 1D positions ``q_axes``."""
    d = control
    for ax, q in enumerate(q_axes):
        idx, w = _taps(q)
        shape = [1] * 4
        shape[1 + ax] = len(q)
        acc = np.take(d, idx[:, 0], axis=1 + ax) * w[:, 0].reshape(shape)
        for m in range(1, 4):   # summed in one order for every voxel, whatever the block
            acc += np.take(d, idx[:, m], axis=1 + ax) * w[:, m].reshape(shape)
        d = acc
    return d


def _source_coords(d: Draw, origin, patch, ranges) -> list[np.ndarray]:
    """Where each output voxel of the block (``ranges``: its index range per axis, inside the patch)
    reads in the volume: flipped, scaled about the patch centre, displaced."""
    q = [np.arange(lo, hi, dtype=np.float64) for lo, hi in ranges]
    q = [(p - 1 - g) if f else g for g, p, f in zip(q, patch, d.flips)]
    disp = _displacement(d.control, q)
    centre = [(p - 1) / 2 for p in patch]
    out = []
    for ax, (o, c, g) in enumerate(zip(origin, centre, q)):
        shape = [1, 1, 1]
        shape[ax] = len(g)
        out.append((o + c + (g - c) / d.scale).reshape(shape) + disp[ax])
    return out


def _sample(arr, coords, order: int) -> np.ndarray:
    """``arr`` at ``coords`` (clipped to the volume), reading only the box they span."""
    coords = [np.clip(c, 0, s - 1) for c, s in zip(coords, arr.shape)]
    lo = [int(np.floor(c.min())) for c in coords]
    hi = [min(s, int(np.floor(c.max())) + 2) for c, s in zip(coords, arr.shape)]
    box = np.asarray(arr[tuple(slice(a, b) for a, b in zip(lo, hi))])
    if order == 0:   # nearest, on the volume's grid: round here, the same for every box
        idx = tuple(np.floor(c + 0.5).astype(np.int64) - a for c, a in zip(coords, lo))
        return box[idx]
    # shifting by an integer is exact in floating point, so every box interpolates alike
    return ndi.map_coordinates(box.astype(np.float32), [c - a for c, a in zip(coords, lo)], order=1,
                               mode="nearest").astype(np.float32)


def spatial_block(arrays, d: Draw, origin, patch, ranges, linear: int = 1) -> list[np.ndarray]:
    """The block ``ranges`` of the transformed patch of each of ``arrays`` (the first ``linear``, the
    image's channels: linear; others: nearest)."""
    coords = _source_coords(d, origin, patch, ranges)
    return [_sample(a, coords, 1 if i < linear else 0) for i, a in enumerate(arrays)]


def intensity_block(x: np.ndarray, d: Draw, patch, ranges, channel: int = 0) -> np.ndarray:
    """The block of input ``channel`` with that channel's intensity draws."""
    gamma, contrast, noise = (d.gamma, d.contrast, d.noise_seed) if channel == 0 else d.others[channel - 1]
    x = np.sign(x) * np.abs(x) ** gamma
    if contrast != 1.0:
        x = x * np.float32(contrast)
    if noise is not None:
        (z0, z1), (y0, y1), (x0, x1) = ranges
        for i, z in enumerate(range(z0, z1)):   # each slice's noise from its own seed: blocks agree
            plane = np.random.default_rng([noise, z]).standard_normal(patch[1:], dtype=np.float32)
            x[i] += NOISE * plane[y0:y1, x0:x1]
    return x
