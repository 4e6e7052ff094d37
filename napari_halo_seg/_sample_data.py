"""napari sample data: the shipped Colin27 2 mm volume and a generated phantom, each with labels.
Colin27 opens through the plugin's reader, as its files would: placed in the scan's space (napari's
coordinates are its millimetres, and labels drawn on it save where it lies), the structures' names
under the cursor."""
from __future__ import annotations

import numpy as np

from halo_seg.samples import SUBCORTICAL, make_phantom, sample_dir


def colin27():
    from ._reader import read_volume
    d = sample_dir()
    [(image, ikw, ik)] = read_volume(str(d / "colin27_2mm_t1.nii.gz"))
    [(labels, lkw, lk)] = read_volume(str(d / "colin27_2mm_aal12.nii.gz"))
    ikw["name"] = "colin27 T1"
    lkw.update(name="AAL subcortical (truth)", opacity=0.4, visible=False,
               features={"index": list(SUBCORTICAL), "name": list(SUBCORTICAL.values())})
    return [(image, ikw, ik), (labels, lkw, lk)]


def phantom():
    s = make_phantom()
    return [(s.image, {"name": "phantom", "scale": s.spacing}, "image"),
            (s.labels.astype(np.uint8), {"name": "phantom truth", "opacity": 0.4, "visible": False}, "labels")]
