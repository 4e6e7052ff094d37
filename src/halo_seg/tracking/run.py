"""Tracking a time-lapse's objects: each time point's objects found (halo_seg.instances, or the ids
a tool such as StarDist gave), linked to the time point before (tracking.link), and written with
their track id as one (T, Z, Y, X) label volume whose ids stay the same object over time.

The output group (``tracks.zarr``) holds ``labels`` (T, Z, Y, X, uint32, in chunks of 1 to 4 MB within a time point,
axes named; every command takes a time point of it with ``--timepoint``), ``tracks`` (a row per
object and time point: track, t, z, y, x centroid in voxels; napari's Tracks layer) and
``lineage`` (a row per track: track, first and last time point, parent track or 0; the Cell
Tracking Challenge's ``L B E P``). Time points are read one at a time and only the last few
time points' ids are kept (on disk), so a time-lapse of any length and frame size fits. The
output is built in ``.NAME.partial`` beside it and moved into place when whole; a run stopped
part way keeps it there, with what it needs to go on (tracking.checkpoint, ``resume``).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..io.track_output import TRACKS, in_order
from ..io.volume import VolumeError
from .checkpoint import (LOCK, STATE, claim, load_state, load_timepoint, partial_dir, release, save_state,
                         save_timepoint)
from .frames import SLAB_VOXELS, frame_objects, frame_overlaps
from .link import Linker


@dataclass
class TrackResult:
    output: Path
    tracks: int                                    # track ids 1..tracks
    divisions: int
    timepoints: list                               # the time points tracked
    objects: list                                  # objects at each of them
    table: dict = field(default_factory=dict)      # a row per object and time point (timepoint, track, parent, ...)
    lineage: np.ndarray | None = None              # rows: track, first, last time point, parent
    spacing: tuple = (1.0, 1.0, 1.0)
    unit: str | None = None
    seconds: float = 0.0
    shape: tuple = ()                              # a time point's (Z, Y, X)
    given_links: int = 0                           # of the links given (track_objects links), those used
    choices: list = field(default_factory=list)    # link "auto": the link chosen, a run of time points each


def check_track_output(out: Path, source) -> None:
    """Only a free path, or an earlier output of track (never the input, never a user's volume)."""
    import zarr

    from ..io.volume import check_own_output
    if isinstance(source, (str, Path)) and Path(source).resolve() == out.resolve():
        raise VolumeError("the output must not be the input: the input is read while the output is written")
    check_own_output(out, "track", "a zarr group of track labels",
                     lambda p: TRACKS in zarr.open_group(p, mode="r").attrs)


def _contents(path):
    """A time-lapse file's contents; a folder of TIFF files is its frames, one per time point,
    whatever their names (tracking means a time-lapse: a stack of z slices has nothing to track)."""
    from ..io.tiff_frames import holds_tiffs, open_frames
    from ..io.volume import file_contents
    return open_frames(path) if holds_tiffs(path) else file_contents(path)


class _Input:
    """The time-lapse's labels (a file, a `segment --timepoint all` output or a (T, Z, Y, X) array),
    and the image measured under them, a time point at a time."""

    def __init__(self, source, channel, timepoints, spacing, image, image_channel):
        from ..io.series_output import TIME_SERIES
        from ..io.timepoints import parse_timepoints, timepoint_count
        self.source, self.channel, self.image, self.image_channel = source, channel, image, image_channel
        self.is_path = isinstance(source, (str, Path))
        # each file opened once: a series output's stack of every time point is built on opening
        self.raw = _contents(source) if self.is_path else None
        self.image_raw = _contents(image) if isinstance(image, (str, Path)) else None
        series = self.raw.meta.get(TIME_SERIES) if self.is_path else None
        self.n = int(series["timepoints"]) if series else timepoint_count(
            self.raw if self.is_path else source,
            "tracking follows objects over time: give a time-lapse's labels (a file whose axes name t, such as an "
            "ImageJ hyperstack, OME-TIFF, OME-Zarr or 4D NIfTI, a folder of frames) or a `segment --timepoint all` "
            "output")
        if series and (timepoints is None or str(timepoints).strip().lower() == "all"):
            self.chosen = list(series["segmented"])   # those not segmented would read as empty
        else:
            self.chosen = parse_timepoints("all" if timepoints is None else timepoints, self.n)
        if len(self.chosen) < 2:
            raise VolumeError(f"tracking needs at least 2 time points; {len(self.chosen)} chosen of {self.n}")
        first = self.volume(self.chosen[0])
        self.shape = tuple(first.data.shape)
        self.spacing = tuple(float(s) for s in (spacing if spacing is not None else first.spacing))
        self.unit = first.meta.get("unit")
        from ..io import geometry
        self.geometry = first.meta.get(geometry.KEY)

    def volume(self, t: int):
        from ..io.volume import open_volume
        if self.is_path:   # open_volume takes its time point from a copy (it changes what it is given)
            return open_volume(replace(self.raw, meta=dict(self.raw.meta)), channel=self.channel, timepoint=t,
                               planes=True)   # a 2D time-lapse's frames as planes
        return open_volume(self.source[t])

    def labels(self, t: int):
        from ..io.labels import check_label_volume
        data = self.volume(t).data
        check_label_volume(data, f"time point {t} of the labels")
        if tuple(data.shape) != self.shape:
            raise VolumeError(f"time point {t} of the labels is {tuple(data.shape)}, the first {self.shape}")
        return data

    def intensities(self, t: int):
        if self.image is None:
            return None
        from ..io.volume import open_volume
        if self.image_raw is not None:
            data = open_volume(replace(self.image_raw, meta=dict(self.image_raw.meta)), channel=self.image_channel,
                               timepoint=t, planes=True).data
        else:
            data = open_volume(self.image[t]).data
        if tuple(data.shape) != self.shape:
            raise VolumeError(f"the image's time point {t} is {tuple(data.shape)} but the labels' {self.shape}: "
                              "they must be the same time-lapse on one voxel grid")
        return data


def track_objects(source, out, timepoints=None, channel=None, objects_given: bool = False, classes=None,
                  min_voxels: int = 0, connectivity: int = 1, split: float | None = None, min_iou: float = 0.1,
                  division_overlap: float = 0.2, max_distance: float | None = None, max_gap: int = 1,
                  link: str = "overlap", predict: bool = True, distance_divisions: bool = True, spacing=None,
                  unit: str | None = None, image=None, image_channel=None, progress=None, cancel=None,
                  resume: bool = False, links: dict | None = None) -> TrackResult:
    """Track the objects of a time-lapse's labels ``source`` into the zarr group ``out``.

    ``source``: a path (a `segment --timepoint all` output, or a labels file with a t axis; its
    ``channel`` if it has several) or a (T, Z, Y, X) array (with ``spacing`` and its length
    ``unit``). ``timepoints``: as segment's ("0-9,20"; default every one, or every one segmented).
    Each time point's objects are its connected components (``classes``, ``min_voxels``,
    ``connectivity``, ``split`` as in halo_seg.instances), or with ``objects_given`` its ids as they
    are (touching cells kept apart by the tool that numbered them). Linking: tracking.link
    (``link`` "overlap", "distance" or "auto": one of them chosen at each time point from the cells'
    motion since the one before, ``min_iou``, ``division_overlap``, ``max_distance`` in the
    spacing's units, ``max_gap`` time points; ``predict``: distances are from where each track's
    steps so far predict it, as much of its last step as the cells keep, fitted to the tracks;
    ``distance_divisions``: with ``max_distance``, divisions are told by the daughters' sizes and
    places too, where they lie too far from their mother to overlap her). ``links``, with
    ``objects_given``: {id: id of the object it was carried from} (the interactive widget's objects
    followed with Next time point), each a link whatever else says (tracking.link ``given``); the
    other objects linked as above.
    ``image``: measured under each object (mean, std, ...) in the table. ``progress(done, total)``
    after each time point; ``cancel()`` True stops between slabs; then, as on any error, the output
    is not written (an earlier one stays as it was) and the time points done are kept beside it
    (tracking.checkpoint): ``resume`` goes on from there, given the same settings.
    """
    start = time.perf_counter()
    out = Path(out)
    if objects_given and (classes or min_voxels or split is not None):
        raise VolumeError("the labels' ids are taken as the objects (objects_given): classes, min_voxels and split "
                          "apply only when objects are found as connected components")
    if links and not objects_given:
        raise VolumeError("links name objects by their ids: they apply to objects given as the labels hold them "
                          "(objects_given), not to connected components found anew")
    given = {}
    for k, v in (links or {}).items():
        if int(k) != k or int(v) != v or k <= 0 or v <= 0 or k == v:
            raise VolumeError(f"a link joins two objects' ids (whole numbers > 0, not the same): got {k} from {v}")
        given[int(k)] = int(v)
    linker = Linker(min_iou=min_iou, division_overlap=division_overlap, max_distance=max_distance, max_gap=max_gap,
                    link=link, predict=predict, distance_divisions=distance_divisions, given=given)
    linker.check()
    check_track_output(out, source)
    src = _Input(source, channel, timepoints, spacing, image, image_channel)
    src.unit = unit or src.unit   # a unit given goes with a spacing given
    linker.spacing = src.spacing
    linker.planar = src.shape[0] == 1
    # built beside the output and moved there when whole: an error or a cancel leaves an earlier
    # output as it was, and never half a tracking (objects that would read as vanished)
    work = partial_dir(out)
    claim(work, out)   # before anything in it is cleared
    if not resume:
        for old in work.iterdir():
            if old.is_dir():
                shutil.rmtree(old)
            elif old.name != LOCK:
                old.unlink()
    settings = {"input": str(Path(source).resolve()) if src.is_path else "an array", "timepoints": list(src.chosen),
                "shape": list(src.shape), "spacing": list(src.spacing), "objects_given": bool(objects_given),
                "classes": list(classes) if classes else None, "min_voxels": int(min_voxels),
                "connectivity": int(connectivity), "split": split,
                "image": str(Path(image).resolve()) if isinstance(image, (str, Path)) else image is not None,
                **{k: getattr(linker, k) for k in ("min_iou", "division_overlap", "max_distance", "max_gap", "link",
                                                   "predict", "distance_divisions")},
                **({"links": sorted([k, v] for k, v in given.items())} if given else {})}
    try:
        result = _track(src, work / "tracks.zarr", work, linker, settings, objects_given, classes, min_voxels,
                        connectivity, split, progress, cancel)
    except BaseException:
        release(work)
        if not (work / STATE).exists():   # not one time point done: nothing to go on from
            shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(work / "tracks.zarr"), str(out))
    shutil.rmtree(work, ignore_errors=True)
    result.output = out
    result.seconds = time.perf_counter() - start
    return result


