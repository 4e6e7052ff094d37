"""RT structure sets (RTSTRUCT: the contours a radiotherapy planning system or a PACS exchanges),
in and out.

In (open_rtstruct): a structure set as a label volume on the grid of the series it was drawn on,
found beside it. Each closed planar contour is filled on the slice it lies on (a pixel is inside
when its centre is); several contours of one structure on one slice combine by exclusive or, so a
contour inside another is a hole, as the standard's planning systems draw them. Each structure is
a label, its ROI number (numbered in the set's order where those do not fit 1..65535). Structures
overlap (an organ inside the body outline): the smaller one is kept where they do, so none
disappears under a larger one, and ``meta["overlap"]`` counts the voxels two structures claim. A
contour that does not lie on a slice of the series is refused rather than moved onto one.

Out (write_rtstruct): a structure per label value, each slice's outlines traced along the pixel
edges, so that filling them as above gives the labels back exactly. Hand-written on pydicom: the
library that writes structure sets from masks (rt-utils) needs OpenCV and rounds contour points to
whole pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .volume import Volume, VolumeError

SLICE_TOL = 0.1   # of a slice spacing: contour points this far off a slice's plane are refused
CONTOUR_DATA = 0x30060050


def _referenced_series(ds) -> str:
    for ref in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        for study in getattr(ref, "RTReferencedStudySequence", []):
            for series in getattr(study, "RTReferencedSeriesSequence", []):
                return str(series.SeriesInstanceUID)
    raise VolumeError("the structure set names no series it was drawn on (ReferencedFrameOfReferenceSequence)")


def _contour_points(c) -> np.ndarray:
    """A contour's points (N, 3), parsed from the file's text at once: pydicom converting them one
    decimal string at a time took most of the time reading a structure set."""
    from pydicom.dataelem import RawDataElement
    raw = c.get_item(CONTOUR_DATA)
    if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
        try:
            return np.array(raw.value.decode("ascii").split("\\"), float).reshape(-1, 3)
        except ValueError:   # not plain decimal strings: let pydicom say what is wrong
            pass
    return np.asarray(c.ContourData, float).reshape(-1, 3)


def fill_even_odd(outlines: list, shape) -> np.ndarray:
    """The pixels of a ``shape`` slice whose centres lie inside an odd number of the closed
    ``outlines`` ((row, column) points each): several outlines of one structure combine by exclusive
    or, so one inside another is a hole. A scanline fill: each outline's edges are crossed with the
    rows once, where testing every pixel of the box against every edge (skimage.draw.polygon) took
    seconds for a body outline of a thousand points."""
    rows_n, cols_n = int(shape[0]), int(shape[1])
    a = np.concatenate([np.asarray(o, float) for o in outlines])
    b = np.concatenate([np.roll(np.asarray(o, float), -1, axis=0) for o in outlines])
    a, b = a[a[:, 0] != b[:, 0]], b[a[:, 0] != b[:, 0]]   # level edges cross no row
    lo = np.ceil(np.minimum(a[:, 0], b[:, 0])).astype(np.int64)
    hi = np.ceil(np.maximum(a[:, 0], b[:, 0])).astype(np.int64)   # rows lo .. hi - 1: each vertex counted once
    lo, hi = np.clip(lo, 0, rows_n), np.clip(hi, 0, rows_n)
    n = np.maximum(hi - lo, 0)
    edge = np.repeat(np.arange(len(a)), n)
    row = lo[edge] + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    x = a[edge, 1] + (row - a[edge, 0]) * (b[edge, 1] - a[edge, 1]) / (b[edge, 0] - a[edge, 0])
    order = np.lexsort((x, row))   # along each row, left to right; an even count per row (closed outlines)
    row, x = row[order].reshape(-1, 2), x[order].reshape(-1, 2)
    start = np.clip(np.ceil(x[:, 0]), 0, cols_n).astype(np.int64)   # centres c with x_in <= c < x_out
    stop = np.clip(np.ceil(x[:, 1]), 0, cols_n).astype(np.int64)
    steps = np.zeros((rows_n, cols_n + 1), np.int32)
    np.add.at(steps, (row[:, 0], start), 1)
    np.add.at(steps, (row[:, 0], stop), -1)
    return np.cumsum(steps, axis=1)[:, :cols_n] > 0


def open_rtstruct(path) -> Volume:
    import pydicom

    from .dicom import LPS_TO_RAS
    from .dicom_seg import labelled_series, labels_on_series
    from .geometry import KEY, best_affine
    from .labels import smaller_on_top
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
    filled = {}   # structure -> {slice: its pixels there}: a whole volume per structure would not fit for long
    for roi in getattr(ds, "ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        on_slice: dict[int, list] = {}
        for c in getattr(roi, "ContourSequence", []):
            if str(getattr(c, "ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue   # points and open lines (markers, a couch edge) enclose no voxels
            pts = _contour_points(c)
            xyz = (to_voxel @ np.c_[pts, np.ones(len(pts))].T)[:3].T
            k = int(round(float(xyz[:, 2].mean())))
            if np.abs(xyz[:, 2] - k).max() > SLICE_TOL or not 0 <= k < shape[0]:
                raise VolumeError(f"{path.name}: a contour of '{names.get(number, number)}' does not lie on a slice "
                                  f"of the series {folder} (it is {np.abs(xyz[:, 2] - k).max():.2f} slices off "
                                  f"slice {k}, or outside the volume)")
            on_slice.setdefault(k, []).append(xyz[:, [1, 0]])
        planes = {k: fill_even_odd(outlines, shape[1:]) for k, outlines in on_slice.items()}
        planes = {k: m for k, m in planes.items() if m.any()}
        if planes:
            filled[number] = planes
        if number not in order:
            order.append(number)
    if not filled:
        raise VolumeError(f"{path.name} holds no closed contour on the series {folder}")
    # each structure's ROI number is its label (a set written here numbers them by label value), as
    # a SEG's segments keep theirs; numbers a label volume cannot hold: numbered in the set's order
    value = {n: n for n in filled} if all(0 < n <= 65535 for n in filled) else \
        {n: i + 1 for i, n in enumerate(n for n in order if n in filled)}
    labels, overlap = smaller_on_top({value[n]: list(planes.items()) for n, planes in filled.items()}, shape)
    return labels_on_series(labels, vol, path, "dicom rtstruct", overlap,
                            {value[n]: names.get(n, str(n)) for n in value})


RT_SUFFIX = ".rtstruct.dcm"   # a path ending so gets an RT structure set; any other .dcm a DICOM SEG
# Detached Study Management: the SOP class the standard still asks an RT study reference to name
_STUDY_CLASS = "1.2.840.10008.3.1.2.3.1"
_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def wants_rtstruct(path, read_as: str | None = None) -> bool:
    """Whether labels saved to the DICOM ``path`` become an RT structure set rather than a SEG: a
    name ending in .rtstruct.dcm, or labels read from a structure set (``read_as``, their format),
    which go back as what they came as."""
    return str(path).lower().endswith(RT_SUFFIX) or read_as == "dicom rtstruct"


def slice_contours(mask: np.ndarray) -> list[np.ndarray]:
    """The closed outlines of a 2D mask's pixels, (row, column) points on the pixel edges, outer
    outlines and holes alike: filled by exclusive or with a pixel inside when its centre is (as
    open_rtstruct and planning systems fill them), they give back the mask exactly. Diagonal
    neighbours are separate outlines that touch, not one that pinches through the background."""
    from skimage.measure import find_contours
    padded = np.pad(mask.astype(np.uint8), 1)   # outlines close along the image border too
    out = []
    for c in find_contours(padded, 0.5, fully_connected="low"):
        c = c[:-1] - 1.0                                   # closed: the last point repeats the first
        into, out_of = c - np.roll(c, 1, axis=0), np.roll(c, -1, axis=0) - c
        turn = np.abs(into[:, 0] * out_of[:, 1] - into[:, 1] * out_of[:, 0]) > 1e-6
        c = c[turn]                                        # points along a straight edge say nothing
        if len(c) >= 3:
            out.append(c)
    return out


def _ds_element(tag: int, values: np.ndarray):
    """A decimal-string element already encoded: pydicom validating each of a structure set's
    hundreds of thousands of coordinates took most of the time writing it."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag
    text = "\\".join(f"{v:.4f}" for v in values).encode("ascii")
    text += b" " * (len(text) % 2)   # DICOM values have even length
    return RawDataElement(Tag(tag), "DS", len(text), text, 0, False, True)


