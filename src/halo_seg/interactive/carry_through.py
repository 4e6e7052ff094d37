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
    resumed_after: int | None = None    # resume: the last time point the stopped run had written


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


STATE = "carry_state"   # the output's attribute a run keeps what --resume needs in


def _record_json(record: dict) -> dict:
    """A carry record (carry.carry_record, its contrast) as JSON: floats written so that they read
    back the same (a resumed run carries on as one not stopped)."""
    out = {k: v for k, v in record.items() if k not in ("source", "image")}
    out["bounds"] = [[b.start, b.stop] for b in record["bounds"]]
    out["centroid"] = [float(v) for v in record["centroid"]]
    out["step"] = None if record["step"] is None else [float(v) for v in record["step"]]
    out["box"] = [int(v) for v in record["box"]]
    return out


def _record_read(saved: dict) -> dict:
    out = dict(saved, source=None)
    out["bounds"] = tuple(slice(a, b) for a, b in saved["bounds"])
    out["centroid"] = np.array(saved["centroid"], float)
    out["step"] = None if saved["step"] is None else np.array(saved["step"], float)
    out["box"] = tuple(saved["box"])
    return out


def carry_through(image, objects, output, start: int = 0, stop: int | None = None, channel=None, spacing=None,
                  device: str = "auto", weights: str = "default", drop_neighbours: bool = False, keep_faded: bool = False,
                  add_new: bool = False, resume: bool = False, progress=None, cancel=None,
                  keep_own: bool = True) -> CarryRun:
    """Carry the objects of time point ``start`` of the time-lapse ``image`` (a path) to ``stop``
    (default: its last time point; before ``start``: backward), every object at once a time point at
    a time, each carried one going on from the last; written to ``output`` (a new zarr array,
    (T, Z, Y, X) uint32, axes, spacing and the links kept as its ``carried_from``) after each time
    point, so that a run stopped keeps what it did. An object that faded into the background where it
    was carried to (its cell left the field or is gone: carry_all's Carried.faded) is not written
    there, and its track ends (``keep_faded``: it is written). ``add_new``: at each time point the
    cells no object holds (new_cells: came into the field, a daughter her mother's object left out)
    are segmented and written as new objects, carried from nothing and carried on. ``resume``:
    ``output`` is a run of these objects with these settings that stopped (or went less far in that
    direction): it goes on after the last time point it wrote, as if never stopped (what each object
    carries on from is kept with the output, STATE). ``progress(done, total)`` after each time point.
    ``keep_own``: an object that grew over a touching cell is written without it, and that cell as
    its own object where no object holds it (carry_all's, the default; False: the object keeps
    both, as before)."""
    import zarr

    from .. import InteractiveSegmenter
    from ..io.timepoints import timepoint_count
    from ..io.volume import CARRIED_FROM, file_contents, links_attr, open_volume
    from ..tracking.checkpoint import claim, release
    from .carry_all import carry_all, place_all
    from .new_cells import new_cells, segment_new
    out = Path(output)
    if not str(out).rstrip("/").endswith(".zarr"):
        raise VolumeError(f"{out}: carry writes a zarr labels array; name it NAME.zarr")
    if out.exists() and not resume:
        raise VolumeError(f"{out} exists: carry writes a new labels array (remove it, or give another name"
                          + ("; --resume goes on with the run that wrote it)" if _state(out) is not None else ")"))
    if resume and not out.exists():
        raise VolumeError(f"{out} does not exist: nothing to resume (run without --resume)")
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
    settings = {"start": start, "direction": direction, "channel": None if channel is None else str(channel),
                "spacing": list(sp), "weights": str(weights), "drop_neighbours": bool(drop_neighbours),
                "keep_faded": bool(keep_faded), "add_new": bool(add_new), "keep_own": bool(keep_own)}
    if resume:
        arr, state = _resumed(out, settings, labels, (n,) + shape)
        run = CarryRun(str(out), list(state["timepoints"]), list(state["rows"]),
                       {int(k): int(v) for k, v in arr.attrs.get(CARRIED_FROM, {}).items()})
        last = run.resumed_after = run.timepoints[-1]
        labels, next_id = np.asarray(arr[last]).astype(np.uint32), int(state["next_id"])
        records = {int(k): _record_read(r) for k, r in state["records"].items()}
        data = volume(last).data
        steps = [] if not labels.any() else list(range(last + direction, stop + direction, direction))
    else:
        # a time point in chunks of at most 64 x 256 x 256 (16 MB): a large one is not one chunk of gigabytes
        chunks = (1, min(shape[0], 64)) + tuple(min(s, 256) for s in shape[1:])
        arr = zarr.open_array(str(out), mode="w-", shape=(n,) + shape, dtype=np.uint32, chunks=chunks)
        arr.attrs.update({"axes": ["t", "z", "y", "x"], "spacing": list(sp), CARRIED_FROM: {}})
        arr[start] = labels
        run = CarryRun(str(out), [start])
        next_id, records, data = int(labels.max()) + 1, {}, first.data
        arr.attrs[STATE] = _state_json(settings, run, next_id, records)
        steps = list(range(start + direction, stop + direction, direction))
    claim(out, out, "carry")   # a lock in the store: a second run on it is refused while this one lives
    try:
        for i, t1 in enumerate(steps):
            # the volume before: the objects' contrast where they came from (those carried have it in their records)
            data, before = volume(t1).data, data
            def make():
                return InteractiveSegmenter(data, spacing=sp, device=device, weights=weights)
            carried = carry_all(make, labels, t1 - direction, records, direction, cancel=cancel,
                                drop_neighbours=drop_neighbours, image=before, keep_own=keep_own)
            if keep_faded:
                carried = [replace(c, faded=False) for c in carried]
            here = np.zeros(shape, np.uint32)
            placed, gone, covered, dim = place_all(carried, here, next_id)   # one carried before it keeps its voxels
            run.links.update({p.id: p.carried.label for p in placed if p.carried.label})   # 0: a new cell
            two = [p.id for p in placed if p.carried.two]
            took_in = [p.id for p in placed if p.carried.took_in]
            left_out = [p.id for p in placed if p.carried.grown_from is not None]
            gone, next_id = gone + covered, next_id + len(placed)
            new = []
            if add_new:   # cells no object holds (came in, a daughter left out): new objects, carried from nothing
                # every such cell, also one no object held before (not new_cells' before, which the widget's
                # marks use): a run that is to hold the field adds a cell it missed as soon as it is found
                new, *_ = place_all(segment_new(make, new_cells(data, here), t1, cancel=cancel), here, next_id)
                next_id += len(new)
            records = {p.id: {**p.carried.record, "label": p.id} for p in placed + new}
            arr[t1] = here
            run.timepoints.append(t1)
            objects = sum(c.grown_from is None for c in carried)   # carried also holds the cells left out
            run.rows.append({"t": t1, "objects": objects, "committed": len(placed) - len(left_out), "not_found": gone,
                             "faded": dim, "looks_like_two": two, "took_in": took_in, "left_out": left_out,
                             "new": [p.id for p in new]})
            # after the time point's labels, at once: what is written is linked, and a resume goes on from it
            arr.attrs.update({CARRIED_FROM: links_attr(run.links), STATE: _state_json(settings, run, next_id, records)})
            labels = here
            if progress is not None:
                progress(i + 1, len(steps))
            if not here.any():   # every object lost: nothing left to carry
                break
    finally:
        release(out)
    return run


