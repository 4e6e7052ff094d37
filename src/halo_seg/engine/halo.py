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
import torch.nn.functional as F

from .conv import conv3d, conv3d_backward
from .partition import PartitionPlan
from .precision import lowered


@dataclass
class HaloContext:
    """What a rank needs to run the network on its block."""
    plan: PartitionPlan
    rank: int
    group: object = None  # process group of the ranks that share one sample; None = WORLD
    offset: int = 0       # global rank of the group's first rank (data-parallel replicas of the grid)

    def neighbours(self, axis: int) -> tuple[int | None, int | None]:
        # point-to-point messages address global ranks, even inside a group
        lo, hi = self.plan.neighbour(self.rank, axis, -1), self.plan.neighbour(self.rank, axis, +1)
        return (None if lo is None else lo + self.offset), (None if hi is None else hi + self.offset)


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


def _receive_axis(x, dim, width, lo, hi, group):
    """The halos rank lo and rank hi send this block along ``dim`` (None where there is no neighbour)."""
    n = x.shape[dim]
    if n < width:
        raise RuntimeError(f"block of {n} voxels along dim {dim} is thinner than the halo ({width})")
    send_lo = x.narrow(dim, 0, width).contiguous()
    send_hi = x.narrow(dim, n - width, width).contiguous()
    return _exchange(send_lo, send_hi, lo, hi, group)


def _pad_axis(x, dim, width, recv_lo, recv_hi):
    # no neighbour = the volume's true border: zeros, as the whole-volume conv's padding
    shape = list(x.shape)
    shape[dim] = width
    lo = recv_lo if recv_lo is not None else x.new_zeros(shape)
    hi = recv_hi if recv_hi is not None else x.new_zeros(shape)
    return torch.cat([lo, x, hi], dim)


def _return_axis(g, dim, width, lo, hi, group, n):
    """Backward of one axis' exchange: each halo's gradient goes back to the rank that owns those
    voxels, which adds it to its border."""
    g_lo = g.narrow(dim, 0, width).contiguous()          # belongs to rank lo's last voxels
    g_hi = g.narrow(dim, width + n, width).contiguous()  # belongs to rank hi's first voxels
    back_lo, back_hi = _exchange(g_lo, g_hi, lo, hi, group)
    gx = g.narrow(dim, width, n).clone()
    if back_lo is not None:
        gx.narrow(dim, 0, width).add_(back_lo)
    if back_hi is not None:
        gx.narrow(dim, n - width, width).add_(back_hi)
    return gx


class _HaloConv(torch.autograd.Function):
    """A convolution of a block padded with its neighbours' halos, keeping for the backward pass only
    the block (which the layer before keeps anyway) and the thin halos received, not the padded copy:
    the backward pass pads again, locally, from them. Composed of autograd operations, the padded
    copy of every convolution's input was kept, a quarter of a partitioned step's memory
    (benchmarks/README.md, "Training memory")."""

    @staticmethod
    def forward(ctx, x, weight, bias, width, hctx, pad):
        p, received = x, []
        for axis, has in enumerate(exchanged_axes(hctx)):
            if has:
                lo, hi = hctx.neighbours(axis)
                recv = _receive_axis(p, 2 + axis, width, lo, hi, hctx.group)
                received.append((axis, lo, hi, recv))
                p = _pad_axis(p, 2 + axis, width, *recv)
        ctx.save_for_backward(x, weight)
        ctx.received, ctx.width, ctx.group, ctx.pad, ctx.has_bias = received, width, hctx.group, pad, bias is not None
        dev = x.device.type
        # the backward pass runs outside autocast: it casts as the forward's autocast did
        ctx.cast = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        return conv3d(p, weight, bias, 1, pad)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        p = x
        for axis, _lo, _hi, recv in ctx.received:
            p = _pad_axis(p, 2 + axis, ctx.width, *recv)
        if ctx.cast is not None:
            g, p, weight = g.to(ctx.cast), p.to(ctx.cast), weight.to(ctx.cast)
        want_x = ctx.needs_input_grad[0]
        gp, gw, gb = conv3d_backward(g, p, weight, ctx.has_bias, 1, ctx.pad,
                                     [want_x, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]])
        del p
        if want_x:
            for axis, lo, hi, _recv in reversed(ctx.received):
                gp = _return_axis(gp, 2 + axis, ctx.width, lo, hi, ctx.group, x.shape[2 + axis])
        return gp, gw, gb, None, None, None


def halo_conv3d(x, weight, bias, width: int, hctx: HaloContext):
    """A 'same' convolution of a block: halos from the neighbours where it has them, zero padding (as
    on the whole volume) along axes without any."""
    pad = tuple(0 if has else width for has in exchanged_axes(hctx))
    return _HaloConv.apply(x, weight, bias, width, hctx, pad)


