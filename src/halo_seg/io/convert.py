"""`halo-seg convert`: any volume halo-seg reads, written as an OME-Zarr image (0.5, zarr v3):
cubic chunks that every torchrun rank reads its block from in parallel (a `.nii.gz` or a compressed
MetaImage is one stream that each rank decompresses up to its block), and a pyramid of coarser
levels that napari (and napari-ome-zarr, MoBIE, neuroglancer) shows when zoomed out or in 3D.

The image keeps its voxel size, unit and placement (OME's scale and translation: voxel (0, 0, 0)
along the volume's own axes, where the plugin's reader puts a layer) and, in the group's
attributes, its scan geometry (its orientation, which OME's transformations do not hold), so a
segmentation of the converted image lies on the original scan. A level halves each axis whose
voxels are less than twice the finest (a CT of 5 mm slices keeps its slices until the rows catch
up): images by the mean of each block, labels by the block's first voxel (their translation says
so). Written level by level, each from the one before it on disk, a chunk at a time; the ome-zarr
library writes the metadata."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import geometry as geo
from .volume import VolumeError

MARK = "halo_seg_converted"   # on the groups convert writes: only such a group is replaced by a new run
OME_UNITS = {"mm": "millimeter", "µm": "micrometer", "nm": "nanometer", "cm": "centimeter", "m": "meter"}
SMALLEST = 64   # no level whose largest side is below this many voxels


def pyramid_factors(shape, spacing, levels: int | None = None) -> list[tuple[int, int, int]]:
    """Each level's (z, y, x) factor against the previous one: 2 where an axis's voxels are less than
    twice the finest of that level, 1 elsewhere; ``levels`` of them, or (None) until the largest side
    would drop below SMALLEST voxels or no axis halves any more."""
    out, shape, spacing = [], [int(s) for s in shape], [float(s) for s in spacing]
    while levels is None or len(out) < levels:
        f = tuple(2 if s < 2 * min(spacing) and n >= 2 else 1 for s, n in zip(spacing, shape))
        if max(f) == 1 or (levels is None and max(n // k for n, k in zip(shape, f)) < SMALLEST):
            break
        out.append(f)
        shape = [n // k for n, k in zip(shape, f)]
        spacing = [s * k for s, k in zip(spacing, f)]
    return out


def convert(vol, out, chunks: int = 64, levels: int | None = None, labels: bool = False,
            axes: list[str] | None = None) -> Path:
    """Write the opened volume ``vol`` to ``out`` (a ``.zarr`` path) as an OME-Zarr image: one 3D
    volume, or with ``axes`` the names of the axes before (Z, Y, X): ["c"] channels (their names from
    ``vol.meta["channel_names"]``, OME's omero labels), ["t"] the time points of a time-lapse, or
    ["t", "c"] both; a chunk holds one time point's channel. ``labels``: an OME label image (nearest
    voxel down the pyramid; of one volume or a time-lapse). Returns the path. An error leaves what
    was at ``out``; only an earlier output of convert is replaced."""
    try:
        from ome_zarr.format import format_from_version
        from ome_zarr.writer import write_multiscales_metadata
    except ImportError as exc:
        raise VolumeError("writing OME-Zarr needs ome-zarr: pip install 'napari-halo-seg[ome]'") from exc
    import dask.array as da
    import zarr
    from .labels import whole_labels, written_beside, zarr_node
    out = Path(out)
    if not out.name.lower().endswith(".zarr"):
        raise VolumeError(f"cannot write '{out.name}': convert writes an OME-Zarr image, a path ending in .zarr")
    if out.resolve() == Path(str(vol.source or "")).resolve():
        raise VolumeError(f"{out} is the input; convert it to a new path")
    if out.exists() and not bool(getattr(zarr_node(out), "attrs", {}).get(MARK)):
        raise VolumeError(f"{out} exists and is not an output of halo-seg convert; choose a new path")
    lead = len(vol.shape) - 3   # time points and channels first
    names = list(axes) if axes is not None else ["c"] * lead if lead <= 1 else None   # one axis: channels
    if names is None or len(names) != lead or names not in ([], ["c"], ["t"], ["t", "c"]) or \
            (labels and "c" in names):
        raise VolumeError(f"convert writes one 3D volume, a time-lapse of them, or their channels; this one is "
                          f"{tuple(vol.shape)}{' of labels' if labels else ''}"
                          + (f" with axes {', '.join(names)} before z, y, x" if names else
                             " (name its axes before z, y, x: axes=['t', 'c'])" if names is None else "")
                          + ": choose --channel or --timepoint")
    data = vol.data if hasattr(vol.data, "dask") else da.from_array(vol.data, chunks=chunks)
    if labels:   # stored as floats (FSL, SPM): whole ids, or refused naming a fraction
        data = whole_labels(data, str(vol.source or "the labels"))
        data = data.astype(np.uint8) if data.dtype == bool else data
    _check_room(out, vol)
    spacing = tuple(float(s) for s in vol.spacing)
    g = vol.meta.get(geo.KEY)
    at = np.array(geo.axes_position(g) if geo.is_placed(g) and np.allclose(geo.spacing_of(g), spacing, rtol=1e-3)
                  else (0.0, 0.0, 0.0))
    unit = vol.meta.get("unit")
    with written_beside(out) as tmp:
        grp = zarr.open_group(str(tmp), mode="w", zarr_format=3)

        def cut(shape):   # one channel a chunk
            return (1,) * lead + tuple(min(chunks, n) for n in shape[lead:])

        level = data.rechunk(cut(data.shape))
        step, datasets = np.ones(3), []
        for k, f in enumerate([None] + pyramid_factors(vol.shape[lead:], spacing, levels)):
            if f is not None:   # from the level before, as written
                prev = da.from_zarr(grp[str(k - 1)])
                level = (prev[(Ellipsis,) + tuple(slice(None, None, m) for m in f)] if labels
                         else _block_mean(prev, (1,) * lead + f)).rechunk(cut(prev.shape))
                step = step * f
            arr = grp.create_array(str(k), shape=level.shape, chunks=cut(level.shape), dtype=level.dtype,
                                   fill_value=0, dimension_names=tuple(names) + ("z", "y", "x"))
            da.store(level, arr, lock=False)
            # a block mean's voxel is centred in its block; a label's is the block's first voxel
            shift = at + (0.0 if labels else (step - 1) / 2 * np.array(spacing))
            datasets.append({"path": str(k), "coordinateTransformations": [
                {"type": "scale", "scale": [1.0] * lead + [float(s) for s in step * np.array(spacing)]},
                {"type": "translation", "translation": [0.0] * lead + [float(t) for t in shift]}]})
        ome_axes = [{"name": a, "type": "time" if a == "t" else "channel"} for a in names] + [
            {"name": a, "type": "space", **({"unit": OME_UNITS[unit]} if unit in OME_UNITS else {})} for a in "zyx"]
        write_multiscales_metadata(grp, datasets, fmt=format_from_version("0.5"), axes=ome_axes,
                                   name=Path(str(vol.source or "image")).name.split(".")[0])
        if labels:   # OME-NGFF's mark of a label image, beside its multiscales
            grp.attrs["ome"] = {**grp.attrs["ome"], "image-label": {}}
        channels = vol.meta.get("channel_names") or []
        if "c" in names:   # the channels' names, where OME viewers (and the plugin's reader) find them
            grp.attrs["ome"] = {**grp.attrs["ome"], "omero": {"channels": [
                {"label": str(channels[c]) if c < len(channels) else f"c{c}", "active": True}
                for c in range(vol.shape[names.index("c")])]}}
        grp.attrs[MARK] = True
        if g is not None:   # the orientation too, which OME's scale and translation do not hold
            grp.attrs[geo.KEY] = g
        if vol.spacing_known is False:
            grp.attrs["spacing_unknown"] = True
    return out


def _block_mean(x, f):
    """``x`` coarsened by ``f`` (a factor per axis) by the mean of each block (a last partial block
    dropped), in x's type (whole types rounded)."""
    import dask.array as da
    dtype = np.dtype(x.dtype)   # float32 holds 16-bit values exactly; wider ones are averaged in float64
    work = np.float32 if dtype.itemsize <= 2 or dtype == np.float32 else np.float64
    m = da.coarsen(np.mean, x.astype(work), dict(enumerate(f)), trim_excess=True)
    if np.issubdtype(x.dtype, np.integer):
        m = da.round(m)
    return m.astype(x.dtype)


def _check_room(out: Path, vol) -> None:
    """The image uncompressed (and its pyramid, at most a seventh more) against the free disk."""
    import shutil
    from ..engine.memory import fmt_bytes
    need = float(np.prod([float(s) for s in vol.data.shape])) * np.dtype(vol.data.dtype).itemsize * 8 / 7
    parent = out.resolve().parent
    room = shutil.disk_usage(parent).free if parent.is_dir() else None
    if room is not None and need > room:
        raise VolumeError(f"{vol.source or 'the volume'} ({' x '.join(map(str, vol.shape))} voxels) needs up to "
                          f"{fmt_bytes(need)} as zarr, more than the free disk at {parent} ({fmt_bytes(room)})")
