"""Spatially partitioned 3D U-Net training (`halo-seg train --grid pz,py,px`).

Each training patch is split over the rank grid exactly as the inference engine splits a volume:
every rank holds one block of the patch, the network exchanges halos before each convolution and
all-reduces its norm statistics, the loss all-reduces its Dice and cross-entropy sums, and the
weight gradients are summed over the grid. Every rank then takes the same optimizer step, so the
weights stay identical without being broadcast, and equal those of unpartitioned training.

All ranks draw patches and augmentations from the same seed, so they agree on what to train on
without talking; each reads only its own block of each patch. How runs start, validate and save:
`partitioned_run.py`.

With ``replicas`` R > 1 the device mesh gains a batch axis, as in Mesh-TensorFlow: R copies of the
grid (rank = replica x ranks per grid + rank in the grid), each training its own patches. Halos,
norm statistics and the loss stay inside a replica's group; one all-reduce over every rank then sums
each replica's blocks and averages the replicas, so the step equals the unpartitioned step on the
mean of the replicas' gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.halo import HaloContext, all_reduce_sum, allreduce_gradients
from ..engine.partition import PartitionPlan
from ..engine.precision import forward
from ..engine.runner import exit_rank
from ..engine.unet import UNet3D
from . import block_augment


@dataclass(frozen=True)
class Mesh:
    """The ranks of a run: ``replicas`` data-parallel copies of a spatial ``grid``."""
    grid: tuple
    replicas: int = 1

    def __post_init__(self):
        if int(self.replicas) < 1:
            raise ValueError(f"replicas must be a positive integer, got {self.replicas}")

    @property
    def spatial(self) -> int:
        return int(np.prod(self.grid))

    @property
    def world(self) -> int:
        return self.spatial * int(self.replicas)

    def replica(self, rank: int) -> int:
        return rank // self.spatial

    def spatial_rank(self, rank: int) -> int:
        return rank % self.spatial

    def describe(self) -> str:
        g = "x".join(map(str, self.grid))
        return f"grid {g}" + (f" x {self.replicas} replicas" if self.replicas > 1 else "")

    def context(self, plan: PartitionPlan, rank: int, groups) -> HaloContext | None:
        """What a rank's network runs with on its block of ``plan`` (a patch or a whole volume split
        over the grid): None where the grid is one rank, so nothing crosses a block."""
        if plan.world_size == 1:
            return None
        rep = self.replica(rank)
        return HaloContext(plan, self.spatial_rank(rank), groups[rep], rep * self.spatial)

    def groups(self) -> list:
        """Each replica's process group (every rank must call this, in the same order); [None], the
        world, for one replica. A one-rank grid needs none: nothing crosses its block."""
        import torch.distributed as dist
        if self.replicas == 1:
            return [None]
        if self.spatial == 1:
            return [None] * self.replicas
        return [dist.new_group(list(range(r * self.spatial, (r + 1) * self.spatial))) for r in range(self.replicas)]


def replica_rng(seed: int, replica: int) -> np.random.Generator:
    """The patch draws of one replica (replica 0: those of a run without replicas)."""
    return np.random.default_rng(seed if replica == 0 else [seed, replica])


def partitioned_dice_ce(logits, target, weight_map, group=None, world: int = 1, eps: float = 1e-5):
    """The loss of :func:`losses.dice_ce_loss` on the whole patch, computed from one block of it
    (one of ``world`` ranks of ``group``).

    Global sums are all-reduced; the result is divided by ``world`` because the autograd all-reduce
    adds every rank's gradient (each rank computes the same global loss).
    """
    c = logits.shape[1]
    ce = F.cross_entropy(logits, target, reduction="none")
    probs = torch.softmax(logits, 1)
    onehot = F.one_hot(target, c).movedim(-1, 1).to(probs.dtype)
    m = (weight_map > 0).unsqueeze(1).to(probs.dtype)
    probs, onehot = probs * m, onehot * m
    dims = (0, 2, 3, 4)
    stats = torch.cat([(probs * onehot).sum(dims), probs.sum(dims), onehot.sum(dims),
                       (ce * weight_map).sum().view(1), weight_map.sum().view(1)])
    if world > 1:
        stats = all_reduce_sum(stats, group)
    inter, ps, ts = stats[:c], stats[c:2 * c], stats[2 * c:3 * c]
    dice = (2 * inter + eps) / (ps + ts + eps)
    loss = 1 - dice[1:].mean() + stats[3 * c] / stats[3 * c + 1].clamp_min(1e-6)
    return loss / world


def _patch_origin(shape, patch, rng, fg=None, fg_p: float = 0.0, centres=None) -> tuple[int, ...]:
    """``centres``: where the other patches may be centred (voxels of the training region), or None
    for anywhere."""
    if fg and rng.random() < fg_p:
        # a class first, then one of its voxels, the patch centred there (as the unpartitioned trainer)
        vox = fg[sorted(fg)[int(rng.integers(len(fg)))]]
        c = vox[int(rng.integers(len(vox)))]
    elif centres is not None:
        c = centres[int(rng.integers(len(centres)))]
    else:
        return tuple(int(rng.integers(0, s - p + 1)) for s, p in zip(shape, patch))
    return tuple(int(np.clip(ci - p // 2, 0, s - p)) for ci, p, s in zip(c, patch, shape))


def _read_block(arr, origin, patch, ranges, flips) -> np.ndarray:
    """The part ``ranges`` (inside the patch) of the flipped patch at ``origin``: a flipped axis reads
    the mirrored range."""
    sl = []
    for ax, (o, p, (lo, hi)) in enumerate(zip(origin, patch, ranges)):
        if flips[ax]:
            lo, hi = p - hi, p - lo
        sl.append(slice(o + lo, o + hi))
    out = np.asarray(arr[tuple(sl)])
    for ax in range(3):
        if flips[ax]:
            out = np.flip(out, ax)
    return np.ascontiguousarray(out)


def step_inputs(image, labels, weights, patch, plan: PartitionPlan, rank, rng, fg=None, fg_p: float = 0.0,
                augment: bool = False, centres=None):
    """One training patch (shared draw), this rank's block: image, labels, weight map, flips and a
    gamma; ``augment``: also scale, deformation, contrast and noise (block_augment.py).
    ``fg``: each foreground class's voxel coordinates; a share ``fg_p`` of the patches is centred on one,
    the others on one of ``centres`` (the training region's voxels) where given.
    ``image``: (Z, Y, X), or (C, Z, Y, X) for several input channels, each moved alike and given
    intensity draws of its own."""
    origin = _patch_origin(labels.shape, patch, rng, fg, fg_p, centres)
    channels = list(image) if image.ndim == 4 else [image]
    d = block_augment.draw(rng, patch, augment, len(channels))
    block = plan.block(rank) if rank is not None else tuple(slice(0, s) for s in plan.padded)
    # the block may reach into the padding past the patch: zeros there, and weight 0
    ranges = [(b.start, max(b.start, min(b.stop, p))) for b, p in zip(block, patch)]
    if d.spatial:
        *x, y, w = block_augment.spatial_block([*channels, labels, weights], d, origin, patch, ranges,
                                               linear=len(channels))
    else:
        *x, y, w = (_read_block(a, origin, patch, ranges, d.flips) for a in (*channels, labels, weights))
    x = np.stack([block_augment.intensity_block(c.astype(np.float32), d, patch, ranges, i) for i, c in enumerate(x)])
    pad = [(0, (b.stop - b.start) - (hi - lo)) for b, (lo, hi) in zip(block, ranges)]
    if any(p[1] for p in pad):
        x, y, w = np.pad(x, [(0, 0)] + pad), np.pad(y, pad), np.pad(w.astype(np.float32), pad)
    return torch.from_numpy(x)[None], torch.from_numpy(y.astype(np.int64))[None], \
        torch.from_numpy(w.astype(np.float32, copy=False))[None]


def train_step(net, opt, x, y, w, group=None, world=1, replicas=1, precision: str = "fp32"):
    """One step on this rank's block (``world`` ranks per replica in ``group``); returns the loss, the
    mean over replicas. ``precision`` "bf16": the forward under bfloat16 autocast, the loss in fp32."""
    loss = partitioned_dice_ce(forward(net, precision, x), y, w, group, world)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    value = loss.detach() * world
    if world * replicas > 1:
        allreduce_gradients(net, None, replicas)
    if replicas > 1:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= world * replicas
    opt.step()
    return float(value)


def _step_worker(rank, world, grid, shape, config, seed, replicas, checkpoint, precision, init, q):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world, timeout=timedelta(seconds=300))
    try:
        mesh = Mesh(grid, replicas)
        groups, rep, local = mesh.groups(), mesh.replica(rank), mesh.spatial_rank(rank)
        image, labels, weights = _step_data(shape, config, seed)
        torch.manual_seed(seed)
        # bf16 autocast lowers fp32 operations only: the bf16 step runs from fp32 weights and inputs
        dtype = torch.float64 if precision == "fp32" else torch.float32
        net = UNet3D(**config).to(dtype).set_checkpoint(checkpoint)
        plan = PartitionPlan(shape, grid, net.multiple)
        net.set_partition(mesh.context(plan, rank, groups))
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        x, y, w = step_inputs(image, labels, weights, shape, plan, local, replica_rng(seed, rep))   # a patch
        loss = train_step(net, opt, x.to(dtype), y, w.to(dtype), groups[rep], mesh.spatial, replicas, precision)
        q.put((rank, loss, {n: p.detach().double().numpy() for n, p in net.named_parameters()}))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    exit_rank(q)


def _step_data(shape, config, seed):
    """A random volume 8 voxels larger than the patch ``shape`` along each axis, so that patches
    drawn with different seeds lie in different places."""
    from .losses import unet_weight_map
    g = np.random.default_rng(seed)
    shape = tuple(s + 8 for s in shape)
    image = g.normal(size=shape)
    labels = (g.random(shape) < 0.3).astype(np.int64) * g.integers(1, config["out_channels"], shape)
    return image, labels, unet_weight_map(labels)


def compare_training_step(grid, shape, config=None, seed=0, replicas=1, checkpoint=False,
                          precision: str = "fp32") -> dict:
    """One SGD step partitioned over ``grid`` (times ``replicas`` data-parallel copies, each drawing
    its own patch) vs the same step on the whole patches (float64): the unpartitioned network's
    gradients on each replica's patch, averaged. ``checkpoint``: the ranks checkpoint activations
    (the reference does not). ``precision`` "fp32": the ranks run in float64, as the reference;
    "bf16": under bfloat16 autocast from fp32 weights (the reference stays float64).

    Returns the largest weight-update difference relative to the largest update, and both losses.
    """
    from ..engine.verify import run_ranks
    from .losses import dice_ce_loss
    config = config or dict(in_channels=1, out_channels=3, base=4, depth=2)
    mesh = Mesh(tuple(grid), replicas)
    results = run_ranks(_step_worker, mesh.world, (tuple(grid), tuple(shape), config, seed, replicas, checkpoint,
                                                   precision))
    image, labels, weights = _step_data(shape, config, seed)
    torch.manual_seed(seed)
    net = UNet3D(**config).double()
    before = {n: p.detach().clone().numpy() for n, p in net.named_parameters()}
    plan = PartitionPlan(shape, (1, 1, 1), net.multiple)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad(set_to_none=True)
    losses = []
    for r in range(replicas):   # the reference is the loss of losses.py, not the partitioned one
        x, y, w = step_inputs(image, labels, weights, shape, plan, None, replica_rng(seed, r))
        loss = dice_ce_loss(net(x.double()), y, w.double()) / replicas
        loss.backward()
        losses.append(loss.item() * replicas)
    opt.step()
    ref_loss = float(np.mean(losses))
    after = {n: p.detach().numpy() for n, p in net.named_parameters()}
    scale = max(float(np.abs(after[n] - before[n]).max()) for n in after)
    worst = 0.0
    for _, _, params in results:
        for n in after:
            worst = max(worst, float(np.abs((params[n] - before[n]) - (after[n] - before[n])).max()))
    return {"grid": list(grid), "replicas": replicas, "shape": list(shape), "replica_losses": losses,
            "update_max_rel_diff": worst / scale,
            "update_scale": scale, "loss_whole": ref_loss, "loss_partitioned": [r[1] for r in results],
            "ranks_agree": all(np.array_equal(results[0][2][n], r[2][n]) for r in results for n in after)}
