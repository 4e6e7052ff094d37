"""napari reader: any volume halo_seg opens, with its voxel spacing: an image as a lazy (dask) layer,
labels in memory where they fit (_paintable.py: they are there to be corrected with the brush).

A scan's geometry (io.geometry: where its voxels lie in the world) rides in the layer's metadata,
so that labels drawn or computed on it are saved where it lies (_writer.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from halo_seg.engine.output import UNCERTAINTY
from halo_seg.io import open_volume
from halo_seg.io.axes import SPATIAL, AxisChoiceError, arrange, axis_names
from halo_seg.io.dicom import looks_like_series, series_below
from halo_seg.io.dicom_seg import SERIES_KEY
from halo_seg.io.geometry import KEY as GEOMETRY
from halo_seg.io.labels import label_dtype, whole_labels
from halo_seg.io.tiff_frames import looks_like_frames
from halo_seg.io.tiff_slices import looks_like_slices
from halo_seg.io.series_output import TIME_SERIES
from halo_seg.io.track_output import TRACKS
from halo_seg.io.volume import SUPPORTED, VolumeError, file_contents, is_zarr_dir, recorded_spacing

from ._measure import file_features
from ._paintable import paintable
from ._timelapse_labels import as_planes, timelapse_labels_layers


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    name = str(path).lower().rstrip("/")
    # a CD's or PACS export's folder too: reading it says which series it holds ("no reader" would not)
    if not (name.endswith(SUPPORTED) or is_zarr_dir(path) or looks_like_series(Path(path))
            or looks_like_slices(path) or looks_like_frames(path) or _tracks_below(Path(path))
            or (Path(path).is_dir() and series_below(Path(path), most=1))):
        return None
    return read_volume


def _tracks_below(p: Path) -> Path | None:
    """A Cell Tracking Challenge ground truth's NN_GT folder: its TRA folder (the tracks), else None."""
    from halo_seg.io.ctc_tracking import lineage_file
    tra = p / "TRA"
    return tra if p.is_dir() and tra.is_dir() and lineage_file(tra) is not None else None