def _track(src: _Input, out: Path, work: Path, linker: Linker, settings: dict, objects_given, classes, min_voxels,
           connectivity, split, progress, cancel) -> TrackResult:
    import zarr

    from ..instances import label_instances, split_touching
    from ..io.labels import create_zarr_array, mark_labels, read_label_slab, slabs
    from ..measure import by_timepoint, measure_labels
    step, starts = slabs(src.shape, SLAB_VOXELS)
    chunks = label_chunks(src.shape)
    kept: dict[int, tuple] = {}     # time point -> (ids, classes, Objects): the last max_gap + 1 stepped
    tables, rows, counts = [], [], []
    prev = None
    state = load_state(work, settings, linker) if (work / "tracks.zarr").exists() else None
    if state is None:
        shutil.rmtree(out, ignore_errors=True)   # a run killed before its first time point was done
        labels = create_zarr_array(out, (src.n,) + src.shape, chunks, np.uint32, name="labels", spacing=src.spacing,
                                   geometry=src.geometry)
        mark_labels(labels, src.unit)
        labels.attrs["axes"] = ["t", "z", "y", "x"]
    else:   # resumed: the time points done read back, the last few's objects found again in their ids
        labels = zarr.open_group(str(out), mode="r+")["labels"]
        for t in src.chosen[:state["done"]]:
            table, r = load_timepoint(work, t)
            tables.append((t, table))
            rows.append(r)
            counts.append(len(r))
        for t in state["kept"]:
            frame = src.labels(t)
            ids = frame if objects_given else zarr.open_array(str(work / f"t{t}.zarr"), mode="r")
            cls = frame if classes else None
            kept[t] = (ids, cls, frame_objects(ids, t, cls, cancel))
        prev = src.chosen[state["done"] - 1]
        if progress is not None:
            progress(state["done"], len(src.chosen))
    for k, t in enumerate(src.chosen):
        if state is not None and k < state["done"]:
            continue
        frame = src.labels(t)
        if objects_given:
            ids = frame
        else:
            shutil.rmtree(work / f"t{t}.zarr", ignore_errors=True)   # half written by a run stopped there
            res = label_instances(frame, work / f"t{t}.zarr", classes=classes, min_voxels=min_voxels,
                                  connectivity=connectivity, spacing=src.spacing, cancel=cancel, dtype=np.uint32)
            if split is not None:
                split_touching(res.path, split, src.spacing, cancel=cancel)
            ids = zarr.open_array(str(res.path), mode="r")
        cls = frame if classes else None
        objs = frame_objects(ids, t, cls, cancel)
        overlaps = None if prev is None else frame_overlaps(kept[prev][0], ids, kept[prev][1], cls, cancel=cancel)
        gaps = {}
        for t_old, old_ids in linker.gap_candidates().items():
            a, a_cls, a_objs = kept[t_old]
            gaps[t_old] = (a_objs, frame_overlaps(a, ids, a_cls, cls, only_a=old_ids, cancel=cancel))
        tracks = linker.step(None if prev is None else kept[prev][2], objs, overlaps, gaps)
        for z0 in starts:
            labels[t, z0:z0 + step] = _relabel(read_label_slab(ids, z0, step, cancel), objs.ids, tracks)
        table = measure_labels(ids, src.spacing, image=src.intensities(t), unit=src.unit, cancel=cancel)
        table["label"] = _relabel(table["label"], objs.ids, tracks).astype(np.int64)
        tables.append((t, table))
        rows.append(np.column_stack([tracks, np.full(len(tracks), t), objs.centroids]))
        counts.append(len(objs.ids))
        kept[t] = (ids, cls, objs)
        prev = t
        old = [s for s in kept if s not in src.chosen[max(0, k - linker.max_gap):k + 1]]
        for s in old:
            del kept[s]
        save_timepoint(work, t, table, rows[-1])
        save_state(work, settings, k + 1, linker, list(kept))
        for s in old:   # after the state that no longer needs them
            shutil.rmtree(work / f"t{s}.zarr", ignore_errors=True)
        if progress is not None:
            progress(k + 1, len(src.chosen))
    lineage = np.array([[k, *v] for k, v in sorted(linker.lineage.items())], np.int64).reshape(-1, 4)
    table = _with_tracks(by_timepoint(tables), lineage)
    grp = zarr.open_group(str(out), mode="r+")
    grp.create_array("tracks", data=in_order(np.concatenate(rows) if rows else np.zeros((0, 5))), overwrite=True)
    grp.create_array("lineage", data=lineage, overwrite=True)
    grp.attrs[TRACKS] = {"input": str(src.source) if src.is_path else "an array", "timepoints": src.n,
                         "tracked": list(src.chosen), "tracks": len(lineage), "divisions": linker.divisions,
                         "objects": "given" if objects_given else "connected components",
                         "min_iou": linker.min_iou, "division_overlap": linker.division_overlap,
                         "max_distance": linker.max_distance, "max_gap": linker.max_gap, "link": linker.link,
                         "predict": linker.predict, "distance_divisions": linker.distance_divisions,
                         **({"choices": linker.choices} if linker.choices else {}),
                         **({"given_links": linker.given_used} if linker.given else {})}
    return TrackResult(out, len(lineage), linker.divisions, list(src.chosen), counts, table, lineage, src.spacing,
                       src.unit, shape=src.shape, given_links=linker.given_used, choices=linker.choices)


