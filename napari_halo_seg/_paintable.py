"""Label volumes shown as Labels layers the user corrects with napari's brush: held in memory where
they fit. napari paints on a dask array by adding a task to its graph per brush dab, and every
redraw computes them all again, so correcting an automatic result grew slower with every stroke
(benchmarks/paint_labels.py: after 1000 dabs, a few strokes, 295 ms a dab and 386 ms to read a
slice, against 2.1 and 0.1 ms in memory)."""
from __future__ import annotations

import numpy as np

SHARE = 0.25   # of the memory available: the rest is napari's, the image's and the next result's


def room() -> int | None:
    from halo_seg.host_memory import host_available
    avail = host_available()
    if avail is None:   # no /proc/meminfo (macOS, Windows)
        try:
            import psutil
            avail = int(psutil.virtual_memory().available)
        except Exception:
            return None
    return avail


def paintable(data, share: float = SHARE):
    """``data`` (a lazy label volume: dask, zarr) read into a numpy array when it takes at most
    ``share`` of the memory available, else left as it is. Returns (array, note): the note is empty,
    or says the labels stay on file and why painting on them is slow."""
    if isinstance(data, np.ndarray):
        return data, ""
    size = int(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
    avail = too_large_for_memory(size, share)
    if avail is not None:
        return data, (f"the labels ({size / 2 ** 30:.1f} GiB) are shown from their file, too large to hold in "
                      f"memory ({avail / 2 ** 30:.1f} GiB available): napari's brush on them grows slower with "
                      "every stroke, and what it paints is not written to the file")
    return np.asarray(data), ""


def too_large_for_memory(nbytes: int, share: float = SHARE) -> int | None:
    """The memory available where ``nbytes`` take more than ``share`` of it, else None (also where
    it is unknown)."""
    avail = room()
    return avail if avail is not None and nbytes > share * avail else None
