"""Labels painted on some slices only: the slices without a label are unknown, not background.

A microscopist or a radiologist labels every few slices of a stack, not all of them. Taken as a
complete label volume, every slice left unpainted teaches the network that the objects crossing it
are background. Here only the slices (across one axis) that hold a label count: the training
region is those slices, and some of them are held out to choose the weights by their Dice
(the losses are masked to the region, `losses.dice_ce_loss`). A slice with nothing of the objects
on it holds no label, so it counts as unknown too: paint slices that cross the objects.
"""
from __future__ import annotations

import numpy as np

AXES = {"z": 0, "y": 1, "x": 2}


class SparseLabelsError(ValueError):
    pass


def labelled_slices(labels: np.ndarray, axis: int = 0) -> np.ndarray:
    """Indices of the slices across ``axis`` holding a label (> 0)."""
    other = tuple(a for a in range(labels.ndim) if a != axis)
    return np.flatnonzero(np.asarray(labels).any(axis=other))


def slab(shape, axis: int, index) -> np.ndarray:
    """A boolean volume of ``shape``, True on the slices ``index`` across ``axis``."""
    m = np.zeros(shape, bool)
    sel = [slice(None)] * len(shape)
    sel[axis] = np.asarray(index, int)
    m[tuple(sel)] = True
    return m


def sparse_regions(labels: np.ndarray, axis: int = 0, hold_out: float = 0.2, what: str = "the labels",
                   within: np.ndarray | None = None):
    """(training region, validation region, held-out slice indices) for labels painted on some slices:
    the labelled slices, every ``round(1 / hold_out)``-th of them held out (spread over the stack, at
    least one; none when ``hold_out`` is 0, and the validation region is then None). ``within``: a
    region the two are limited to (e.g. a hemisphere)."""
    lab = np.asarray(labels) if within is None else np.where(within, labels, 0)
    zs = labelled_slices(lab, axis)
    need = 2 if hold_out > 0 else 1
    if len(zs) < need:
        raise SparseLabelsError(f"{what} hold a label on {len(zs)} slice(s) across axis {axis}; training on "
                                f"labelled slices only needs {need} or more" + (" (one held out to measure Dice)"
                                                                              if hold_out > 0 else ""))
    held = np.array([], int)
    if hold_out > 0:
        step = max(2, int(round(1 / hold_out)))
        held = zs[step // 2::step] if len(zs) >= step else zs[len(zs) // 2:len(zs) // 2 + 1]
    kept = np.setdiff1d(zs, held)
    train = slab(lab.shape, axis, kept)
    val = slab(lab.shape, axis, held) if len(held) else None
    if within is not None:
        train &= within
        val = val & within if val is not None else None
    return train, val, held


def gaps_note(labels: np.ndarray, axis: int = 0, what: str = "the labels",
              fix: str | None = "--labelled-slices") -> str | None:
    """A warning when ``labels`` look painted every few slices (more than a third of the slices within
    their extent hold no label, in several gaps) but are about to be trained on as complete: each of
    those slices would teach that the objects crossing it are background. ``fix``: the option that
    trains on the labelled slices only, named (None: the warning alone)."""
    zs = labelled_slices(labels, axis)
    if len(zs) < 2:
        return None
    gaps = np.diff(zs) - 1
    empty = int(gaps.sum())
    if (gaps > 0).sum() < 2 or empty <= (zs[-1] - zs[0] + 1) / 3:
        return None
    said = (f"{what} hold no label on {empty} of the {zs[-1] - zs[0] + 1} slices between their first and last "
            f"labelled slice across axis {axis}")
    return said if fix is None else (f"{said}; if those are unlabelled rather than background, train on the "
                                     f"labelled slices only ({fix})")
