"""One 3D (Z, Y, X) volume out of a multi-channel or time-lapse array.

Microscopes write (T, C, Z, Y, X) stacks (OME-Zarr, OME-TIFF, ImageJ hyperstacks) and a NIfTI can
hold a time series; the engine segments one 3D volume. The file's own axis names say which axes
are which. An array that names none is read in OME-Zarr's order, right-aligned: (C, Z, Y, X) or
(T, C, Z, Y, X). Axes of length 1 are dropped; an axis longer than 1 must be chosen by the caller,
because guessing a channel would give a confident segmentation of the wrong stain.
"""
from __future__ import annotations

import dask.array as da

SPATIAL = ("z", "y", "x")
_OME_ORDER = ("t", "c", "z", "y", "x")
_WHAT = {"c": "channel", "t": "timepoint"}


class AxisChoiceError(ValueError):
    """A channel or time point is missing, unknown or out of range."""


def tiff_axes(letters: str) -> list[str | None]:
    """tifffile's axis letters as names: S as the last axis (interleaved samples, RGB) is a channel
    axis; Q or I (pages of unknown meaning) are z when the file names no Z, and so is a leading
    planar S, which tifffile guesses for a plain stack of 3 or 4 pages; other letters stay unnamed."""
    letters = letters.upper()
    out = []
    for i, ch in enumerate(letters):
        if ch in "TCZYX":
            out.append(ch.lower())
        elif ch == "S" and i == len(letters) - 1:
            out.append("c")
        elif ch in "QIS" and "Z" not in letters and "z" not in out:
            out.append("z")
        else:
            out.append(None)
    return out


def axis_names(shape, names=None) -> list[str]:
    """Names for every axis of an array of ``shape``: the file's (when it names them all) or
    OME-Zarr's order, right-aligned."""
    nd = len(shape)
    if names is not None and len(names) == nd and all(names) and len(set(names)) == nd:
        return [str(n).lower() for n in names]
    if nd > len(_OME_ORDER):
        return [f"axis {i}" for i in range(nd - 3)] + list(SPATIAL)
    return list(_OME_ORDER[-nd:]) if nd >= 3 else list(SPATIAL[-nd:])


def describe(shape, names) -> str:
    return "(" + ", ".join(f"{n}={s}" for n, s in zip(names, shape)) + ")"


def _index(value, size: int, axis: str, labels, what: str) -> int:
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        if labels and value in labels:
            return list(labels).index(value)
        known = f"; its channels are named {', '.join(map(str, labels))}" if labels else \
            "; it names no channels, give an index"
        raise AxisChoiceError(f"{what}: no channel named {value!r}{known}")
    i = int(value)
    if not 0 <= i < size:
        raise AxisChoiceError(f"{what}: {_WHAT[axis]} {i} is out of range: axis {axis} has {size} "
                              f"({_WHAT[axis]}s 0 to {size - 1})")
    return i


def select_3d(arr: da.Array, names, what: str, channel=None, timepoint=None,
              channel_names=None) -> tuple[da.Array, dict]:
    """``arr`` reduced to (Z, Y, X): the chosen channel and time point taken, axes of length 1
    dropped, the spatial axes put in z, y, x order (lazily). Returns the array and what was
    chosen ({"channel": i, "channel_name": ..., "timepoint": t}, only what the array had).
    Raises AxisChoiceError naming the axes when a choice is missing or wrong."""
    names = axis_names(arr.shape, names)
    wanted = {"c": channel, "t": timepoint}
    chosen, index = {}, []
    for n, size in zip(names, arr.shape):
        if n in SPATIAL:
            index.append(slice(None))
            continue
        value = wanted.get(n)
        if value is None:
            if size == 1:
                index.append(0)
                continue
            if n in _WHAT:
                extra = f" ({', '.join(map(str, channel_names))})" if n == "c" and channel_names else ""
                every = "; `segment --timepoint all` segments every one" if n == "t" else ""
                raise AxisChoiceError(
                    f"{what}: expected a 3D (Z, Y, X) volume, got {describe(arr.shape, names)}: it has "
                    f"{size} {_WHAT[n]}s{extra}; choose one with {_WHAT[n]}= (--{_WHAT[n]} on the command line)"
                    f"{every}")
            raise AxisChoiceError(f"{what}: expected a 3D (Z, Y, X) volume, got {describe(arr.shape, names)}: "
                                  f"axis {n!r} is neither space, channel nor time")
        i = _index(value, size, n, channel_names if n == "c" else None, what)
        index.append(i)
        chosen["channel" if n == "c" else "timepoint"] = i
        if n == "c" and channel_names and i < len(channel_names):
            chosen["channel_name"] = str(channel_names[i])
    for axis, value in wanted.items():
        if value is not None and axis not in names:
            raise AxisChoiceError(f"{what}: a {_WHAT[axis]} was chosen ({value!r}) but the volume "
                                  f"{describe(arr.shape, names)} has no {_WHAT[axis]} axis")
    arr = arr[tuple(index)]
    kept = [n for n, i in zip(names, index) if isinstance(i, slice)]
    if sorted(kept) != sorted(SPATIAL):
        return arr, chosen   # not three spatial axes: the caller's dimensionality check names it
    order = [kept.index(n) for n in SPATIAL]
    return (arr if order == [0, 1, 2] else arr.transpose(order)), chosen


def arrange(arr: da.Array, names, what: str) -> tuple[da.Array, list[str]]:
    """``arr`` with its axes of length 1 dropped and the rest in (t, c, z, y, x) order, nothing
    chosen (a viewer shows every channel and time point); returns it and its axis names. Raises
    AxisChoiceError for an axis that is neither space, channel nor time, or missing space."""
    names = axis_names(arr.shape, names)
    kept = [n for n, size in zip(names, arr.shape) if n in SPATIAL or size > 1]
    if sorted(set(kept) - {"t", "c"}) != sorted(SPATIAL) or len(kept) != len(set(kept)):
        raise AxisChoiceError(f"{what}: expected (Z, Y, X) with channels or time points, got "
                              f"{describe(arr.shape, names)}")
    arr = arr[tuple(slice(None) if (n in SPATIAL or size > 1) else 0 for n, size in zip(names, arr.shape))]
    order = [n for n in _OME_ORDER if n in kept]
    return arr.transpose([kept.index(n) for n in order]), order
