"""Intensity normalisation shared by training and every inference mode.

z-score statistics are global (per volume): the halo ranks all-reduce their partial moments, the
single-process modes reduce the dask array chunk by chunk, so all modes normalise identically.
"""
from __future__ import annotations

import numpy as np


def spec_of(meta: dict | None) -> dict:
    return dict((meta or {}).get("normalization", {"kind": "zscore"}))


def moments(x: np.ndarray, spec: dict) -> np.ndarray:
    """(sum, sum of squares, count) of the values the z-score uses, in float64."""
    x = _clip(np.asarray(x, np.float64), spec)
    return np.array([x.sum(), (x * x).sum(), x.size], np.float64)


def mean_std(m: np.ndarray, spec: dict) -> tuple[float, float]:
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
