"""Labels of a DICOM series as a DICOM Segmentation object (SEG), the form in which a PACS, OHIF,
3D Slicer or another hospital system takes a segmentation back beside the images it was drawn on.

One segment per label value, each frame referencing its source image. highdicom writes the object
and checks it against the standard. Hand-building the SEG module's functional groups would repeat
that library's work without its checks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .volume import SEGMENT_NAMES, Volume, VolumeError

SEG_SUFFIXES = (".dcm",)
SERIES_KEY = "dicom_series"   # napari layer metadata: the series folder a layer's labels belong to


def write_dicom_seg(labels, series, path, names: dict | None = None, automatic: bool = False) -> Path:
    """Write the (Z, Y, X) ``labels`` computed on the DICOM ``series`` (a folder, or one of its files)
    as a DICOM SEG file at ``path``. ``names``: label value -> segment label (default 'object N');
    ``automatic``: the labels come from the automatic engine (else from interactive work)."""
    try:
        import highdicom as hd
        from pydicom.sr.codedict import codes
    except ImportError as exc:   # an optional extra: say how to get it
        raise VolumeError("writing DICOM SEG needs highdicom: pip install 'napari-halo-seg[dicom]'") from exc
    import pydicom
    from .. import __version__
    from .dicom import open_series
    from .labels import check_label_dtype, label_ids
    vol = open_series(series)
    arr = np.asarray(labels)
    if arr.shape != vol.shape:
        raise VolumeError(f"labels of shape {arr.shape} are not on the grid of the DICOM series {series} "
                          f"{vol.shape}")
    check_label_dtype(arr.dtype)
    values = label_ids(arr, what="the labels")   # refuses negative ids
    if not values:
        raise VolumeError("the labels are empty: a DICOM SEG needs at least one labelled voxel")
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in vol.meta["files"]]   # headers suffice
    if vol.meta.get("multiframe"):   # SEG frames follow the source file's frames, whatever their order
        arr = arr[_frame_slices(sources[0], vol.meta["geometry"])]
    # segment numbers 1..K in label order; the label value stays in the segment's label
    number = np.zeros(max(values) + 1, np.uint16)
    number[values] = np.arange(1, len(values) + 1)
    algo = hd.AlgorithmIdentificationSequence(name="napari-halo-seg", version=__version__,
                                              family=codes.cid7162.ArtificialIntelligence)
    kind = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if automatic else \
        hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
    names = names or {}
    descriptions = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=str(names.get(v, f"object {v}"))[:64],
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.AnatomicalStructure, algorithm_type=kind,
        algorithm_identification=algo, tracking_id=f"label {v}", tracking_uid=hd.UID())
        for i, v in enumerate(values)]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=number[arr], segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="napari-halo-seg",
        manufacturer_model_name="halo-seg", software_versions=__version__, device_serial_number="none",
        content_label="HALOSEG", content_description="segmentation from napari-halo-seg")
    path = Path(path)
    seg.save_as(str(path))
    return path


def _frame_slices(ds, geometry) -> list[int]:
    """For each frame of a multi-frame image, in file order, the volume slice it is (from its
    position), so that SEG frame i labels source frame i even where frames are not in slice order."""
    from .dicom import LPS_TO_RAS
    from .geometry import best_affine
    inv = np.linalg.inv(best_affine(geometry))
    out = []
    for f, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        lps = np.append(np.asarray(group.PlanePositionSequence[0].ImagePositionPatient, float), 1.0)
        k = (inv @ (LPS_TO_RAS @ lps))[2]
        if abs(k - round(k)) > 1e-2 or not 0 <= round(k) < geometry["shape"][0]:
            raise VolumeError(f"frame {f + 1} of the source image lies on no slice of its volume")
        out.append(int(round(k)))
    return out


def _series_folder(uid: str, near: Path) -> Path | None:
    """The folder holding images of the DICOM series ``uid``: ``near`` (the SEG's own folder), or
    one near it (_nearby: beside it, in it, or in a folder beside it)."""
    import pydicom
    from .dicom import NOT_IMAGES, dicom_files
    for folder in _nearby(near):
        for f in dicom_files(folder)[:16]:
            try:
                ds = pydicom.dcmread(str(f), stop_before_pixels=True,
                                     specific_tags=["SeriesInstanceUID", "Modality"])
            except Exception:   # a damaged file is not the series looked for
                continue
            if str(getattr(ds, "Modality", "")) not in NOT_IMAGES:
                if str(getattr(ds, "SeriesInstanceUID", "")) == uid:
                    return folder
                break   # a folder of another series
    return None


def _nearby(near: Path, depth: int = 3, most: int = 400):
    """``near``, then the folders in it (down to ``depth`` - 1 levels: a case folder holding its
    series), then those down to ``depth`` levels below its parent, breadth first: beside it and in
    the folders beside it (labels exported to a work folder beside the data's, a study exported a
    folder per series); at most ``most`` of each. A zarr store's folders are not gone into (its
    chunks, never DICOM: a few stores beside it used up the folders looked into)."""
    from .dicom import folders_below

    def into(folder: Path) -> bool:
        return not folder.name.lower().endswith(".zarr") and folder != near
    yield near
    inside = list(folders_below(near, depth - 1, into=into, most=most))
    yield from inside
    seen = set(inside)
    yield from (f for f in folders_below(near.parent, depth, into=into, most=most) if f != near and f not in seen)


def labelled_series(uid: str, path: Path, what: str) -> Volume:
    """The series ``uid`` that the object at ``path`` (``what``: a SEG, a structure set) labels, found
    in its folder or one near it (_nearby), else a VolumeError saying where it was looked for."""
    from .dicom import open_series
    folder = _series_folder(uid, path.resolve().parent)   # absolute: "." has no folders beside it
    if folder is None:
        raise VolumeError(f"{path.name} labels the DICOM series {uid}, which is neither in its folder nor in a "
                          f"folder in or beside it, or in one of those: put {what} with (or beside) the images it "
                          "labels")
    return open_series(folder, series_uid=uid)


def labels_on_series(labels: np.ndarray, vol: Volume, path: Path, fmt: str, overlap: int, names: dict) -> Volume:
    """Labels read from the object at ``path`` (a SEG, a structure set) as a Volume on its series
    ``vol``: its grid and geometry, the series to save back onto, the names of the labels."""
    import dask.array as da
    meta = {"format": fmt, "unit": "mm", "labels": True, "geometry": vol.meta["geometry"], SERIES_KEY: vol.source,
            "overlap": overlap, SEGMENT_NAMES: names}
    return Volume(da.from_array(labels, chunks=(min(32, labels.shape[0]),) + labels.shape[1:]),
                  spacing=vol.spacing, source=str(path), spacing_known=True, meta=meta)


def open_seg(path) -> Volume:
    """A DICOM SEG file as a label volume on the grid of the series it labels, found beside it: each
    segment a label (the label value written here, else its segment number). A voxel two segments
    claim keeps the first's label, and ``meta["overlap"]`` counts them."""
    try:
        import highdicom as hd
    except ImportError as exc:
        raise VolumeError(f"{Path(path).name} is a DICOM SEG; reading it needs highdicom: "
                          "pip install 'napari-halo-seg[dicom]'") from exc
    import re

    import pydicom
    path = Path(path)
    try:
        seg = hd.seg.segread(str(path))
        uid = str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    except Exception as exc:   # a damaged SEG, or one that names no series
        raise VolumeError(f"cannot read the DICOM SEG {path}: {exc}") from exc
    vol = labelled_series(uid, path, "the SEG")
    files = vol.meta["files"]
    if vol.meta.get("multiframe"):   # the frames of one image, or the image of each slice: read once
        head = pydicom.dcmread(files[0], stop_before_pixels=True)
        at = _frame_slices(head, vol.meta["geometry"])
    else:
        uids = [str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
                for f in files]
    labels = np.zeros(vol.shape, np.uint16)
    overlap, names = 0, {}
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        tracking = getattr(description, "tracking_id", None) or ""
        found = re.fullmatch(r"label (\d+)", str(tracking))
        value = int(found.group(1)) if found else int(number)
        names[value] = str(getattr(description, "segment_label", "") or "")
        kw = dict(segment_numbers=[number], ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
        try:
            if vol.meta.get("multiframe"):
                frames = seg.get_pixels_by_source_frame(
                    str(head.SOPInstanceUID), source_frame_numbers=list(range(1, vol.shape[0] + 1)), **kw)[..., 0]
                px = np.zeros(vol.shape, bool)
                px[at] = frames > 0.5
            else:
                px = seg.get_pixels_by_source_instance(uids, **kw)[..., 0] > 0.5
        except Exception as exc:   # frames that reference images outside the series, ...
            raise VolumeError(f"{path.name}: segment {number} does not lie on the series {vol.source}: {exc}") from exc
        overlap += int((px & (labels != 0)).sum())
        labels[px & (labels == 0)] = value
    return labels_on_series(labels, vol, path, "dicom seg", overlap, names)
