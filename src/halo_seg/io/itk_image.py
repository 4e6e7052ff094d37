"""NRRD (3D Slicer: `.nrrd`, segmentations `.seg.nrrd`) and MetaImage (`.mha`, `.mhd`: ITK-SNAP,
grand-challenge.org) volumes in and labels out, through SimpleITK, with the scan geometry.

ITK reads these formats with their origin, spacing and direction cosines in LPS millimetres; the
geometry kept here is NIfTI's RAS affine (io.geometry), converted as for DICOM, so that labels come
back out as NIfTI, NRRD or MetaImage on the scan. The voxels are read box by box (io.nrrd_boxes):
an uncompressed MetaImage (`.mha`, `.mhd` + `.raw`: micro-CT and light-sheet stacks larger than
memory come so) and a raw NRRD are memory-mapped, a gzip NRRD (3D Slicer's default) and a
compressed MetaImage (grand-challenge's) are decompressed from checkpoints in their stream (ITK
reads a NRRD only whole, and a compressed MetaImage whole for any box). A halo rank or a chunked
reduction reads the voxels it asks for and no more. What none of these takes (skips inside
a gzip stream, a NRRD's components not the fastest axis, a MetaImage of many slice files) is read
whole, once a run, the first time its voxels are needed.
SimpleITK rather than a reader per format: it is the reference implementation of both, with
their compression, detached headers and direction conventions.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np

from .dicom import LPS_TO_RAS
from .nrrd_boxes import RawBoxes, ZlibBoxes, boxes_array, nrrd_boxes
from .volume import ITK_WRITE, METRES, SEGMENT_NAMES, Volume, VolumeError, check_length, damaged


def _sitk(what: str):
    try:
        import SimpleITK as sitk
    except ImportError as exc:
        raise VolumeError(f"{what} needs SimpleITK: pip install 'napari-halo-seg[itk]'") from exc
    return sitk


def _read_whole(path: str, components: int):
    """The file's voxels, read once while it is unchanged: each dask computation of the lazy volume
    (a tile band, a normalisation's moments, a napari slice) asked for the whole file again, 97 reads
    of it in one tile-mode run. The last file read is kept (one volume, which its reader holds anyway)."""
    st = os.stat(path)
    return _read_kept(path, components, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=1)
def _read_kept(path: str, components: int, mtime_ns: int, size: int):
    sitk = _sitk(f"reading {path}")
    arr = sitk.GetArrayFromImage(_itk_read(path, lambda: sitk.ReadImage(path)))   # (Z, Y, X[, C])
    arr = np.moveaxis(arr, -1, 0) if components > 1 else arr
    arr.flags.writeable = False   # shared by every reader of the file: a change to one would reach the others
    return arr


def _metaimage_fields(path: Path) -> dict:
    """A MetaImage header's fields (lower-case keys) up to ElementDataFile, where its voxels start
    (that offset as "_end")."""
    fields = {}
    with open(path, "rb") as f:
        for _ in range(200):   # a header is a few dozen lines; past that, not one (read whole, as ITK can)
            line = f.readline(4096)
            if not line:
                break
            key, eq, value = line.decode("latin-1").partition("=")
            if eq:
                fields[key.strip().lower()] = value.strip()
                if key.strip().lower() == "elementdatafile":
                    fields["_end"] = f.tell()
                    break
    return fields


def _itk_read(path, read):
    """``read()``, an ITK read of ``path``'s voxels, with ITK's failure (a damaged or truncated
    compressed file shows only when it is decompressed) as a VolumeError naming the file."""
    try:
        return read()
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        if len(lines) > 1 and lines[-1].startswith("Reason:") and os.path.exists(path):
            lines.pop()   # MetaImage's errno after a short read: "No such file or directory", of a file that is there
        raise damaged(path, re.sub(r"^ITK ERROR: \w+\(0x[0-9a-f]+\): ", "", lines[-1])) from None


def metaimage_boxes(path: Path, shape: tuple, dtype, components: int):
    """The reader of a MetaImage's boxes: uncompressed, nrrd_boxes.RawBoxes (memory-mapped, as a raw
    NRRD: its voxels after the header, or in the one data file it names, after HeaderSize bytes or,
    with -1, at its end, in ElementByteOrderMSB's byte order); compressed, nrrd_boxes.ZlibBoxes (its
    zlib stream read from checkpoints; with HeaderSize -1 its data file's last CompressedDataSize
    bytes). None for a LIST of slice files or a numbered pattern (ITK reads it whole); a VolumeError
    where an uncompressed one holds fewer voxels than its header says (volume.check_length)."""
    if path.suffix.lower() not in (".mha", ".mhd"):
        return None
    fields = _metaimage_fields(path)
    data = fields.get("elementdatafile", "")
    if not data or data.upper().startswith("LIST") or "%" in data or len(data.split()) > 1:
        return None
    stored = np.dtype(dtype)
    msb = fields.get("elementbyteordermsb", fields.get("binarydatabyteordermsb", "false")).lower() == "true"
    stored = stored.newbyteorder(">" if msb else "<") if stored.itemsize > 1 else stored
    nbytes = int(np.prod(shape)) * stored.itemsize
    try:
        skip = int(fields.get("headersize", 0))
    except ValueError:
        return None
    file = path if data.upper() == "LOCAL" else path.parent / data
    if not file.is_file():
        raise VolumeError(f"{path}: its data file {file} is missing")
    if fields.get("compresseddata", "false").lower() == "true":
        start = fields["_end"] if file == path else max(skip, 0)
        if file != path and skip == -1:   # at the data file's end: where it starts, its length tells (ITK refuses it)
            try:
                start = file.stat().st_size - int(fields["compresseddatasize"])
            except (KeyError, ValueError):
                raise VolumeError(f"{path}: HeaderSize -1 puts its compressed data at the end of {file.name}, but "
                                  "no CompressedDataSize says where it starts") from None
            if start < 0:
                raise VolumeError(f"{path}: CompressedDataSize is {fields['compresseddatasize']} bytes, longer than "
                                  f"{file.name} ({file.stat().st_size} bytes): cut short?")
        return ZlibBoxes(str(file), start, shape, stored, components)
    start = fields["_end"] if file == path else file.stat().st_size - nbytes if skip == -1 else skip
    check_length(path, file, start, nbytes)
    return RawBoxes(str(file), start, shape, stored, components)


def open_itk(path) -> Volume:
    """A NRRD or MetaImage file as a lazy (Z, Y, X) volume (channels first where it has several)."""
    import dask
    import dask.array as da

    from .geometry import KEY, from_affine
    path = Path(path)
    sitk = _sitk(f"reading {path.name}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:   # ITK's message names what is wrong with the header
        raise VolumeError(f"cannot read {path}: {str(exc).strip().splitlines()[-1]}") from None
    size, dim = reader.GetSize(), reader.GetDimension()
    if dim != 3:
        raise VolumeError(f"{path}: expected a 3D volume, got {dim}D with size {tuple(size)} (x, y, ...)")
    comps = reader.GetNumberOfComponents()
    dtype = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], reader.GetPixelID(), comps)).dtype)
    shape = (comps,) * (comps > 1) + tuple(int(s) for s in size[::-1])
    boxes = nrrd_boxes(path, shape, dtype, comps) or metaimage_boxes(path, shape, dtype, comps)
    streamed = boxes is not None
    data = boxes_array(boxes, path, "metaimage" if path.suffix.lower() in (".mha", ".mhd") else "nrrd") \
        if streamed else \
        da.from_delayed(dask.delayed(_read_whole)(str(path), comps), shape, dtype)
    spacing = np.asarray(reader.GetSpacing(), float)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(reader.GetDirection(), float).reshape(3, 3) * spacing
    lps[:3, 3] = reader.GetOrigin()
    keys = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    segments = _slicer_segments(keys)
    names = {value: name for _, _, value, name in segments}
    labels = path.name.lower().endswith(".seg.nrrd") or bool(names)
    extra = {}
    if comps > 1 and segments:   # segments that overlap, in layers: one label each, merged
        data, names, overlap = _merged_layers(str(path), segments, shape)
        comps, extra, streamed = 1, {"overlap": overlap}, False   # merged in memory, raw or not
    return Volume(data, spacing=tuple(float(s) for s in spacing[::-1]), source=str(path), spacing_known=True,
                  meta={"format": "nrrd" if ".nrrd" in path.name.lower() or path.suffix.lower() == ".nhdr"
                        else "metaimage", "unit": "mm", "labels": labels,
                        "axes": (["c"] if comps > 1 else []) + list("zyx"),
                        **({SEGMENT_NAMES: names} if names else {}), **extra,
                        # every halo rank holds the whole file while it reads its block (engine memory check)
                        **({} if streamed else {"read_whole": True}),
                        KEY: from_affine(LPS_TO_RAS @ lps, shape[-3:])})


def _slicer_segments(keys: dict) -> list[tuple[int, int, int, str]]:
    """3D Slicer's segments in a .seg.nrrd header (SegmentN_LabelValue, _Layer, _Name), in segment
    order: (N, layer, label value, name)."""
    out = []
    for k in keys:
        m = re.fullmatch(r"Segment(\d+)_LabelValue", k)
        if m:
            n = m.group(1)
            out.append((int(n), int(keys.get(f"Segment{n}_Layer", "0") or 0), int(keys[k]),
                        keys.get(f"Segment{n}_Name", "")))
    return sorted(out)


def _merged_layers(path: str, segments, shape):
    """A segmentation whose segments overlap, saved by 3D Slicer as layers (one 3D labelmap each,
    a segment a label value within its layer), as one label volume: each segment a label, numbered
    in segment order; where two overlap the smaller is kept (as for RT structure sets), and the
    voxels two claim are counted. Read whole, as these files are."""
    import dask.array as da

    from .labels import smaller_on_top
    layers = _read_whole(path, shape[0])   # (layers, Z, Y, X)
    kept = [(i + 1, layer, value, name) for i, (_, layer, value, name) in enumerate(segments) if layer < len(layers)]
    labels, overlap = smaller_on_top({label: [(..., layers[layer] == value)] for label, layer, value, _ in kept},
                                     shape[1:])
    data = da.from_array(labels, chunks=(min(32, shape[1]),) + tuple(shape[2:]))
    return data, {label: name for label, _, _, name in kept}, overlap


# segment colours of a written .seg.nrrd (Slicer shows them): distinct hues, cycled
COLOURS = ((0.90, 0.35, 0.30), (0.30, 0.65, 0.90), (0.40, 0.80, 0.35), (0.95, 0.75, 0.25), (0.70, 0.45, 0.85),
           (0.25, 0.80, 0.75), (0.95, 0.55, 0.75), (0.60, 0.60, 0.30), (0.55, 0.35, 0.20), (0.50, 0.50, 0.95))


def slicer_fields(arr: np.ndarray, names: dict | None) -> dict:
    """3D Slicer's segmentation fields of a label volume written as NRRD: a segment per label value
    (those present and those named), in one layer, named from ``names`` (else Slicer's own
    "Segment_N", marked as made up), with its colour and its extent (x0 x1 y0 y1 z0 z1, inclusive;
    "0 -1 ..." for an empty one), so that Slicer's Segment Editor lists the model's classes by name."""
    from scipy import ndimage
    names = {int(k): str(v) for k, v in (names or {}).items() if int(k) > 0}
    values = sorted(set(int(v) for v in np.unique(arr) if v > 0) | set(names))
    boxes = ndimage.find_objects(arr, max_label=max(values)) if values else []
    fields = {"Segmentation_MasterRepresentation": "Binary labelmap",
              "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
              "Segmentation_ReferenceImageExtentOffset": "0 0 0"}
    for n, v in enumerate(values):
        box = boxes[v - 1] if v <= len(boxes) else None
        extent = "0 -1 0 -1 0 -1" if box is None else " ".join(f"{b.start} {b.stop - 1}" for b in box[::-1])
        name = " ".join(names.get(v, "").split())   # one line: a header value ends at its newline
        fields.update({f"Segment{n}_ID": f"Segment_{v}", f"Segment{n}_Name": name or f"Segment_{v}",
                       f"Segment{n}_NameAutoGenerated": "0" if name else "1",
                       f"Segment{n}_Color": " ".join(f"{c:.4g}" for c in COLOURS[n % len(COLOURS)]),
                       f"Segment{n}_ColorAutoGenerated": "1", f"Segment{n}_LabelValue": str(v),
                       f"Segment{n}_Layer": "0", f"Segment{n}_Extent": extent})
    return fields


def write_itk_labels(labels, path, spacing=(1.0, 1.0, 1.0), geometry: dict | None = None,
                     unit: str | None = None, names: dict | None = None) -> Path:
    """Write (Z, Y, X) integer labels to a .nrrd or .mha file (compressed), placed as ``geometry``
    (io.geometry) says where it is given, else with the voxel size alone, converted from ``unit`` to
    the millimetres ITK's files are in (µm labels would otherwise read back 1000 times too large);
    written beside and renamed over the target. A NRRD named ``.seg.nrrd``, or given ``names`` (label
    id -> name), is written as a 3D Slicer segmentation (slicer_fields); MetaImage keeps no names."""
    import os

    from .geometry import best_affine
    from .labels import label_dtype, read_label_slab
    path = Path(path)
    if not path.name.lower().endswith(ITK_WRITE):
        raise VolumeError(f"labels are written to {' or '.join(ITK_WRITE)} files, not {path.name}")
    sitk = _sitk(f"writing {path.name}")
    arr = read_label_slab(labels, 0, int(labels.shape[0]))   # booleans as uint8; negative ids refused
    arr = arr.astype(label_dtype(int(arr.max()) if arr.size else 0), copy=False)
    img = sitk.GetImageFromArray(arr)
    if geometry is not None:
        lps = LPS_TO_RAS @ best_affine(geometry)   # its own inverse: RAS -> LPS
        sp = np.linalg.norm(lps[:3, :3], axis=0)
        img.SetSpacing([float(s) for s in sp])
        img.SetDirection([float(v) for v in (lps[:3, :3] / sp).ravel()])
        img.SetOrigin([float(v) for v in lps[:3, 3]])
    else:
        to_mm = METRES[unit] / METRES["mm"] if unit in METRES else 1.0
        img.SetSpacing([float(s) * to_mm for s in spacing[::-1]])
    if path.name.lower().endswith(".nrrd") and (names or path.name.lower().endswith(".seg.nrrd")):
        for k, v in slicer_fields(arr, names).items():
            img.SetMetaData(k, v)
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}{path.suffix}")
    try:
        sitk.WriteImage(img, str(tmp), useCompression=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
