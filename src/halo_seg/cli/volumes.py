"""`info`, `resample` and `convert`: what a volume holds, and the same volume on another grid or in another format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .common import _choice_args, _input_args, _spacing_arg


def cmd_info(a) -> int:
    from ..io import VolumeError, geometry, open_volume
    from ..io.axes import axis_names, describe
    from ..io.series_output import TIME_SERIES
    from ..io.track_output import TRACKS
    from ..io.volume import file_contents, holds_labels
    spacing = _spacing_arg(a.spacing)   # a bad one is an error, not a choice of channel
    from ..io import dataset_folder
    if dataset_folder.is_dataset(a.input):   # an nnU-Net / Decathlon dataset: what `train --dataset` would take
        print(json.dumps(dataset_folder.describe(a.input)))
        return 0
    raw = file_contents(a.input)
    held = {"axes": describe(raw.data.shape, axis_names(raw.data.shape, raw.meta.get("axes"))),
            "channels": raw.meta.get("channel_names"),
            **({"time_series": raw.meta[TIME_SERIES]} if raw.meta.get(TIME_SERIES) else {}),   # segment --timepoint all
            **({"tracked": {k: raw.meta[TRACKS][k] for k in ("tracked", "tracks", "divisions")}}
               if raw.meta.get(TRACKS) else {})}   # a track output
    try:
        v = open_volume(raw, spacing=spacing, channel=a.channel, timepoint=a.timepoint)
    except VolumeError as exc:   # a multi-channel or time-lapse file: say what it holds and what to choose
        several = raw.data.ndim > 3   # else what is wrong with it (a voxel size recorded as NaN)
        print(json.dumps({**held, "dtype": str(raw.data.dtype), "format": raw.meta.get("format"),
                          **({"choose": str(exc) if {"time_series", "tracked"} & set(held) else str(exc).split(": ", 1)[-1]} if several
                             else {"problem": str(exc)})}))
        return 0
    g = v.meta.get(geometry.KEY)
    chosen = {k: v.meta[k] for k in ("channel", "channel_name", "timepoint") if k in v.meta}
    print(json.dumps({**(held if raw.data.ndim > 3 else {}), **chosen, "shape": v.shape, "dtype": str(v.data.dtype), "spacing": v.spacing,
                      "unit": v.meta.get("unit"), "chunks": [c[0] for c in v.data.chunks], "format": v.meta.get("format"),
                      "orientation": geometry.orientation(g) if g else None,
                      # (x, y, z) of voxel 0 in the world, in "unit" (an OME-Zarr's microns: "origin")
                      "origin_mm" if v.meta.get("unit") in (None, "mm") else "origin":
                          [round(float(c), 3) for c in geometry.best_affine(g)[:3, 3]] if g else None,
                      **({} if v.spacing_known else {"spacing_known": False}),
                      # a file no reader can take a box of (a gzip NRRD with skips): each halo rank holds it all
                      **({"read": "whole, once a run"} if v.meta.get("read_whole") else {}),
                      **_convert_hint(a.input, v),
                      **(_labels_about(v) if holds_labels(v) else _segment_memory(v, a.weights or "default",
                                                                                    a.precision))}))
    return 0


CONVERT_ABOVE = 2 ** 27   # bytes of voxels above which a compressed input is worth converting once


def _compressed(path) -> bool:
    """Whether ``path`` is a file whose voxels are compressed in one stream: gzip (.nii.gz), or an
    NRRD or MetaImage header that says so."""
    import re
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        head = f.read(4096)
    if head[:2] == b"\x1f\x8b":
        return True
    text = head.decode("latin-1").lower()
    return bool(re.search(r"^encoding:\s*(gzip|gz|bzip2|bz2)\s*$", text, re.M)
                or re.search(r"^compresseddata\s*=\s*true", text, re.M))


def _convert_hint(path, vol) -> dict:
    """For a large compressed input: converting it once to OME-Zarr lets every rank read its block
    directly (a rank of a compressed stream decompresses everything before its block)."""
    nbytes = int(np.prod(vol.shape)) * np.dtype(vol.data.dtype).itemsize
    if nbytes <= CONVERT_ABOVE or not _compressed(path):
        return {}
    return {"hint": f"compressed in one stream: each rank decompresses it up to its block; `halo-seg convert {path} "
                    "OUT.zarr` once gives chunks every rank reads directly (benchmarks/convert.py: a rank's block "
                    "of a 400 x 512 x 512 .nii.gz 1.46 -> 0.53 s)"}


def _labels_about(vol) -> dict:
    """What `info` says of labels instead of the memory segmenting them would need: their names."""
    from ..io.volume import SEGMENT_NAMES
    names = vol.meta.get(SEGMENT_NAMES) or {}
    return {"labels": {str(k): n for k, n in sorted(names.items())} if names else True,
            **({"overlapping_voxels": vol.meta["overlap"]} if vol.meta.get("overlap") else {})}


def _segment_memory(vol, weights, precision: str = "fp32") -> dict:
    """The voxel size the weights were trained at, whether `segment` would resample to it, and the
    memory it would need, per mode (none if the weights cannot be read or the volume is too small
    for the default grid)."""
    from ..engine.partition import PartitionError
    from ..engine.resample import ResampleError, model_spacing, resampled_shape, target_for
    from ..engine.resampled_run import resampled_volume
    from ..engine.runner import memory_needs
    from ..engine.ensemble import load_model, weight_specs
    from ..engine.weights import WeightsError
    try:
        _net, meta = load_model(weights)
        m_sp, m_unit = model_spacing(meta)
        about = {"model_spacing": m_sp and list(m_sp), **({"model_unit": m_unit} if m_unit else {})}
        target = target_for(vol, meta)
        if target is not None:   # what `segment --resample auto` would run the network on
            about["resampled_to"] = {"spacing": list(target), "shape": resampled_shape(vol.shape, vol.spacing, target)}
            vol = resampled_volume(vol, target)
        return {**about, "segment_memory": {"weights": ", ".join(weight_specs(weights)),
                                            **({"precision": precision} if precision != "fp32" else {}),
                                            **memory_needs(vol, weights, precision=precision)}}
    except (WeightsError, PartitionError, ResampleError) as exc:
        return {"segment_memory": f"not estimated: {exc}"}


def cmd_resample(a) -> int:
    from ..engine import resample as rs
    from ..engine.weights import load_unet
    from ..io import open_volume
    from ..io.resampled import write_resampled
    from ..io.volume import holds_labels
    vol = open_volume(a.input, spacing=_spacing_arg(a.input_spacing), channel=a.channel, timepoint=a.timepoint)
    if sum(x is not None for x in (a.spacing, a.weights, a.like)) != 1:
        raise SystemExit("error: give one of --spacing, --weights or --like")
    labels = a.labels or holds_labels(vol)   # a segment output's labels too: never interpolated
    if not labels and np.issubdtype(vol.data.dtype, np.integer) and np.dtype(vol.data.dtype).itemsize == 1:
        print("note: an 8-bit volume is interpolated as an image; pass --labels if it holds labels")
    if a.like:
        from ..io.resampled import write_onto
        like = open_volume(a.like)
        shape = like.shape
        out, got = write_onto(vol, like, a.output, labels, a.input, a.like)
        if got.placed:   # cropped to its objects, or placed otherwise in the same world
            print(f"wrote {out}: {a.input} on the grid of {a.like}, {' x '.join(map(str, shape))} voxels, each from "
                  f"its world position ({'labels, nearest voxel' if labels else 'trilinear'}; 0 outside {a.input})")
            return 0
        spacing = got.spacing
    else:
        if not vol.spacing_known:
            raise SystemExit(f"error: {a.input} records no voxel size; give it with --input-spacing Z,Y,X")
        if a.spacing:
            target = _spacing_arg(a.spacing)
        else:
            m_sp, m_unit = rs.model_spacing(load_unet(a.weights)[1])
            if m_sp is None:
                raise SystemExit(f"error: {a.weights} does not record the voxel size it was trained at; give --spacing")
            target = rs.target_spacing(vol.spacing, vol.meta.get("unit"), m_sp, m_unit, policy="on") or vol.spacing
        shape = rs.resampled_shape(vol.shape, vol.spacing, target)
        out, spacing = write_resampled(vol, a.output, shape, labels=labels)
    print(f"wrote {out}: {' x '.join(map(str, shape))} voxels of {rs.spacing_text(spacing, 4, vol.meta.get('unit'))} "
          f"({'labels, nearest voxel' if labels else 'trilinear'}), from {' x '.join(map(str, vol.shape))}")
    return 0


def cmd_convert(a) -> int:
    from ..engine.memory import fmt_bytes
    from ..io import open_volume
    from ..io.convert import convert
    from ..io.volume import file_contents, holds_labels
    if a.chunks < 1 or (a.levels is not None and a.levels < 0):
        raise SystemExit("error: --chunks must be at least 1 and --levels at least 0")
    spacing = _spacing_arg(a.input_spacing)
    raw = file_contents(a.input)   # opened once, whether its time points and channels all go in or one volume
    vol, lead = _whole(raw, spacing, a.channel, a.timepoint)
    if vol is None:
        vol = open_volume(raw, spacing=spacing, channel=a.channel, timepoint=a.timepoint)
    labels = a.labels or ("c" not in lead and holds_labels(vol))
    out = convert(vol, a.output, chunks=a.chunks, levels=a.levels, labels=labels, axes=lead)
    import zarr
    grp = zarr.open_group(str(out), mode="r")
    shapes = [" x ".join(map(str, grp[k].shape)) for k in sorted(grp.array_keys(), key=int)]
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    print(f"wrote {out}: an OME-Zarr {'label ' if labels else ''}image of {len(shapes)} level(s) ({', '.join(shapes)}), "
          f"chunks of {a.chunks}^3, {fmt_bytes(size)} on disk")
    return 0


def _whole(raw, spacing, channel=None, timepoint=None):
    """A file's contents (``raw``) of several time points or channels, whole, as (T, C, Z, Y, X) with
    the axes of length 1 left out, with the voxel size, unit and geometry the engine reads for one
    volume of them, and the names of the axes before (Z, Y, X); (None, []) where one is chosen or
    there is one volume (``raw`` left as it is: open_volume says why, or opens it)."""
    from ..io import open_volume
    from ..io.axes import AxisChoiceError, arrange, axis_names
    from ..io.series_output import TIME_SERIES
    from ..io.volume import VolumeError
    if channel is not None or timepoint is not None:
        return None, []
    try:
        arr, kept = arrange(raw.data, axis_names(raw.data.shape, raw.meta.get("axes")), str(raw.source))
    except AxisChoiceError:
        return None, []
    lead = kept[:-3]
    if not lead:
        return None, []
    series = raw.meta.get(TIME_SERIES)   # a segment --timepoint all output: a time point it segmented
    first = (series or {}).get("segmented", [0])[0] if "t" in lead else None
    try:
        vol = open_volume(raw, spacing=spacing, channel=0 if "c" in lead else None, timepoint=first)
    except VolumeError:
        return None, []
    vol.data = arr
    return vol, lead


def add_resample(sub) -> None:
    r = sub.add_parser("resample", help="a volume on another voxel grid of the same extent (a model's voxel size, "
                                         "one spacing for training volumes, or back onto a scan's grid)")
    r.add_argument("input")
    r.add_argument("output", help=".zarr, .nii or .nii.gz; placed where the input lies (its scan geometry follows)")
    r.add_argument("--spacing", default=None, metavar="Z,Y,X", help="the new voxel size, in the input's unit")
    r.add_argument("--weights", default=None, help="the voxel size these weights were trained at ('default': the "
                                                   "shipped model's)")
    r.add_argument("--like", default=None, metavar="VOLUME",
                   help="the grid of this volume: labels computed at a model's voxel size back onto their scan's "
                        "grid (the same extent), or, where both carry a scan geometry, anything in the same world "
                        "onto it (labels saved cropped to their objects, as 3D Slicer can; 0 outside them)")
    r.add_argument("--labels", action="store_true", help="the input holds labels: nearest voxel, values kept "
                                                        "(automatic for files marked as labels and segment outputs)")
    _input_args(r)
    r.set_defaults(fn=cmd_resample)


def add_convert(sub) -> None:
    cv = sub.add_parser("convert", help="any volume as an OME-Zarr image: cubic chunks each torchrun rank reads "
                                         "in parallel, and a pyramid napari shows when zoomed out (voxel size, "
                                         "unit and placement kept)")
    cv.add_argument("input", help="a volume, or a time-lapse or a file of several channels (all of them go into "
                                   "the image, unless --timepoint or --channel picks one)")
    cv.add_argument("output", help="a .zarr path (an OME-Zarr 0.5 image)")
    cv.add_argument("--chunks", type=int, default=64, help="the side of a chunk, in voxels (default 64)")
    cv.add_argument("--levels", type=int, default=None, help="coarser levels below the full resolution (default: "
                                                              "until the largest side is under 64 voxels)")
    cv.add_argument("--labels", action="store_true", help="the input holds labels: an OME label image, the "
                    "pyramid by nearest voxel (automatic for files marked as labels and segment outputs)")
    _input_args(cv)
    cv.set_defaults(fn=cmd_convert)


def add_info(sub) -> None:
    i = sub.add_parser("info", help="shape, dtype, spacing and chunks of a volume; the memory segmenting it needs "
                       "(labels: their names)")
    i.add_argument("input")
    i.add_argument("--weights", action="append", default=None, metavar="WEIGHTS",
                   help="the 3D U-Net whose memory needs are estimated (several: an ensemble)")
    i.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="the precision segment would run in")
    i.add_argument("--spacing", default=None, metavar="Z,Y,X", help="the voxel size, where the file records none")
    _choice_args(i, "of the input")
    i.set_defaults(fn=cmd_info)