def read_volume(path):
    if isinstance(path, list):
        path = path[0]
    p = _tracks_below(Path(path)) or Path(path)   # a CTC dataset's 01_GT: its tracks
    _finish_track_edit(p)
    raw = file_contents(p)
    names = axis_names(raw.data.shape, raw.meta.get("axes"))
    raw, names = as_planes(raw, names)   # a 2D movie's frames, or a 2D image, as planes (as `track` takes them)
    if "z" not in names and names[-1] == "c":   # left as it is by as_planes: a colour photo
        raise VolumeError(f"{p.name} is a 2D colour (RGB) image {tuple(raw.data.shape)}; this plugin reads grey-level "
                          "images, volumes and time-lapses: open it with napari's own reader (File > Open with "
                          "Plugin > napari builtins), or save one colour channel as a grey image")
    several = {n for n, size in zip(names, raw.data.shape) if n not in SPATIAL and size > 1}
    if raw.meta.get(TRACKS):   # a time-lapse's objects tracked (halo_seg.tracking)
        return _track_layers(p, raw)
    if several and several <= {"c", "t"} and not raw.meta.get("labels"):
        return _stack_layers(p, raw, names)
    if raw.meta.get(TIME_SERIES):   # every time point of a time-lapse segmented (engine/series.py)
        return _series_layers(p, raw)
    if "t" in several and raw.meta.get("labels"):   # a folder of masks (the Cell Tracking Challenge's), 4D labels
        return timelapse_labels_layers(p, raw, names, *_timed_place(raw, p))
    vol = open_volume(raw)  # a VolumeError names the problem; napari shows it to the user
    meta = {"source": str(p), "format": vol.meta.get("format"), "spacing_known": vol.spacing_known}
    place = {"scale": vol.spacing, **placement(vol.meta.get(GEOMETRY), vol.spacing)}
    if vol.meta.get("unit"):   # the spacing's length unit: objects measure in mL or µm³ (_measure.py)
        meta["unit"] = vol.meta["unit"]
    if GEOMETRY in vol.meta:
        meta[GEOMETRY] = vol.meta[GEOMETRY]
    if vol.meta.get("format") == "dicom":   # labels drawn on it can go back as DICOM SEG (_writer.py)
        meta[SERIES_KEY] = vol.source
    elif vol.meta.get(SERIES_KEY):   # a DICOM SEG or RT structure set: its series, so the labels save as a SEG on it
        meta[SERIES_KEY] = vol.meta[SERIES_KEY]
    # a halo-seg output group, or a NIfTI file that says it holds labels: a Labels layer
    # (not an OME-Zarr image whose labels/ group holds label images: its voxels are an image's)
    is_output = vol.meta.get("array") == "labels"
    labels = None
    if is_output or vol.meta.get("labels"):
        try:   # float-stored labels (FSL, SPM) as whole ids: napari's Labels layer takes integers only
            labels = whole_labels(vol.data, str(p))
        except VolumeError as exc:   # fractions: not labels whatever the header says; shown as an image
            import warnings
            warnings.warn(f"{exc}; opened as an image")
    if labels is not None:
        name = p.stem + " labels" if is_output else p.name.split(".")[0]
        if vol.meta.get("incomplete"):   # a run that stopped: shown, and said to be partial
            import warnings
            warnings.warn(f"{p} is the output of a segment run that stopped ({vol.meta['incomplete']}); "
                          "finish it with `halo-seg segment ... --resume`")
            name += f" (incomplete: {vol.meta['incomplete']})"
        data, note = paintable(labels)   # in memory where it fits: the brush on a dask array slows down
        if isinstance(data, np.ndarray) and data.dtype != vol.data.dtype and data.size:
            data = data.astype(label_dtype(int(data.max())), copy=False)   # from floats: the bytes the ids need
        if note:
            import warnings
            warnings.warn(f"{p}: {note}")
        # the names a SEG, a structure set or a Slicer segmentation gives its labels, under the cursor
        features = file_features(vol.meta)
        layers = [(data, {"name": name, **place, "metadata": meta, **features}, "labels")]
        if is_output and (p / UNCERTAINTY).is_dir():   # where the labels are likely wrong, shown on demand
            import dask.array as da
            import zarr
            layers.append((da.from_zarr(zarr.open_group(str(p), mode="r")[UNCERTAINTY]),
                           {"name": p.stem + " uncertainty", **place, "colormap": "inferno",
                            "contrast_limits": (0, 50), "blending": "additive", "visible": False}, "image"))
        return layers
    kw = {}
    if vol.meta.get("window"):   # the window a DICOM series was stored with (a CT in HU is unreadable without)
        c, w = vol.meta["window"]
        kw["contrast_limits"] = [c - w / 2, c + w / 2]
    else:
        limits = display_range(vol.data)
        if limits is not None:
            kw["contrast_limits"] = limits
    if vol.meta.get("levels"):   # an OME-Zarr pyramid: napari draws the level the zoom needs
        return [([vol.data, *vol.meta["levels"]], {"name": p.name.split(".")[0], **place,
                                                   "metadata": meta, "multiscale": True, **kw}, "image")]
    return [(vol.data, {"name": p.name.split(".")[0], **place, "metadata": meta, **kw}, "image")]


def placement(geometry, spacing) -> dict:
    """The layer's translation where its file places it in the world: voxel (0, 0, 0) along the
    volume's own axes (io.geometry.axes_position), so that a segmentation saved cropped to its
    objects (3D Slicer's way) sits on its scan, an OME-Zarr crop or tile of a larger acquisition
    where its translation puts it, and napari's coordinates are the file's world units. None where
    the file places it nowhere, or its voxel size is not the geometry's."""
    from halo_seg.io.geometry import axes_position, is_placed, spacing_of
    if not is_placed(geometry) or not np.allclose(spacing_of(geometry), spacing, rtol=1e-3):
        return {}
    return {"translate": axes_position(geometry)}


