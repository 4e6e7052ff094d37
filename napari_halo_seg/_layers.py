"""The widgets' layer choosers: combo boxes that follow the viewer's layers."""
from __future__ import annotations


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
