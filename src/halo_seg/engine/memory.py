"""How much memory a segmentation run needs per rank, and whether this machine has it.

A rank that runs out of memory is killed by the kernel (or stopped by CUDA) after it has read its
block, so without a check the user learns late, and only that "rank 3 died". The engine therefore
estimates each rank's peak before it starts and refuses a run that cannot fit, saying what would.

The estimate counts what PyTorch allocates: the network runs once on a small probe block under a
dispatch mode that adds up the bytes of every tensor alive at each step. Every activation of the
U-Net is proportional to the block's voxels, so the probe's peak per voxel holds for any block.
Convolution libraries (oneDNN on CPU, cuDNN on GPU) also take buffers the dispatcher does not see:
`LIBRARY_FACTOR` covers them, measured against the ranks' real peaks by `benchmarks/memory.py`.
"""
from __future__ import annotations

import functools
import json
import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from ..host_memory import host_available
from .partition import factor_grid

GIB = 2 ** 30
MIB = 2 ** 20
# the measured peak is 1.54 to 1.59 x the counted one on large blocks, for three network sizes
# (benchmarks/memory.py, CPU: the ranks' RSS growth) and on an H100 (benchmarks/engine.py:
# torch.cuda.max_memory_allocated, 1.56); see benchmarks/README.md, "Memory per rank". Under bf16
# autocast the estimate (bf16 activations counted) was 1.09 to 1.45 x the measured peak, CPU
# (benchmarks/precision.py). Since every convolution runs through oneDNN (engine/conv.py) the
# estimate is 1.11 to 1.77 x the measured peak on 24 runs, thin blocks included (2026-12-05)
LIBRARY_FACTOR = 1.6
FIXED_BYTES = 64 * MIB     # small tensors and allocator slack that do not scale with the block
# bytes per voxel per base channel of one training step (whole patch, partitioned block), if counting
# fails: what it counts for this U-Net family (base 8 and 16, depth 3 and 4)
TRAIN_FALLBACK = (68.0, 74.0)
# a spawned CPU rank's own process before its block: interpreter, PyTorch, its libraries and the
# network; 181 MiB of private memory (RssAnon, torch 2.13, Linux; shared library code not counted)
PROCESS_BYTES = 192 * MIB
USABLE = 0.9               # of the available memory: the rest is left for the system and the caller


