"""Labels to TIFF for Fiji / ImageJ: a calibrated ImageJ hyperstack (Z slices, the voxel size and
its unit in ImageJ's own fields), or an OME-TIFF (BigTIFF) where ImageJ's format cannot hold the
labels (ids above 65535, or more than 4 GB). Written a slab at a time, beside the target and renamed
over it at the end; a TIFF is replaced only if this package wrote it (a user's image stack shares
the suffix)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .volume import VolumeError

SOFTWARE = "halo-seg labels"   # the Software tag marking a TIFF of labels written here
_IMAGEJ_UNITS = {"µm": "micron", "mm": "mm", "nm": "nm", "cm": "cm", "m": "m"}


def _check_replaceable(path: Path) -> None:
    if not path.exists():
        return
    import tifffile
    try:
        with tifffile.TiffFile(str(path)) as tf:
            ours = tf.pages[0].software == SOFTWARE
    except Exception:
        ours = False
    if not ours:
        raise VolumeError(f"{path} exists and is not a TIFF of labels written here (an image stack?); labels are "
                          "not written over it: choose a new path")


def write_tiff_labels(labels, path, spacing=(1.0, 1.0, 1.0), unit: str | None = None,
                      slab_voxels: int = 2 ** 25, imagej_limit: int = 2 ** 32 - 2 ** 25) -> Path:
    """Write (Z, Y, X) integer or boolean ``labels`` (numpy or dask) to the TIFF ``path``."""
    import tifffile

    from .labels import label_dtype, read_label_slab, slabs
    path = Path(path)
    _check_replaceable(path)
    shape = tuple(int(s) for s in labels.shape)
    step, starts = slabs(shape, slab_voxels)
    top = 0
    for z0 in starts:   # the largest id picks the type; read once more below, a slab at a time
        slab = read_label_slab(labels, z0, step)
        top = max(top, int(slab.max()) if slab.size else 0)
    if top > np.iinfo(np.uint32).max:
        raise VolumeError(f"the labels hold the id {top}, above 2**32 - 1, which TIFF labels cannot hold; relabel "
                          "the objects first (e.g. skimage.segmentation.relabel_sequential)")
    dt = label_dtype(top)
    sz, sy, sx = (float(s) for s in spacing)
    imagej = dt != np.uint32 and int(np.prod(shape)) * dt.itemsize < imagej_limit
    if imagej:
        named = {"unit": _IMAGEJ_UNITS[unit]} if unit in _IMAGEJ_UNITS else {}
        kw = dict(imagej=True, resolution=(1 / sx, 1 / sy), metadata={"axes": "ZYX", "spacing": sz, **named})
    else:
        meta = {"axes": "ZYX", **{f"PhysicalSize{a}": s for a, s in zip("ZYX", (sz, sy, sx))}}
        if unit in _IMAGEJ_UNITS:
            meta.update({f"PhysicalSize{a}Unit": unit for a in "ZYX"})
        kw = dict(ome=True, bigtiff=True, compression="zlib", metadata=meta)

    def pages():   # one page at a time: tifffile's compressed writer takes nothing larger
        for z0 in starts:
            yield from read_label_slab(labels, z0, step).astype(dt, copy=False)

    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}{path.suffix}")
    try:
        tifffile.imwrite(tmp, pages(), shape=shape, dtype=dt, software=SOFTWARE, **kw)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
