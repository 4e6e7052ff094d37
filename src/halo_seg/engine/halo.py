"""Halo exchange and spatially distributed statistics as autograd functions.

The exchange runs axis by axis (z, then y, then x): the y exchange sends slabs that already carry
the z halos, so edges and corners arrive without diagonal messages. Its backward sends each halo's
gradient back to the rank that owns those voxels, which adds it to its border, so a loss summed over
ranks back-propagates exactly as through the whole volume.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from .partition import PartitionPlan


@dataclass
class HaloContext:
    """What a rank needs to run the network on its block."""
    plan: PartitionPlan
    rank: int
    group: object = None  # process group of the ranks that share one sample; None = WORLD

    def neighbours(self, axis: int) -> tuple[int | None, int | None]:
        return self.plan.neighbour(self.rank, axis, -1), self.plan.neighbour(self.rank, axis, +1)


def _exchange(send_lo, send_hi, lo, hi, group):
    """Send send_lo to rank lo and send_hi to rank hi; return what lo and hi sent back."""
    ops, recv_lo, recv_hi = [], None, None
    if lo is not None:
        recv_lo = torch.empty_like(send_lo)
        ops += [dist.P2POp(dist.isend, send_lo, lo, group), dist.P2POp(dist.irecv, recv_lo, lo, group)]
    if hi is not None:
        recv_hi = torch.empty_like(send_hi)
        ops += [dist.P2POp(dist.isend, send_hi, hi, group), dist.P2POp(dist.irecv, recv_hi, hi, group)]
    if ops:
        for req in dist.batch_isend_irecv(ops):
            req.wait()
    return recv_lo, recv_hi


class _HaloAxis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, width, lo, hi, group):
        n = x.shape[dim]
        if n < width:
            raise RuntimeError(f"block of {n} voxels along dim {dim} is thinner than the halo ({width})")
        ctx.meta = (dim, width, lo, hi, group, n)
        send_lo = x.narrow(dim, 0, width).contiguous()
        send_hi = x.narrow(dim, n - width, width).contiguous()
        recv_lo, recv_hi = _exchange(send_lo, send_hi, lo, hi, group)
        # no neighbour = the volume's true border: zeros, as the whole-volume conv's padding
        if recv_lo is None:
            recv_lo = torch.zeros_like(send_lo)
        if recv_hi is None:
            recv_hi = torch.zeros_like(send_hi)
        return torch.cat([recv_lo, x, recv_hi], dim)

    @staticmethod
    def backward(ctx, g):
        dim, width, lo, hi, group, n = ctx.meta
        g_lo = g.narrow(dim, 0, width).contiguous()          # belongs to rank lo's last voxels
        g_hi = g.narrow(dim, width + n, width).contiguous()  # belongs to rank hi's first voxels
        back_lo, back_hi = _exchange(g_lo, g_hi, lo, hi, group)
        gx = g.narrow(dim, width, n).clone()
        if back_lo is not None:
            gx.narrow(dim, 0, width).add_(back_lo)
        if back_hi is not None:
            gx.narrow(dim, n - width, width).add_(back_hi)
        return gx, None, None, None, None, None


def exchanged_axes(hctx: HaloContext) -> tuple[bool, bool, bool]:
    """Axes along which this rank has a neighbour; along the others the conv pads with zeros itself."""
    return tuple(any(n is not None for n in hctx.neighbours(a)) for a in range(3))


def halo_pad(x: torch.Tensor, width: int, hctx: HaloContext) -> torch.Tensor:
    """Extend a (N, C, Z, Y, X) block by `width` voxels with its neighbours' data, along the axes
    that have neighbours (the others are left for the convolution's own zero padding)."""
    for axis, has in enumerate(exchanged_axes(hctx)):
        if has:
            lo, hi = hctx.neighbours(axis)
            x = _HaloAxis.apply(x, 2 + axis, width, lo, hi, hctx.group)
    return x


class _AllReduceSum(torch.autograd.Function):
    # The global statistic feeds every rank's loss, so its gradient is the sum of all ranks' grads.
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM, group=group)
        return y

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM, group=ctx.group)
        return g, None


def all_reduce_sum(x: torch.Tensor, group=None) -> torch.Tensor:
    return _AllReduceSum.apply(x, group)


def distributed_instance_norm(x, weight, bias, eps: float, hctx: HaloContext):
    """Instance norm whose per-channel mean and variance cover the whole (partitioned) volume.

    Two passes (mean, then centred sum of squares) rather than sum/sum-of-squares, which loses
    precision in fp32 on large volumes.
    """
    dims = (2, 3, 4)
    count = torch.tensor(float(x[0, 0].numel()), dtype=x.dtype, device=x.device)
    dist.all_reduce(count, group=hctx.group)
    mean = all_reduce_sum(x.sum(dims, keepdim=True), hctx.group) / count
    xc = x - mean
    var = all_reduce_sum((xc * xc).sum(dims, keepdim=True), hctx.group) / count
    y = xc * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight.view(1, -1, 1, 1, 1) + bias.view(1, -1, 1, 1, 1)
    return y


def allreduce_gradients(module: torch.nn.Module, group=None, average_over: int = 1):
    """Sum weight gradients over the spatial group (each rank saw a part of the same sample)."""
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, group=group)
            if average_over > 1:
                p.grad /= average_over
