"""napari sample data: the shipped Colin27 2 mm volume and a generated phantom, each with labels."""
from __future__ import annotations

import numpy as np

from halo_seg.samples import load_colin27_sample, make_phantom


def colin27():
    s = load_colin27_sample()
    mm = {"unit": "mm"}   # a NIfTI scan: its spacing is in mm, so objects measure in mL
    return [(s.image, {"name": "colin27 T1", "scale": s.spacing, "metadata": mm}, "image"),
            (s.labels, {"name": "AAL subcortical (truth)", "scale": s.spacing, "opacity": 0.4,
                        "visible": False, "metadata": mm}, "labels")]


def phantom():
    s = make_phantom()
    return [(s.image, {"name": "phantom", "scale": s.spacing}, "image"),
            (s.labels.astype(np.uint8), {"name": "phantom truth", "opacity": 0.4, "visible": False}, "labels")]