def label_chunks(shape) -> tuple:
    """The chunks of a track output's (T, Z, Y, X) labels for time points of ``shape``: a slab of
    whole slices (frames.SLAB_VOXELS) covers whole chunks; chunks of about 1 to 4 MB, so that an
    edit (tracking.edit) rewrites the few a cell lies in rather than whole time points."""
    from ..io.labels import slabs
    step, _ = slabs(shape, SLAB_VOXELS)
    side = int(min(512, max(64, 2 ** round(np.log2(np.sqrt((1 << 20) / min(step, shape[0])))))))
    return (1, step, min(shape[1], side), min(shape[2], side))


def _relabel(values: np.ndarray, ids: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """``values`` (object ids, 0 background) as their track ids (uint32): a lookup table where the
    ids are small, else a search in the sorted ids (a tool's ids may be hashes in the billions)."""
    if not len(ids):
        return np.zeros(values.shape, np.uint32)
    if int(ids[-1]) < 1 << 24:
        lut = np.zeros(int(ids[-1]) + 1, np.uint32)
        lut[ids] = tracks
        return lut[values]
    at = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
    return np.where(values > 0, tracks[at], 0).astype(np.uint32)


def _with_tracks(table: dict, lineage: np.ndarray) -> dict:
    """measure's table by time point with ``label`` named ``track`` and the track's ``parent`` beside it."""
    parent = np.zeros(int(lineage[:, 0].max()) + 1 if len(lineage) else 1, np.int64)
    parent[lineage[:, 0]] = lineage[:, 3]
    out = {}
    for key, col in table.items():
        if key == "label":
            out["track"] = col
            out["parent"] = parent[col.astype(np.int64)] if len(col) else np.zeros(0, np.int64)
        else:
            out[key] = col
    return out
