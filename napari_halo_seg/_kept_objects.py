"""The objects layer kept on disk as it changes, so that closing napari or a crash loses no committed
object (the kept session holds the current object only).

One zarr array per image beside its kept session (sessions/<image>.<hash>.objects.zarr), a Labels
volume that `halo-seg export` and the reader take. Every change the widget makes to the layer
(Commit, the Undo of a Commit, Edit label on it) and every brush stroke on it writes the box it
touched, in a background thread, so the UI does not wait on the disk. A new napari session does
not take the file over: "Restore objects" brings its objects back into the layer; a first change
made without restoring moves the earlier file aside (its name stamped with its time), never over it.
The same keeper writes the corrections of an automatic result into its output's labels array (a
layer's INTO), which it never creates or moves, stamping it as corrected.
"""
from __future__ import annotations

import importlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from halo_seg.engine.output import CORRECTED   # the labels array's attribute: when a correction went into it
from halo_seg.io.volume import CARRIED_FROM, SEGMENT_NAMES, links_attr, links_in, names_attr, names_in

from ._measure import layer_links, layer_names

KEPT = "kept objects"      # a layer's metadata: the file it is kept in
EARLIER = "kept earlier"   # a layer's metadata: the file holding an earlier napari session's objects
INTO = "kept in"           # a layer's metadata: the labels array of a segment output its corrections go into
INTO_SERIES = "kept in time points"   # a (T, Z, Y, X) layer's: the series output whose time points they go into


def kept_objects_path(session_path: Path) -> Path:
    """The objects' file beside an image's kept session (same name, same identity hash)."""
    return session_path.with_name(session_path.name.replace(".last.npz", "") + ".objects.zarr")


def set_aside(path: Path) -> Path:
    """Where an earlier napari session's objects go when a new one starts keeping its own."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    aside = path.with_name(path.name.replace(".objects.zarr", f".objects.{stamp}.zarr"))
    n = 1
    while aside.exists():
        aside = path.with_name(path.name.replace(".objects.zarr", f".objects.{stamp}-{n}.zarr"))
        n += 1
    return aside


def read_kept(path: Path, shape) -> tuple[np.ndarray, dict[int, str], dict[int, int]]:
    """The kept objects of ``path`` (a volume of ``shape``), the names given to them and the links of
    those followed over time (id -> id carried from), or a ValueError naming what is wrong."""
    import zarr
    try:
        arr = zarr.open_array(str(path), mode="r")
    except Exception as exc:   # zarr raises several types for a missing or damaged array
        raise ValueError(f"cannot read the kept objects {path}: {exc}") from exc
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"the kept objects {path} are {tuple(arr.shape)}, the image is {tuple(shape)}")
    return np.asarray(arr[...]), names_in(arr.attrs), links_in(arr.attrs)


def _write(path: Path, shape, dtype, box, region: np.ndarray, attrs: dict, aside: Path | None,
           live: bool = False) -> None:
    import zarr
    if aside is not None and path.exists():
        path.rename(aside)
    if path.exists():
        try:
            old = zarr.open_array(str(path), mode="r")
            other = tuple(old.shape) != tuple(shape) or old.dtype != dtype
        except Exception:   # damaged: set aside, never deleted
            other = True
        if other:
            path.rename(set_aside(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = tuple(min(64, n) for n in shape)
    arr = zarr.open_array(str(path), mode="a", shape=tuple(shape), dtype=dtype, chunks=chunks, fill_value=0)
    arr[box] = np.asarray(region[box]) if live else region
    arr.attrs.update(attrs)


def _write_into(path: Path, shape, box, region: np.ndarray, live: bool = False) -> None:
    """A correction of an automatic result into the labels array of its output: that array only,
    which must be there with the layer's shape (never created, renamed or set aside)."""
    import zarr
    arr = zarr.open_array(str(path), mode="r+")
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{path} is {tuple(arr.shape)}, the layer {tuple(shape)}: the correction was not written")
    arr[box] = (np.asarray(region[box]) if live else region).astype(arr.dtype, copy=False)
    arr.attrs[CORRECTED] = time.strftime("%Y-%m-%d %H:%M:%S")


def _write_into_series(path: Path, shape, box, region: np.ndarray, live: bool = False) -> None:
    """A correction of a time-lapse result ((T, Z, Y, X) layer) into the labels of each time point
    it touched (``path``/t0003/labels, engine/series.py); a time point that was not segmented has
    none, and is said to keep the correction in the layer only."""
    from halo_seg.io.series_output import frame_name
    t0 = box[0].start
    for t in range(box[0].start, box[0].stop):
        labels = path / frame_name(t) / "labels"
        if not labels.is_dir():
            raise ValueError(f"time point {t} was not segmented ({path} has no {frame_name(t)}): its correction "
                             "is in the layer only")
        _write_into(labels, shape[1:], box[1:], region[t] if live else region[t - t0], live)


