"""Mirror averaging (nnU-Net's test-time mirroring) that keeps the halo engine exact.

The usual way, softmax(net(flip(x))) flipped back and averaged over flips, would move every block
to the mirrored rank. Instead the network runs on the unflipped block with its kernels flipped:
every layer of UNet3D commutes with a flip that way (3x3x3 convolutions with symmetric zero
padding, instance norm, 2x2x2 stride-2 down and up convolutions on sizes that are multiples of
2**depth, 1x1 head), so ``net_with_flipped_kernels(x) == flip(net(flip(x)))`` on any padded volume
or block, and halos are exchanged as without mirroring.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager

import torch

from .precision import forward

AXIS_LETTERS = "zyx"


class MirrorError(ValueError):
    """A mirror specification that names no valid axes."""


def parse_mirror(spec) -> tuple[int, ...]:
    """Axes to mirror over: '' / None -> none, 'zyx' -> (0, 1, 2), 'yx' -> (1, 2), or axis numbers."""
    if spec is None or spec == "" or spec == ():
        return ()
    if isinstance(spec, str):
        bad = [c for c in spec if c not in AXIS_LETTERS]
        if bad or len(set(spec)) != len(spec):
            raise MirrorError(f"mirror axes {spec!r}: use distinct letters from 'zyx', e.g. 'zyx' or 'yx'")
        return tuple(sorted(AXIS_LETTERS.index(c) for c in spec))
    axes = tuple(int(a) for a in spec)
    if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
        raise MirrorError(f"mirror axes {spec!r}: use distinct axes from 0 (z), 1 (y), 2 (x)")
    return tuple(sorted(axes))


def mirror_letters(axes) -> str:
    return "".join(AXIS_LETTERS[a] for a in parse_mirror(axes))


def trained_flip_axes(meta: dict) -> tuple[int, ...] | None:
    """The axes a model's training flipped its patches along (halo-seg's own weights record them);
    None where the weights do not say."""
    training = meta.get("training")
    config = training.get("config") if isinstance(training, dict) else None
    axes = config.get("flip_axes") if isinstance(config, dict) else None
    return None if axes is None else parse_mirror(axes)


def check_trained_for(axes, meta: dict) -> None:
    """Refuse mirrored views along axes the model never saw flipped: those views are images out of
    its domain, and averaging them in would quietly lower the result instead of raising it."""
    trained = trained_flip_axes(meta)
    missing = [a for a in parse_mirror(axes) if trained is not None and a not in trained]
    if missing:
        raise MirrorError(f"mirror axes {mirror_letters(axes)!r}: these weights were trained with flips along "
                          f"{mirror_letters(trained) or 'no axis'} only, so views mirrored along "
                          f"{mirror_letters(missing)} are out of their domain; mirror along "
                          f"{mirror_letters(trained) or 'no axis'} instead, or train with those flips")


def flip_sets(axes) -> list[tuple[int, ...]]:
    """Every subset of `axes`, the identity first: the 2**len(axes) mirrored views."""
    axes = parse_mirror(axes)
    return [c for k in range(len(axes) + 1) for c in itertools.combinations(axes, k)]


def _kernels(net: torch.nn.Module):
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            yield m.weight   # (out, in, kz, ky, kx) or (in, out, kz, ky, kx): spatial dims 2 to 4


@contextmanager
def flipped_kernels(net: torch.nn.Module, axes: tuple[int, ...]):
    """Flip every spatial kernel of `net` along `axes` for the duration; a flip is a permutation,
    so the weights are restored exactly."""
    dims = [2 + a for a in axes]
    if not dims:
        yield net
        return
    with torch.no_grad():
        for w in _kernels(net):
            w.copy_(torch.flip(w, dims))
    try:
        yield net
    finally:
        with torch.no_grad():
            for w in _kernels(net):
                w.copy_(torch.flip(w, dims))


def mirrored_softmax(net: torch.nn.Module, x: torch.Tensor, axes=(), precision: str = "fp32") -> torch.Tensor:
    """Softmax over classes (dim 1) of `net` on `x`, averaged over the mirrored views along `axes`.

    Each view is computed with flipped kernels on `x` itself, so `x` may be a halo block. With
    `precision` "bf16" the network runs under bfloat16 autocast (engine/precision.py); the softmax
    and the average are fp32 either way."""
    sets = flip_sets(axes)
    acc = None
    for s in sets:
        with flipped_kernels(net, s):
            p = torch.softmax(forward(net, precision, x), 1)
        acc = p if acc is None else acc.add_(p)
        del p
    return acc / len(sets) if len(sets) > 1 else acc