def exchanged_axes(hctx: HaloContext) -> tuple[bool, bool, bool]:
    """Axes along which this rank has a neighbour; along the others the conv pads with zeros itself."""
    return tuple(any(n is not None for n in hctx.neighbours(a)) for a in range(3))


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


class _DistributedInstanceNorm(torch.autograd.Function):
    """Instance norm over a partitioned volume, with the closed-form backward of batch norm.

    Written out rather than composed from autograd operations, which kept the centred input, the
    normalised one and the affine output alive for the backward pass: three tensors the size of the
    activation where this keeps one, the normalised input (benchmarks/README.md, "Training memory").
    Statistics are global: forward all-reduces the sums (mean, then the centred sum of squares, which
    keeps fp32 precision on large volumes), backward the two sums of the gradient it needs.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, group):
        dims = (2, 3, 4)
        out_dtype = x.dtype
        if lowered(x):   # bf16 autocast: the statistics and the normalisation in fp32, as torch's own norm
            x = x.float()
        count, mean = _global_mean(x, group, x.dtype)
        xhat = x - mean
        var = (xhat * xhat).sum(dims, keepdim=True)
        dist.all_reduce(var, group=group)
        inv = var.div_(count).add_(eps).rsqrt_()
        xhat.mul_(inv)
        shape = (1, -1, 1, 1, 1)
        y = xhat * weight.view(shape).to(x.dtype) + bias.view(shape).to(x.dtype) if weight is not None else xhat.clone()
        # kept in the input's dtype: under bf16 autocast, half the memory of fp32
        ctx.save_for_backward(xhat.to(out_dtype), inv, weight)
        ctx.count, ctx.group = count, group
        return y.to(out_dtype)

    @staticmethod
    def backward(ctx, gy):
        xhat, inv, weight = ctx.saved_tensors
        out_dtype = gy.dtype
        gy, xhat = gy.to(inv.dtype), xhat.to(inv.dtype)
        gw = gb = None
        if weight is not None:
            gw = (gy * xhat).sum((0, 2, 3, 4))   # this block's share; allreduce_gradients adds the rest
            gb = gy.sum((0, 2, 3, 4))
            g = gy * weight.view(1, -1, 1, 1, 1)
        else:
            g = gy
        dims = (2, 3, 4)
        sums = torch.cat([g.sum(dims, keepdim=True), (g * xhat).sum(dims, keepdim=True)], 1)
        dist.all_reduce(sums, group=ctx.group)
        mean_g, mean_gx = sums.div_(ctx.count).chunk(2, 1)
        gx = (g - mean_g).sub_(xhat * mean_gx).mul_(inv)
        return gx.to(out_dtype), gw, gb, None, None


def _global_mean(x, group, acc):
    """The voxel count of one sample's channel over every rank's block, and each sample's and
    channel's mean there, (N, C, 1, 1, 1), summed in ``acc``."""
    count = torch.tensor(float(x[0, 0].numel()), dtype=acc, device=x.device)
    dist.all_reduce(count, group=group)
    mean = x.sum((2, 3, 4), keepdim=True, dtype=acc)
    dist.all_reduce(mean, group=group)
    return count, mean.div_(count)


def _inference_instance_norm(x, weight, bias, eps: float, group):
    """The forward alone (no gradient wanted) of one sample: global statistics, then torch's own
    fused batch norm with them, which writes the output in the input's dtype without a full-size
    temporary; the centred sum of squares goes slab by slab, so a bf16 block is never copied whole
    into fp32."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    count, mean = _global_mean(x, group, acc)
    ss = torch.zeros_like(mean)
    slab = max(1, (1 << 22) // max(1, x[0, :, 0].numel()))   # about 4 M voxels at a time
    for z in range(0, x.shape[2], slab):
        d = x[:, :, z:z + slab].to(acc) - mean
        ss += (d * d).sum((2, 3, 4), keepdim=True)
    dist.all_reduce(ss, group=group)
    return F.batch_norm(x, mean.view(-1), (ss / count).view(-1), None if weight is None else weight.to(acc),
                        None if bias is None else bias.to(acc), False, 0.0, eps)


def distributed_instance_norm(x, weight, bias, eps: float, hctx: HaloContext):
    """Instance norm whose per-channel mean and variance cover the whole (partitioned) volume."""
    wants_grad = torch.is_grad_enabled() and (x.requires_grad or (weight is not None and weight.requires_grad))
    if x.shape[0] == 1 and not wants_grad:   # one sample (segment, validation): its statistics are the channel's
        return _inference_instance_norm(x, weight, bias, eps, hctx.group)
    return _DistributedInstanceNorm.apply(x, weight, bias, eps, hctx.group)


def allreduce_gradients(module: torch.nn.Module, group=None, average_over: int = 1):
    """Sum weight gradients over the spatial group (each rank saw a part of the same sample); over
    the whole world of data-parallel replicas with ``average_over`` replicas, which sums each replica's
    blocks and averages the replicas in one all-reduce."""
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, group=group)
            if average_over > 1:
                p.grad /= average_over
