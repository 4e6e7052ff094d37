"""Which time points of a time-lapse: how many a file or array holds, and the ones a user names
("all", "0-9,20"). Shared by `segment --timepoint` (engine/series.py) and `track`."""
from __future__ import annotations

from pathlib import Path

from .axes import axis_names, describe
from .volume import Volume, VolumeError, file_contents


def parse_timepoints(spec, n: int) -> list[int]:
    """The time points ``spec`` names among ``n``: "all", one index, a range "A-B" (both ends
    included), or several of these separated by commas ("0-9,20"); a list of ints is taken as it
    is. Sorted, each once; an index outside 0..n-1 or text that is none of these is refused."""
    if isinstance(spec, (list, tuple, range)):
        parts, text = [int(t) for t in spec], str(list(spec))
    else:
        text = str(spec).strip()
        parts = []
        if text.lower() == "all":
            parts = list(range(n))
        else:
            for piece in text.split(","):
                a, sep, b = piece.strip().partition("-")
                try:
                    lo = int(a)
                    hi = int(b) if sep else lo
                except ValueError:
                    raise VolumeError(f"time points {text!r}: give 'all', an index, a range A-B or several "
                                      "separated by commas (0-9,20)") from None
                if hi < lo:
                    raise VolumeError(f"time points {text!r}: the range {lo}-{hi} ends before it starts")
                parts.extend(range(lo, hi + 1))
    out = sorted(set(parts))
    if not out:
        raise VolumeError(f"time points {text!r} name none")
    bad = [t for t in out if not 0 <= t < n]
    if bad:
        raise VolumeError(f"time points {text!r}: {', '.join(map(str, bad[:5]))} out of range; the input has "
                          f"{n} time points (0 to {n - 1})")
    return out


def timepoint_count(source, instead: str = "segment it without --timepoint") -> int:
    """How many time points ``source`` holds: a file's t axis, or the first axis of a 4D array
    (T, Z, Y, X); a file's contents already read (file_contents) are taken as the file. A volume
    without a time axis is refused, naming what it holds and ``instead``."""
    if isinstance(source, (str, Path, Volume)):
        raw = source if isinstance(source, Volume) else file_contents(source)
        source = raw.source or source
        names = axis_names(raw.data.shape, raw.meta.get("axes"))
        sizes = dict(zip(names, raw.data.shape))
        if sizes.get("t", 1) > 1:
            return int(sizes["t"])
        raise VolumeError(f"{source} {describe(raw.data.shape, names)} has no time points to take one by one; "
                          + instead)
    shape = tuple(getattr(source, "shape", ()))
    if len(shape) != 4:
        raise VolumeError(f"a time series array must be 4D (T, Z, Y, X), got shape {shape}")
    return int(shape[0])
