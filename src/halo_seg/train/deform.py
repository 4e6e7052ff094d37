"""Smooth random deformations of a training view, slice by slice (the U-Net paper's elastic
augmentation, seed 001, adapted to slice propagation).

The interactive network learns from one MRI subject and one CT; deforming them makes new anatomy
out of the same tissue. The deformation is in-plane only, so every slice keeps the sections it had
(an object still starts and ends where its labels say), but its displacements vary smoothly from
slice to slice: sections then change shape along the slicing axis in ways the subject did not,
which is what propagation has to follow. Slices are deformed when they are read, because an
example reads a dozen of a view's hundreds.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

Z_STEP = 8          # slices between control points: the shape changes over about this many slices
MAX_ANGLE = 20.0    # degrees of in-plane rotation; flips and transposes give the 90 degree turns
SCALE_SD = 0.1      # log-normal in-plane scale of each axis
ELASTIC = 0.06      # displacement s.d. as a fraction of the object's in-plane size
COARSE = 4          # pixels between exact evaluations of the elastic field


class DeformedView:
    """(image, mask) volumes of a view, each slice resampled through one smooth random in-plane
    map: a rotation and a per-axis scale about ``centre``, plus an elastic displacement interpolated
    (cubic) from control points ``step`` pixels apart in-plane and ``Z_STEP`` slices apart.

    ``view[z]`` is the deformed image slice and ``view.mask(z)`` the deformed mask; a section that
    the resampling would lose altogether (a pixel or two at an object's end) is read undeformed,
    image and mask alike, so no slice that shows the object stops showing it."""

    def __init__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, centre, size: float,
                 elastic: float = ELASTIC):
        if image.shape != mask.shape:
            raise ValueError(f"image {image.shape} and mask {mask.shape} differ in shape")
        self.image, self.mask_volume = image, mask
        self.shape = image.shape
        nz, ny, nx = image.shape
        angle = np.deg2rad(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
        scale = np.exp(rng.normal(0.0, SCALE_SD, 2))
        c, s = np.cos(angle), np.sin(angle)
        # output pixel -> input pixel: rotate, then undo the scale, about the object's centre
        self.matrix = np.array([[c, -s], [s, c]]) / scale[:, None]
        self.centre = np.asarray(centre, float)
        step = max(8.0, size / 2)
        self.grid_shape = (nz // Z_STEP + 2, int(ny / step) + 2, int(nx / step) + 2)
        self.grid_scale = (Z_STEP, step, step)
        control = rng.normal(0.0, elastic * size, (2,) + self.grid_shape)
        self.control = [ndi.spline_filter(c, order=3, mode="nearest") for c in control]
        self.yy, self.xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _coords(self, z: int):
        # the displacement is smooth over many pixels: evaluate the cubic spline every COARSE pixels
        # and fill in linearly, 16 times less work for the same field to a small fraction of a pixel
        ny, nx = self.yy.shape
        cy, cx = np.mgrid[0:ny + COARSE:COARSE, 0:nx + COARSE:COARSE].astype(np.float32)
        at = (np.full(cy.shape, z / self.grid_scale[0], np.float32), cy / self.grid_scale[1], cx / self.grid_scale[2])
        fine = (self.yy / COARSE, self.xx / COARSE)
        dy, dx = (ndi.map_coordinates(ndi.map_coordinates(c, at, order=3, mode="nearest", prefilter=False),
                                      fine, order=1, mode="nearest") for c in self.control)
        oy, ox = self.yy - self.centre[0], self.xx - self.centre[1]
        (a, b), (c, d) = self.matrix
        return a * oy + b * ox + self.centre[0] + dy, c * oy + d * ox + self.centre[1] + dx

    def _slice(self, z: int):
        z = int(z)
        if z not in self._cache:
            raw = self.mask_volume[z]
            img = np.asarray(self.image[z], np.float32)
            coords = self._coords(z)
            out_img = ndi.map_coordinates(img, coords, order=1, mode="nearest")
            out_mask = ndi.map_coordinates(raw.astype(np.float32), coords, order=1, mode="constant") >= 0.5
            if raw.any() and not out_mask.any():
                out_img, out_mask = img, raw.astype(bool)
            self._cache[z] = (out_img, out_mask)
        return self._cache[z]

    def __getitem__(self, z) -> np.ndarray:
        return self._slice(z)[0]

    def mask(self, z) -> np.ndarray:
        return self._slice(z)[1]
