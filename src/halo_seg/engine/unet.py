"""A 3D U-Net (nnU-Net-like stages) that runs unchanged on the whole volume or on one block.

Only two kinds of layer see past their block: 3x3x3 convolutions (which take a one-voxel halo
from the neighbours instead of zero padding) and instance norm (whose statistics are all-reduced
over the ranks). Downsampling is a 2x2x2 stride-2 convolution and upsampling a 2x2x2 stride-2
transposed convolution: neither crosses a block boundary when blocks are multiples of 2**depth.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .conv import Conv3d
from .halo import HaloContext, distributed_instance_norm, halo_conv3d


class PartitionAware(nn.Module):
    hctx: HaloContext | None = None


class HaloConv3d(Conv3d, PartitionAware):
    """3x3x3 'same' convolution; on a block, the padding comes from the neighbours' halos."""

    def __init__(self, cin, cout, k=3, bias=True):
        super().__init__(cin, cout, k, padding=k // 2, bias=bias)

    def forward(self, x):
        if self.hctx is None:
            return super().forward(x)
        return halo_conv3d(x, self.weight, self.bias, self.kernel_size[0] // 2, self.hctx)


class SpatialInstanceNorm(nn.InstanceNorm3d, PartitionAware):
    def __init__(self, c, eps=1e-5):
        super().__init__(c, eps=eps, affine=True)

    def forward(self, x):
        if self.hctx is None:
            return super().forward(x)
        return distributed_instance_norm(x, self.weight, self.bias, self.eps, self.hctx)


def conv_norm_act(cin, cout):
    # no conv bias: the instance norm right after removes any constant, so its gradient is zero
    return nn.Sequential(HaloConv3d(cin, cout, bias=False), SpatialInstanceNorm(cout),
                         nn.LeakyReLU(0.01, inplace=True))


class Stage(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(conv_norm_act(cin, cout), conv_norm_act(cout, cout))


class Down(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(Conv3d(cin, cout, 2, stride=2, bias=False), SpatialInstanceNorm(cout),
                         nn.LeakyReLU(0.01, inplace=True))


class UNet3D(nn.Module):
    def __init__(self, in_channels: int = 1, out_channels: int = 2, base: int = 8, depth: int = 3,
                 max_channels: int = 256):
        super().__init__()
        self.config = dict(in_channels=in_channels, out_channels=out_channels, base=base, depth=depth,
                           max_channels=max_channels)
        ch = [min(base * 2 ** i, max_channels) for i in range(depth + 1)]
        self.stem = Stage(in_channels, ch[0])
        self.downs = nn.ModuleList(nn.Sequential(Down(ch[i], ch[i + 1]), Stage(ch[i + 1], ch[i + 1]))
                                   for i in range(depth))
        self.ups = nn.ModuleList(nn.ConvTranspose3d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(depth)))
        self.decs = nn.ModuleList(Stage(2 * ch[i], ch[i]) for i in reversed(range(depth)))
        self.head = Conv3d(ch[0], out_channels, 1)
        self.checkpoint = False   # see set_checkpoint; not part of the config, the weights do not depend on it

    @property
    def depth(self) -> int:
        return self.config["depth"]

    @property
    def multiple(self) -> int:
        return 2 ** self.depth

    def set_partition(self, hctx: HaloContext | None) -> "UNet3D":
        """Run on one block of `hctx.plan` (or, with None, on the whole volume)."""
        for m in self.modules():
            if isinstance(m, PartitionAware):
                m.hctx = hctx
        return self

    def set_checkpoint(self, on: bool = True) -> "UNet3D":
        """Activation checkpointing in training: each stage keeps only its input for the backward pass
        and runs its forward again there, one stage at a time (partitioned blocks exchange their halos
        again). About 0.75 of a rank's training memory for 1.3 times the time (benchmarks/README.md,
        "Activation checkpointing"); gradients are unchanged."""
        self.checkpoint = bool(on)
        return self

    def _stage(self, module, x):
        if self.checkpoint and torch.is_grad_enabled():
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward(self, x):
        if x.ndim != 5:
            raise ValueError(f"UNet3D expects (N, C, Z, Y, X), got shape {tuple(x.shape)}")
        if any(s % self.multiple for s in x.shape[2:]):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} must be a multiple of 2**depth = {self.multiple}")
        skips = [self._stage(self.stem, x)]
        for down in self.downs:
            skips.append(self._stage(down, skips[-1]))
        y = skips.pop()
        for up, dec in zip(self.ups, self.decs):
            y = self._stage(dec, torch.cat([up(y), skips.pop()], 1))
        return self.head(y)