class ObjectsKeeper:
    """Writes boxes of objects layers to their files, one at a time, in a background thread; the
    latest failure is kept for the widget to report (the layer itself is never touched)."""

    def __init__(self):
        importlib.import_module("zarr")   # once here, not by the writer thread during the first Commit
        # one thread: boxes are written in the order they were handed over, so the last one done is all done
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="halo-seg-kept-objects")
        self._last = None
        self.error: Exception | None = None

    def adopt(self, layer, path: Path) -> bool:
        """Keep a new, empty objects layer in ``path``; True when that file holds an earlier
        session's objects (then they are there to restore, and are set aside at the first change)."""
        layer.metadata[KEPT] = str(path)
        earlier = path.exists()
        if earlier:
            layer.metadata[EARLIER] = str(path)
        return earlier

    def follow_history(self, layer) -> None:
        """Keep the layer after napari's own Undo and Redo of a brush stroke on it too, which tell
        nothing (no paint event): the whole layer, read in the thread."""
        for name in ("undo", "redo"):
            step = getattr(layer, name)

            def kept_step(step=step):
                step()
                self.write(layer, live=True)
            setattr(layer, name, kept_step)

    def write(self, layer, box: tuple | None = None, live: bool = False) -> None:
        """Keep ``box`` of the layer (all of it when None), as it is now; ``live``: read in the thread
        instead (no copy of a large layer here; a change made meanwhile is written again after it)."""
        into = (layer.metadata or {}).get(INTO)
        path = (layer.metadata or {}).get(KEPT)
        series = (layer.metadata or {}).get(INTO_SERIES)
        if not (path or into or series):
            return
        data = layer.data
        shape = tuple(data.shape)
        box = tuple(slice(0, n) for n in shape) if box is None else box
        region = data if live else np.array(data[box])   # a copy: the layer may change before the thread writes
        if into or series:
            self._submit(_write_into_series if series else _write_into, Path(series or into), shape, box, region, live)
            return
        aside = None
        if layer.metadata.get(EARLIER) == path:   # this layer's first change: the earlier objects stay, aside
            aside = set_aside(Path(path))
            layer.metadata[EARLIER] = str(aside)
        # what a reader needs to put the labels back on their scan (JSON: the geometry may hold arrays)
        attrs = json.loads(json.dumps(
            {"labels": True, "spacing": [float(s) for s in layer.scale[-3:]],
             SEGMENT_NAMES: names_attr(layer_names(layer.features)),   # liver, tumour
             CARRIED_FROM: links_attr(layer_links(layer.features)),    # Next time point's, for tracking
             **({"axes": ["t", "z", "y", "x"]} if len(shape) == 4 else {}),   # a time-lapse's objects
             **{k: v for k, v in (layer.metadata or {}).items() if k in ("image", "unit", "geometry")}},
            default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        self._submit(_write, Path(path), shape, np.dtype(data.dtype), box, region, attrs, aside, live)

    def _submit(self, fn, *args) -> None:
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._done)
        self._last = future

    def _done(self, future):
        if future.exception() is not None:
            self.error = future.exception()

    def wait(self, timeout: float | None = None) -> None:
        """Until every box handed over is written."""
        if self._last is not None:
            self._last.exception(timeout)

    def take_error(self) -> Exception | None:
        err, self.error = self.error, None
        return err


def atom_boxes(atoms, shape) -> list:
    """The boxes a napari paint event's atoms changed (the whole volume for an atom of unknown kind)."""
    boxes = []
    for atom in atoms:
        try:
            key = getattr(atom, "slice_key", None)   # napari >= 0.6: the box painted in
            if key is not None:
                boxes.append(full_box(key, shape))
            else:                                   # before: the voxels' indices
                indices = atom[0]
                if len(indices) and np.size(indices[0]):
                    boxes.append(tuple(slice(int(np.min(i)), int(np.max(i)) + 1) for i in indices))
        except (TypeError, ValueError, IndexError):
            boxes.append(full_box((), shape))
    return boxes


def full_box(index: tuple, shape) -> tuple:
    """``index`` (ints and slices, as _slice_of gives) as a box of slices over a volume of ``shape``."""
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    return tuple(slice(i, i + 1) if isinstance(i, int) else slice(*i.indices(n)[:2]) for i, n in zip(index, shape))


def union_box(a, b):
    """The bounding box of two boxes (tuples of slices; None: empty)."""
    if a is None or b is None:
        return b if a is None else a
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b))


def boxes_union(boxes) -> tuple | None:
    """The bounding box of ``boxes`` (None entries are empty), or None when all are."""
    box = None
    for b in boxes:
        box = union_box(box, b)
    return box


def stroke_box(atoms, shape) -> tuple | None:
    """The one box a paint event (a stroke, a fill, an erase) changed, or None."""
    return boxes_union(atom_boxes(atoms, shape))
