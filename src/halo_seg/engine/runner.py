"""Run the 3D U-Net over a volume: halo-partitioned over ranks, or single-process whole / overlap-tile.

Halo mode spawns one process per rank (torch.multiprocessing, gloo on CPU, NCCL on GPU) or, under
torchrun, runs as the rank torchrun started. Each rank reads only its block from the lazy volume,
normalises with all-reduced statistics, runs the partitioned network and writes its block into the
chunk-aligned output zarr. A failed or hung rank ends the run with an error naming it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..io.channels import Channel, channel_list, for_network, open_channels, what_channel
from ..io.volume import VolumeError, check_zarr_output_name, holds_labels
from . import memory, normalize
from .mirror import MirrorError, check_trained_for, mirror_letters, mirrored_softmax, parse_mirror
from .output import done_map, open_output, write_block
from .partition import AUTO, PartitionError, PartitionPlan, factor_grid, parse_grid
from .precision import PrecisionError, check_precision, native_bf16, warn_if_emulated
from .resample import ResampleError, target_for
from .ensemble import load_model, weight_specs
from .spawning import main_hidden

MODES = ("halo", "tile", "whole")


class EngineError(RuntimeError):
    """A segmentation run failed (a rank died, hung, or the job is invalid)."""


class Cancelled(EngineError):
    """The run was cancelled by the caller; blocks already written stay (use resume)."""


def _raise_if_cancelled(cancel, what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"segmentation cancelled; {what}")


@dataclass
class SegmentResult:
    output: str
    mode: str
    grid: tuple
    seconds: float
    ranks: list = field(default_factory=list)  # per rank: seconds, peak RSS growth (MB)
    skipped: bool = False
    memory: memory.MemoryCheck | None = None   # the estimate the run was checked against
    resampled: dict | None = None   # where the network ran at the model's voxel size: that grid (resampled_run.py)
    inputs: list | None = None      # a network of several input channels: what each was (io/channels.py)


@dataclass
class PlannedRun:
    """A halo run checked and its output opened, not started (segment(..., _plan_only=True)): the
    ranks' job, the partition, and the result to fill in once it ran."""
    job: dict
    plan: PartitionPlan
    result: SegmentResult


# what differs between planned runs (a time-lapse array's time points are arrays of their own)
FRAME_KEYS = ("source", "output", "inputs", "channel", "timepoint", "resume", "label")


def run_planned(runs: list, progress=None, cancel=None) -> list:
    """Several planned halo runs of one partition and model (the time points of a series) on ranks
    started once, each rank doing its block of each run in turn (starting the ranks costs more than
    a small volume's blocks); the results, in order. Under torchrun, in every rank: its blocks, in
    one process group (a second one in the same processes would read the first's addresses)."""
    first = runs[0]
    for r in runs[1:]:
        same = {k: v for k, v in r.job.items() if k not in FRAME_KEYS} == \
            {k: v for k, v in first.job.items() if k not in FRAME_KEYS}
        if not same or r.plan.world_size != first.plan.world_size or r.plan.shape != first.plan.shape:
            raise EngineError("planned runs differ in more than their input and output; run them one by one")
    job = dict(first.job, frames=[{k: r.job.get(k) for k in FRAME_KEYS} for r in runs])
    t0 = time.perf_counter()
    reports = _torchrun_rank(job) if job["mode"] == "halo" and torchrun_env() else \
        _spawn_ranks(job, first.plan, progress, cancel)
    seconds = time.perf_counter() - t0
    out = []
    for k, r in enumerate(runs):
        mine = [rep for rep in reports if rep.get("frame", 0) == k]
        res = r.result
        res.ranks = sorted(mine, key=lambda rep: rep["rank"])
        res.skipped = bool(mine) and all(rep.get("skipped") for rep in mine)
        res.seconds = max((rep.get("seconds", 0.0) for rep in mine), default=0.0) if len(runs) > 1 else seconds
        out.append(res)
    return out


