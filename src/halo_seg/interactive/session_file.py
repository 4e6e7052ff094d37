"""Saving an interactive session to a file and opening it again, so that a long correction session
survives closing the viewer (or a crash) and can be continued, audited or re-propagated later.

The file is a compressed ``.npz`` read without pickle: a JSON header (the axis, the volume's shape,
a checksum of each annotated slice's image, the weights' sha256 and each slice's prompts) and the
masks as boolean arrays, those of the whole volume (the propagation, a prior) as their bounding box
and what lies in it, so that saving after every propagation costs what the object costs, not the
volume (9 s for a 600 x 2048 x 2048 stack written whole). What is saved is the session's state: the
trusted masks, the painted slices, the prompts (with those waiting for the next segmentation) and
the last propagation with its predicted quality. The undo history is not saved.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from .prior import with_slices
from .slice_masks import SliceMasks

FORMAT = "halo-seg interactive session"
# version 1 held whole-volume masks whole, version 2 added the mask a session started from (start_from);
# version 3 holds them as boxes, which a halo-seg that reads only 1 and 2 would silently drop (the
# propagation, the prior), so it refuses the file instead; this one reads all three
VERSION, PRIOR_VERSION, BOXED_VERSION = 1, 2, 3
READS = (VERSION, PRIOR_VERSION, BOXED_VERSION)


def mask_checksum(volume, z: int, mask: np.ndarray) -> str | None:
    """sha256 of the image under a saved mask's bounding box on slice z of a (slices, rows, columns)
    volume, as float32: what ties the mask to the image it was drawn on. Only that box is read, so
    that saving after every propagation stays cheap on volumes far larger than memory. None for an
    empty mask (the object is absent there, on any image)."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    box = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
    block = np.asarray(volume[int(z), box[0]:box[2], box[1]:box[3]], np.float32)
    return hashlib.sha256(repr(box).encode() + np.ascontiguousarray(block).tobytes()).hexdigest()


def _prompts_to_json(p) -> tuple[dict, dict]:
    head = {"pos": [list(map(int, q)) for q in p.pos], "neg": [list(map(int, q)) for q in p.neg],
            "box": None if p.box is None else list(map(int, p.box)),
            "extreme": None if p.extreme is None else [list(map(int, q)) for q in p.extreme],
            "segmented": bool(p.segmented), "new_signs": sorted(bool(s) for s in p.new_signs)}
    arrays = {k: getattr(p, k) for k in ("pos_mask", "neg_mask") if getattr(p, k) is not None}
    return head, arrays


def save(seg, path) -> Path:
    """Write ``seg``'s state to ``path`` (``.npz`` is appended if missing); returns the path written."""
    path = Path(path)
    if path.is_dir():   # "s17" + ".npz" would have been written beside the folder
        raise ValueError(f"{path} is a folder; give the session a file name")
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    s = seg._s
    arrays, slices = {}, {}
    for z in sorted(set(s.annotations) | set(s.prompts)):
        entry = {"annotated": z in s.annotations, "painted": z in s.painted, "pending": z in s.pending}
        if z in s.annotations:
            arrays[f"mask_{z}"] = s.annotations[z]
        if z in s.prompts:
            entry["prompts"], extra = _prompts_to_json(s.prompts[z])
            arrays.update({f"{k}_{z}": v for k, v in extra.items()})
        slices[str(z)] = entry
    checks = {str(z): mask_checksum(seg.volume, z, m) for z, m in sorted(s.annotations.items())}
    if s.prediction is not None:
        _put_boxed(arrays, "prediction", s.prediction)
        arrays["quality"] = s.quality
        if s.features:
            zs = sorted(s.features)
            arrays["feature_slices"] = np.asarray(zs, np.int64)
            arrays["features"] = np.stack([s.features[z] for z in zs])
    if s.prior is not None:
        _put_boxed(arrays, "prior", s.prior)
    from .segmenter import axis_order
    spacing = [0.0] * 3
    for a, sp in zip(axis_order(seg.axis), seg.spacing):
        spacing[a] = sp
    head = {"format": FORMAT, "version": BOXED_VERSION, "axis": seg.axis,
            "volume_shape": list(seg.volume_shape), "spacing": spacing,
            "weights_sha256": seg.weights_meta.get("sha256"), "slices": slices, "checksums": checks,
            "open_ends": {str(k): float(v) for k, v in (s.open_ends or {}).items()}}
    tmp = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:   # written whole, then renamed: a crash never leaves half a session
            np.savez_compressed(f, header=np.array(json.dumps(head)), **arrays)
        tmp.replace(path)
    except OSError as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot write the session to {path}: {exc.strerror or exc}") from exc
    return path


