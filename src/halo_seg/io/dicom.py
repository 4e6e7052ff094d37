"""A DICOM series (a folder of single-frame CT or MR slices, as a PACS or a scanner exports them) as
a lazy (Z, Y, X) volume with its scan geometry.

Slices are ordered by their position along the slice normal, never by file name or instance
number. Z follows that normal, Y the rows and X the columns of the images. The geometry
(io.geometry) is the series' own, converted from DICOM's patient LPS coordinates to NIfTI's RAS.
Labels computed on the volume are therefore exported as NIfTI that overlays the series in 3D
Slicer or ITK-SNAP, as dcm2niix's conversion of it would. A tilted CT gantry (slices offset within
their plane) is kept as the shear it is, in the sform, rather than resampled. Headers are read
once. Each slice's pixels are read when a block of the volume needs them. An enhanced
(multi-frame) image, one file for the whole series, is read whole through highdicom.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .geometry import from_affine, spacing_of
from .volume import Volume, VolumeError

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
POSITION_TOL = 0.01   # relative: slice steps may differ by 1 % (rounding in the headers), no more
# objects that share a folder with the images they describe (a PACS or TCIA export, a SEG saved
# beside its series) but are no image slices themselves
NOT_IMAGES = {"SEG": "a DICOM SEG (labels)", "RTSTRUCT": "an RT structure set (contours)", "RTPLAN": "an RT plan",
              "RTRECORD": "an RT treatment record", "SR": "a structured report", "PR": "a presentation state",
              "KO": "a key object selection", "REG": "a registration", "DOC": "a document"}


def is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble, whatever their name."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly inside a folder (not DICOMDIR, which indexes a medium)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.name.upper() != "DICOMDIR" and is_dicom_file(p))


def looks_like_series(path: Path) -> bool:
    path = Path(path)
    if path.is_file():
        return path.name.lower().endswith(DICOM_SUFFIXES) or is_dicom_file(path)
    return path.is_dir() and any(is_dicom_file(p) for p in list(path.iterdir())[:64] if p.is_file())


def folders_below(root: Path, depth: int, into=lambda folder: True, most: int | None = None):
    """The folders below ``root`` down to ``depth`` levels, breadth first and in name order (hidden
    ones left out), going into those ``into`` accepts; at most ``most`` of them."""
    level, seen = [Path(root)], 0
    for _ in range(depth):
        deeper = []
        for d in level:
            try:
                subs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:   # unreadable: not the user's series
                continue
            for sub in subs:
                seen += 1
                if most is not None and seen > most:
                    return
                yield sub
                if into(sub):
                    deeper.append(sub)
        level = deeper


def series_folders(folder: Path, depth: int = 5, most: int | None = None):
    """The folders below ``folder`` that hold DICOM files (a PACS or CD export's patient / study /
    series tree, never into a series' own folder), with their first file's header (Modality,
    SeriesDescription; None for a damaged one), after looking into at most ``most`` folders."""
    import pydicom
    for sub in folders_below(folder, depth, into=lambda f: not looks_like_series(f), most=most):
        if looks_like_series(sub):
            try:
                yield sub, pydicom.dcmread(str(dicom_files(sub)[0]), stop_before_pixels=True,
                                           specific_tags=["Modality", "SeriesDescription"])
            except Exception:   # a damaged first file: said by whoever opens the series
                yield sub, None


def description(ds) -> str:
    return str(getattr(ds, "SeriesDescription", "") or "").strip()


def series_below(folder: Path, depth: int = 4, most: int = 50, look: int = 2000) -> list[tuple[Path, str]]:
    """The folders below ``folder`` (series_folders) each with what it holds in words: modality,
    description, file count; at most ``most`` of them, after looking into at most ``look`` folders."""
    found = []
    for sub, ds in series_folders(folder, depth, most=look):
        if len(found) >= most:
            break
        files = len(dicom_files(sub))
        count = f"{files} file{'' if files == 1 else 's'}"
        if ds is None:
            found.append((sub, count))
            continue
        modality = str(getattr(ds, "Modality", "") or "?")
        desc = description(ds)
        found.append((sub, f"{NOT_IMAGES.get(modality, modality)}{f' {desc!r}' if desc else ''}, {count}"))
    return found


def series_below_error(folder: Path, found: list) -> "VolumeError":
    listed = "; ".join(f"{p.relative_to(folder)} ({what})" for p, what in found[:12])
    several = "s" if len(found) > 1 else ""
    return VolumeError(f"{folder} holds no volume itself, but DICOM series in the folder{several} "
                       f"below it: {listed}{' ...' if len(found) > 12 else ''}. Open one of them (its folder, "
                       "or one of its files): which series is meant is yours to choose")


def _tag(ds, name: str, path: Path):
    value = getattr(ds, name, None)
    if value is None or value == "":
        raise VolumeError(f"{path.name}: the DICOM tag {name} is missing; it is needed to place the slice "
                          f"in the volume")
    return value


def open_series(path, series_uid: str | None = None) -> Volume:
    """A folder holding one DICOM series (or one file of it: its folder is read) as a Volume; with
    ``series_uid``, that series of the folder. A DICOM SEG or RT structure set file opens as the
    labels it holds, on its series' grid (io.dicom_seg.open_seg, io.rtstruct). Other objects in the
    folder (SEG, RT structures, reports) are not slices and are passed over."""
    import pydicom
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if path.is_file() and not is_dicom_file(path):
        raise VolumeError(f"{path} is not a DICOM file (no 'DICM' marker after its 128-byte preamble)")
    if path.is_file() and series_uid is None:
        try:
            modality = str(getattr(pydicom.dcmread(str(path), stop_before_pixels=True), "Modality", ""))
        except Exception as exc:   # pydicom raises several types for damaged files
            raise VolumeError(f"cannot read DICOM {path}: {exc}") from exc
        if modality == "SEG":
            from .dicom_seg import open_seg
            return open_seg(path)
        if modality == "RTSTRUCT":
            from .rtstruct import open_rtstruct
            return open_rtstruct(path)
        if modality in NOT_IMAGES:
            raise VolumeError(f"{path.name} is {NOT_IMAGES[modality]}, not an image: open the series it belongs to")
    files = dicom_files(folder)
    if not files:
        found = series_below(folder)   # a CD's root: a DICOMDIR, the series in folders below
        if found:
            raise series_below_error(folder, found)
        raise VolumeError(f"{folder}: no DICOM files in this folder")
    headers, others = [], []
    for p in files:
        try:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        except Exception as exc:   # pydicom raises several types for damaged files
            raise VolumeError(f"cannot read DICOM {p}: {exc}") from exc
        (others if str(getattr(ds, "Modality", "")) in NOT_IMAGES else headers).append((p, ds))
    if not headers:
        kinds = ", ".join(sorted({NOT_IMAGES[str(ds.Modality)] for _, ds in others}))
        raise VolumeError(f"{folder} holds no DICOM images, only {kinds} ({', '.join(p.name for p, _ in others[:4])}"
                          f"{' ...' if len(others) > 4 else ''}): open the folder of the series they belong to, "
                          "or a SEG file itself")
    series: dict[str, list] = {}
    for p, ds in headers:
        series.setdefault(str(getattr(ds, "SeriesInstanceUID", "?")), []).append((p, ds))
    if path.is_file() or series_uid is not None:
        mine = series_uid or str(getattr(dict(headers)[path], "SeriesInstanceUID", "?"))
        if mine not in series:
            raise VolumeError(f"{folder} holds no images of the DICOM series {mine}")
        series = {mine: series[mine]}
    if len(series) > 1:
        listed = "; ".join(f"{uid} ({getattr(h[0][1], 'SeriesDescription', '') or 'no description'}, "
                           f"{len(h)} files)" for uid, h in series.items())
        raise VolumeError(f"{folder} holds {len(series)} DICOM series: {listed}. Open one series: its own "
                          f"folder, or one of its files")
    (uid, members), = series.items()
    return _volume(folder, uid, members)


def _volume(folder: Path, uid: str, members: list) -> Volume:
    first_path, first = members[0]
    if int(getattr(first, "NumberOfFrames", 1) or 1) > 1:
        if len(members) > 1:
            raise VolumeError(f"{folder}: series {uid} is split over {len(members)} multi-frame files; "
                              f"open one of them")
        return _multiframe(first_path, uid, first)
    iop = np.asarray(_tag(first, "ImageOrientationPatient", first_path), float)
    row_dir, col_dir = iop[:3], iop[3:]   # along a row (columns increase), along a column (rows increase)
    normal = np.cross(row_dir, col_dir)
    rows, cols = int(_tag(first, "Rows", first_path)), int(_tag(first, "Columns", first_path))
    spacing_rc = np.asarray(_tag(first, "PixelSpacing", first_path), float)   # (between rows, between columns)
    pos = []
    for p, ds in members:
        if not np.allclose(np.asarray(_tag(ds, "ImageOrientationPatient", p), float), iop, atol=1e-4):
            raise VolumeError(f"{p.name}: its slice orientation differs from {first_path.name}'s; a series with "
                              f"several orientations (a localiser?) is not one volume")
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise VolumeError(f"{p.name}: {ds.Rows} x {ds.Columns} pixels, but {first_path.name} has {rows} x {cols}")
        pos.append(np.asarray(_tag(ds, "ImagePositionPatient", p), float))
    pos = np.asarray(pos)
    order = np.argsort(pos @ normal, kind="stable")
    pos, members = pos[order], [members[i] for i in order]
    along = pos @ normal
    if len(members) > 1:
        gaps = np.diff(along)
        if gaps.min() < 1e-3:
            k = int(np.argmin(gaps))
            raise VolumeError(f"{members[k][0].name} and {members[k + 1][0].name} lie at the same position: "
                              f"the series holds several images per slice (echoes, phases or time points)")
        if gaps.max() - gaps.min() > POSITION_TOL * np.median(gaps):
            raise VolumeError(f"{folder}: slices are unevenly spaced ({gaps.min():.3g} to {gaps.max():.3g} mm "
                              f"apart; a slice missing after {members[int(np.argmax(gaps))][0].name}?)")
        step = (pos[-1] - pos[0]) / (len(members) - 1)   # includes a gantry tilt's in-plane offset
    else:
        thick = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 0) or 1.0)
        step = normal * thick
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing_rc[1]
    lps[:3, 1] = col_dir * spacing_rc[0]
    lps[:3, 2] = step
    lps[:3, 3] = pos[0]
    geometry = from_affine(LPS_TO_RAS @ lps, (len(members), rows, cols))
    data = _lazy_pixels([p for p, _ in members], [ds for _, ds in members], (rows, cols))
    return Volume(data, spacing=(float(np.linalg.norm(step)), float(spacing_rc[0]), float(spacing_rc[1])),
                  source=str(folder), spacing_known=True, meta=_meta(first, uid, geometry, [p for p, _ in members]))


def _multiframe(path: Path, uid: str, header) -> Volume:
    """An enhanced (multi-frame) CT or MR image: one file, read whole. highdicom sorts its frames
    into a volume from the per-frame functional groups, which vary by vendor and are its subject."""
    try:
        import highdicom as hd
    except ImportError as exc:
        raise VolumeError(f"{path.name} is a multi-frame (enhanced) DICOM image; reading it needs highdicom: "
                          f"pip install 'napari-halo-seg[dicom]'") from exc
    import dask.array as da
    try:
        vol = hd.imread(str(path)).get_volume(dtype=np.float32)
    except Exception as exc:   # frames that do not form one regular volume, undecodable pixels, ...
        hint = _decoder_hint(getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None))
        raise VolumeError(f"{path.name}: cannot read its frames as one volume: {exc}{hint}") from exc
    lps, arr = np.asarray(vol.affine, float), np.asarray(vol.array)
    normal = np.cross(lps[:3, 2], lps[:3, 1])   # along a row x along a column, as for single frames
    if lps[:3, 0] @ normal < 0:   # slices in the order a series of single frames gets here
        lps[:3, 3] += (arr.shape[0] - 1) * lps[:3, 0]
        lps[:3, 0] *= -1
        arr = arr[::-1]
    # highdicom: (slice, row, column) -> LPS; here (x = column, y = row, z = slice) -> RAS
    arr = np.ascontiguousarray(arr)
    geometry = from_affine(LPS_TO_RAS @ lps @ np.eye(4)[[2, 1, 0, 3]], arr.shape)
    return Volume(da.from_array(arr, chunks=(min(32, arr.shape[0]),) + arr.shape[1:]),
                  spacing=spacing_of(geometry), source=str(path), spacing_known=True,
                  meta=dict(_meta(header, uid, geometry, [path]), multiframe=True))


def _meta(header, uid: str, geometry: dict, files) -> dict:
    return {"format": "dicom", "unit": "mm", "series": uid, "modality": str(getattr(header, "Modality", "")),
            "description": str(getattr(header, "SeriesDescription", "")), "geometry": geometry,
            "files": [str(p) for p in files], "window": _window(header)}


def _window(ds):
    """The display window the series was stored with (center, width) in its rescaled units, e.g. a
    brain window of (40, 80) HU; None if it names none. A list of windows: the first."""
    from pydicom.multival import MultiValue
    c, w = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if c is None or w is None:
        return None
    c, w = (v[0] if isinstance(v, MultiValue) else v for v in (c, w))
    try:
        c, w = float(c), float(w)
    except (TypeError, ValueError):
        return None
    return (c, w) if w > 0 else None


def _out_dtype(headers) -> np.dtype:
    """Stored values x slope + intercept: kept as integers where that is exact (CT in HU), else float32."""
    first = headers[0]
    bits = int(getattr(first, "BitsAllocated", 16))
    stored = np.dtype(f"{'i' if int(getattr(first, 'PixelRepresentation', 0)) else 'u'}{max(bits // 8, 1)}")
    slopes = {float(getattr(ds, "RescaleSlope", 1) or 1) for ds in headers}
    icepts = {float(getattr(ds, "RescaleIntercept", 0) or 0) for ds in headers}
    if slopes != {1.0} or any(i != int(i) for i in icepts):
        return np.dtype(np.float32)
    return stored if icepts == {0.0} else np.dtype(np.int32)


def _lazy_pixels(paths: list[Path], headers: list, shape_yx) -> "da.Array":
    import dask
    import dask.array as da
    dtype = _out_dtype(headers)
    _read_slice(paths[0], headers[0], dtype, shape_yx)   # fail now, naming the problem, not in a worker
    slabs = [da.from_delayed(dask.delayed(_read_slice)(p, ds, dtype, shape_yx), shape_yx, dtype=dtype)
             for p, ds in zip(paths, headers)]
    return da.stack(slabs).rechunk((min(32, len(paths)),) + tuple(shape_yx))


def _read_slice(path: Path, header, dtype, shape_yx) -> np.ndarray:
    import pydicom
    ds = pydicom.dcmread(str(path))
    try:
        px = ds.pixel_array
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        raise VolumeError(f"{path.name}: cannot decode its pixels (transfer syntax "
                          f"{getattr(ts, 'name', ts)}): {exc}{_decoder_hint(ts)}") from exc
    if px.shape != tuple(shape_yx):
        raise VolumeError(f"{path.name}: pixel data of shape {px.shape}, expected {tuple(shape_yx)}")
    slope = float(getattr(header, "RescaleSlope", 1) or 1)
    icept = float(getattr(header, "RescaleIntercept", 0) or 0)
    if dtype.kind == "f":
        return (px.astype(np.float32) * slope + icept).astype(dtype)
    return px.astype(dtype) + dtype.type(icept)


def _decoder_hint(ts) -> str:
    """How to get a decoder for compressed pixels, where the one this package relies on is missing."""
    if getattr(ts, "is_compressed", False) and importlib.util.find_spec("gdcm") is None:
        return ("; install the [dicom] extra, whose python-gdcm decodes JPEG Lossless, JPEG-LS and JPEG 2000: "
                "pip install 'napari-halo-seg[dicom]'")
    return ""
