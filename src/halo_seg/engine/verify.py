"""Check that the halo-partitioned network equals the whole-volume one, forward and backward.

Spawns one process per rank (gloo on CPU, or NCCL with one GPU per rank), runs the partitioned
forward and a backward of a fixed random loss, and compares logits, input gradients and
all-reduced weight gradients with the same network run on the whole volume in this process.
"""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import torch


def _inputs(shape, multiple, out_ch, dtype, seed):
    from .runner import pad_to_multiple
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, *shape, generator=g, dtype=torch.float64).numpy()[0, 0]
    xp = torch.from_numpy(pad_to_multiple(x, multiple))[None, None].to(dtype)
    t = torch.randn(1, out_ch, *xp.shape[2:], generator=g, dtype=torch.float64).to(dtype)
    # the loss only sees the unpadded volume, as a cropped training loss would
    mask = torch.zeros_like(t)
    mask[(slice(None), slice(None)) + tuple(slice(0, s) for s in shape)] = 1
    return xp, t * mask


def _worker(rank, world, grid, shape, config, dtype_name, seed, init, device, precision, q):
    import torch.distributed as dist
    from .halo import HaloContext, allreduce_gradients
    from .runner import backend_for, exit_rank
    from .partition import PartitionPlan
    from .precision import forward
    from .unet import UNet3D
    torch.set_num_threads(1)
    dev = torch.device(device if device == "cpu" else f"cuda:{rank % torch.cuda.device_count()}")
    if dev.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # compare fp32 with fp32
    dist.init_process_group(backend_for(dev), init_method=init, rank=rank,
                            world_size=world, timeout=timedelta(seconds=300))
    try:
        dtype = getattr(torch, dtype_name)
        torch.manual_seed(seed)
        net = UNet3D(**config).to(dtype)
        xp, t = _inputs(shape, net.multiple, config["out_channels"], dtype, seed)
        plan = PartitionPlan(shape, grid, net.multiple)
        sl = (slice(None), slice(None)) + plan.block(rank)
        net = net.to(dev).set_partition(HaloContext(plan, rank))
        xb = xp[sl].clone().to(dev).requires_grad_(True)
        yb = forward(net, precision, xb).to(dtype)
        (yb * t[sl].to(dev)).sum().backward()
        allreduce_gradients(net)
        q.put((rank, yb.detach().cpu().numpy(), xb.grad.cpu().numpy(),
               {n: p.grad.cpu().numpy() for n, p in net.named_parameters()}))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    exit_rank(q)


def run_ranks(target, world: int, args: tuple, extra: tuple = ()) -> list:
    """Spawn ``world`` gloo/NCCL ranks running ``target(rank, world, *args, init, *extra, queue)``;
    each puts one result on the queue. Returns the results; raises if a rank failed."""
    import torch.multiprocessing as mp
    from .runner import _free_port
    from .spawning import main_hidden
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    init = f"tcp://127.0.0.1:{_free_port()}"
    procs = [ctx.Process(target=target, args=(r, world, *args, init, *extra, q)) for r in range(world)]
    with main_hidden(args, extra):
        for p in procs:
            p.start()
    results = [q.get() for _ in range(world)]
    for p in procs:
        p.join(60)
    bad = [i for i, p in enumerate(procs) if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"ranks {bad} failed")
    return results


def compare_partitioned(grid, shape, config=None, dtype="float32", seed=0, device="cpu",
                        precision: str = "fp32") -> dict:
    """Max abs logit difference, max relative input/weight gradient difference vs the whole volume,
    both run in `precision` (bf16: under autocast, forward and backward)."""
    from .partition import PartitionPlan
    from .precision import forward
    from .unet import UNet3D
    config = config or dict(in_channels=1, out_channels=2, base=4, depth=2)
    world = int(np.prod(grid))
    results = run_ranks(_worker, world, (tuple(grid), tuple(shape), config, dtype, seed), (device, precision))
    dt = getattr(torch, dtype)
    torch.manual_seed(seed)
    net = UNet3D(**config).to(dt)
    xp, t = _inputs(shape, net.multiple, config["out_channels"], dt, seed)
    dev = torch.device(device)
    net = net.to(dev)
    x = xp.to(dev).requires_grad_(True)
    y = forward(net, precision, x).to(dt)
    (y * t.to(dev)).sum().backward()
    y, gx = y.detach().cpu().numpy(), x.grad.cpu().numpy()
    plan = PartitionPlan(shape, grid, net.multiple)
    out_y, out_gx = np.zeros_like(y), np.zeros_like(gx)
    wdiff = 0.0
    for rank, yb, gxb, gw in results:
        sl = (slice(None), slice(None)) + plan.block(rank)
        out_y[sl], out_gx[sl] = yb, gxb
        for n, p in net.named_parameters():
            ref = p.grad.cpu().numpy()
            wdiff = max(wdiff, float(np.abs(gw[n] - ref).max() / (np.abs(ref).max() + 1e-12)))
    return {"grid": list(grid), "shape": list(shape), "world": world,
            "logits_max_abs": float(np.abs(out_y - y).max()),
            "logits_scale": float(np.abs(y).max()),
            "input_grad_max_rel": float(np.abs(out_gx - gx).max() / (np.abs(gx).max() + 1e-12)),
            "weight_grad_max_rel": wdiff,
            "labels_identical": bool((out_y.argmax(1) == y.argmax(1)).all()),
            **_label_flips(y, out_y)}


def _label_flips(y: np.ndarray, out_y: np.ndarray) -> dict:
    """Voxels whose label differs, and the largest gap there between the whole network's two best
    logits: a voxel the two runs label differently must be a tie to within the logits' rounding."""
    flips = out_y.argmax(1) != y.argmax(1)
    top = np.sort(y, axis=1)
    gap = (top[:, -1] - top[:, -2])[flips]
    return {"labels_differing": int(flips.sum()), "differing_top2_gap": float(gap.max()) if gap.size else 0.0}
