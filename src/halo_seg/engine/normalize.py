"""Intensity normalisation shared by training and every inference mode.

z-score statistics are global (per volume): the halo ranks all-reduce their partial moments, the
single-process modes reduce the dask array chunk by chunk, so all modes normalise identically.
"""
from __future__ import annotations

import numpy as np

from ..io.volume import VolumeError


def spec_of(meta: dict | None) -> dict:
    spec = (meta or {}).get("normalization", {"kind": "zscore"})
    if isinstance(spec, list):   # a network of several input channels (specs_of)
        raise ValueError("these weights normalise each of their input channels on its own; use specs_of")
    return dict(spec)


def recorded(spec) -> dict | list:
    """A copy of a normalisation as weights record it: one spec (None: z-score), or a list of one per
    input channel."""
    if isinstance(spec, list):
        return [dict(s) for s in spec]
    return dict(spec or {"kind": "zscore"})


def specs_of(meta: dict | None, n: int = 1) -> list[dict]:
    """Each of a network's ``n`` input channels' normalisation: the weights record one spec for all
    of them, or a list of one per channel (a CT channel windowed beside MR channels z-scored)."""
    spec = recorded((meta or {}).get("normalization"))
    specs = spec if isinstance(spec, list) else [dict(spec) for _ in range(n)]
    if len(specs) != n:
        raise ValueError(f"the weights record {len(specs)} channels' normalisation for a network of {n} input channels")
    return specs


def parse(text: str) -> dict:
    """'zscore', 'percentile' (0.5..99.5), 'percentile:1,99' or 'window:-160,240' (CT) -> a spec."""
    kind, _, args = str(text).partition(":")
    try:
        vals = [float(v) for v in args.split(",")] if args else []
    except ValueError:
        raise ValueError(f"normalisation {text!r}: the numbers after ':' must be like 1,99") from None
    if kind == "zscore" and not vals:
        return {"kind": "zscore"}
    if kind == "percentile" and len(vals) in (0, 2):
        lo, hi = vals or (0.5, 99.5)
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"normalisation {text!r}: percentiles must satisfy 0 <= lo < hi <= 100")
        return {"kind": "percentile", "percentiles": [lo, hi]}
    if kind == "window" and len(vals) == 2 and vals[0] < vals[1]:
        return {"kind": "window", "window": vals}
    raise ValueError(f"unknown normalisation {text!r}: use zscore, percentile[:lo,hi] or window:lo,hi")


def resolve(spec: dict, data) -> dict:
    """Turn a percentile spec into the window it means for this volume.

    The percentiles come from a fixed strided subsample, so every rank, tile and the whole-volume
    mode compute the very same window without communicating.
    """
    if spec.get("kind") != "percentile":
        return spec
    step = max(1, int(round((int(np.prod(data.shape)) / 2e6) ** (1 / 3))))
    sub = np.asarray(data[::step, ::step, ::step], np.float64)
    lo, hi = np.percentile(sub, spec["percentiles"])
    if hi <= lo:
        hi = lo + 1.0
    return {"kind": "window", "window": [float(lo), float(hi)], "from": dict(spec)}


def moments(x: np.ndarray, spec: dict) -> np.ndarray:
    """(sum, sum of squares, count) of the values the z-score uses, in float64."""
    x = _clip(np.asarray(x, np.float64), spec)
    return np.array([x.sum(), (x * x).sum(), x.size], np.float64)


class NotFiniteError(VolumeError):
    """The volume holds NaN (or, unclipped, infinite) values: every normalised voxel would be NaN and
    the network's output silently all background."""


def mean_std(m: np.ndarray, spec: dict, what: str | None = None) -> tuple[float, float]:
    if not np.isfinite(m).all():
        raise NotFiniteError(f"{what or 'the volume'} holds NaN or infinite values (a NaN-filled mask or field of "
                             "view?); fill them first, e.g. with the background intensity")
    if spec.get("kind") == "window":
        lo, hi = spec["window"]
        return (lo + hi) / 2.0, max((hi - lo) / 2.0, 1e-6)
    s, ss, n = m
    mean = s / n
    std = float(np.sqrt(max(ss / n - mean * mean, 0.0)))
    return float(mean), std if std > 1e-8 else 1.0


def _clip(x, spec):
    if spec.get("kind") == "window":
        lo, hi = spec["window"]
        return np.clip(x, lo, hi)
    return x


def apply(x: np.ndarray, mean: float, std: float, spec: dict) -> np.ndarray:
    return ((_clip(np.asarray(x, np.float32), spec) - np.float32(mean)) / np.float32(std)).astype(np.float32)


def dask_moments(arr, spec: dict) -> np.ndarray:
    import dask.array as da
    x = arr.astype(np.float64)
    if spec.get("kind") == "window":
        x = da.clip(x, *spec["window"])
    s, ss = da.compute(x.sum(), (x * x).sum())
    return np.array([s, ss, arr.size], np.float64)
