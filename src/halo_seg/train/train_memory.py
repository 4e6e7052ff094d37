"""How much memory a training run needs per rank, and whether it fits: the training counterpart of
engine/memory.py, so that `halo-seg train` refuses a patch, batch or grid that cannot fit before it
prepares the data, instead of dying at the first step, and says which grid would fit.

A rank's peak is the larger of its training step (forward, loss and backward on its block of the
batch's patches: PyTorch's allocations counted on a probe, as for inference, through the
partitioned path itself, so the halos a block keeps are counted) and its validation (its block of
the whole volume, run as `segment` runs it). Measured against real ranks by
`benchmarks/train_memory.py`.
"""
from __future__ import annotations

import json
import math
import os

import torch

from ..engine import memory
from ..engine.partition import PartitionPlan

# bytes per voxel of a batch's inputs beside the network: image (float32), labels (int64), weights
INPUT_BYTES = 16
# what an unpartitioned run holds per voxel of each volume in RAM: the labels as read (uint8: 1), the
# normalised image and the weight map (float32: 8) and each class's voxels (int32 flat indices: 4 per
# labelled voxel, 1 where a quarter is labelled); the images read one at a time as they are prepared,
# the labels kept narrow and the regions of a fully labelled volume a view. Measured 9.2 bytes with 5 %
# labelled (benchmarks/train_dataset_memory.py), where int64 labels and coordinates took 29.2.
UNPARTITIONED_DATA = 10
# what a torchrun rank holds: the normalised image, the weight map (float32) and the labels (int16)
RANK_DATA = 10
# validation holds the predicted and true labels (int64) and their comparisons beside the network
VALIDATION_BYTES = 24
PARAM_BYTES = 16   # per weight: itself, its gradient and AdamW's two moments (float32)
# The measured peak over the counted one, for a training step's block on CPU, is 1.2 to 1.3 on large
# blocks (benchmarks/train_memory.py; benchmarks/README.md, "Training memory"). Beside what grows with
# the block, a training process takes memory that does not (TRAIN_FIXED: the allocator, oneDNN's
# scratch buffers, which on some block shapes, e.g. 48 voxel edges, take 140 MiB more than on larger
# blocks), and its first step loads libraries (FIRST_USE, where it runs in an existing process); a
# spawned rank's whole process (interpreter, PyTorch, process group, network and optimizer) held
# 241 to 243 MiB of private memory before its first step (RANK_PROCESS). Not yet measured on a GPU.
TRAIN_FACTOR = 1.3
TRAIN_FIXED = 160 * 2 ** 20
FIRST_USE = 96 * 2 ** 20
RANK_PROCESS = 256 * 2 ** 20


def _largest_block(shape, grid, multiple) -> tuple:
    plan = PartitionPlan(tuple(shape), tuple(grid), multiple)
    return max((tuple(s.stop - s.start for s in b) for b in plan.all_blocks()), key=math.prod)


def step_bytes(config: dict, patch, batch: int, grid=(1, 1, 1), checkpoint: bool = False,
               precision: str = "fp32") -> int:
    """Estimated peak of one rank's training step, above what it held before (the network included);
    ``checkpoint``: with activation checkpointing; ``precision``: the step's (fp32 or bf16 autocast)."""
    multiple = 2 ** config["depth"]
    block = _largest_block(patch, grid, multiple)
    voxels = math.prod(block) * batch
    split = tuple(g > 1 for g in grid)
    per_voxel = memory.training_bytes_per_voxel(config, split, checkpoint, precision) * TRAIN_FACTOR + INPUT_BYTES
    params = memory.parameter_count(json.dumps(config, sort_keys=True))
    return int(voxels * per_voxel + params * PARAM_BYTES + TRAIN_FIXED)


def validation_bytes(config: dict, volume_shape, grid=(1, 1, 1)) -> int:
    """Estimated peak of one rank's validation on its block of the whole volume (grid 1,1,1: the
    unpartitioned trainer's whole-volume prediction)."""
    multiple = 2 ** config["depth"]
    block = _largest_block(volume_shape, grid, multiple)
    mode = "halo" if math.prod(grid) > 1 else "whole"
    running = memory.block_bytes(config, block, 4, (), mode) - memory.FIXED_BYTES
    return int(running + VALIDATION_BYTES * math.prod(block) + TRAIN_FIXED)


def rank_bytes(config: dict, patch, batch: int, grid, volume_shapes, checkpoint: bool = False,
               precision: str = "fp32") -> int:
    # validation runs in fp32 whatever the step's precision: the Dice that keeps weights is exact
    return max([step_bytes(config, patch, batch, grid, checkpoint, precision)]
               + [validation_bytes(config, s, grid) for s in volume_shapes])


def process_bytes(spawned: bool) -> int:
    """RAM a training rank needs beside its estimate: its whole process when spawned for the run, the
    first step's libraries when it runs in a process that exists (the caller, or a torchrun rank)."""
    return RANK_PROCESS if spawned else FIRST_USE


