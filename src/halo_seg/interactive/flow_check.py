"""A second, training-free tracker as a check on the propagation: optical flow from the nearest annotation.

The memory network and optical flow follow an object about equally well inside it
(benchmarks/flow_baseline.py) but fail in different places: the network drifts onto touching tissue
of equal intensity, flow keeps to edges. Where the two disagree on a slice, the propagated mask is
likely wrong there, so their agreement is a feature of the reported quality (quality.FEATURES,
"flow_agree"). Everything is in crop space (the ROI resized to the network's input size), where the
flow between two slices costs about 20 ms; flows are cached per ROI, since they do not depend on
any mask and the ROI usually stays put from one round to the next.
"""
from __future__ import annotations

import numpy as np


class FlowCache:
    """Flow fields between neighbouring crop slices of one ROI column; a new ROI empties it."""

    def __init__(self):
        self.key, self.flows = None, {}

    def flow(self, key, images: np.ndarray, src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
        """(v, u): where each pixel of slice ``dst`` comes from in slice ``src``."""
        from skimage.registration import optical_flow_ilk   # only this feature needs it
        if key != self.key:
            self.key, self.flows = key, {}
        if (src, dst) not in self.flows:
            self.flows[src, dst] = optical_flow_ilk(images[dst], images[src], radius=4)
        return self.flows[src, dst]


def flow_agreement(images: np.ndarray, ann: dict[int, np.ndarray], masks: dict[int, np.ndarray],
                   cache: FlowCache, key) -> dict[int, float]:
    """z -> Dice of ``masks[z]`` (the propagated crop mask) with the nearest annotated slice's mask
    carried to z by optical flow, slice by slice; 1 where both are empty.

    images: (Z, S, S) normalised crop images; ann: annotated slice -> (S, S) bool crop mask (those
    with the object are the flow's starting points, the same nearest one the quality features use);
    masks: propagated slices -> (S, S) bool; key: identifies the ROI column for the cache.
    """
    from skimage.transform import warp
    starts = sorted(z for z, m in ann.items() if m.any())
    if not starts or not masks:
        return {}
    near = {z: min(starts, key=lambda a: (abs(a - z), a)) for z in masks}
    n = images.shape[-1]
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    out = {}
    for a in starts:
        for step in (1, -1):
            todo = [z for z in masks if near[z] == a and (z - a) * step > 0]
            if not todo:
                continue
            cur, z = ann[a].astype(np.float32), a
            for nxt in range(a + step, max(todo) + 1 if step > 0 else min(todo) - 1, step):
                v, u = cache.flow(key, images, z, nxt)
                cur = warp(cur, np.array([rows + v, cols + u]), mode="constant", order=1)
                z = nxt
                if nxt in masks and near[nxt] == a:
                    out[nxt] = _dice(masks[nxt], cur > 0.5)
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = float(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / total
