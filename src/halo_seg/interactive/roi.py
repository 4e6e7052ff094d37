"""Square regions of interest around an object, crops in and out of them, and guidance maps.

Training and inference both go through these functions, so the network sees crops made the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MARGIN = 0.4      # ROI side = object side * (1 + 2 * MARGIN): context around the object
MIN_SIDE = 24     # pixels; tiny objects still get some context
CLICK_SIGMA = 3.0  # guidance heat-map sigma in crop pixels


@dataclass(frozen=True)
class ROI:
    """Square window [y0, y0 + side) x [x0, x0 + side) in slice pixels (may extend past the slice)."""
    y0: int
    x0: int
    side: int

    def to_crop(self, y, x, size: int):
        s = size / self.side
        return (np.asarray(y, float) - self.y0 + 0.5) * s - 0.5, (np.asarray(x, float) - self.x0 + 0.5) * s - 0.5


def roi_from_bbox(y0, x0, y1, x1, margin: float = MARGIN, shift=(0.0, 0.0)) -> ROI:
    """Square ROI around the inclusive box (y0, x0, y1, x1); shift moves the centre by a fraction of the side."""
    h, w = y1 - y0 + 1, x1 - x0 + 1
    side = max(MIN_SIDE, int(round(max(h, w) * (1 + 2 * margin))))
    cy = (y0 + y1 + 1) / 2 + shift[0] * side
    cx = (x0 + x1 + 1) / 2 + shift[1] * side
    return ROI(int(round(cy - side / 2)), int(round(cx - side / 2)), side)


def mask_bbox(mask2d: np.ndarray):
    ys, xs = np.nonzero(mask2d)
    if len(ys) == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())


def crop_window(slice2d: np.ndarray, roi: ROI, fill=0) -> np.ndarray:
    """slice2d[roi] with the part outside the slice filled as crop_stack does."""
    a = np.asarray(slice2d)
    return crop_stack(a[None], roi, fill)[0]


def crop_stack(stack: np.ndarray, roi: ROI, fill=None) -> np.ndarray:
    """(N, Y, X)[:, roi] -> (N, side, side); outside the slice: ``fill``, or if it is None (images)
    each slice's mean inside the window. Not its edge values: an object touching the volume's border
    would be smeared outward and look larger than its box (Dice 0.83 instead of 0.95 for a bright
    square in a corner), and is not cut by the border either way."""
    n, hy, hx = stack.shape
    y0, x0, s = roi.y0, roi.x0, roi.side
    ya, yb = max(y0, 0), min(y0 + s, hy)
    xa, xb = max(x0, 0), min(x0 + s, hx)
    if ya >= yb or xa >= xb:
        raise ValueError(f"region of interest {roi} lies outside the {hy}x{hx} slice")
    inner = np.asarray(stack[:, ya:yb, xa:xb])
    pad = ((0, 0), (ya - y0, y0 + s - yb), (xa - x0, x0 + s - xb))
    if any(p for ax in pad for p in ax):
        if fill is None:
            means = inner.reshape(n, -1).mean(1, dtype=np.float64).astype(inner.dtype)
            inner = np.stack([np.pad(a, pad[1:], mode="constant", constant_values=m) for a, m in zip(inner, means)])
        else:
            inner = np.pad(inner, pad, mode="constant", constant_values=fill)
    return inner


def resize(crops: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """(N, s, s) -> (N, 1, size, size) float32, area-averaged when shrinking, bilinear when growing."""
    t = torch.as_tensor(np.asarray(crops, np.float32) if not torch.is_tensor(crops) else crops).float()[:, None]
    if t.shape[-1] == size:
        return t
    mode = "area" if t.shape[-1] > size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(t, size=(size, size), mode=mode, **kw)


def paste_logits(logits: torch.Tensor, roi: ROI, slice_shape) -> np.ndarray:
    """(size, size) logits -> boolean slice mask; everything outside the ROI is background."""
    up = F.interpolate(logits.float().view(1, 1, *logits.shape[-2:]), size=(roi.side, roi.side),
                       mode="bilinear", align_corners=False)[0, 0].numpy() > 0
    out = np.zeros(slice_shape, bool)
    hy, hx = slice_shape
    ya, yb = max(roi.y0, 0), min(roi.y0 + roi.side, hy)
    xa, xb = max(roi.x0, 0), min(roi.x0 + roi.side, hx)
    out[ya:yb, xa:xb] = up[ya - roi.y0:yb - roi.y0, xa - roi.x0:xb - roi.x0]
    return out


def guidance_maps(roi: ROI, size: int, pos=(), neg=(), box=None, pos_mask=None, neg_mask=None) -> np.ndarray:
    """(3, size, size): Gaussian heat maps at positive / negative points (scribbles count as
    their pixels, max-combined) and the box as a filled rectangle, all in crop coordinates."""
    g = np.zeros((3, size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for ch, pts in ((0, pos), (1, neg)):
        for y, x in pts:
            cy, cx = roi.to_crop(y, x, size)
            g[ch] = np.maximum(g[ch], np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * CLICK_SIGMA ** 2)))
    for ch, m in ((0, pos_mask), (1, neg_mask)):
        if m is not None and np.any(m):
            from scipy import ndimage as ndi
            crop = resize(crop_window(np.asarray(m, np.float32), roi, 0)[None], size)[0, 0].numpy()
            g[ch] = np.maximum(g[ch], np.clip(ndi.gaussian_filter(crop, 1.0) * 3, 0, 1))
    if box is not None:
        y0, x0, y1, x1 = box
        (cy0, cy1), (cx0, cx1) = roi.to_crop([y0 - 0.5, y1 + 0.5], [x0 - 0.5, x1 + 0.5], size)
        g[2] = (yy >= cy0) & (yy <= cy1) & (xx >= cx0) & (xx <= cx1)
    return g


def zscore_stats(ref: np.ndarray) -> tuple[float, float]:
    """(mean, deviation) of the reference crops for ``normalise``.

    Independent of the intensity unit: statistics in float64 (float32 squares overflow above ~1e19)
    and a floor on the deviation relative to the mean, not absolute (an absolute one flattened
    volumes stored in small units, such as 1e-6 per step, to zero)."""
    ref = np.asarray(ref)
    n = ref.size
    mu = float(np.add.reduce(ref, axis=None, dtype=np.float64)) / n
    # the squares summed a slab at a time: a float64 copy of a whole crop as wide as a large slice
    # took most of a click's time
    rows = ref.reshape(-1, ref.shape[-1]) if ref.ndim > 1 else ref[None]
    step = max(1, (1 << 18) // max(1, rows.shape[1]))
    ss = 0.0
    for i in range(0, len(rows), step):
        d = rows[i:i + step].astype(np.float64)
        d -= mu
        ss += float(np.vdot(d, d))
    sd = (ss / n) ** 0.5
    return mu, max(sd, 1e-6 * abs(mu)) or 1.0


def network_images(crops, size: int, stats: tuple[float, float]) -> torch.Tensor:
    """``resize(normalise(crops, stats=stats), size)``, computed the other way round: area averaging
    and bilinear weights sum to one, so the z-score commutes with them (to float rounding), and a crop
    as wide as a large slice is shrunk as it is read instead of first copied in float64."""
    mu, sd = stats
    return ((resize(crops, size).double() - mu) / sd).float()


def normalise(crops: np.ndarray, ref: np.ndarray | None = None, stats: tuple[float, float] | None = None) -> np.ndarray:
    """z-score with the statistics of the reference crops (the annotated or prompted slices), or
    with ``stats`` computed from them once (``zscore_stats``)."""
    mu, sd = zscore_stats(ref) if stats is None else stats
    return ((np.asarray(crops, np.float64) - mu) / sd).astype(np.float32)