def plan_training(config: dict, patch, batch: int, grid, volume_shapes, device: torch.device,
                  distributed_env: bool = False, ask_gpu: bool = True, data_bytes_per_voxel: int = 0,
                  spawned: bool = False, replicas: int = 1, checkpoint: bool = False,
                  precision: str = "fp32", data_shapes=None) -> memory.MemoryCheck:
    """The run's estimated peak per rank against the memory it draws on: the machine's RAM shared by
    its ranks, or each rank's GPU (``ask_gpu`` False: unknown, for a parent that only spawns ranks).
    ``data_bytes_per_voxel``: what a rank holds in RAM of the prepared volumes (counted for RAM only);
    ``spawned``: the ranks are processes started for the run (their own memory counts too);
    ``replicas``: data-parallel copies of the grid, each rank of which needs as much as the first's;
    ``checkpoint``: activation checkpointing; ``precision``: the step's; ``data_shapes``: the volumes
    a rank holds ``data_bytes_per_voxel`` of (by default all of them)."""
    per_rank = rank_bytes(config, patch, batch, grid, volume_shapes, checkpoint, precision)
    here = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if distributed_env else math.prod(grid) * replicas
    data = data_bytes_per_voxel * sum(math.prod(v) for v in (volume_shapes if data_shapes is None else data_shapes))
    return memory.check_for(per_rank, device, here, ask_gpu, ram_extra=data, process=process_bytes(spawned))


def require(config: dict, patch, batch: int, grid, volume_shapes, device: torch.device, log=None, **plan) -> None:
    """Raise a TrainingError with :func:`refusal` where the run does not fit (``plan``: the keywords
    of :func:`plan_training`); else log what it needs."""
    from .unet_train import TrainingError
    mem = plan_training(config, patch, batch, grid, volume_shapes, device, **plan)
    if not mem.fits:
        where = f"GPU {device.index}: " if device.type == "cuda" else ""
        raise TrainingError(where + refusal(config, patch, batch, grid, volume_shapes, mem,
                                            int(plan.get("replicas", 1)), bool(plan.get("checkpoint")),
                                            plan.get("precision", "fp32")))
    if log is not None:
        log(f"memory: {mem.describe()}")


def refusal(config: dict, patch, batch: int, grid, volume_shapes, mem: memory.MemoryCheck,
            replicas: int = 1, checkpoint: bool = False, precision: str = "fp32") -> str:
    """What the run needs, and what would fit: bf16, activation checkpointing, a finer grid (each rank
    with its own memory), a smaller batch, fewer data-parallel replicas on this machine, or the check
    turned off."""
    grid = tuple(grid)
    g = "x".join(map(str, grid))
    step = step_bytes(config, patch, batch, grid, checkpoint, precision)
    val = max(validation_bytes(config, s, grid) for s in volume_shapes)
    reps = f" x {replicas} replicas" if replicas > 1 else ""
    lines = [f"not enough memory: training {' x '.join(map(str, patch))} patches (batch {batch}) on a {g} grid{reps} "
             f"{mem.describe()} (the step {memory.fmt_bytes(step)}, validating the whole volume "
             f"{memory.fmt_bytes(val)})."]
    room = mem.available * memory.USABLE
    if precision == "fp32":
        per = rank_bytes(config, patch, batch, grid, volume_shapes, checkpoint, "bf16")
        if (per + mem.process) * mem.sharing <= room:
            lines.append(f"- --precision bf16 (bfloat16 autocast; fast where the GPU or CPU has bfloat16) needs "
                         f"about {memory.fmt_bytes(per)} per rank")
    if not checkpoint:
        per = rank_bytes(config, patch, batch, grid, volume_shapes, True, precision)
        if (per + mem.process) * mem.sharing <= room:
            lines.append(f"- --checkpoint-activations (each stage's forward runs again in the "
                         f"backward pass, about 1.3 times the time) needs about {memory.fmt_bytes(per)} per rank")
    finer = memory.finer_grid(patch, 2 ** config["depth"], math.prod(grid), mem,
                              lambda g: rank_bytes(config, patch, batch, g, volume_shapes, checkpoint, precision)
                              + mem.process)
    world_now = math.prod(grid)
    if mem.where == "RAM" and mem.sharing >= world_now > 1:
        # ranks sharing this machine's RAM each carry a process of their own: fewer of them, on larger
        # blocks, can fit where more do not (a 4x4x4 grid of 16-voxel patches on one machine)
        for world in (w for w in (512, 256, 128, 64, 32, 16, 8, 4, 2, 1) if w < world_now):
            coarse = memory.factor_grid(world, patch, 2 ** config["depth"]) if world > 1 else (1, 1, 1)
            if coarse is None:
                continue
            per = rank_bytes(config, patch, batch, coarse, volume_shapes, checkpoint, precision)
            if (per + mem.process) * world * (mem.sharing // world_now) <= room:
                lines.append(f"- --grid {','.join(map(str, coarse))} ({world} rank{'s' if world > 1 else ''}) fits "
                             f"here: about {memory.fmt_bytes(per)} per rank")
                break
    if finer is not None and finer[1] >= world_now:   # a coarser one is said above, where it fits here
        finer_grid, world, per = finer
        lines.append(f"- --grid {','.join(map(str, finer_grid))} ({world} ranks) needs about {memory.fmt_bytes(per)} "
                     f"per rank: run it where each rank has its own {mem.where} (one GPU each, or torchrun "
                     f"over machines)")
    if batch > 1 and (rank_bytes(config, patch, 1, grid, volume_shapes, checkpoint, precision)
                      + mem.process) * mem.sharing <= room:
        lines.append("- a smaller --batch")
    if replicas > 1 and mem.where == "RAM":
        fit = int(room // max(1, (mem.per_rank + mem.process) * (mem.sharing // replicas)))
        if fit >= 1:
            lines.append(f"- --replicas {min(fit, replicas - 1)} here (each replica's ranks need what the first's "
                         f"do), or the replicas on machines of their own (torchrun)")
    lines.append("- turning the check off runs it anyway (--no-memory-check; memory_check=False)")
    return "\n".join(lines)
