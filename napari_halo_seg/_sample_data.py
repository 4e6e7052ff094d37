"""napari sample data: the shipped Colin27 2 mm volume, a generated phantom and a generated
time-lapse of dividing cells, each with labels.
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


def dividing_cells():
    """12 time points of procedural cells moving and dividing (halo_seg.tracking.phantom), with a
    threshold of the movie as their labels, as a simple segmentation would give: what the Objects
    widget's "follow them over time" takes (touching daughters want "split touching objects")."""
    from scipy import ndimage as ndi

    from halo_seg.tracking.phantom import cell_timelapse
    tl = cell_timelapse(shape=(32, 96, 96), cells=14, timepoints=12, radius=5.0, speed=1.5, divisions=3, seed=21)
    masks = (ndi.gaussian_filter(tl.image, (0, 1, 1, 1)) > 0.5).astype(np.uint8)
    scale = (1.0, 0.5, 0.5, 0.5)   # 0.5 µm voxels, as a light-sheet microscope's
    return [(tl.image, {"name": "dividing cells", "scale": scale, "metadata": {"unit": "µm"}}, "image"),
            (masks, {"name": "dividing cells mask", "scale": scale, "metadata": {"unit": "µm"}, "opacity": 0.5},
             "labels")]
