"""The widgets' layer choosers: combo boxes that follow the viewer's layers."""
from __future__ import annotations

import numpy as np


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
    a numpy view, or a dask slice of any other array."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    lead = 0
    while data.ndim - lead > 3 and data.shape[lead] == 1:
        lead += 1
    if not lead:
        return data
    if not isinstance(data, np.ndarray) and not hasattr(data, "dask"):
        import dask.array as da
        data = da.from_array(data, chunks=getattr(data, "chunks", "auto"))   # a zarr array would load whole
    return data[(0,) * lead]