def write_rtstruct(labels, series, path, names: dict | None = None, automatic: bool = False) -> Path:
    """Write the (Z, Y, X) ``labels`` computed on the DICOM ``series`` (a folder, or one of its files)
    as an RT structure set at ``path``: a structure (ROI) per label value, named by ``names`` (value
    -> name; default 'object N'), each slice's outlines as closed planar contours on the image they
    lie on. A radiotherapy planning system takes contours in this form where it takes no DICOM SEG.
    """
    import datetime

    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
    from .. import __version__
    from .dicom import LPS_TO_RAS, open_series
    from .dicom_seg import _frame_slices
    from .geometry import best_affine
    from .labels import check_label_dtype, label_ids
    vol = open_series(series)
    arr = np.asarray(labels)
    if arr.shape != vol.shape:
        raise VolumeError(f"labels of shape {arr.shape} are not on the grid of the DICOM series {series} {vol.shape}")
    check_label_dtype(arr.dtype)
    values = label_ids(arr, what="the labels")
    if not values:
        raise VolumeError("the labels are empty: an RT structure set needs at least one labelled voxel")
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in vol.meta["files"]]
    head = heads[0]
    if vol.meta.get("multiframe"):   # one image: slice k is one of its frames
        frame = {k: f + 1 for f, k in enumerate(_frame_slices(head, vol.meta["geometry"]))}
        images = [(head, frame[k]) for k in range(vol.shape[0])]
    else:
        images = [(h, None) for h in heads]
    to_lps = LPS_TO_RAS @ best_affine(vol.meta["geometry"])   # (x, y, z) voxel -> LPS mm

    def image_ref(h, frame_number):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = h.SOPClassUID, h.SOPInstanceUID
        if frame_number is not None:
            ref.ReferencedFrameNumber = frame_number
        return ref

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = RTStructureSetStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"   # UTF-8: structure names in any language
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, meta.MediaStorageSOPInstanceUID
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "FrameOfReferenceUID"):
        setattr(ds, key, getattr(head, key, ""))
    now = datetime.datetime.now()
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = "RTSTRUCT", generate_uid(), 9001, 1
    ds.OperatorsName, ds.Manufacturer, ds.SoftwareVersions = "", "napari-halo-seg", __version__
    ds.StructureSetLabel, ds.StructureSetName = "HALOSEG", "segmentation from napari-halo-seg"
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = str(head.SeriesInstanceUID)
    series_ref.ContourImageSequence = Sequence([image_ref(h, f) for h, f in images])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID, study_ref.ReferencedSOPInstanceUID = _STUDY_CLASS, str(head.StudyInstanceUID)
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = ds.FrameOfReferenceUID
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = Sequence(), Sequence(), Sequence()
    names = names or {}
    if not str(getattr(head, "FrameOfReferenceUID", "")):
        raise VolumeError(f"{vol.meta['files'][0]} names no FrameOfReferenceUID, which contours are placed in")
    boxes = _boxes(arr, values)
    for v in values:
        n = v   # the ROI number is the label value, which open_rtstruct gives back
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID = n, ds.FrameOfReferenceUID
        roi.ROIName = str(names.get(v, f"object {v}"))[:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC" if automatic else "SEMIAUTOMATIC"
        ds.StructureSetROISequence.append(roi)
        box = boxes[v]
        z0, y0, x0 = (s.start for s in box)
        contours = Sequence()
        for k, plane in enumerate(arr[box] == v, start=z0):
            for rc in slice_contours(plane):
                xyz1 = np.c_[rc[:, 1] + x0, rc[:, 0] + y0, np.full(len(rc), k), np.ones(len(rc))]
                pts = (to_lps @ xyz1.T)[:3].T
                c = Dataset()
                c.ContourImageSequence = Sequence([image_ref(*images[k])])
                c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", len(pts)
                c[CONTOUR_DATA] = _ds_element(CONTOUR_DATA, pts.ravel())
                contours.append(c)
        item = Dataset()
        item.ReferencedROINumber, item.ROIDisplayColor = n, list(_COLOURS[(v - 1) % len(_COLOURS)])
        item.ContourSequence = contours
        ds.ROIContourSequence.append(item)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = n, n
        obs.RTROIInterpretedType, obs.ROIInterpreter = "", ""
        ds.RTROIObservationsSequence.append(obs)
    for item in ds.ROIContourSequence:   # encoded as they will be written: pydicom then writes the points as they are
        for c in item.ContourSequence:
            c.set_original_encoding(False, True, c._character_set)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.writing")   # an error leaves the file that was there whole
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    return path


def _boxes(arr: np.ndarray, values: list[int]) -> dict:
    """Each label's bounding box (slices), so that only its slices and rows are traced."""
    from scipy import ndimage
    lab = arr.view(np.uint8) if arr.dtype == bool else arr
    if values[-1] <= 65535:   # find_objects lists every id up to the largest
        found = ndimage.find_objects(lab)
        return {v: found[v - 1] for v in values}
    return {v: ndimage.find_objects((lab == v).view(np.uint8))[0] for v in values}
