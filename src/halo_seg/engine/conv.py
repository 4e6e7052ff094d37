"""3D convolutions on a CPU through oneDNN whatever the block's shape, forward and backward.

For a batch of one, PyTorch (2.13) takes its own im2col kernel, ``slow_conv3d``, instead of oneDNN
whenever channels x depth x height of the input is at most 20480 (``ConvParams::use_mkldnn``): the
first convolution of every block (one channel), every layer of a thin block, most layers of a tile
window. That kernel unfolds the input into 27 floats per channel and voxel, a buffer the memory
estimate (engine/memory.py), which counts tensors, does not see (8 ranks on blocks 8 slices thick
each took 2.7 times the estimated peak), and it is slow (one 8-channel convolution of such a block:
0.22 s against oneDNN's 0.028; benchmarks/README.md, "oneDNN for every convolution"). oneDNN gives
the same labels (outputs within float rounding).

The backward pass has no oneDNN entry point of its own: ``convolution_backward`` applies the same
rule, so a training step on thin patches or blocks took the im2col kernel there: up to 1.27 times
the training estimate's memory, and up to 8 times oneDNN's time for one convolution's backward
(benchmarks/README.md, "The backward pass too"). A convolution commutes with a
permutation of the spatial axes (of the input, the kernel, strides and padding alike), so the
backward pass is computed with the thinnest axis last, where the rule picks oneDNN, and the
gradients are permuted back (:func:`conv3d_backward`).

The environment variable ``HALO_SEG_PYTORCH_CONV=1`` gives every convolution back to PyTorch's
choice (the benchmarks' side-by-side; a way out should oneDNN misbehave on some CPU).
"""
from __future__ import annotations

import os
import platform

import torch
import torch.nn.functional as F

# ConvParams::use_mkldnn (aten/src/ATen/native/Convolution.cpp): a batch of one goes to oneDNN only
# when channels x depth x height exceeds this; larger batches always do
_ONEDNN_MIN = 20480


def _triple(v) -> list[int]:
    return [int(a) for a in v] if isinstance(v, (tuple, list)) else [int(v)] * 3


# measured on x86-64 only; elsewhere (ARM's oneDNN goes through the Compute Library) PyTorch chooses
_X86 = platform.machine().lower() in ("x86_64", "amd64")


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 on an x86-64 CPU with oneDNN on; autocast (bf16) is left to PyTorch, which takes oneDNN for it."""
    return (_X86 and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled("cpu") and os.environ.get("HALO_SEG_PYTORCH_CONV") != "1")


def _mkldnn(x, weight, bias, stride, padding):
    return torch.ops.aten.mkldnn_convolution(x.contiguous(), weight.contiguous(), bias, _triple(padding),
                                             _triple(stride), [1, 1, 1], 1)


class _OneDnnConv(torch.autograd.Function):
    """oneDNN's convolution whose backward pass is :func:`conv3d_backward` (autograd's derivative of
    ``mkldnn_convolution`` calls ``convolution_backward``, which takes the im2col kernel on thin inputs)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return _mkldnn(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        gx, gw, gb = conv3d_backward(g, x, weight, ctx.has_bias, ctx.stride, ctx.padding, mask)
        return gx, gw, gb, None, None


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias=None, stride=1, padding=0) -> torch.Tensor:
    """``F.conv3d`` (no dilation, no groups), through oneDNN on a CPU, forward and backward."""
    if onednn_applies(x, weight):
        stride, padding = _triple(stride), _triple(padding)
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad)):
            return _OneDnnConv.apply(x, weight, bias, stride, padding)
        return _mkldnn(x, weight, bias, stride, padding)
    return F.conv3d(x, weight, bias, stride, padding)


def backward_order(x_shape, onednn: bool = True) -> list[int] | None:
    """The order of the spatial axes in which PyTorch's rule sends this input's backward pass to
    oneDNN: the thinnest axis last. None where the given order does already, or no order would."""
    n, c, *spatial = (int(s) for s in x_shape)
    if not onednn or n > 1 or c * spatial[0] * spatial[1] > _ONEDNN_MIN:
        return None
    thin = min(range(3), key=lambda a: (spatial[a], -a))
    order = [a for a in range(3) if a != thin] + [thin]
    if c * spatial[order[0]] * spatial[order[1]] <= _ONEDNN_MIN:
        return None
    return order


def conv3d_backward(g, x, weight, has_bias: bool, stride, padding, mask):
    """``aten.convolution_backward`` of :func:`conv3d` (input, weight and bias gradients, each where
    ``mask`` asks), through oneDNN on a CPU whatever the input's shape."""
    stride, padding = _triple(stride), _triple(padding)
    bias_sizes = [weight.shape[0]] if has_bias else None
    order = backward_order(x.shape, onednn_applies(x, weight))
    if order is None:
        return torch.ops.aten.convolution_backward(g, x, weight, bias_sizes, stride, padding, [1, 1, 1], False,
                                                   [0, 0, 0], 1, list(mask))
    perm = [0, 1] + [2 + a for a in order]
    inverse = [perm.index(d) for d in range(5)]
    gx, gw, gb = torch.ops.aten.convolution_backward(
        g.permute(perm), x.permute(perm), weight.permute(perm), bias_sizes, [stride[a] for a in order],
        [padding[a] for a in order], [1, 1, 1], False, [0, 0, 0], 1, list(mask))
    # back in the caller's order and memory layout: the next layer's backward and the optimizer expect it
    gx = gx.permute(inverse).contiguous() if gx is not None else None
    gw = gw.permute(inverse).contiguous() if gw is not None else None
    return gx, gw, gb


class Conv3d(torch.nn.Conv3d):
    """``nn.Conv3d`` through :func:`conv3d` (zero padding, no dilation, no groups)."""

    def _conv_forward(self, x, weight, bias):
        if self.padding_mode != "zeros" or self.groups != 1 or tuple(self.dilation) != (1, 1, 1):
            return super()._conv_forward(x, weight, bias)
        return conv3d(x, weight, bias, self.stride, self.padding)