class _LiveBytes:
    """Counts the bytes of the tensors that PyTorch operations create, while they are alive."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                return counter._dispatch(func, args, kwargs or {})

        self.mode = Mode()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def _free(self, ptr: int) -> None:
        self.live -= self._sizes.pop(ptr, 0)

    def _dispatch(self, func, args, kwargs):
        from torch.utils._pytree import tree_flatten
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            ptr = t.untyped_storage().data_ptr()
            # a view or an in-place result shares an input's storage: nothing new was allocated
            if ptr == 0 or ptr in inputs or ptr in self._sizes:
                continue
            self._sizes[ptr] = t.untyped_storage().nbytes()
            self.live += self._sizes[ptr]
            self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._free, ptr)
        return out


def _counted_peak(net, n: int, mirror: tuple, precision: str = "fp32") -> int:
    from .mirror import mirrored_softmax

    x = torch.zeros(1, net.config["in_channels"], n, n, n)
    counter = _LiveBytes()
    with torch.inference_mode(), counter.mode:
        mirrored_softmax(net, x, mirror, precision)
    return counter.peak


def probe_net(config: dict):
    """A network of ``config``'s sizes, for counting: the weights do not change the memory. Its
    random initialisation leaves PyTorch's global generator as it was, so an estimate never changes
    what a seeded run that follows it (training) draws."""
    from .unet import UNet3D
    with torch.random.fork_rng(devices=[]):
        return UNet3D(**config)


def _slope(count, multiple: int) -> float:
    """Bytes per voxel from ``count(n)``, the peak on an n**3 probe: two probe sizes, whose slope
    leaves out what does not grow with the block."""
    n1, n2 = 2 * multiple, 3 * multiple
    return (count(n2) - count(n1)) / (n2 ** 3 - n1 ** 3)


@functools.lru_cache(maxsize=32)
def parameter_count(config_json: str) -> int:
    return sum(p.numel() for p in probe_net(json.loads(config_json)).parameters())


@functools.lru_cache(maxsize=32)
def _counted_per_voxel(config_json: str, precision: str = "fp32") -> float:
    net = probe_net(json.loads(config_json))
    try:
        return _slope(lambda n: _counted_peak(net, n, (), precision), net.multiple)
    except (ImportError, AttributeError, RuntimeError):
        # the dispatch mode is PyTorch-internal API; where it is missing, what it counted for this
        # U-Net family (21 bytes per voxel per base channel, for base 8 and 16, depth 3 and 4;
        # bf16 is not counted then: fp32's count is the safe side)
        return 21.0 * net.config["base"]


class _OfflineHalo:
    """A partitioned rank's allocations without its messages, for counting: each halo arrives as
    zeros (as a received buffer would), each all-reduce is left as it was. Only halo.py is patched."""

    class _Context:
        group = None

        def __init__(self, split):
            self.split = split

        def neighbours(self, axis):
            # an inner rank, the worst case: a neighbour on both sides of every split axis
            return (0, 0) if self.split[axis] else (None, None)

    class _Dist:
        ReduceOp = torch.distributed.ReduceOp if hasattr(torch.distributed, "ReduceOp") else None

        @staticmethod
        def all_reduce(*args, **kwargs):
            return None

    def __init__(self, split):
        self.hctx = self._Context(tuple(bool(s) for s in split))

    def __enter__(self):
        from . import halo
        self._saved = halo._exchange, halo.dist
        halo._exchange = lambda lo_t, hi_t, lo, hi, group: (
            None if lo is None else torch.zeros_like(lo_t), None if hi is None else torch.zeros_like(hi_t))
        halo.dist = self._Dist
        return self.hctx

    def __exit__(self, *exc):
        from . import halo
        halo._exchange, halo.dist = self._saved


def _counted_training_peak(net, n: int, split: tuple, precision: str = "fp32") -> int:
    """Peak bytes alive over one training step (forward, loss, backward) on an n**3 patch block."""
    from ..train.partitioned import partitioned_dice_ce
    from .precision import forward
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, net.config["in_channels"], n, n, n, generator=g)
    y = torch.randint(0, net.config["out_channels"], (1, n, n, n), generator=g)
    w = torch.ones(1, n, n, n)
    counter = _LiveBytes()
    with _OfflineHalo(split) as hctx:
        net.set_partition(hctx if any(split) else None)
        try:
            with counter.mode:
                partitioned_dice_ce(forward(net, precision, x), y, w).backward()
        finally:
            net.set_partition(None)
            net.zero_grad(set_to_none=True)
    return counter.peak


@functools.lru_cache(maxsize=32)
def _training_per_voxel(config_json: str, split: tuple, checkpoint: bool = False, precision: str = "fp32") -> float:
    net = probe_net(json.loads(config_json)).set_checkpoint(checkpoint)
    try:
        return _slope(lambda n: _counted_training_peak(net, n, split, precision), net.multiple)
    except (ImportError, AttributeError, RuntimeError):
        return TRAIN_FALLBACK[any(split)] * net.config["base"]


def training_bytes_per_voxel(config: dict, split=(False, False, False), checkpoint: bool = False,
                             precision: str = "fp32") -> float:
    """Peak bytes PyTorch allocates per voxel of a patch block over one training step, batch 1;
    ``split``: the axes the patch is partitioned along (the halos a block keeps for the backward
    pass are counted, as for a rank with neighbours on both sides of each); ``checkpoint``: with
    activation checkpointing (UNet3D.set_checkpoint), its recomputation counted too; ``precision``
    "bf16": the forward under bfloat16 autocast (engine/precision.py)."""
    return _training_per_voxel(json.dumps(config, sort_keys=True), tuple(bool(s) for s in split), bool(checkpoint),
                               precision)


def network_bytes_per_voxel(config: dict, mirror=(), precision: str = "fp32") -> float:
    """Peak bytes PyTorch allocates per voxel of a block while the network runs on it (softmax
    included, the input block not). Mirrored views run one after another; while one runs, the sum
    of the views before it is held: one probability map more. Under bf16 autocast the activations
    are counted in bfloat16 (engine/precision.py)."""
    per_voxel = _counted_per_voxel(json.dumps(config, sort_keys=True), precision)
    return per_voxel + (4 * config["out_channels"] if len(tuple(mirror)) else 0)


def block_bytes(config: dict, block_shape, in_itemsize: int = 4, mirror=(), mode: str = "halo",
                band_shape=None, piece_shape=None, precision: str = "fp32", exchanges: bool = False) -> int:
    """Estimated peak bytes, above what the process held before, of one rank on its block (halo
    mode), of the single process on the whole volume (whole mode), or of the tile loop (tile mode:
    `block_shape` the window, `band_shape` the band of windows it blends, `piece_shape` the most of
    it written at once). `exchanges`: the block takes halos from neighbours, so each convolution's
    input is copied with them first."""
    voxels = math.prod(int(s) for s in block_shape)
    n_in = int(config.get("in_channels", 1))
    # each input channel's block as read (its dtype), then normalised (float32) beside a float32 copy
    reading = voxels * n_in * (in_itemsize + 3 * 4)
    # the float32 input (whole mode keeps the normalised volume and its padded copy) and the network
    held = (8 if mode == "whole" else 4) * n_in
    running = voxels * (held + network_bytes_per_voxel(config, mirror, precision) * LIBRARY_FACTOR)
    if exchanges:
        # the largest of those copies: the last stage's input (skip and upsampled, twice the base
        # channels) at full resolution, which the probe, run without neighbours, never made; an
        # 8 x 1024 x 1024 block measured 0.91 of the estimate without it (benchmarks/README.md)
        running += voxels * 4 * 2 * config["base"]
    total = max(reading, running)
    if mode == "tile" and band_shape is not None:
        c = config["out_channels"]
        # the band's blended probabilities and weights, and beside them either a window running or
        # a finished piece on its way out: divided, its labels (argmax is int64), its uncertainty
        writing = (2 * c * 4 + 12) * math.prod(int(s) for s in piece_shape) if piece_shape else 0
        total = (c + 1) * 4 * math.prod(int(s) for s in band_shape) + max(total, writing)
    return int(total + FIXED_BYTES)


def fmt_bytes(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


@dataclass
class MemoryCheck:
    """One run's estimated peak against what the memory it draws on has available."""
    per_rank: int            # bytes, the largest rank's (or the single process's) estimated peak
    sharing: int             # ranks that draw on the same memory (one machine's RAM, or one GPU)
    available: int | None    # bytes that memory has available; None: unknown, so not checked
    where: str               # "RAM" or "GPU memory"
    process: int = 0         # bytes each rank's own process takes before it runs (ranks spawned here)

    @property
    def needed(self) -> int:
        return (self.per_rank + self.process) * self.sharing

    @property
    def fits(self) -> bool:
        return self.available is None or self.needed <= self.available * USABLE

    def describe(self) -> str:
        own = f" and {fmt_bytes(self.process)} for its own process" if self.process else ""
        need = fmt_bytes(self.per_rank) + (f" per rank{own}, {fmt_bytes(self.needed)} for the {self.sharing} ranks "
                                           f"that share it" if self.sharing > 1 else own)
        have = "unknown" if self.available is None else fmt_bytes(self.available)
        return f"needs about {need}; {self.where} available: {have}"


