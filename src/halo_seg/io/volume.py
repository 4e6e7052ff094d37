"""Open 3D volumes lazily as dask arrays in (Z, Y, X) order with their voxel spacing (DICOM series:
io/dicom.py).

Every reader returns a dask array backed by the file's own chunks (zarr) or by a memory map /
lazy proxy (NIfTI, TIFF, .npy), so opening never reads the whole volume.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .axes import AxisChoiceError, axis_names, describe, select_3d, tiff_axes
from .series_output import TIME_SERIES
from .track_output import PENDING, TRACKS

ZARR_SUFFIXES = (".zarr", ".ome.zarr")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff")
NUMPY_SUFFIXES = (".npy",)
ITK_SUFFIXES = (".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd")   # io/itk_image.py (3D Slicer, ITK-SNAP, grand-challenge)
ITK_WRITE = (".nrrd", ".mha")   # labels out: one file each (.mhd and .nhdr name a data file, which moving breaks)
# the meta key (and a zarr labels array's attribute) naming label ids: a SEG's segments, a structure
# set's structures, a model's classes
SEGMENT_NAMES = "segment_names"
SUPPORTED = ZARR_SUFFIXES + NIFTI_SUFFIXES + TIFF_SUFFIXES + NUMPY_SUFFIXES + ITK_SUFFIXES


class VolumeError(ValueError):
    """A volume could not be opened or is not a usable 3D volume."""


@dataclass
class Volume:
    data: da.Array
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # whether ``spacing`` was read from the file or given, rather than the (1, 1, 1) of a file or
    # array that records none: only a known voxel size can be compared with a model's
    spacing_known: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)


_UNITS = {"mm": "mm", "millimeter": "mm", "millimetre": "mm", "cm": "cm", "centimeter": "cm", "m": "m",
          "meter": "m", "micron": "µm", "micrometer": "µm", "micrometre": "µm", "um": "µm", "µm": "µm",
          "\u03bcm": "µm", "nm": "nm", "nanometer": "nm"}


def length_unit(name) -> str | None:
    """A file's name for its length unit ("micron", "micrometer", "\\u00B5m", "mm", ...) as one symbol
    ("µm", "mm", ...), or None when it names none (NIfTI "unknown", ImageJ "pixel")."""
    return _UNITS.get(str(name).strip().lower()) if name else None


def is_zarr_dir(path) -> bool:
    """Whether ``path`` is a zarr array or group (v2 or v3), whatever its name."""
    path = Path(path)
    return path.is_dir() and any((path / f).exists() for f in ("zarr.json", ".zarray", ".zgroup"))


def known_suffix(name: str) -> str | None:
    """The longest format suffix of SUPPORTED that ``name`` ends with (any letter case), or None."""
    name = name.lower().rstrip("/")
    return next((s for s in sorted(SUPPORTED, key=len, reverse=True) if name.endswith(s)), None)


def without_suffix(name: str) -> str:
    """``name`` without its format's suffix (``case.nii.gz`` -> ``case``); other names as they are."""
    s = known_suffix(name)
    return name[:-len(s)] if s else name


def _suffix(path: Path) -> str:
    s = known_suffix(path.name)
    if s:
        return s
    if is_zarr_dir(path):
        return ".zarr"
    return path.suffix.lower()


