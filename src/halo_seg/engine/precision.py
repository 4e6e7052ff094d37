"""The arithmetic a segmentation run uses: fp32 (exact, the default) or bf16 autocast.

bf16 runs the convolutions in bfloat16 under ``torch.autocast`` and keeps what needs range or
precision in fp32: the instance norms' statistics (halo.py), the softmax and every probability,
label and uncertainty written. On a CPU with native bfloat16 (AVX512-BF16) the network ran in 0.52
to 0.58 of fp32's time and half its memory (GPUs from Ampere on have bfloat16 too; not measured
yet); the labels then agree with fp32's on all but a few boundary voxels (benchmarks/README.md,
"bf16 autocast"), and a halo run no longer equals the whole-volume run bit for bit, only to
bf16's rounding. fp16 is not offered: its range ends at 65504, so training would need loss scaling
and activations before a norm could overflow; bf16 has fp32's range.
"""
from __future__ import annotations

import contextlib
import warnings

import torch

PRECISIONS = ("fp32", "bf16")


class PrecisionError(ValueError):
    pass


def check_precision(precision: str) -> str:
    p = str(precision).lower()
    if p not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)} "
                             f"(fp32 is exact; bf16 is faster where the hardware has it)")
    return p


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 convolutions natively (emulated, they are slower than fp32)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):   # a PyTorch without that query: assume not
        return False


def warn_if_emulated(precision: str, device: torch.device | str) -> None:
    if precision == "bf16" and not native_bf16(device):
        warnings.warn(f"{torch.device(device).type}: no native bfloat16 here, so bf16 is emulated and "
                      f"likely slower than fp32; it still runs", RuntimeWarning, stacklevel=3)


def autocast(precision: str, device_type: str):
    """The context a network's forward runs in: nothing for fp32, bfloat16 autocast for bf16."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)


def lowered(x: torch.Tensor) -> bool:
    """Whether ``x`` is in a reduced-precision float type, whose statistics are taken in fp32."""
    return x.dtype in (torch.bfloat16, torch.float16)


def widened(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 if it came out of bf16 autocast; fp32 and fp64 as they are (the float64 exactness
    tests keep their precision)."""
    return x.float() if lowered(x) else x


def forward(net, precision: str, *inputs):
    """``net(*inputs)`` under ``precision``'s autocast, its output (or each of a tuple's) back in fp32
    (fp64 stays fp64): what a loss, a softmax or a Dice is then taken on."""
    with autocast(precision, inputs[0].device.type):
        out = net(*inputs)
    return tuple(widened(o) for o in out) if isinstance(out, tuple) else widened(out)
