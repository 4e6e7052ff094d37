"""3D convolutions on a CPU through oneDNN whatever the block's shape.

For a batch of one, PyTorch (2.13) takes its own im2col kernel, ``slow_conv3d``, instead of oneDNN
whenever channels x depth x height of the input is at most 20480 (``ConvParams::use_mkldnn``): the
first convolution of every block (one channel), every layer of a thin block, most layers of a tile
window. That kernel unfolds the input into 27 floats per channel and voxel, a buffer the memory
estimate (engine/memory.py), which counts tensors, does not see (8 ranks on blocks 8 slices thick
each took 2.7 times the estimated peak), and it is slow (one 8-channel convolution of such a block:
0.22 s against oneDNN's 0.028; benchmarks/README.md, "oneDNN for every convolution"). oneDNN gives
the same labels (outputs within float rounding).

The backward pass is left to PyTorch (``convolution_backward`` chooses as before). The environment
variable ``HALO_SEG_PYTORCH_CONV=1`` gives every convolution back to PyTorch's choice (the benchmarks'
side-by-side; a way out should oneDNN misbehave on some CPU).
"""
from __future__ import annotations

import os
import platform

import torch
import torch.nn.functional as F


def _triple(v) -> list[int]:
    return [int(a) for a in v] if isinstance(v, (tuple, list)) else [int(v)] * 3


# measured on x86-64 only; elsewhere (ARM's oneDNN goes through the Compute Library) PyTorch chooses
_X86 = platform.machine().lower() in ("x86_64", "amd64")


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 on an x86-64 CPU with oneDNN on; autocast (bf16) is left to PyTorch, which takes oneDNN for it."""
    return (_X86 and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled("cpu") and os.environ.get("HALO_SEG_PYTORCH_CONV") != "1")


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias=None, stride=1, padding=0) -> torch.Tensor:
    """``F.conv3d`` (no dilation, no groups), through oneDNN on a CPU."""
    if onednn_applies(x, weight):
        return torch.ops.aten.mkldnn_convolution(x.contiguous(), weight.contiguous(), bias, _triple(padding),
                                                 _triple(stride), [1, 1, 1], 1)
    return F.conv3d(x, weight, bias, stride, padding)


class Conv3d(torch.nn.Conv3d):
    """``nn.Conv3d`` through :func:`conv3d` (zero padding, no dilation, no groups)."""

    def _conv_forward(self, x, weight, bias):
        if self.padding_mode != "zeros" or self.groups != 1 or tuple(self.dilation) != (1, 1, 1):
            return super()._conv_forward(x, weight, bias)
        return conv3d(x, weight, bias, self.stride, self.padding)
