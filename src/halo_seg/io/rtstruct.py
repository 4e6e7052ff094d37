"""An RT structure set (RTSTRUCT: the contours a radiotherapy planning system or a PACS exports) as
a label volume on the grid of the series it was drawn on, found beside it.

Each closed planar contour is filled on the slice it lies on (a pixel is inside when its centre
is, skimage.draw.polygon2mask); several contours of one structure on one slice combine by
exclusive or, so a contour inside another is a hole, as the standard's planning systems draw
them. Each structure is a label, numbered in the structure set's order. Structures overlap (an
organ inside the body outline): the smaller one is kept where they do, so none disappears under
a larger one, and ``meta["overlap"]`` counts the voxels two structures claim. A contour that does
not lie on a slice of the series is refused rather than moved onto one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .volume import Volume, VolumeError

SLICE_TOL = 0.1   # of a slice spacing: contour points this far off a slice's plane are refused


def _referenced_series(ds) -> str:
    for ref in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        for study in getattr(ref, "RTReferencedStudySequence", []):
            for series in getattr(study, "RTReferencedSeriesSequence", []):
                return str(series.SeriesInstanceUID)
    raise VolumeError("the structure set names no series it was drawn on (ReferencedFrameOfReferenceSequence)")


def open_rtstruct(path) -> Volume:
    import pydicom
    from skimage.draw import polygon2mask

    from .dicom import LPS_TO_RAS
    from .dicom_seg import labelled_series, labels_on_series
    from .geometry import KEY, best_affine
    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
        uid = _referenced_series(ds)
    except VolumeError as exc:
        raise VolumeError(f"{path.name}: {exc}") from None
    except Exception as exc:   # a damaged file
        raise VolumeError(f"cannot read the RT structure set {path}: {exc}") from exc
    vol = labelled_series(uid, path, "the structure set")
    folder, shape = vol.source, vol.shape
    to_voxel = np.linalg.inv(best_affine(vol.meta[KEY])) @ LPS_TO_RAS   # LPS mm -> (x, y, z) voxel
    names = {int(r.ROINumber): str(getattr(r, "ROIName", "")) for r in getattr(ds, "StructureSetROISequence", [])}
    order = list(names)
    masks = {}
    for roi in getattr(ds, "ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        mask = np.zeros(shape, bool)
        for c in getattr(roi, "ContourSequence", []):
            if str(getattr(c, "ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue   # points and open lines (markers, a couch edge) enclose no voxels
            pts = np.asarray(c.ContourData, float).reshape(-1, 3)
            xyz = (to_voxel @ np.c_[pts, np.ones(len(pts))].T)[:3].T
            k = int(round(float(xyz[:, 2].mean())))
            if np.abs(xyz[:, 2] - k).max() > SLICE_TOL or not 0 <= k < shape[0]:
                raise VolumeError(f"{path.name}: a contour of '{names.get(number, number)}' does not lie on a slice "
                                  f"of the series {folder} (it is {np.abs(xyz[:, 2] - k).max():.2f} slices off "
                                  f"slice {k}, or outside the volume)")
            mask[k] ^= polygon2mask(shape[1:], xyz[:, [1, 0]])
        if mask.any():
            masks[number] = mask
        if number not in order:
            order.append(number)
    if not masks:
        raise VolumeError(f"{path.name} holds no closed contour on the series {folder}")
    value = {n: i + 1 for i, n in enumerate(n for n in order if n in masks)}
    labels = np.zeros(shape, np.uint16)
    overlap = 0
    for number in sorted(masks, key=lambda n: -int(masks[n].sum())):   # larger first: smaller ones on top
        overlap += int((masks[number] & (labels != 0)).sum())
        labels[masks[number]] = value[number]
    return labels_on_series(labels, vol, path, "dicom rtstruct", overlap,
                            {value[n]: names.get(n, str(n)) for n in value})