CHANNEL_COLORS = ("green", "magenta", "cyan", "yellow", "red", "blue")
SOFT_TISSUE = [-160.0, 240.0]   # the CT window (level 40, width 400 HU) a radiologist starts from


def display_range(data, voxels: int = 2 ** 20) -> list[float] | None:
    """Contrast limits from the 0.5th and 99.5th percentiles of the middle three slices (one read of
    a lazy volume): napari's minimum and maximum let a few bright voxels (vessels, a marker, an MR
    artefact) leave the tissue dark. A CT in Hounsfield units (air at -1000) gets the soft-tissue
    window instead. None where the slices hold a single value."""
    mid = data.shape[0] // 2
    sample = np.asarray(data[max(0, mid - 1):mid + 2])
    step = max(1, int(np.sqrt(sample.size / voxels)))
    values = sample[:, ::step, ::step].astype(np.float64).ravel()
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if -1100 <= lo <= -900 and hi > 100:
        return list(SOFT_TISSUE)
    return [lo, hi] if hi > lo else None


def _stack_layers(p: Path, raw, names) -> list:
    """A multi-channel or time-lapse file: one image layer per channel, in the file's colours'
    order, each (T, Z, Y, X) when the file has several time points. A channel layer remembers its
    channel, so the engine reads that channel from the file; a time series is read from the layer
    (Split Stack gives one layer per time point, each a 3D volume the widgets take)."""
    try:   # every level of an OME-Zarr pyramid alike (t and c are never downsampled)
        arranged = [arrange(a, names, str(p)) for a in [raw.data, *(raw.meta.get("levels") or [])]]
    except AxisChoiceError as exc:
        raise VolumeError(str(exc)) from None
    levels, kept = [a for a, _ in arranged], arranged[0][1]
    spacing = recorded_spacing(raw.spacing, str(p))
    timed = "t" in kept
    chans = raw.meta.get("channel_names") or []
    n_c = levels[0].shape[1 if timed else 0] if "c" in kept else 1
    base = {"format": raw.meta.get("format"), **({"unit": raw.meta["unit"]} if raw.meta.get("unit") else {}),
            **({GEOMETRY: raw.meta[GEOMETRY]} if GEOMETRY in raw.meta else {})}
    layers = []
    for c in range(n_c):
        data = [a if "c" not in kept else (a[:, c] if timed else a[c]) for a in levels]
        meta = dict(base)
        if "c" in kept:
            meta["channel"] = c
        # the engine reads a 3D layer's channel from the file, and each time point of a time-lapse
        # layer (_timelapse.py)
        if not raw.meta.get("planes"):   # a 2D movie's time points are 2D in its file: read from the layer
            meta["series_source" if timed else "source"] = str(p)
        name = p.name.split(".")[0] + (f" {chans[c] if c < len(chans) else f'c{c}'}" if "c" in kept else "")
        kw = {"colormap": CHANNEL_COLORS[c % len(CHANNEL_COLORS)], "blending": "additive"} if n_c > 1 else {}
        if len(data) > 1:
            kw["multiscale"] = True
        at = placement(raw.meta.get(GEOMETRY), spacing).get("translate")
        if at:
            kw["translate"] = (0.0,) * timed + tuple(at)
        layers.append((data if len(data) > 1 else data[0],
                       {"name": name, "scale": (1.0,) * timed + spacing, "metadata": meta, **kw}, "image"))
    return layers


def _timed_place(raw, p: Path) -> tuple[dict, dict]:
    """A (T, Z, Y, X) output's placement (time unscaled) and layer metadata."""
    spacing = recorded_spacing(raw.spacing, str(p))
    at = placement(raw.meta.get(GEOMETRY), spacing).get("translate")
    place = {"scale": (1.0,) + spacing, **({"translate": (0.0,) + tuple(at)} if at else {})}
    meta = {"source": str(p), "format": raw.meta.get("format"), "spacing_known": raw.spacing_known,
            **({"unit": raw.meta["unit"]} if raw.meta.get("unit") else {}),
            **({GEOMETRY: raw.meta[GEOMETRY]} if GEOMETRY in raw.meta else {})}
    return place, meta