def check_for(per_rank: int, dev: torch.device, here: int, ask_gpu: bool = True, ram_extra: int = 0,
              process: int = 0) -> MemoryCheck:
    """``per_rank`` against the memory ranks on ``dev`` draw on: the GPU each runs on (the ``here``
    ranks of this machine share the GPUs; ``ask_gpu`` False leaves its free memory unknown, since
    asking creates a CUDA context), or this machine's RAM shared by ``here`` ranks, each holding
    ``ram_extra`` more there and its own ``process`` when spawned for the run."""
    if dev.type == "cuda":
        free = int(torch.cuda.mem_get_info(dev)[0]) if ask_gpu else None
        return MemoryCheck(per_rank, math.ceil(here / torch.cuda.device_count()), free, "GPU memory")
    return MemoryCheck(per_rank + ram_extra, here, host_available(), "RAM", process)


def finer_grid(shape, multiple: int, world_now: int, mem: MemoryCheck, bytes_for) -> tuple | None:
    """The smallest power-of-two grid over ``shape`` whose ranks, each with memory of its own like
    ``mem``'s, fit: ``(grid, ranks, bytes per rank)`` with ``bytes_for(grid)`` (its process included),
    or None. Grids no larger than ``world_now`` are skipped unless ranks shared that memory."""
    room = mem.available * USABLE
    for world in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
        if world <= world_now and mem.sharing == 1:
            continue
        grid = factor_grid(world, shape, multiple)
        if grid is None:
            return None
        per = bytes_for(grid)
        if per <= room:
            return grid, world, per
    return None


def itemsize_of(dtype) -> int:
    try:
        return int(np.dtype(dtype).itemsize)
    except TypeError:
        return 4
