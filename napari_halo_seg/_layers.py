"""The widgets' layer choosers: combo boxes that follow the viewer's layers."""
from __future__ import annotations

import numpy as np


RESAMPLE_WIDGET = "Plugins > Halo Seg > Resample onto an image"


def in_napari(exc) -> ValueError:
    """The engine's refusal to pair two volumes (an exception or its message) as a widget says it:
    the resampling it points to is a widget here, not a command."""
    from halo_seg.io.geometry import RESAMPLE_FIX
    return ValueError(str(exc).replace(RESAMPLE_FIX, f"resample one onto the other's grid first ({RESAMPLE_WIDGET})"))


def fill_layer_box(box, viewer, kind, first=()) -> None:
    """Refill ``box`` with the names of the viewer's layers of ``kind`` (after the entries ``first``),
    keeping the current choice, without signalling a change: a layer added or removed elsewhere is
    not a new choice."""
    current = box.currentText()
    box.blockSignals(True)
    box.clear()
    box.addItems(list(first) + [layer.name for layer in viewer.layers if isinstance(layer, kind)])
    if current:
        box.setCurrentText(current)
    box.blockSignals(False)


def follow_layers(viewer, callback) -> None:
    """Call ``callback`` whenever a layer is added to or removed from the viewer."""
    for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
        ev.connect(callback)


