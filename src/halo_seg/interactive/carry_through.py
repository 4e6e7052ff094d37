"""`halo-seg carry`: the objects of one time point of a time-lapse carried through the time points
after it (or before it), every object at once a time point at a time (carry_all), written as a
(T, Z, Y, X) labels array with each object's link to the one it was carried from: the objects
array the interactive widget keeps, which napari opens with its links and `halo-seg track --ids`
makes tracks and a lineage of. A script's "All to next time point" pressed to the end."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..io.volume import VolumeError


@dataclass
class CarryRun:
    output: str
    timepoints: list                    # the time points written, in the order carried
    rows: list = field(default_factory=list)   # per time point carried to: t, objects, committed, not found, two
    links: dict = field(default_factory=dict)  # id -> id it was carried from


def _objects_at(objects, t: int, shape, n: int) -> np.ndarray:
    """The objects to carry (ids, (Z, Y, X)): a 3D labels volume, or time point ``t`` of a
    time-lapse's labels (the widget's kept objects, a tracking's labels)."""
    from ..io.labels import check_label_volume
    from ..io.volume import file_contents, open_volume
    raw = file_contents(objects)
    axes = [str(a).lower() for a in (raw.meta.get("axes") or [])]
    if "t" in axes or raw.data.ndim == 4:   # labels over time; 4D unnamed (.npy): (T, Z, Y, X)
        held = raw.data.shape[axes.index("t")] if "t" in axes else raw.data.shape[0]
        if held != n:
            raise VolumeError(f"{objects} holds {held} time points, the image {n}: the objects must be of that "
                              "time-lapse")
        vol = open_volume(replace(raw, meta=dict(raw.meta)), timepoint=t) if "t" in axes else open_volume(raw.data[t])
    else:
        vol = open_volume(replace(raw, meta=dict(raw.meta)))
    check_label_volume(vol.data, f"the objects ({objects})")
    if tuple(vol.data.shape) != tuple(shape):
        raise VolumeError(f"the objects ({objects}) are {tuple(vol.data.shape)}, the image's time points {tuple(shape)}: "
                          "they must lie on its voxel grid")
    labels = np.asarray(vol.data)
    if not labels.any():
        raise VolumeError(f"the objects ({objects}) hold no object at time point {t}: nothing to carry")
    if labels.max() > np.iinfo(np.uint32).max // 2:
        raise VolumeError(f"the objects' ids reach {labels.max()}; carry numbers new ones after them in uint32")
    return labels


def carry_through(image, objects, output, start: int = 0, stop: int | None = None, channel=None, spacing=None,
                  device: str = "auto", weights: str = "default", drop_neighbours: bool = False, keep_faded: bool = False,
                  progress=None, cancel=None) -> CarryRun:
    """Carry the objects of time point ``start`` of the time-lapse ``image`` (a path) to ``stop``
    (default: its last time point; before ``start``: backward), every object at once a time point at
    a time, each carried one going on from the last; written to ``output`` (a new zarr array,
    (T, Z, Y, X) uint32, axes, spacing and the links kept as its ``carried_from``) after each time
    point, so that a run stopped keeps what it did. An object that faded into the background where it
    was carried to (its cell left the field or is gone: carry_all's Carried.faded) is not written
    there, and its track ends (``keep_faded``: it is written). ``progress(done, total)`` after each time point."""
    import zarr

    from .. import InteractiveSegmenter
    from ..io.timepoints import timepoint_count
    from ..io.volume import CARRIED_FROM, file_contents, links_attr, open_volume
    from .carry_all import carry_all, place_all
    out = Path(output)
    if out.exists():
        raise VolumeError(f"{out} exists: carry writes a new labels array (remove it, or give another name)")
    if not str(out).rstrip("/").endswith(".zarr"):
        raise VolumeError(f"{out}: carry writes a zarr labels array; name it NAME.zarr")
    raw = file_contents(image)
    n = timepoint_count(raw, "carry follows objects through a time-lapse: give one (a file whose axes name t, "
                             "a folder of frames)")
    stop = n - 1 if stop is None else int(stop)
    for name, t in (("start", start), ("stop", stop)):
        if not 0 <= t < n:
            raise VolumeError(f"the {name} time point {t} is outside the time-lapse (0 to {n - 1})")
    if stop == start:
        raise VolumeError(f"start and stop are both time point {start}: nothing to carry to")

    def volume(t):
        return open_volume(replace(raw, meta=dict(raw.meta)), channel=channel, timepoint=t, spacing=spacing)

    first = volume(start)
    shape, sp = tuple(first.data.shape), tuple(float(s) for s in first.spacing)
    labels = _objects_at(objects, start, shape, n).astype(np.uint32)
    direction = 1 if stop > start else -1
    # a time point in chunks of at most 64 x 256 x 256 (16 MB): a large one is not one chunk of gigabytes
    chunks = (1, min(shape[0], 64)) + tuple(min(s, 256) for s in shape[1:])
    arr = zarr.open_array(str(out), mode="w-", shape=(n,) + shape, dtype=np.uint32, chunks=chunks)
    arr.attrs.update({"axes": ["t", "z", "y", "x"], "spacing": list(sp), CARRIED_FROM: {}})
    arr[start] = labels
    run = CarryRun(str(out), [start])
    next_id, records = int(labels.max()) + 1, {}
    steps = list(range(start + direction, stop + direction, direction))
    data = first.data
    for i, t1 in enumerate(steps):
        # the volume before: the objects' contrast where they came from (those carried have it in their records)
        data, before = volume(t1).data, data
        carried = carry_all(lambda: InteractiveSegmenter(data, spacing=sp, device=device, weights=weights), labels,
                            t1 - direction, records, direction, cancel=cancel, drop_neighbours=drop_neighbours,
                            image=before)
        if keep_faded:
            carried = [replace(c, faded=False) for c in carried]
        here = np.zeros(shape, np.uint32)
        placed, gone, covered, dim = place_all(carried, here, next_id)   # an object carried before it keeps its voxels
        records = {p.id: {**p.carried.record, "label": p.id} for p in placed}
        run.links.update({p.id: p.carried.label for p in placed})
        two = [p.id for p in placed if p.carried.two]
        gone, next_id = gone + covered, next_id + len(placed)
        arr[t1] = here
        arr.attrs[CARRIED_FROM] = links_attr(run.links)   # after each time point: what is written is linked
        run.timepoints.append(t1)
        run.rows.append({"t": t1, "objects": len(carried), "committed": len(records), "not_found": gone,
                         "faded": dim, "looks_like_two": two})
        labels = here
        if progress is not None:
            progress(i + 1, len(steps))
        if not here.any():   # every object lost: nothing left to carry
            break
    return run