def _state_json(settings: dict, run: CarryRun, next_id: int, records: dict) -> dict:
    return {"settings": settings, "timepoints": [int(t) for t in run.timepoints], "rows": run.rows,
            "next_id": int(next_id), "records": {str(k): _record_json(r) for k, r in records.items()}}


def _state(out: Path) -> dict | None:
    import zarr
    try:
        return zarr.open_array(str(out), mode="r").attrs.get(STATE)
    except Exception:   # not a zarr array (a group, a folder, damaged): no run of carry's to go on with
        return None


def _resumed(out: Path, settings: dict, labels: np.ndarray, shape: tuple):
    """The output of a stopped run to go on with, and its state; refused where it is not one of
    these objects, this time-lapse and these settings."""
    import zarr
    state = _state(out)
    if state is None:
        raise VolumeError(f"{out} holds no carry run to resume (not written by `halo-seg carry`, or by one "
                          "before --resume): remove it, or give another name")
    saved = state["settings"]
    differ = [k for k in sorted(set(saved) | set(settings)) if saved.get(k) != settings.get(k)]
    if differ:
        what = "; ".join(f"{k}: {saved.get(k)!r} then, {settings.get(k)!r} now" for k in differ)
        raise VolumeError(f"{out} was carried with other settings ({what}): give the same ones to go on")
    arr = zarr.open_array(str(out), mode="r+")
    if tuple(arr.shape) != tuple(shape):
        raise VolumeError(f"{out} is {tuple(arr.shape)}, this time-lapse {tuple(shape)}: it was carried through "
                          "another one")
    if not np.array_equal(np.asarray(arr[settings["start"]]), labels):
        raise VolumeError(f"{out} was carried from other objects at time point {settings['start']}: give the same "
                          "objects to go on")
    return arr, state