def read_header(path) -> dict:
    """The session file's header, checked to be one; raises ValueError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no session file at {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):   # a .npy array (the image itself, given by mistake)
            raise ValueError("it holds one array, not the archive a session is")
        with loaded as f:
            head = json.loads(str(f["header"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable halo-seg session file ({exc})") from exc
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ValueError(f"{path} is not a halo-seg session file")
    if head.get("version") not in READS:
        raise ValueError(f"{path} is a session file of version {head.get('version')}; this halo-seg reads "
                         f"versions {', '.join(map(str, READS))}")
    return head


def load_state(path, seg, head: dict | None = None):
    """The state saved in ``path`` (whose header is ``head`` when already read) for the session
    ``seg`` (made on the same volume and axis), checked against ``seg``'s volume; the last
    propagation only when the weights are the same. Returns (state, whether the propagation was kept)."""
    from .segmenter import _Prompts, _State
    head = read_header(path) if head is None else head
    if head["axis"] != seg.axis:
        raise ValueError(f"the session slices across axis {head['axis']}, not {seg.axis}")
    if tuple(head["volume_shape"]) != seg.volume_shape:
        raise ValueError(f"the session was saved on a volume of shape {tuple(head['volume_shape'])}; "
                         f"this one is {seg.volume_shape}")
    s = _State()
    try:
        with np.load(path, allow_pickle=False) as f:
            for key, entry in head["slices"].items():
                z = int(key)
                if entry["annotated"]:
                    s.annotations[z] = _mask(f[f"mask_{z}"], seg.shape[1:], f"the mask of slice {z}")
                    if mask_checksum(seg.volume, z, s.annotations[z]) != head["checksums"].get(key):
                        raise ValueError(f"slice {z} of this volume differs from the one the session's mask was "
                                         "drawn on: the session belongs to another image")
                if entry["painted"]:
                    s.painted.add(z)
                if entry["pending"]:
                    s.pending.add(z)
                if "prompts" in entry:
                    p = entry["prompts"]
                    s.prompts[z] = _Prompts(
                        pos=[tuple(q) for q in p["pos"]], neg=[tuple(q) for q in p["neg"]],
                        box=None if p["box"] is None else tuple(p["box"]),
                        extreme=None if p["extreme"] is None else [tuple(q) for q in p["extreme"]],
                        pos_mask=_mask(f[f"pos_mask_{z}"], seg.shape[1:], f"the scribble on slice {z}") if f"pos_mask_{z}" in f else None,
                        neg_mask=_mask(f[f"neg_mask_{z}"], seg.shape[1:], f"the scribble on slice {z}") if f"neg_mask_{z}" in f else None,
                        segmented=bool(p["segmented"]), new_signs=set(p["new_signs"]))
            if "prior" in f or "prior_box" in f:
                s.prior = _get_boxed(f, "prior", seg.shape, "the mask the session started from")
                s.prediction = with_slices(s.prior, s.annotations)   # until a propagation replaces it
            kept = ("prediction" in f or "prediction_box" in f) and \
                head.get("weights_sha256") == seg.weights_meta.get("sha256")
            if kept:
                s.prediction = _get_boxed(f, "prediction", seg.shape, "the propagation")
                s.quality = np.asarray(f["quality"], np.float64)
                s.open_ends = {int(k): float(v) for k, v in head.get("open_ends", {}).items()}
                if "features" in f:
                    s.features = dict(zip(f["feature_slices"].tolist(), np.asarray(f["features"])))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is damaged: {exc!r}") from exc
    return s, kept


def _put_boxed(arrays: dict, name: str, masks: SliceMasks) -> None:
    box = masks.bbox()
    arrays[f"{name}_box"] = np.array([[b.start, b.stop] for b in box] if box else [], np.int64).reshape(-1, 2)
    arrays[f"{name}_region"] = masks.region(box) if box else np.zeros((0, 0, 0), bool)


def _get_boxed(f, name: str, shape, what) -> SliceMasks:
    """A whole-volume mask as version 3 writes it (its box and what lies in it), or whole (1 and 2)."""
    if name in f:
        return SliceMasks.from_dense(_mask(f[name], shape, what))
    bounds = np.asarray(f[f"{name}_box"])
    if not len(bounds):
        return SliceMasks(shape)
    if bounds.shape != (3, 2) or not all(0 <= a < b <= n for (a, b), n in zip(bounds.tolist(), shape)):
        raise ValueError(f"the box of {what} ({bounds.tolist()}) does not fit the volume {tuple(shape)}")
    box = tuple(slice(int(a), int(b)) for a, b in bounds)
    return SliceMasks.from_region(shape, box, _mask(f[f"{name}_region"], [b.stop - b.start for b in box], what))


def _mask(a, shape, what) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != tuple(shape):
        raise ValueError(f"{what} has shape {a.shape}, not {tuple(shape)}")
    return a.astype(bool)