def _as_3d(arr: da.Array, what: str) -> da.Array:
    if arr.ndim != 3:
        raise VolumeError(f"{what}: expected a 3D (Z, Y, X) volume, got {arr.ndim}D with shape {tuple(arr.shape)}")
    if 0 in arr.shape:
        raise VolumeError(f"{what}: volume is empty (shape {tuple(arr.shape)})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.issubdtype(arr.dtype, np.complexfloating):
        raise VolumeError(f"{what}: unsupported dtype {arr.dtype}; expected a numeric volume")
    return arr


def open_volume(source: Any, spacing: tuple[float, float, float] | None = None,
                channel: int | str | None = None, timepoint: int | None = None, planes: bool = False) -> Volume:
    """Open ``source`` (path, numpy/dask/zarr array) as a lazy (Z, Y, X) dask array + spacing.

    ``spacing`` overrides what the file says. A multi-channel or time-lapse volume gives the 3D
    volume of ``channel`` (an index, or a name the file gives its channels) at ``timepoint``; see
    io/axes.py for how axes are named. ``meta["file_axes"]`` describes what the file held.
    Raises :class:`VolumeError` (or FileNotFoundError) with a message naming the problem for
    missing files, unknown formats, a missing or wrong channel or time point, and non-3D data.
    With ``planes``, what a file of no z axis holds at a time point (a 2D time-lapse's frame) is
    one plane, (1, Y, X).
    """
    vol = source if isinstance(source, Volume) else file_contents(source)
    what = vol.source or type(source).__name__
    series = vol.meta.get(TIME_SERIES)   # labels of a time-lapse (engine/series.py)
    if series and timepoint is None:
        from .series_output import series_hint
        raise VolumeError(series_hint(what, series))
    if series and str(timepoint).strip().isdigit() and int(timepoint) not in series["segmented"]:
        from .series_output import series_hint   # its background is no segmentation of that time point
        raise VolumeError(f"time point {int(timepoint)} was not segmented; " + series_hint(what, series))
    if vol.meta.get(TRACKS) and timepoint is None:
        raise VolumeError(f"{what} holds the tracked objects of {vol.data.shape[0]} time points, their ids the same "
                          "over time: give one time point (--timepoint), or open it in napari whole")
    names = vol.meta.pop("axes", None)
    full = axis_names(vol.data.shape, names)
    try:
        data, chosen = select_3d(vol.data, names, what, channel, timepoint, vol.meta.get("channel_names"))
    except AxisChoiceError as exc:
        raise VolumeError(str(exc)) from None
    vol.meta["file_axes"] = describe(vol.data.shape, full)
    vol.meta.update(chosen)
    if vol.meta.get("levels"):   # an OME-Zarr pyramid: the same volume at each coarser level
        vol.meta["levels"] = [select_3d(lv, names, what, channel, timepoint, vol.meta.get("channel_names"))[0]
                              for lv in vol.meta["levels"]]
    if planes and data.ndim == 2 and "z" not in full:
        data = data[None]
    vol.data = _as_3d(data, what)
    if spacing is not None:
        vol.spacing = _check_spacing(spacing)
        vol.spacing_known = True
    else:
        vol.spacing = recorded_spacing(vol.spacing, what)
    return vol


def file_contents(source: Any) -> Volume:
    """What ``source`` holds, before a 3D volume is chosen from it: the array with all its axes,
    and in ``meta`` the file's axis names ("axes", None where it names none) and channel names."""
    if isinstance(source, (str, Path)):
        return _open_path(Path(source))
    return _open_array(source)


def check_zarr_output_name(path, command: str, holds: str) -> None:
    """`segment OUT.nii.gz` (or `instances`) made a zarr folder named like a NIfTI file, which no
    viewer (nor this package's reader) opens: the output is zarr, and other formats come from `export`."""
    name = Path(path).name
    if name.lower().endswith(NIFTI_SUFFIXES + TIFF_SUFFIXES + NUMPY_SUFFIXES + (".dcm", ".nrrd", ".mha", ".mhd")):
        raise VolumeError(f"{command} writes {holds}, not {name}: give an output ending in .zarr, then "
                          f"`halo-seg export OUT.zarr {name}` for that format")


def check_own_output(path, command: str, holds: str, ours) -> None:
    """Only a free path, or an earlier output of ``command`` (``ours(path)`` True: its marker
    attribute), is written, named as zarr: never a user's volume."""
    check_zarr_output_name(path, command, holds)
    if not Path(path).exists():
        return
    try:
        mine = bool(ours(str(path)))
    except Exception:   # not zarr at all, or not the kind of node ``ours`` opens
        mine = False
    if not mine:
        raise VolumeError(f"{path} exists and is not an earlier output of {command}: choose a new path")


def recorded_spacing(spacing, what) -> tuple[float, float, float]:
    """The voxel size a file records, refused when it is not three positive numbers (a NaN or zero
    zoom in a NIfTI header, a negative OME scale): measuring, resampling and the network's voxel
    size would all be silently wrong. Giving the spacing overrides what the file says."""
    try:
        return _check_spacing(spacing)
    except (VolumeError, TypeError, ValueError):
        raise VolumeError(f"{what} records the voxel size {spacing!r} (z, y, x), which is not three "
                          "positive numbers; give the voxel size yourself (--spacing Z,Y,X, or spacing=)") from None


def _check_spacing(spacing) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise VolumeError(f"spacing must be three positive numbers (z, y, x), got {spacing!r}")
    return sp


def _open_array(arr: Any) -> Volume:
    if isinstance(arr, da.Array):
        return Volume(arr)
    if hasattr(arr, "shape") and hasattr(arr, "dtype"):
        if isinstance(arr, np.ndarray):
            return Volume(da.from_array(arr, chunks=arr.shape))
        # zarr arrays and other lazy array-likes keep their own chunking
        chunks = getattr(arr, "chunks", None) or "auto"
        return Volume(da.from_array(arr, chunks=chunks))
    raise VolumeError(f"cannot open a volume from {type(arr).__name__}; pass a path or an array")


def _open_path(path: Path) -> Volume:
    if not path.exists():
        raise FileNotFoundError(f"volume not found: {path}")
    suf = _suffix(path)
    if suf not in SUPPORTED:
        from .dicom import looks_like_series, open_series, series_below, series_below_error
        if looks_like_series(path):
            return open_series(path)
        from .tiff_frames import looks_like_frames, open_frames
        if looks_like_frames(path):   # t000.tif, mask000.tif ...: a time-lapse, as a hyperstack file is
            return open_frames(path)
        from .tiff_slices import looks_like_slices, open_slices, slice_files
        if looks_like_slices(path):
            return open_slices(path)
        found = series_below(path) if path.is_dir() else []
        if found:   # a patient, study or CD folder: which series is meant is the user's choice
            raise series_below_error(path, found)
        stacks = slice_files(path) if path.is_dir() and not is_zarr_dir(path) else []
        if len(stacks) >= 2:   # 3D stacks under names that say nothing of time: a cohort, or a time-lapse?
            raise VolumeError(f"{path} holds {len(stacks)} TIFF stacks ({stacks[0].name} ... {stacks[-1].name}), a "
                              "folder of volumes rather than one: `halo-seg batch` segments each; if they are the time "
                              "points of one time-lapse, name them as such (t000.tif, t001.tif ...) or give the folder "
                              "to `halo-seg track`, which reads a folder as frames")
    if suf in ZARR_SUFFIXES:
        return _open_zarr(path)
    if suf in NIFTI_SUFFIXES:
        return _open_nifti(path)
    if suf in TIFF_SUFFIXES:
        return _open_tiff(path)
    if suf in ITK_SUFFIXES:
        from .itk_image import open_itk
        return open_itk(path)
    if suf in NUMPY_SUFFIXES:
        try:
            arr = np.load(path, mmap_mode="r")
        except ValueError as exc:   # an array of Python objects (never loaded: unpickling runs code)
            raise VolumeError(f"cannot read {path} as a volume: {exc}") from None
        return Volume(da.from_array(arr, chunks=_slab_chunks(arr.shape)), source=str(path))
    raise VolumeError(f"unsupported volume format '{suf or path.name}' for {path}; "
                      f"supported: {', '.join(SUPPORTED)}, a folder of one DICOM series, a folder of 2D TIFF slices or "
                      "a folder of TIFF frames named as time points (t000.tif ...)")


def _slab_chunks(shape) -> tuple:
    # ~64 slices per chunk keeps memory-mapped reads lazy without tiny tasks
    return (min(64, shape[0]),) + tuple(shape[1:]) if len(shape) else ()


def _open_nifti(path: Path) -> Volume:
    import nibabel as nib
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for corrupt headers
        raise VolumeError(f"cannot read NIfTI {path}: {exc}") from exc
    proxy = img.dataobj  # lazy ArrayProxy; slicing reads only what is asked for
    shape = tuple(proxy.shape)
    if len(shape) < 3:
        raise VolumeError(f"{path}: expected a 3D volume, got shape {shape}")
    if not str(path).lower().endswith(".gz"):   # uncompressed: how long the voxels are is known now
        # from where they start (the proxy's offset: the header's may say 0)
        check_length(path, path, int(proxy.offset), int(np.prod(shape)) * img.header.get_data_dtype().itemsize)
    arr = _gzip_boxes(path, proxy, shape)
    if arr is None:
        # one time point (or vector component) per chunk, so choosing one reads only that one
        arr = da.from_array(_NamedReads(proxy, str(path), show_box=False), chunks=shape[:2] + (min(32, shape[2]),)
                            + (1,) * (len(shape) - 3), asarray=True)
        if _is_scaled(proxy):   # nibabel's scaled read (float64), in the type scaled_dtype chose
            arr = arr.astype(scaled_dtype(img.header.get_data_dtype(), proxy.slope, proxy.inter))
        # NIfTI stores (X, Y, Z[, T[, U]]); the engine works in (Z, Y, X), after time and components
        arr = arr.transpose(tuple(range(3, arr.ndim)) + (2, 1, 0))
    extra = tuple(range(3, len(shape)))
    names = (["t", "c"][:len(extra)] + list("zyx")) if len(extra) <= 2 else None
    zooms = img.header.get_zooms()[:3]
    from .geometry import KEY, from_nifti, is_label_nifti
    return Volume(arr, spacing=(float(zooms[2]), float(zooms[1]), float(zooms[0])), source=str(path), spacing_known=True,
                  meta={"format": "nifti", "labels": is_label_nifti(img), "axes": names,
                        "unit": _nifti_unit(img),
                        KEY: from_nifti(img, (shape[2], shape[1], shape[0]))})


def damaged(path, reason, box: str = "") -> VolumeError:
    """The error for voxels a reader cannot decode (a file cut short, or damaged in a copy), naming
    the file (and ``box``), where the codec's own error ("Compressed file ended ...", "Zstd
    decompression error") named neither."""
    reason = " ".join(str(reason).split())
    return VolumeError(f"cannot read the voxels{box} of {path} (damaged or cut short?): {reason}")


def check_length(path, file: Path, start: int, nbytes: int) -> None:
    """A clear error where an uncompressed file (``file``, the data of ``path``'s header, from byte
    ``start``) holds fewer voxels than its header says (a copy or download cut short): the readers
    fail only when the missing part is read (ITK saying a file is missing)."""
    if not file.is_file():
        raise VolumeError(f"{path}: its data file {file} is missing")
    held = file.stat().st_size - max(start, 0)
    if start < 0 or held < nbytes:
        raise VolumeError(f"{path} is truncated: its header says {nbytes} bytes of voxels, {file.name} holds "
                          f"{max(held, 0)} (an interrupted copy or download?)")


def _gzip_boxes(path: Path, proxy, shape):
    """A `.nii.gz`'s voxels (Z, Y, X), after its time points and components ((T, [U,] Z, Y, X)), through
    nrrd_boxes.GzipBoxes: decompressed from checkpoints in its gzip stream, twice as fast as nibabel
    through indexed_gzip, the volumes of a 4D or 5D file (a time series; the Medical Segmentation
    Decathlon's modalities) each from where it starts in the one stream, sharing its checkpoints;
    scaled (scl_slope, scl_inter: dcm2niix keeps a CT's stored integers and puts its RescaleIntercept
    there; PET, many MR files) as nibabel scales them, to the type its read gives. None for an
    uncompressed file or one not stored in NIfTI's order (nibabel reads it)."""
    if not str(path).lower().endswith(".gz") or getattr(proxy, "order", "F") != "F":
        return None
    from .nrrd_boxes import GzipBoxes, boxes_array
    stored = np.dtype(proxy.dtype)
    zyx, extra = tuple(shape[:3][::-1]), tuple(shape[3:])
    volume = int(np.prod(zyx)) * stored.itemsize

    def one(k: int):   # the k-th volume in file order: NIfTI stores (X, Y, Z, T, U), first index fastest
        return boxes_array(GzipBoxes(str(path), 0, zyx, stored, 1, skip=int(proxy.offset) + k * volume),
                           path, f"nifti-{k}")

    if not extra:
        arr = one(0)
    else:   # in (T, U, Z, Y, X), C order: volume (t, u) is the (t + u * T)-th in the file
        index = np.arange(int(np.prod(extra))).reshape(extra[::-1]).T
        arr = da.stack([one(int(k)) for k in index.ravel()]).reshape(extra + zyx)
    if not _is_scaled(proxy):
        return arr
    dtype = scaled_dtype(stored, proxy.slope, proxy.inter)
    return arr.map_blocks(_nifti_scaled, np.asanyarray(proxy.slope), np.asanyarray(proxy.inter), dtype, dtype=dtype)


def _is_scaled(proxy) -> bool:
    return not (float(proxy.slope) == 1.0 and float(proxy.inter) == 0.0)


def scaled_dtype(stored, slope, inter) -> np.dtype:
    """The type a scaled NIfTI's voxels (stored x slope + inter) are read as. nibabel reads them as
    float64 (8 bytes a voxel for a CT stored in 2: 1.3 GB for 512 x 512 x 600); integers times an
    integral slope plus an integral intercept (a CT as dcm2niix writes it: RescaleIntercept -1024 in
    scl_inter) stay integers, int32 for 8- and 16-bit ones (the DICOM reader's rule), and 8- or 16-bit
    values with a fractional slope (PET, many MR files) or float32 ones are float32, which holds
    them to its precision (a relative 6e-8); wider ones keep nibabel's type."""
    stored = np.dtype(stored)
    if stored.kind in "iu" and stored.itemsize <= 2:
        info = np.iinfo(stored)
        reach = max(abs(info.min), info.max) * abs(float(slope)) + abs(float(inter))
        if float(slope).is_integer() and float(inter).is_integer() and reach < 2 ** 31:
            return np.dtype(np.int32)
        return np.dtype(np.float32)
    if stored == np.float32:
        return np.dtype(np.float32)
    from nibabel.volumeutils import apply_read_scaling
    return apply_read_scaling(np.zeros(1, stored), slope, inter).dtype


def _nifti_scaled(block, slope, inter, dtype):
    """Stored voxels scaled as nibabel's proxy scales them (its own function, the proxy's slope and
    intercept arrays), so that a box equals nibabel's read of it, in the type scaled_dtype chose."""
    from nibabel.volumeutils import apply_read_scaling
    return apply_read_scaling(block, slope, inter).astype(dtype, copy=False)


class _NamedReads:
    """An array (a NIfTI's proxy, a zarr array, a TIFF's zarr store) as dask reads it, box by box,
    with a box that cannot be decoded a VolumeError naming the file (damaged), and the box where the
    array is in the volume's own axis order (``show_box``; a NIfTI's proxy is (X, Y, Z)). Its dtype
    is what a read gives: a scaled NIfTI (scl_slope, scl_inter) reads floats, not its stored integers."""

    def __init__(self, arr, path: str, show_box: bool):
        self.arr, self.path, self.show_box = arr, path, show_box
        self.shape, self.ndim = tuple(arr.shape), len(arr.shape)
        self.dtype = np.asarray(arr[(slice(0, 0),) * self.ndim]).dtype

    def __getitem__(self, key):
        import zlib
        try:
            return np.asarray(self.arr[key])
        except (OSError, ValueError, RuntimeError, EOFError, zlib.error) as exc:
            box = " [" + ", ".join(f"{k.start}:{k.stop}" if isinstance(k, slice) else str(k)
                                   for k in (key if isinstance(key, tuple) else (key,))) + "]"
            raise damaged(self.path, exc, box if self.show_box else "") from None


def named_from_zarr(z, path) -> da.Array:
    """da.from_zarr(z) (its chunks and its name), each chunk's read failure named (_NamedReads)."""
    from dask.base import tokenize
    return da.from_array(_NamedReads(z, str(path), show_box=True), chunks=z.chunks,
                         name="from-zarr-" + tokenize(z, None, {}, z.chunks))


def _nifti_unit(img) -> str | None:
    """The NIfTI's length unit; "unknown" (most files) is taken as mm, as ITK reads it, since
    NIfTI's world coordinates are scanner millimetres."""
    name = img.header.get_xyzt_units()[0]
    return "mm" if name in (None, "unknown") else length_unit(name)


def _open_tiff(path: Path) -> Volume:
    import tifffile
    import zarr
    try:
        store = tifffile.imread(str(path), aszarr=True)
    except Exception as exc:
        raise VolumeError(f"cannot read TIFF {path}: {exc}") from exc
    z = zarr.open(store, mode="r")
    if isinstance(z, zarr.Group):  # pyramidal TIFF: level 0 is full resolution
        z = z[sorted(z.array_keys())[0]]
    spacing, unit, axes, channels, known = (1.0, 1.0, 1.0), None, None, None, False
    try:
        with tifffile.TiffFile(str(path)) as tf:
            axes = tiff_axes(tf.series[0].axes) if len(tf.series[0].shape) == z.ndim else None
            px = _ome_pixels(tf)   # the OME-XML, parsed once for the channels and the voxel size
            channels = _ome_tiff_channels(px)
            spacing, unit, known = tiff_spacing(tf, px)
    except Exception:
        pass  # axes, spacing and names are optional metadata; the data itself was readable
    extra = {}
    aux = nnunet_spacing(path)
    if aux is not None:   # nnU-Net's record of the case's voxel size, which its TIFF reader trusts over the file's
        sidecar, sp = aux
        if not (known and np.allclose(sp, spacing, rtol=1e-3)):
            unit = None   # nnU-Net's spacing names no unit
        spacing, known, extra = sp, True, {"spacing_from": str(sidecar)}
    return Volume(named_from_zarr(z, path), spacing=spacing, source=str(path), spacing_known=known,
                  meta={"format": "tiff", "unit": unit, "axes": axes, "channel_names": channels, **extra})


def nnunet_spacing(path: Path) -> tuple[Path, tuple[float, float, float]] | None:
    """(file, spacing) of nnU-Net's voxel-size file for a TIFF, or None where there is none.

    nnU-Net keeps a TIFF case's voxel size beside it in CASE.json, ``{"spacing": [z, y, x]}`` in the
    array's axis order: one file for an image's channels (CASE_0000.tif, CASE_0001.tif) and its
    labels (CASE.tif). A TIFF there without it is taken as 1 x 1 x 1 by nnU-Net, and here as of
    unknown voxel size unless the TIFF records it. A file of that name that is not one (no "spacing"
    key) is left alone; one whose spacing is not three positive numbers is refused by name."""
    import json
    import re
    stem = without_suffix(path.name)
    m = re.fullmatch(r"(.+)_\d{4}", stem)
    for name in [stem] + ([m.group(1)] if m else []):
        aux = path.with_name(name + ".json")
        if not aux.is_file():
            continue
        try:
            meta = json.loads(aux.read_text())
        except (OSError, ValueError) as exc:
            raise VolumeError(f"{aux} (nnU-Net's voxel size of {path.name}) cannot be read: {exc}") from None
        if not isinstance(meta, dict) or "spacing" not in meta:
            continue
        sp = meta["spacing"]
        try:
            sp = tuple(float(v) for v in sp)
        except (TypeError, ValueError):
            sp = ()
        if len(sp) != 3 or not all(np.isfinite(v) and v > 0 for v in sp):
            raise VolumeError(f"{aux}: 'spacing' must be three positive numbers (z, y, x) for {path.name}, got "
                              f"{meta['spacing']!r}")
        return aux, sp
    return None


def tiff_spacing(tf, px: dict | None = None) -> tuple[tuple[float, float, float], str | None, bool]:
    """(spacing, unit, known) from an open TiffFile's OME metadata (``px``, its Pixels element, when
    already read) or ImageJ calibration: the voxel size is known only when it records the slice
    spacing as well as the pixel size."""
    ome = _ome_tiff_spacing(px if px is not None else _ome_pixels(tf))
    if ome is not None:
        return ome
    ij = tf.imagej_metadata or {}
    unit = length_unit(ij.get("unit"))
    xres = tf.pages[0].tags.get("XResolution")
    if xres is not None and ij.get("spacing"):
        num, den = xres.value
        xy = den / num if num else 1.0
        return (float(ij["spacing"]), xy, xy), unit, True
    return (1.0, 1.0, 1.0), unit, False


METRES = {"nm": 1e-9, "µm": 1e-6, "mm": 1e-3, "cm": 1e-2, "m": 1.0}   # each length unit, in metres


def _ome_pixels(tf) -> dict | None:
    """The Pixels element of an OME-TIFF's first image (its sizes and channels), else None."""
    if not tf.is_ome:
        return None
    import tifffile
    image = tifffile.xml2dict(tf.ome_metadata)["OME"]["Image"]
    return (image[0] if isinstance(image, list) else image)["Pixels"]


def _ome_tiff_spacing(px: dict | None):
    """An OME-TIFF's PhysicalSizeZ/Y/X (µm unless its units say otherwise, each axis's unit converted
    to X's), or None where it does not record all three."""
    if px is None:
        return None
    try:
        sizes = [float(px[f"PhysicalSize{a}"]) for a in "ZYX"]
        units = [length_unit(px.get(f"PhysicalSize{a}Unit", "µm")) for a in "ZYX"]
    except (KeyError, TypeError, ValueError):
        return None
    if None in units:   # a unit this package does not know (pixel, Å, ...): sizes not comparable
        return None
    unit = units[2]
    return tuple(v * METRES[u] / METRES[unit] for v, u in zip(sizes, units)), unit, True


def _ome_tiff_channels(px: dict | None) -> list[str] | None:
    if px is None:
        return None
    ch = px.get("Channel")
    ch = ch if isinstance(ch, list) else [ch] if ch else []
    names = [c.get("Name") for c in ch]
    return [str(n) for n in names] if names and all(names) else None


def _zarr_geometry(attrs: dict, shape, path) -> dict:
    """The scan geometry a halo-seg zarr carries (see io.geometry), checked against its shape."""
    from .geometry import KEY, check
    if KEY not in attrs:
        return {}
    return {KEY: check(attrs[KEY], shape[-3:], what=f"the geometry attribute of {path}")}


def _converted_geometry(attrs: dict, shape, spacing, at) -> dict:
    """The scan geometry `halo-seg convert` keeps beside an OME-Zarr image's transformations (its
    orientation, which a scale and a translation do not hold), where it still describes the image:
    its shape, voxel size and position; else nothing (a copy cropped or moved by another tool is
    placed by its OME transformations)."""
    from .geometry import KEY, axes_position, check, spacing_of
    if KEY not in attrs or len(shape) != 3:
        return {}
    try:
        g = check(attrs[KEY], shape)
    except VolumeError:
        return {}
    if np.allclose(spacing_of(g), spacing, rtol=1e-3) and np.allclose(axes_position(g), at, atol=1e-3 * max(spacing)):
        return {KEY: g}
    return {}


def _translated(at, spacing, shape) -> dict:
    """An OME-Zarr image's translation (where a crop or tile of a larger acquisition starts) as a
    scan geometry (io.geometry: voxel axes along the world's, coded 'aligned'), so that it travels as
    a scan's placement does: to napari's layers, `segment`'s labels, exports and grid checks."""
    if not any(at) or len(shape) != 3:
        return {}
    from .geometry import KEY, from_affine
    aff = np.eye(4)
    aff[:3, :3] = np.diag(spacing[::-1])
    aff[:3, 3] = at[::-1]
    return {KEY: from_affine(aff, shape, code=2)}


def ome_transform(multiscale: dict, dataset: dict, ndim: int) -> tuple[list[float], list[float], bool]:
    """(scale, translation, whether a scale was given) per axis of one dataset (level) of an OME-Zarr
    multiscale: the dataset's own transformations, then the multiscale's, which OME-NGFF applies
    after them."""
    scale, shift, scaled = [1.0] * ndim, [0.0] * ndim, False
    for ts in (dataset.get("coordinateTransformations") or [], multiscale.get("coordinateTransformations") or []):
        for t in ts:
            if t.get("type") == "scale" and "scale" in t:
                f = [float(v) for v in t["scale"]][:ndim]
                scale = [a * b for a, b in zip(scale, f)]
                shift = [a * b for a, b in zip(shift, f)]
                scaled = True
            elif t.get("type") == "translation" and "translation" in t:
                shift = [a + float(b) for a, b in zip(shift, t["translation"])]
    return scale, shift, scaled


def _ome_multiscales(attrs: dict) -> tuple[list | None, str | None]:
    if "ome" in attrs and "multiscales" in attrs["ome"]:  # OME-Zarr 0.5 (zarr v3)
        return attrs["ome"]["multiscales"], attrs["ome"].get("version", "0.5")
    if "multiscales" in attrs:  # OME-Zarr 0.4 (zarr v2)
        ms = attrs["multiscales"]
        return ms, ms[0].get("version", "0.4") if ms else "0.4"
    return None, None


def names_in(attrs) -> dict[int, str]:
    """The names a zarr labels array gives its ids (its ``SEGMENT_NAMES`` attribute: JSON keys are
    strings), as id -> name."""
    names = attrs.get(SEGMENT_NAMES)
    return {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


def names_attr(names: dict | None) -> dict[str, str]:
    """id -> name as a zarr attribute (JSON: string keys); names_in reads it back."""
    return {str(int(k)): str(v) for k, v in (names or {}).items()}


CARRIED_FROM = "carried_from"   # a labels array's links: id -> id of the object it was carried from


def links_in(attrs) -> dict[int, int]:
    """The links an objects array keeps (its ``CARRIED_FROM`` attribute: the interactive widget's
    objects followed over time with Next time point), as id -> id it was carried from."""
    links = attrs.get(CARRIED_FROM)
    return {int(k): int(v) for k, v in links.items()} if isinstance(links, dict) else {}


def links_attr(links: dict | None) -> dict[str, int]:
    """id -> id carried from as a zarr attribute (JSON: string keys); links_in reads it back."""
    return {str(int(k)): int(v) for k, v in (links or {}).items()}


def holds_labels(vol) -> bool:
    """Labels, not an image: a file marked so (a SEG, a structure set, a NIfTI of intent label), or
    a `segment` output's labels."""
    return bool(vol.meta.get("labels")) or vol.meta.get("array") == "labels"


def _array_axes(arr) -> dict:
    """The axis names a zarr array records ("axes", one per dimension: the interactive widget's
    objects of a time-lapse are t, z, y, x), for its meta."""
    axes = arr.attrs.get("axes")
    ok = isinstance(axes, list) and len(axes) == arr.ndim and all(isinstance(a, str) for a in axes)
    return {"axes": list(axes)} if ok else {}


def _names(attrs) -> dict:
    """The names of a zarr labels array's ids and the links of those followed over time, for its meta."""
    names, links = names_in(attrs), links_in(attrs)
    return {**({SEGMENT_NAMES: names} if names else {}), **({CARRIED_FROM: links} if links else {})}


def _open_zarr(path: Path) -> Volume:
    import zarr
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise VolumeError(f"cannot open zarr {path}: {exc}") from exc
    if isinstance(node, zarr.Array):
        spacing = tuple(node.attrs.get("spacing", (1.0, 1.0, 1.0)))
        return Volume(named_from_zarr(node, path), spacing=spacing, source=str(path),
                      spacing_known="spacing" in node.attrs,
                      meta={"format": "zarr", "unit": length_unit(node.attrs.get("unit")),
                            "labels": bool(node.attrs.get("labels", False)), **_names(node.attrs),
                            **_array_axes(node), **_zarr_geometry(dict(node.attrs), node.shape, path)})
    attrs = dict(node.attrs)
    ms, version = _ome_multiscales(attrs)
    if ms:
        ds0 = ms[0]["datasets"][0]
        try:
            arr = node[ds0["path"]]
        except KeyError:
            raise VolumeError(f"OME-Zarr {path}: its metadata names the array '{ds0['path']}', which is not "
                              "in it (an incomplete copy?)") from None
        axes = [a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", [])]
        scale, shift, scaled = ome_transform(ms[0], ds0, arr.ndim)
        spatial = [i for i, a in enumerate(axes) if a in ("z", "y", "x")] or list(range(arr.ndim))[-3:]
        spacing = tuple(float(scale[i]) for i in spatial[-3:]) if len(spatial) >= 3 else (1.0, 1.0, 1.0)
        at = tuple(float(shift[i]) for i in spatial[-3:]) if len(spatial) >= 3 else (0.0, 0.0, 0.0)
        label_image = "image-label" in attrs or "image-label" in attrs.get("ome", {})
        units = {length_unit(a.get("unit")) for a in ms[0].get("axes", [])
                 if isinstance(a, dict) and a.get("name") in ("z", "y", "x")}
        # the coarser levels, lazily: a viewer shows them when zoomed out or in 3D
        levels = [named_from_zarr(node[d["path"]], path) for d in ms[0]["datasets"][1:]]
        omero = attrs.get("omero") or attrs.get("ome", {}).get("omero") or {}
        names = [c.get("label") for c in omero.get("channels", []) if isinstance(c, dict)]
        zyx = tuple(arr.shape[i] for i in spatial[-3:])
        placed = _converted_geometry(attrs, zyx, spacing, at)
        return Volume(named_from_zarr(arr, path), spacing=spacing, source=str(path),
                      spacing_known=scaled and not attrs.get("spacing_unknown"),
                      meta={"format": f"ome-zarr {version}", "axes": axes, "labels": label_image, "levels": levels,
                            "channel_names": [str(n) for n in names] if names and all(names) else None,
                            "unit": units.pop() if len(units) == 1 else None,
                            **(placed or _translated(at, spacing, zyx))})
    from .series_output import is_series, open_series
    if is_series(attrs):   # every time point of a time-lapse, segmented one at a time (engine/series.py)
        return open_series(node, path)
    keys = sorted(node.array_keys())
    if len(keys) == 1 or "labels" in keys or "image" in keys:
        key = "image" if "image" in keys else ("labels" if "labels" in keys else keys[0])
        arr = node[key]
        spacing = tuple(arr.attrs.get("spacing", attrs.get("spacing", (1.0, 1.0, 1.0))))
        done = np.asarray(node["done"][...]) if key == "labels" and "done" in keys else None
        # a `segment` run that stopped: the blocks never written read as background
        unfinished = {"incomplete": f"{int(done.sum())} of {done.size} blocks written"} \
            if done is not None and not done.all() else {}
        # a track output's labels (T, Z, Y, X): their axes named, so a time point is chosen as a file's
        tracked = {"axes": list(arr.attrs["axes"]), TRACKS: attrs[TRACKS]} if TRACKS in attrs else {}
        if tracked and attrs.get(PENDING):   # half relabelled: read so, some cells would be in two tracks
            raise VolumeError(f"{path} holds an edit that stopped half way ({attrs[PENDING].get('text')}): "
                              f"`halo-seg track-edit {path}` finishes it")
        return Volume(named_from_zarr(arr, path), spacing=spacing, source=str(path),
                      spacing_known="spacing" in arr.attrs or "spacing" in attrs,
                      meta={"format": "zarr", "array": key, **unfinished, **tracked, **_names(arr.attrs),
                            "unit": length_unit(arr.attrs.get("unit", attrs.get("unit"))),
                            **_zarr_geometry({**attrs, **dict(arr.attrs)}, arr.shape, path)})
    raise VolumeError(f"zarr group {path} has no OME multiscales metadata and no single array "
                      f"to pick (arrays: {keys or 'none'})")
