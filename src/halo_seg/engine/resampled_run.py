"""`segment` on a volume whose voxel size is not the model's: run the engine on the volume resampled
to the model's spacing, then bring the class probabilities back to the volume's grid (resample.py).

The resampled input is never written: each rank reads its block of it lazily, interpolated from the
input region under it. The engine's output on the model's grid goes to a work group beside the
output (``<output>.model-grid.zarr``, with its probabilities); the final labels, uncertainty and
(if asked) probabilities are interpolated from it chunk by chunk (in halo mode by the ranks, each its
share of the chunks, once every block is written; under torchrun too), and the work group is removed
once every chunk is written. A run stopped in between resumes (``resume=True``) from both.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import resample as rs

CHUNK = 64


def work_path(output) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".model-grid.zarr")


def check_shape(shape, multiple: int, spacing, target) -> None:
    if any(n < multiple for n in shape):
        raise rs.ResampleError(f"at the model's voxel size ({rs.spacing_text(target)}) this volume would be "
                               f"{tuple(shape)} voxels, fewer than the network's {multiple} on an axis; is its "
                               f"spacing ({rs.spacing_text(spacing)}) right? Give it with --spacing, or use "
                               f"--resample off")


def _reader(source, vol):
    if isinstance(source, (str, Path)):
        return rs.SourceReader(source, vol.shape, channel=vol.meta.get("channel"), timepoint=vol.meta.get("timepoint"))
    return rs.ArrayReader(vol.data)


def segment_resampled(vol, source, target, output, *, resume: bool, save_probabilities: bool, progress, cancel,
                      net, meta, inputs=None, **engine):
    """``vol``: the opened input (its chosen channel / time point); ``target``: the spacing to run the
    network at; ``inputs``: for a network of several input channels, each channel's (source,
    opened volume), the first being ``source`` and ``vol``; ``engine``: segment's other arguments,
    passed to the run on the model's grid."""
    from .output import done_map, open_output
    from .runner import SegmentResult, _raise_if_cancelled, input_name, segment, torchrun_env
    t0 = time.perf_counter()
    shape = rs.resampled_shape(vol.shape, vol.spacing, target)
    check_shape(shape, net.multiple, vol.spacing, target)
    spacing = rs.grid_spacing(vol.shape, vol.spacing, shape)
    chunks = tuple(min(CHUNK, s) for s in vol.shape)
    counts = tuple(-(-n // c) for n, c in zip(vol.shape, chunks))
    out, work = Path(output), work_path(output)
    about = {"from_spacing": list(vol.spacing), "spacing": [round(s, 6) for s in spacing], "shape": list(shape),
             "unit": vol.meta.get("unit")}
    inputs = inputs or [(source, vol)]
    sig = {**{k: vol.meta[k] for k in ("channel", "timepoint") if k in vol.meta}, "format": 2,
           "input": input_name(source), "shape": list(vol.shape),
           **({"inputs": [{"source": input_name(s), **{k: v.meta[k] for k in ("channel", "timepoint") if k in v.meta}}
                          for s, v in inputs]} if len(inputs) > 1 else {}),
           "weights": meta.get("sha256"), "resampled": about,
           "engine": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                      for k, v in sorted(engine.items()) if k in ("mode", "grid", "overlap", "mirror", "precision")}}
    # each channel resampled lazily, a block at a time, as the ranks read it
    lazy = [rs.lazy_resample(_reader(s, v), shape) for s, v in inputs]
    torchrun = torchrun_env()
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if torchrun else (0, 1)
    # made (or checked, for resume) before the network runs, so that another job's output is refused
    # first; under torchrun by rank 0, before the run's first barrier
    fresh = rank == 0 and not (resume and out.exists())
    if rank == 0:
        open_output(out, vol.shape, chunks, counts, net.config["out_channels"], vol.spacing, sig, save_probabilities,
                    resume, geometry=vol.meta.get("geometry"), unit=vol.meta.get("unit"), classes=meta.get("classes"))
    if resume and out.exists() and not work.exists() and done_map(out).all():
        return SegmentResult(str(out), engine["mode"], engine["grid"], 0.0, skipped=True, resampled=about)
    back = dict(out=str(out), work=str(work), model_shape=shape, shape=vol.shape, chunks=chunks,
                probabilities=save_probabilities)
    try:   # in halo mode the ranks share the way back once their blocks are written (runner._rank_main)
        inner = segment(lazy if len(lazy) > 1 else lazy[0], work, resample="off", spacing=spacing,
                        save_probabilities=True, progress=progress, cancel=cancel, resume=resume and work.exists(),
                        _back=back if engine["mode"] == "halo" else None, **engine)
    except BaseException:
        if fresh:   # nothing of it written yet: no empty labels left behind to be mistaken for a result
            shutil.rmtree(out, ignore_errors=True)
        raise
    _raise_if_cancelled(cancel, f"the run on the model's grid is kept in {work}; resume to finish")
    if not done_map(out).all():   # tile or whole mode, or a resumed run whose model-grid part was complete
        back_pass(**back, share=(rank, world), cancel=cancel, progress=progress)
    if rank == 0 and done_map(out).all():   # under torchrun every rank has passed the run's last barrier
        shutil.rmtree(work, ignore_errors=True)
    return SegmentResult(str(out), inner.mode, inner.grid, time.perf_counter() - t0, inner.ranks,
                         memory=inner.memory, resampled=about)


def back_pass(out, work, model_shape, shape, chunks, probabilities: bool, share=(0, 1), cancel=None, progress=None):
    """Interpolate the model-grid probabilities in ``work`` to ``shape`` and write labels, uncertainty
    (and probabilities) into ``out``, chunk by chunk: this rank's ``share`` (rank, world) of the
    chunks not yet done."""
    import zarr
    from .output import done_map, write_block
    from .runner import _raise_if_cancelled
    probs = zarr.open_group(str(work), mode="r")["probabilities"]
    done = done_map(out)
    rank, world = share
    todo = [(idx, region) for k, (idx, region) in enumerate(rs.blocks(shape, chunks))
            if k % world == rank and not done[idx]]

    def read(region):
        return probs[(slice(None),) + tuple(region)]
    for k, (idx, region) in enumerate(todo, 1):
        _raise_if_cancelled(cancel, f"chunks written stay; resume to finish ({work} is kept)")
        write_block(out, region, rs.resample_block(read, model_shape, shape, region), idx, probabilities)
        if progress is not None:
            progress(k, len(todo), "back to the input's voxel size")


def resampled_volume(vol, target):
    """The volume as the network would see it at ``target`` spacing (lazy), for memory estimates."""
    from ..io.volume import Volume
    shape = rs.resampled_shape(vol.shape, vol.spacing, target)
    return Volume(rs.lazy_resample(rs.ArrayReader(vol.data), shape), spacing=rs.grid_spacing(vol.shape, vol.spacing, shape),
                  spacing_known=True, meta=dict(vol.meta))