def _finish_track_edit(p: Path) -> None:
    """A track output whose last edit stopped half way (napari or the command killed): finished
    before it is shown, as `halo-seg track-edit` would, so that no cell shows in two tracks."""
    if not is_zarr_dir(p):
        return
    import warnings

    import zarr

    from halo_seg.io.track_output import PENDING
    try:
        attrs = zarr.open_group(str(p), mode="r").attrs
    except Exception:
        return   # not this reader's to judge: file_contents says what is wrong
    if attrs.get(PENDING):
        from halo_seg.tracking.edit import TrackOutput
        warnings.warn(f"{p}: finished an edit that had stopped half way: {TrackOutput(p).finish_pending()}")


def _track_layers(p: Path, raw) -> list:
    """A track output: its labels (T, Z, Y, X; an id per track, the same at every time point) and
    the tracks' paths with their lineage (a daughter's path starts from her mother's)."""
    import warnings

    from halo_seg.io.track_output import track_points

    from ._objects_series import TRACK_OUTPUT
    place, meta = _timed_place(raw, p)
    data, note = paintable(raw.data)
    if note:
        warnings.warn(f"{p}: {note}")
    points, graph = track_points(p)
    info = raw.meta[TRACKS]
    kw = {}
    if not note:   # under the cursor, as the Objects widget's tracking shows: first, last, mother, speed
        import zarr

        from halo_seg.tracking.summary import per_track, track_table

        from ._objects_series import track_features
        spacing = tuple(place["scale"][1:])
        lineage = np.asarray(zarr.open_group(str(p), mode="r")["lineage"][...]).reshape(-1, 4)
        kw["features"] = track_features(per_track(track_table(data, points, spacing), lineage, spacing),
                                        meta.get("unit"))
    layers = [(data, {"name": p.stem + " tracked", **place, "metadata": {**meta, TRACK_OUTPUT: str(p)}, **kw},
               "labels")]
    if len(points):   # napari cannot show a Tracks layer without a point (no object at any time point)
        layers.append((points, {"name": p.stem + " tracks", **place, "graph": graph, "tail_length": 10,
                                "metadata": {"source": str(p), TRACK_OUTPUT: str(p), "tracks": info.get("tracks"),
                                             "divisions": info.get("divisions")}}, "tracks"))
    return layers


def _series_layers(p: Path, raw) -> list:
    """A time series output: its labels as one (T, Z, Y, X) Labels layer over the time-lapse (time
    points not segmented are background), in memory where they fit, and its uncertainty hidden.
    The brush's strokes stay in the layer (saved, it is a file per time point: _writer.py); each time
    point's output group (OUT.zarr/t0003) is what the engine's other commands take."""
    import warnings

    import zarr

    from halo_seg.io.series_output import series_stack
    place, meta = _timed_place(raw, p)
    name = p.stem + " labels"
    if raw.meta.get("incomplete"):
        warnings.warn(f"{p} is a time series output whose run stopped ({raw.meta['incomplete']}); finish it "
                      "with `halo-seg segment ... --timepoint ... --resume`")
        name += f" (incomplete: {raw.meta['incomplete']})"
    data, note = paintable(raw.data)
    if note:
        warnings.warn(f"{p}: {note}")
    features = file_features(raw.meta)
    layers = [(data, {"name": name, **place, "metadata": meta, **features}, "labels")]
    node = zarr.open_group(str(p), mode="r")
    try:
        doubt, _ = series_stack(node, dict(node.attrs), p, UNCERTAINTY)
        layers.append((doubt, {"name": p.stem + " uncertainty", **place, "colormap": "inferno",
                               "contrast_limits": (0, 50), "blending": "additive", "visible": False}, "image"))
    except VolumeError:   # no time point has one (written by a run that stopped at once)
        pass
    return layers