def layer_volume(layer):
    """The array a widget works on: the full-resolution level of a multiscale layer, with leading
    axes of length 1 dropped (the t and c of a 5D OME-Zarr image opened by another reader), lazily:
    a numpy view, or a dask slice of any other array. A layer holding several volumes (a time
    series) raises a ValueError that says how to split it."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if getattr(layer, "rgb", False):   # (.., Y, X, 3): a 2D colour photo would pass as a 3-voxel-thick volume
        raise ValueError(f"layer {layer.name!r} {tuple(data.shape)} is an RGB colour image; these tools work on "
                         "grey levels: add one colour channel (or a grey conversion) as a layer of its own")
    lead = ones_before(data.shape, 3)
    if data.ndim - lead > 3:
        n = " x ".join(str(s) for s in data.shape[lead:data.ndim - 3])
        raise ValueError(f"layer {layer.name!r} {tuple(data.shape)} holds {n} volumes (time points or channels); "
                         "these tools work on one 3D volume: right-click the layer > Split Stack gives one layer each")
    if not lead:
        return data
    if not isinstance(data, np.ndarray) and not hasattr(data, "dask"):
        import dask.array as da
        data = da.from_array(data, chunks=getattr(data, "chunks", "auto"))   # a zarr array would load whole
    return data[(0,) * lead]


def ones_before(shape, ndim: int) -> int:
    """How many leading axes of length 1 ``shape`` has beyond the last ``ndim`` (the t and c of a 5D
    OME-Zarr image opened by another reader)."""
    lead = 0
    while len(shape) - lead > ndim and shape[lead] == 1:
        lead += 1
    return lead


def layer_spacing(layer) -> tuple | None:
    """The layer's voxel size (its last three scale factors) where it is known: read from its file,
    or set by whoever made the layer; None for napari's default scale of 1 on a layer whose file
    recorded no voxel size (the engine then does not compare it with a model's)."""
    scale = tuple(float(s) for s in layer.scale[-3:])
    known = (layer.metadata or {}).get("spacing_known")
    return scale if known or (known is None and scale != (1.0, 1.0, 1.0)) else None


def _as_volume(layer, lazy: bool = False, data=None):
    """The layer as the engine's grid checks see an opened volume: its shape, voxel size where known,
    unit and scan geometry (from its file), and data (``lazy``: a dask array, also of a numpy one;
    ``data``: a volume of the layer's own, e.g. a time-lapse's time point, instead of layer_volume's)."""
    from types import SimpleNamespace

    from halo_seg.io.geometry import KEY
    known, meta = layer_spacing(layer), layer.metadata or {}
    data = layer_volume(layer) if data is None else data
    if lazy and isinstance(data, np.ndarray):
        import dask.array as da
        data = da.from_array(data, chunks=data.shape)
    return SimpleNamespace(shape=tuple(data.shape), spacing=known or (1.0, 1.0, 1.0), spacing_known=known is not None,
                           meta={"unit": meta.get("unit"), KEY: meta.get(KEY)}, data=data)


def check_same_grid(a, b) -> None:
    """A ValueError when layers ``a`` and ``b`` of one shape do not lie on one voxel grid: two known
    voxel sizes that differ, or scan geometries (from their files) that place them apart in the world:
    labels of two scans, which a voxel-by-voxel comparison, measurement or training would pair
    wrongly. A layer whose file records no voxel size or placement (a .npy) lies on the other's grid."""
    from halo_seg.io.geometry import grid_mismatch, mismatch_fix
    ga, gb = _as_volume(a), _as_volume(b)
    if ga.shape == gb.shape:
        found = grid_mismatch(ga, gb, a.name, b.name)
        if found:
            raise in_napari(f"{found}: they lie on different grids; {mismatch_fix(found, ga, gb)}")


def on_grid_of(layer, ref, why: str = "they would pair the wrong voxels", cut: bool = False, lazy: bool = False):
    """``layer``'s volume on ``ref``'s voxel grid: itself where their shapes agree (check_same_grid),
    else placed by the two files' scan geometries where ``ref``'s grid holds all of ``layer``'s (a
    segmentation that 3D Slicer saved cropped to its objects, over its scan: 0 beyond the crop), or
    with ``cut`` where ``layer``'s holds ``ref``'s (the scan under such a crop), lazily
    (io.geometry.on_grid; ``lazy``: a numpy layer's too). A ValueError naming why not."""
    from halo_seg.io.geometry import on_grid
    if tuple(layer_volume(layer).shape) == tuple(layer_volume(ref).shape):
        check_same_grid(layer, ref)
        return layer_volume(layer)
    from halo_seg.io.volume import VolumeError
    try:
        return on_grid(_as_volume(layer, lazy), _as_volume(ref), repr(layer.name), repr(ref.name), why, cut)
    except VolumeError as exc:
        raise in_napari(exc) from None


def on_one_grid_of(a, b, why: str = "they would pair the wrong voxels"):
    """(a's volume, b's volume, the layer whose grid they are on): the grid of the one that holds the
    other (io.geometry.on_one_grid), so that nothing of either is cut away."""
    from halo_seg.io.geometry import on_one_grid
    if tuple(layer_volume(a).shape) == tuple(layer_volume(b).shape):
        check_same_grid(a, b)
        return layer_volume(a), layer_volume(b), b
    va, vb = _as_volume(a), _as_volume(b)
    from halo_seg.io.volume import VolumeError
    try:
        da, db, grid = on_one_grid(va, vb, repr(a.name), repr(b.name), why)
    except VolumeError as exc:
        raise in_napari(exc) from None
    return da, db, a if grid is va else b


def sliced_axis(viewer, why: str = "this works on slices") -> int:
    """The axis of a 3D image (the world's last three axes) that the 2D view slices across: 0 unless
    the dims were rolled or transposed. A ValueError says why there is none."""
    dims = viewer.dims
    if dims.ndisplay != 2:
        raise ValueError(f"switch to the 2D view: {why}")
    off = dims.ndim - 3
    hidden = [a - off for a in dims.not_displayed if a >= off]
    if off < 0 or not hidden:
        raise ValueError("the viewer shows no 3D image to slice")
    return hidden[0]


def show_slice(viewer, layer, axis: int, z: int) -> None:
    """Move the view to slice ``z`` along ``axis`` of ``layer``'s data (through its scale and
    translation, so other layers may be on other grids); without a layer, to step ``z``."""
    world = viewer.dims.ndim - 3 + axis
    if layer is None:
        step = list(viewer.dims.current_step)
        step[world] = int(z)
        viewer.dims.current_step = tuple(step)
        return
    at = [0] * layer.ndim
    at[axis - 3] = int(z)
    viewer.dims.set_point(world, float(layer.data_to_world(at)[axis - 3]))