def _status_mb(key: str) -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> float:
    """Reset the kernel's peak-RSS mark so VmHWM measures this phase only; return the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def _peak_growth_mb(rss0: float) -> float:
    return _status_mb("VmHWM") - rss0


MMAP_THRESHOLD = 1 << 20   # bytes; see map_large_allocations


def map_large_allocations(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have glibc map every allocation above ``threshold`` on its own, so that it goes back to the
    system when freed. By default the threshold adapts upwards (to 32 MB) after the first large free,
    and the tensors of a small block (4 to 33 MB for a 2 x 2 x 2 grid of the 1 mm brain) then come
    from the heap, where fragmentation holds freed memory: that raised the per-rank peak at 8 ranks
    from 0.15 to 0.25 x the 1-rank peak (benchmarks/README.md). Returns False where the C library is
    not glibc (nothing is changed there)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, int(threshold)))   # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_rank(q=None) -> None:
    """End a spawned rank that has finished its work, without the interpreter's own exit.

    The parent judges a rank by its exit code, and after ``destroy_process_group`` gloo's threads
    can still abort that exit ("terminate called without an active exception", seen in CI with
    torch 2.13 after a complete, correct run). A ``multiprocessing.Queue`` is flushed first, since
    ``os._exit`` would drop what its feeder thread has not yet written.
    """
    if q is not None and hasattr(q, "join_thread"):
        q.close()
        q.join_thread()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def torchrun_env() -> bool:
    """Whether this process is a rank torchrun (or another launcher setting RANK and WORLD_SIZE) started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def backend_for(dev: torch.device) -> str:
    """The process-group backend for ranks on ``dev``: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if dev.type == "cuda" else "gloo"


def _device_for(device: str, local_rank: int = 0) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise EngineError("--device cuda was asked for but no CUDA device is available")
        # TF32 convolutions differ per algorithm, i.e. per block shape: keep fp32 so that every
        # partitioning gives the same labels
        torch.backends.cudnn.allow_tf32 = False
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device != "cpu":
        raise EngineError(f"unknown device {device!r}; use cpu, cuda or auto")
    return torch.device("cpu")


def require_gpu_each(ranks: int, what: str, fix: str) -> None:
    """NCCL refuses two ranks of one group on one GPU ("Duplicate GPU detected"): refuse, before any
    process starts, ``ranks`` on this machine where it has fewer GPUs. ``what`` names the ranks' run,
    ``fix`` what to change."""
    n = torch.cuda.device_count()
    if ranks > n:
        raise EngineError(f"{what} needs {ranks} ranks on this machine, one GPU each (NCCL cannot give two ranks "
                          f"one GPU), and it has {n}: {fix}, more machines (torchrun), or --device cpu")


def input_name(source) -> str:
    """A run's input as its output's signature records it: the path, or "<array>"."""
    return str(source) if isinstance(source, (str, Path)) else "<array>"


def _signature(job, plan_shape, grid, meta, chosen):
    # format 2: with the uncertainty array, so an older output's blocks are never resumed without it;
    # the channel and time point only when the input has them, so 3D outputs keep their signature
    several = len(job["inputs"]) > 1
    return {**{k: chosen[k] for k in ("channel", "timepoint") if k in chosen},"format": 2, "input": input_name(job["source"]),
            **({"inputs": [dict(c, source=input_name(c["source"])) for c in job["inputs"]]} if several else {}),
            "shape": list(plan_shape), "grid": list(grid), "mode": job["mode"],
            "weights": meta.get("sha256"), "overlap": job["overlap"] if job["mode"] == "tile" else None,
            **({"mirror": mirror_letters(job["mirror"])} if job["mirror"] else {}),
            **({"precision": job["precision"]} if job["precision"] != "fp32" else {})}


def segment(source, output, weights="default", grid=(2, 1, 1), device: str = "cpu", mode: str = "halo",
            overlap: float = 0.5, tile_size: int | None = None, save_probabilities: bool = False,
            resume: bool = False, timeout: float = 1800.0, threads: int | None = None,
            progress: Callable[[int, int, str], None] | None = None, cancel=None, mirror="",
            channel: int | str | None = None, timepoint: int | None = None, memory_check: bool = True,
            precision: str = "fp32", resample: str = "auto", spacing=None,
            _fault: dict | None = None, _back: dict | None = None, _read_whole: int = 0,
            _plan_only: bool = False) -> SegmentResult | PlannedRun:
    """Segment `source` (path or array) into the zarr group `output` (`labels`, `uncertainty`,
    `probabilities`; engine/output.py).

    `weights`: a .safetensors path or "default", or a list of them: an ensemble whose members'
    class probabilities are averaged (engine/ensemble.py), each member run in turn on every block.

    `mirror`: axes ('zyx', 'yx', ...) over which the probabilities are averaged with mirrored views
    of the volume (test-time mirroring, 2**len(axes) times the work; see engine/mirror.py).

    `channel`, `timepoint`: the 3D volume to segment in a multi-channel or time-lapse input
    (io/axes.py); each rank reads only its block of it. A network of several input channels
    (io/channels.py) takes a list of sources, one per channel, or one source and a list of
    `channel`s (or, with none, all of a file holding exactly as many).

    `cancel`: an object with ``is_set()`` (a threading.Event); when set, the ranks are stopped
    (or the tile loop ends) and :class:`Cancelled` is raised.

    `precision`: "fp32" (exact: a halo run equals the whole-volume run) or "bf16" (bfloat16
    autocast: faster and half the activations where the hardware has bfloat16, labels equal to
    fp32's but for a few boundary voxels; engine/precision.py).

    `resample`: "auto" runs the network on the volume resampled to the voxel size its weights were
    trained at when the two differ by more than 10 % on an axis, and brings the probabilities back
    to the volume's grid before the argmax (engine/resampled_run.py); "on" whenever they differ;
    "off" never. A volume whose file records no voxel size is run as it is unless `spacing`
    (z, y, x, in the file's unit) gives it; `SegmentResult.resampled` says what was done.

    `memory_check`: before anything runs, each rank's peak memory is estimated (engine/memory.py)
    and a run that would not fit in the RAM or GPU memory available is refused, with what would
    fit; False skips the refusal (the estimate is still in the result).

    `_plan_only` (engine/series.py): a halo run is checked and its output opened but not started,
    and a :class:`PlannedRun` is returned for :func:`run_planned` (other modes run as usual).
    """
    if mode not in MODES:
        raise EngineError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if not 0.0 <= overlap < 1.0:
        raise EngineError(f"overlap must be in [0, 1), got {overlap}")
    try:
        precision = check_precision(precision)
    except PrecisionError as exc:
        raise EngineError(str(exc)) from None
    if threads is not None and int(threads) < 1:
        raise EngineError(f"threads must be a positive number of threads per rank, got {threads}")
    check_zarr_output_name(output, "segment", "a zarr group (labels, uncertainty; batch --export converts too)")
    grid = parse_grid(grid) if mode == "halo" else (1, 1, 1)   # AUTO is resolved once the volume is open
    net, meta = load_model(weights)  # validates weights (every member of an ensemble) before any process starts
    chs = for_network(channel_list(source, channel, timepoint), net.config["in_channels"], meta.get("channels"))
    vols = open_channels(chs, spacing)  # validates 3D, numeric, existing, one grid
    vol = vols[0]
    used = [what_channel(c, v) for c, v in zip(chs, vols)] if len(vols) > 1 else None
    for v in vols:
        if holds_labels(v):   # ids, not intensities: a mistaken input
            raise VolumeError(f"{v.source or 'the input'} holds labels (an output of segment, or a file marked as "
                              "labels), not an image to segment; give the scan")
    if mode == "tile" and tile_size is not None and tile_size < 2 * net.multiple:   # a 1-voxel bottleneck cannot be normalised
        raise EngineError(f"tile must be at least {2 * net.multiple} voxels for this network (2 x 2**depth), got {tile_size}")
    try:
        mirror = parse_mirror(mirror)
        check_trained_for(mirror, meta)
        target = target_for(vol, meta, resample)
    except (MirrorError, ResampleError) as exc:
        raise EngineError(str(exc)) from None
    if target is not None:
        from .resampled_run import segment_resampled
        try:
            res = segment_resampled(vol, chs[0].source, target, output, resume=resume, save_probabilities=save_probabilities,
                                     progress=progress, cancel=cancel, net=net, meta=meta, weights=weights, grid=grid,
                                     device=device, mode=mode, overlap=overlap,
                                     tile_size=tile_size, timeout=timeout, threads=threads, mirror=mirror,
                                     memory_check=memory_check, precision=precision, _fault=_fault,
                                     _read_whole=whole_reads(vols),
                                     inputs=[(c.source, v) for c, v in zip(chs, vols)] if len(vols) > 1 else None)
            res.inputs = used
            return res
        except ResampleError as exc:
            raise EngineError(str(exc)) from None
    distributed_env = torchrun_env() and mode == "halo"
    if grid == AUTO:
        grid = auto_grid(vol.shape, net.multiple, device, distributed_env)
    plan = PartitionPlan(vol.shape, grid, net.multiple)  # validates grid vs volume
    spawns_gpu_ranks = mode == "halo" and not distributed_env and device != "cpu" and torch.cuda.is_available()
    if spawns_gpu_ranks:
        require_gpu_each(plan.world_size, f"the halo run on a {'x'.join(map(str, grid))} grid",
                         f"--grid auto (one rank per GPU), a grid of at most {torch.cuda.device_count()} ranks")
    elif distributed_env and device != "cpu" and torch.cuda.is_available():
        require_gpu_each(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), "torchrun",
                         "--nproc-per-node of at most the GPUs each machine has")
    tiling = (tile_size, overlap)
    # inputs read whole beside the run: a whole-mode run's estimate holds its volume already; a run
    # on a resampled input (_read_whole) reads the file it is resampled from whole in every mode
    extra = (0 if mode == "whole" else whole_reads(vols)) + _read_whole
    mem = plan_memory(vol, net, plan, mode, tiling, mirror, device, distributed_env, ask_gpu=not spawns_gpu_ranks,
                      precision=precision, read_whole=extra)
    if memory_check and not mem.fits:
        raise EngineError(_memory_refusal(vol, net, plan, mode, tiling, mirror, mem, precision, extra))
    if device == "cpu" or not torch.cuda.is_available():
        warn_if_emulated(precision, "cpu")   # a GPU rank checks its own GPU
    job = dict(source=chs[0].source, output=str(output), weights=weight_specs(weights), grid=grid, device=device,
               mode=mode, overlap=overlap, tile_size=tile_size, probabilities=save_probabilities, resume=resume,
               timeout=float(timeout), threads=threads, mirror=mirror, precision=precision, fault=_fault or {},
               channel=vol.meta.get("channel"), timepoint=vol.meta.get("timepoint"),
               inputs=[dict(source=c.source, channel=v.meta.get("channel"), timepoint=v.meta.get("timepoint"))
                       for c, v in zip(chs, vols)],
               memory_check=memory_check, per_rank=mem.per_rank, sharing=mem.sharing, back=_back)
    chunks = plan.chunks if mode == "halo" else tuple(min(s, 64) for s in vol.shape)
    sig = _signature(job, vol.shape, grid, meta, vol.meta)
    n_classes = net.config["out_channels"]
    if not distributed_env or int(os.environ["RANK"]) == 0:
        open_output(output, vol.shape, chunks, grid, n_classes, vol.spacing, sig, save_probabilities, resume,
                    geometry=vol.meta.get("geometry"), unit=vol.meta.get("unit"), classes=meta.get("classes"))
    if _plan_only and mode == "halo":   # engine/series.py runs the planned time points on ranks started once
        if resume and not distributed_env and done_map(output).all():
            return SegmentResult(str(output), mode, grid, 0.0, skipped=True, memory=mem, inputs=used)
        return PlannedRun(job, plan, SegmentResult(str(output), mode, grid, 0.0, memory=mem, inputs=used))
    t0 = time.perf_counter()
    if distributed_env:  # under torchrun the ranks decide together, after rank 0 made the output
        rep = _torchrun_rank(job)
        return SegmentResult(str(output), mode, grid, time.perf_counter() - t0, [rep],
                             skipped=rep.get("skipped", False), memory=mem, inputs=used)
    if resume and done_map(output).all():
        return SegmentResult(str(output), mode, grid, 0.0, skipped=True, memory=mem, inputs=used)
    if mode == "halo":
        ranks = _spawn_ranks(job, plan, progress, cancel)
    else:
        ranks = [_single_process(job, vols, net, meta, progress, cancel)]
    return SegmentResult(str(output), mode, grid, time.perf_counter() - t0, ranks, memory=mem, inputs=used)


# ---------------------------------------------------------------- grid and memory, before anything runs

CPU_RANKS = 2   # --grid auto on CPU: the engine benchmark's 1 to 8 ranks on 2 cores took about the same time


def auto_grid(shape, multiple: int, device: str, distributed_env: bool = False) -> tuple[int, int, int]:
    """`--grid auto`: under torchrun, every rank torchrun started; else one rank per GPU, or CPU_RANKS
    on CPU; fewer where the volume is too small for them. The blocks are as close to cubes as the
    rank count allows (fewest halo voxels)."""
    if distributed_env:
        world = int(os.environ["WORLD_SIZE"])
        grid = factor_grid(world, shape, multiple)
        if grid is None:
            raise PartitionError(f"the volume {tuple(shape)} cannot be split over the {world} ranks torchrun "
                                 f"started (blocks of at least {multiple} voxels per axis); start fewer")
        return grid
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world = torch.cuda.device_count() if cuda else CPU_RANKS
    for w in range(max(1, world), 0, -1):
        grid = factor_grid(w, shape, multiple)
        if grid is not None:
            return grid
    return (1, 1, 1)


def _tile_geometry(shape, multiple: int, tile_size: int | None) -> tuple[int, tuple]:
    """The window size and the band of tile_bands (one window deep, the mirror-padded plane)."""
    t = max(multiple, ((tile_size or 64) // multiple) * multiple)
    margin = t // 4
    return t, (t,) + tuple(s + 2 * margin + max(0, t - (s + 2 * margin)) for s in shape[1:])


def _per_rank_bytes(vol, net, plan: PartitionPlan, mode, tiling, mirror, precision: str = "fp32") -> int:
    """`tiling`: tile mode's (window edge or None, overlap)."""
    itemsize = memory.itemsize_of(vol.data.dtype)
    if mode == "halo":
        shapes = {tuple(s.stop - s.start for s in b) for b in plan.all_blocks()}
        return max(memory.block_bytes(net.config, b, itemsize, mirror, precision=precision,
                                      exchanges=plan.world_size > 1) for b in shapes)
    if mode == "whole":
        return memory.block_bytes(net.config, plan.padded, itemsize, mirror, "whole", precision=precision)
    tile_size, overlap = tiling
    t, band = _tile_geometry(vol.shape, net.multiple, tile_size)
    piece = (max(1, int(round(t * (1 - overlap)))),) + tuple(vol.shape[1:])
    return memory.block_bytes(net.config, (t, t, t), itemsize, mirror, "tile", band_shape=band, piece_shape=piece,
                              precision=precision)


def whole_reads(vols) -> int:
    """Bytes of the inputs a reader holds whole while any part of them is read (a gzip NRRD with
    skips in its stream, io/itk_image.py): every halo rank, and the tile loop, holds them beside its
    block."""
    return sum(int(v.data.nbytes) for v in vols if v.meta.get("read_whole"))


def plan_memory(vol, net, plan: PartitionPlan, mode: str, tiling, mirror, device: str,
                distributed_env: bool = False, ask_gpu: bool = True, precision: str = "fp32",
                read_whole: int = 0) -> memory.MemoryCheck:
    """The run's estimated peak per rank against the memory it draws on: this machine's RAM,
    shared by its ranks, or the GPU each rank runs on (ranks beyond the GPU count share one).
    ``read_whole``: bytes of the inputs each rank reads whole beside its block (whole_reads).

    `ask_gpu` False leaves a GPU's free memory unknown: asking creates a CUDA context, which a
    parent that only spawns GPU ranks should not hold (each rank then checks its own GPU)."""
    per_rank = _per_rank_bytes(vol, net, plan, mode, tiling, mirror, precision)
    if mode != "halo":
        here = 1
    elif distributed_env:
        here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    else:
        here = plan.world_size
    dev = _device_for(device, int(os.environ.get("LOCAL_RANK", 0)) if distributed_env else 0)
    # ranks spawned here start their own processes, whose baseline the rank's estimate leaves out
    spawned = mode == "halo" and not distributed_env
    return memory.check_for(per_rank, dev, here, ask_gpu, ram_extra=read_whole,
                            process=memory.PROCESS_BYTES if spawned else 0)


def memory_needs(vol, weights="default", grid=(2, 1, 1), mirror="", precision: str = "fp32") -> dict:
    """What segmenting an opened volume would take with `weights`, per mode (halo at `grid`), and
    what this machine has: for planning a run (`halo-seg info`)."""
    net, _meta = load_model(weights)
    mirror = parse_mirror(mirror)
    precision = check_precision(precision)
    plan = PartitionPlan(vol.shape, parse_grid(grid), net.multiple)
    avail = memory.host_available()
    tiling = (None, 0.5)
    return {f"halo {'x'.join(map(str, plan.grid))}, per rank": memory.fmt_bytes(
                _per_rank_bytes(vol, net, plan, "halo", tiling, mirror, precision)),
            "whole": memory.fmt_bytes(_per_rank_bytes(vol, net, plan, "whole", tiling, mirror, precision)),
            "tile 64": memory.fmt_bytes(_per_rank_bytes(vol, net, plan, "tile", tiling, mirror, precision)),
            "RAM available": None if avail is None else memory.fmt_bytes(avail)}


def _check_rank_gpu(job, dev, vol, net, plan) -> None:
    """A spawned GPU rank's own check, before it reads its block (see plan_memory's ask_gpu)."""
    if not job["memory_check"] or dev.type != "cuda":
        return
    mem = memory.MemoryCheck(job["per_rank"], job["sharing"], int(torch.cuda.mem_get_info(dev)[0]), "GPU memory")
    if not mem.fits:
        raise EngineError(f"GPU {dev.index}: " + _memory_refusal(vol, net, plan, "halo",
                                                                 (job["tile_size"], job["overlap"]), job["mirror"], mem,
                                                                 job["precision"]))


def _check_gpu_precision(dev: torch.device, precision: str) -> None:
    if dev.type == "cuda" and precision == "bf16" and not native_bf16(dev):
        raise EngineError(f"GPU {dev.index} ({torch.cuda.get_device_name(dev)}) has no native bfloat16 "
                          f"(it needs compute capability 8.0 or later): use --precision fp32")


def _memory_refusal(vol, net, plan, mode, tiling, mirror, mem: memory.MemoryCheck, precision: str = "fp32",
                    read_whole: int = 0) -> str:
    what = {"halo": f"the halo run on a {'x'.join(map(str, plan.grid))} grid",
            "whole": "the whole-volume run", "tile": "the overlap-tile run"}[mode]
    lines = [f"not enough memory: {what} of the {' x '.join(map(str, vol.shape))} volume {mem.describe()}."]
    room = mem.available * memory.USABLE
    finer = memory.finer_grid(vol.shape, net.multiple, plan.world_size if mode == "halo" else 1, mem, lambda g: (
        _per_rank_bytes(vol, net, PartitionPlan(vol.shape, g, net.multiple), "halo", tiling, mirror, precision)
        + mem.process + (read_whole if mem.where == "RAM" else 0)))
    if finer is not None and (mode != "halo" or finer[1] >= plan.world_size):   # never a coarser grid called finer
        grid, world, per = finer
        lines.append(f"- a grid of {'x'.join(map(str, grid))} ({world} ranks) needs about "
                     f"{memory.fmt_bytes(per)} per rank: run it where each rank has its own "
                     f"{mem.where} (torchrun over machines, or one GPU each)")
    if read_whole:
        lines.append(f"- {'each rank reads' if mode == 'halo' else 'it reads'} {vol.source or 'the input'} whole "
                     f"({memory.fmt_bytes(read_whole)}; its reader cannot take a box of it): as zarr, an "
                     ".mha or a plain NRRD it is read block by block")
    if mode != "tile":
        tile = _per_rank_bytes(vol, net, plan, "tile", tiling, mirror, precision) + read_whole
        if tile <= room:
            lines.append(f"- --mode tile needs about {memory.fmt_bytes(tile)} (overlapping windows: slower, "
                         f"and not exact where windows meet)")
    elif _per_rank_bytes(vol, net, plan, "tile", (2 * net.multiple, tiling[1]), mirror, precision) + read_whole <= room:
        lines.append("- a smaller --tile (the blend is held for one window's depth of the whole plane)")
    lines.append("- turning the check off runs it anyway, if swap or another estimate says it fits "
                 "(--no-memory-check; memory_check=False; in napari, untick \"refuse a run that will not fit\")")
    return "\n".join(lines)


# ---------------------------------------------------------------- halo mode: ranks

def _spawn_ranks(job, plan: PartitionPlan, progress, cancel=None) -> list:
    import torch.multiprocessing as mp
    world = plan.world_size
    job = dict(job, init=f"tcp://127.0.0.1:{_free_port()}", world=world)
    if job["threads"] is None:
        job["threads"] = max(1, (os.cpu_count() or 1) // world)
    q = mp.get_context("spawn").SimpleQueue()
    with main_hidden(job):
        ctx = mp.start_processes(_rank_entry, args=(job, q), nprocs=world, join=False, start_method="spawn")
    frames = len(job.get("frames") or [None])
    deadline = time.monotonic() + job["timeout"] + 30  # startup + the collective timeout itself
    reports, done = {}, 0
    try:
        while True:
            try:
                finished = ctx.join(timeout=0.2)
            except mp.ProcessRaisedException as exc:
                told = [m for m in _drain(q) if "error" in m]
                if told:
                    raise VolumeError(told[0]["error"]) from None
                raise EngineError(f"halo run failed: rank {exc.error_index} of {world} raised:\n{exc}") from None
            except mp.ProcessExitedException as exc:
                raise EngineError(f"halo run failed: rank {exc.error_index} of {world} died "
                                  f"(exit code {exc.exit_code}); the other ranks were stopped") from None
            for msg in _drain(q):
                if "error" in msg:
                    raise VolumeError(msg["error"])
                reports[msg.get("frame", 0), msg["rank"]] = msg
                done += 1
                if done % world == 0:   # a run of several (run_planned) is hung only if one of them stalls
                    deadline = time.monotonic() + job["timeout"] + 30
                if progress:
                    what = "already done (--resume)" if msg.get("skipped") else f"in {msg['seconds']:.1f}s"
                    progress(done, world * frames, f"{msg['label'] + ': ' if msg.get('label') else ''}"
                                                   f"block {msg.get('coords', '')} (rank {msg['rank']}) {what}")
            if finished:
                break
            _raise_if_cancelled(cancel, "the ranks were stopped")
            if time.monotonic() > deadline:
                alive = [i for i, p in enumerate(ctx.processes) if p.is_alive()]
                raise EngineError(f"halo run did not finish within {job['timeout']:.0f}s; ranks still "
                                  f"running: {alive}; they were stopped")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        for p in ctx.processes:
            p.join(5)
    return [reports[k] for k in sorted(reports)]


def _drain(q) -> list:
    out = []
    while not q.empty():
        out.append(q.get())
    return out


def _rank_entry(rank: int, job: dict, q):
    try:
        _rank_main(rank, job, q)
    except VolumeError as exc:   # the input's fault (NaN voxels, an unreadable file): its message is the news
        q.put({"rank": rank, "error": str(exc)})
        raise
    exit_rank(q)


def _torchrun_rank(job) -> dict | list:
    job = dict(job, init="env://", world=int(os.environ["WORLD_SIZE"]))
    rank = int(os.environ["RANK"])
    plan_world = job["grid"][0] * job["grid"][1] * job["grid"][2]
    if plan_world != job["world"]:
        raise EngineError(f"torchrun started {job['world']} ranks but the grid {job['grid']} needs {plan_world}")
    if job["threads"] is None:
        job["threads"] = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return _rank_main(rank, job, None)


def _rank_main(rank: int, job: dict, q) -> dict:
    import torch.distributed as dist

    torch.set_num_threads(job["threads"])
    map_large_allocations()   # a rank's process is the run's own: tune its allocator, never the caller's
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = _device_for(job["device"], local_rank)
    backend = backend_for(dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend, init_method=job["init"], rank=rank, world_size=job["world"],
                            timeout=timedelta(seconds=job["timeout"]))
    try:
        dist.barrier()  # under torchrun, rank 0 creates the output before this point
        if not job.get("frames"):
            return _rank_block(rank, job, q, dev)
        models, reports = {}, []   # the network loaded once for all the runs
        for k, frame in enumerate(job["frames"]):   # run_planned: a block of each run in turn
            try:
                reports.append(_rank_block(rank, dict(job, **frame), q, dev, frame=k, models=models))
            except VolumeError as exc:
                raise VolumeError(f"{frame['label']}: {exc}" if frame.get("label") else str(exc)) from None
        return reports
    finally:
        dist.destroy_process_group()


def _rank_block(rank: int, job: dict, q, dev, frame: int | None = None, models: dict | None = None) -> dict:
    """This rank's block of the run ``job``, written into its output; the report (also put on ``q``)."""
    import torch.distributed as dist
    from .halo import HaloContext
    tag = {} if frame is None else {"frame": frame, "label": job.get("label")}
    if job.get("resume") and done_map(job["output"]).all():
        report = {"rank": rank, "skipped": True, "seconds": 0.0, "peak_mb": 0.0, **tag}
        if frame is not None and q is not None:
            q.put(report)
        return report
    fault = job.get("fault") or {}
    if fault.get("rank") == rank:  # test hook: simulate a dead or hung rank
        if fault.get("kind") == "hang":
            time.sleep(10 ** 6)
        os._exit(fault.get("code", 3))
    t0 = time.perf_counter()
    models = {} if models is None else models
    if "net" not in models:
        models["net"] = load_model(job["weights"], dev)
    net, meta = models["net"]
    vols = open_channels([Channel(**c) for c in job["inputs"]])
    vol = vols[0]
    plan = PartitionPlan(vol.shape, job["grid"], net.multiple)
    _check_rank_gpu(job, dev, vol, net, plan)
    _check_gpu_precision(dev, job["precision"])
    coords = plan.coords(rank)
    valid = plan.valid_block(rank)
    specs = [normalize.resolve(s, v.data) for s, v in zip(normalize.specs_of(meta, len(vols)), vols)]
    process = _status_mb("RssAnon")   # the rank's own process before its block: memory.PROCESS_BYTES
    rss0 = _reset_peak()
    block = plan.block(rank)
    # far-border padding = 0 after norm
    xb = np.zeros([len(vols)] + [s.stop - s.start for s in block], np.float32)
    inside = tuple(slice(0, v.stop - v.start) for v in valid)
    xs = [np.asarray(v.data[valid]) for v in vols]   # this rank's block only, of each channel
    m = torch.from_numpy(np.stack([normalize.moments(x, s) for x, s in zip(xs, specs)])).to(dev)
    dist.all_reduce(m)   # every channel's moments in one collective
    for c, (x, spec, mc) in enumerate(zip(xs, specs, m.cpu().numpy())):
        mean, std = normalize.mean_std(mc, spec, vols[c].source)
        xb[(c,) + inside] = normalize.apply(x, mean, std, spec)
    del xs, x
    net.set_partition(HaloContext(plan, rank))
    with torch.inference_mode():
        probs = mirrored_softmax(net, torch.from_numpy(xb)[None].to(dev), job["mirror"], job["precision"])
        probs = probs[0].float().cpu().numpy()
    probs = probs[(slice(None),) + tuple(slice(0, v.stop - v.start) for v in valid)]
    peak = _peak_growth_mb(rss0)
    write_block(job["output"], valid, probs, coords, job["probabilities"])
    report = {"rank": rank, "coords": coords, "seconds": time.perf_counter() - t0,
              "peak_mb": peak, "process_mb": process, "block": [s.stop - s.start for s in block], **tag}
    if dev.type == "cuda":
        report["cuda_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
    dist.barrier()
    if job.get("back"):   # a resampled run (resampled_run.py): every block is written; share the way back
        from .resampled_run import back_pass
        t1 = time.perf_counter()
        back_pass(**job["back"], share=(rank, job["world"]))
        report["back_seconds"] = time.perf_counter() - t1
        dist.barrier()
    if q is not None:
        q.put(report)
    return report


# ---------------------------------------------------------------- whole and tile modes

def channel_norms(vols, meta) -> list:
    """Each input channel's (mean, std, spec) over its whole volume, as the halo ranks reduce them."""
    out = []
    for v, spec in zip(vols, normalize.specs_of(meta, len(vols))):
        spec = normalize.resolve(spec, v.data)
        out.append((*normalize.mean_std(normalize.dask_moments(v.data, spec), spec, v.source), spec))
    return out


def normalise_channels(x: np.ndarray, norms) -> np.ndarray:
    """``x`` (channels first) normalised channel by channel, as float32."""
    return np.stack([normalize.apply(xc, *n) for xc, n in zip(x, norms)])


def _single_process(job, vols, net, meta, progress, cancel=None) -> dict:
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    dev = _device_for(job["device"])
    _check_gpu_precision(dev, job["precision"])
    net = net.to(dev)
    vol = vols[0]
    norms = channel_norms(vols, meta)
    t0, rss0 = time.perf_counter(), _reset_peak()
    if job["mode"] == "whole":
        x = np.stack([normalize.apply(np.asarray(v.data), *n) for v, n in zip(vols, norms)])
        probs = predict_whole(net, x, dev, job["mirror"], job["precision"])
        del x
        if progress:
            progress(1, 1, "whole volume")
        peak = _peak_growth_mb(rss0)
        write_block(job["output"], tuple(slice(0, s) for s in vol.shape), probs, (0, 0, 0), job["probabilities"])
    else:
        # band by band, so the blend of a huge volume is never held whole; done is marked by the last
        import dask.array as da
        data = da.stack([v.data for v in vols]) if len(vols) > 1 else vols[0].data
        bands = tile_bands(net, data, lambda a: normalise_channels(a, norms), dev,
                           tile=job["tile_size"], overlap=job["overlap"], progress=progress, cancel=cancel,
                           mirror=job["mirror"], precision=job["precision"])
        for z0, z1, probs in bands:
            region = (slice(z0, z1),) + tuple(slice(0, s) for s in vol.shape[1:])
            write_block(job["output"], region, probs, (0, 0, 0), job["probabilities"], mark_done=z1 == vol.shape[0])
        peak = _peak_growth_mb(rss0)
    return {"rank": 0, "coords": (0, 0, 0), "seconds": time.perf_counter() - t0, "peak_mb": peak,
            "block": list(vol.shape)}


def pad_to_multiple(x: np.ndarray, m: int) -> np.ndarray:
    """``x`` zero-padded at the end of its last three (spatial) axes to multiples of ``m``."""
    pad = [(0, 0)] * (x.ndim - 3) + [(0, math.ceil(s / m) * m - s) for s in x.shape[-3:]]
    return np.pad(x, pad) if any(p[1] for p in pad) else x


def predict_whole(net, x: np.ndarray, dev, mirror=(), precision: str = "fp32") -> np.ndarray:
    """Softmax probabilities of the unpartitioned network (the exactness reference). ``x``: one
    (Z, Y, X) channel, or (C, Z, Y, X) for a network of C input channels."""
    x = x[None] if x.ndim == 3 else x
    shape = x.shape[1:]
    # a memory-mapped volume (train --on-disk) is read-only
    xp = pad_to_multiple(x.astype(np.float32, copy=not x.flags.writeable), net.multiple)
    net.set_partition(None)
    with torch.inference_mode():
        p = mirrored_softmax(net, torch.from_numpy(np.ascontiguousarray(xp))[None].to(dev), mirror,
                             precision)[0].float().cpu().numpy()
    return p[(slice(None),) + tuple(slice(0, s) for s in shape)]


def gaussian_weight(tile) -> np.ndarray:
    """nnU-Net's importance map: a Gaussian with sigma = tile/8, centre weight highest."""
    axes = [np.exp(-0.5 * ((np.arange(t) - (t - 1) / 2) / (t / 8)) ** 2) for t in tile]
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return np.maximum(w / w.max(), 1e-3).astype(np.float32)


def tile_starts(n: int, t: int, step: int) -> list[int]:
    if n <= t:
        return [0]
    starts = list(range(0, n - t, step)) + [n - t]
    return sorted(set(starts))


def reflect_pad(data, pads):
    """numpy's mode="reflect" on a dask array. da.pad cannot reflect more than the axis holds (a
    12-slice volume padded by 36 came out 34 deep, and tile mode failed on any volume thinner than a
    window); such an axis is indexed with numpy's reflected positions instead."""
    import dask.array as da
    if all(lo < s and hi < s for (lo, hi), s in zip(pads, data.shape)):
        return da.pad(data, pads, mode="reflect")
    out = data if isinstance(data, da.Array) else da.from_array(data)
    for ax, ((lo, hi), s) in enumerate(zip(pads, data.shape)):
        if lo or hi:
            out = da.take(out, np.pad(np.arange(s), (lo, hi), mode="reflect"), axis=ax)
    return out


def tile_bands(net, data, norm, dev, tile: int | None = None, overlap: float = 0.5,
               progress=None, cancel=None, mirror=(), precision: str = "fp32"):
    """Overlap-tile baseline: mirror-padded border context (U-Net paper), Gaussian-blended windows
    (nnU-Net / MONAI) at `overlap`. Each window reads only its own part of the lazy volume.

    Yields ``(z0, z1, probs)`` for consecutive z-ranges of the volume as soon as no later window can
    reach them, so only a band of one window's depth is held, not the whole volume's blend.

    ``data``: (Z, Y, X), or (C, Z, Y, X) for a network of C input channels; ``norm`` takes a window
    with its channel axis first."""
    data = data[None] if data.ndim == 3 else data
    shape = tuple(data.shape[1:])
    m = net.multiple
    t = tile or 64
    t = max(m, (t // m) * m)
    margin = t // 4  # mirrored context around the volume, so border voxels sit inside a window
    pads = [(margin, margin + max(0, t - (s + 2 * margin))) for s in shape]
    src = reflect_pad(data, [(0, 0)] + pads)
    step = max(1, int(round(t * (1 - overlap))))
    starts = [tile_starts(s, t, step) for s in src.shape[1:]]
    w = gaussian_weight((t, t, t))
    C = net.config["out_channels"]
    plane = tuple(src.shape[2:])
    crop = (slice(margin, margin + shape[1]), slice(margin, margin + shape[2]))
    base = starts[0][0]   # the band holds src z in [base, base + depth)
    acc = np.zeros((C, t) + plane, np.float32)
    wsum = np.zeros((t,) + plane, np.float32)

    def finished(z_end):
        """The band's slices below src z `z_end`, cut to the volume, in pieces of at most `step`
        slices, so that only one piece's probabilities and labels are on their way out at a time."""
        lo, hi = max(base, margin), min(z_end, margin + shape[0])
        for a in range(lo, hi, step):
            sl = slice(a - base, min(a + step, hi) - base)
            yield (a - margin, min(a + step, hi) - margin,
                   acc[:, sl][(slice(None), slice(None)) + crop] / wsum[sl][(slice(None),) + crop])

    net.set_partition(None)
    total = len(starts[0]) * len(starts[1]) * len(starts[2])
    k = 0
    with torch.inference_mode():
        for z in starts[0]:
            if z > base:   # every window from here on starts at z or beyond
                yield from finished(z)
                keep = base + t - z
                acc[:, :keep] = acc[:, z - base:]
                acc[:, keep:] = 0
                wsum[:keep] = wsum[z - base:]
                wsum[keep:] = 0
                base = z
            for y in starts[1]:
                for x in starts[2]:
                    _raise_if_cancelled(cancel, "the remaining windows were skipped")
                    sl = (slice(y, y + t), slice(x, x + t))
                    xt = norm(np.asarray(src[(slice(None), slice(z, z + t)) + sl]))
                    p = mirrored_softmax(net, torch.from_numpy(xt)[None].to(dev), mirror,
                                         precision)[0].float().cpu().numpy()
                    acc[(slice(None), slice(0, t)) + sl] += p * w
                    wsum[(slice(0, t),) + sl] += w
                    k += 1
                    if progress:
                        progress(k, total, f"tile {k}/{total}")
    yield from finished(base + t)


def predict_tiles(net, data, norm, dev, tile: int | None = None, overlap: float = 0.5,
                  progress=None, cancel=None, mirror=(), precision: str = "fp32") -> np.ndarray:
    """The overlap-tile probabilities of the whole volume (tile_bands, gathered)."""
    out = np.zeros((net.config["out_channels"],) + tuple(data.shape[-3:]), np.float32)
    for z0, z1, probs in tile_bands(net, data, norm, dev, tile, overlap, progress, cancel, mirror, precision):
        out[:, z0:z1] = probs
    return out
