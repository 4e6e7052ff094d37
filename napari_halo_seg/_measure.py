"""Object sizes on napari layers: a Labels layer's ``features`` get one row per object (napari shows
them beside the label under the cursor), computed by halo_seg.measure in the layer's physical units."""
from __future__ import annotations

import numpy as np

from halo_seg.io.volume import length_unit
from halo_seg.measure import measure_mask, millilitres_per

from ._layers import layer_volume

UNIT = "unit"   # layer metadata key: the length unit of the layer's scale, as the reader found it


def layer_unit(layer) -> str | None:
    """The length unit of a layer's scale: the file's (reader metadata), else napari's own units
    unless they are napari's default, pixels."""
    unit = (layer.metadata or {}).get(UNIT)
    if unit:
        return unit
    units = getattr(layer, "units", None)
    if units:
        name = str(units[-1])
        return None if name == "pixel" else (length_unit(name) or name)
    return None


def size_column(unit) -> str:
    return "volume (mL)" if millilitres_per(unit) is not None else f"volume ({unit or 'voxel units'}³)"


def object_row(mask: np.ndarray, label: int, image_layer, box: tuple | None = None, image=None) -> dict:
    """napari features of one object (a boolean mask on the image layer's grid, or the crop of it
    inside ``box``): its id, voxels, volume in the image's unit (mL for scans in mm) and mean
    intensity, reading only its bounding box (of ``image``, the layer's volume at a time point of
    a time-lapse, where given)."""
    data = layer_volume(image_layer) if image is None else image
    unit = layer_unit(image_layer)
    t = measure_mask(mask, label, spacing=tuple(image_layer.scale[-3:]), image=data, unit=unit, box=box)
    if not len(t["label"]):
        return {}
    return {k: v[0].item() for k, v in table_features(t, unit).items()}


def set_row(labels_layer, row: dict):
    """Add or replace one object's row in a Labels layer's features; what the row does not say (its
    name) stays as it was."""
    set_rows(labels_layer, [row])


def set_rows(labels_layer, rows: list[dict]):
    """set_row of several rows, the features rewritten once (each rewrite reads every row: many
    objects committed at once, one by one, took time growing with the square of their number)."""
    old = labels_layer.features
    records = old.to_dict("records") if "index" in old else []
    new = {}
    for row in rows:
        new[row["index"]] = {**new.get(row["index"], {}), **row}
    kept = [r for r in records if r.get("index") not in new]
    before = {r.get("index"): r for r in records if r.get("index") in new}
    kept += [{**before.get(k, {}), **r} for k, r in new.items()]
    labels_layer.features = {k: [r.get(k) for r in kept] for k in dict.fromkeys(k for r in kept for k in r)}


def drop_row(labels_layer, index: int):
    """Remove one object's row from a Labels layer's features, if it has one."""
    drop_rows(labels_layer, [index])


def drop_rows(labels_layer, indices):
    """drop_row of several, the features rewritten once."""
    old = labels_layer.features
    if "index" not in old:
        return
    gone = set(indices)
    rows = [r for r in old.to_dict("records") if r.get("index") not in gone]
    labels_layer.features = {k: [r.get(k) for r in rows] for k in old.columns}


def table_features(table: dict, unit, names: dict | None = None) -> dict:
    """halo_seg.measure's table -> a Labels layer's features (every object, e.g. the classes of the
    automatic segmentation, with ``names``: id -> name, such as the model's class names)."""
    size = table["volume_ml"] if "volume_ml" in table else table["volume"]
    out = {"index": table["label"], **({"name": [names.get(int(k), "") for k in table["label"]]} if names else {}),
           "voxels": table["voxels"], size_column(unit): np.round(size, 4)}
    if "mean" in table:
        out["mean intensity"] = np.round(table["mean"], 4)
    return out


def save_table_csv(widget, table: dict | None, default_name: str, path: str | None = None) -> None:
    """Write a table's rows as CSV (halo_seg.measure.write_csv) to ``path``, or to a file asked for,
    and say where (or why not) in the widget's status line."""
    if table is None:
        return
    if path is None:
        from qtpy.QtWidgets import QFileDialog
        path, _ = QFileDialog.getSaveFileName(widget, "save table", default_name, "CSV (*.csv)")
        if not path:
            return
    from halo_seg.measure import write_csv
    try:
        widget.status.setText(f"wrote {write_csv(table, path)}")
    except ValueError as exc:   # not over a volume or weights chosen by mistake
        widget.status.setText(f"error: {exc}")
    except OSError as exc:
        widget.status.setText(f"error: cannot write {path}: {exc}")


def layer_names(features) -> dict[int, str]:
    """A Labels layer's names of its ids (the features' 'name' column: a SEG's segments, a model's
    classes, the names given to committed objects); ids without one are left out."""
    if features is None or "index" not in features or "name" not in features:
        return {}
    return {int(i): n for i, n in zip(features["index"], features["name"]) if isinstance(n, str) and n}


CARRIED = "carried from"   # a features column: the object (at the time point next to it) it was carried from


def layer_links(features) -> dict[int, int]:
    """A Labels layer's links of objects followed over time (the features' 'carried from' column,
    which Commit fills for an object Next time point carried): id -> id it was carried from."""
    if features is None or "index" not in features or CARRIED not in features:
        return {}
    out = {}
    for i, k in zip(features["index"], features[CARRIED]):
        try:
            if k is not None and k == k and int(k) > 0:   # NaN where a row has none
                out[int(i)] = int(k)
        except (TypeError, ValueError):   # a value typed by hand that is no id
            continue
    return out


def set_name(labels_layer, index: int, name: str):
    """Name one object of a Labels layer (its features' row, made if it has none)."""
    set_row(labels_layer, {"index": int(index), "name": name})


def file_features(meta: dict) -> dict:
    """A labels file's Labels layer features (as add_labels keywords): the names of its ids (a SEG's,
    a structure set's, the objects named as committed) and, of the interactive widget's objects kept
    on disk, the links of those followed over time (which the Objects widget's tracking keeps);
    none where it has neither."""
    from halo_seg.io.volume import CARRIED_FROM, SEGMENT_NAMES
    names, links = meta.get(SEGMENT_NAMES) or {}, meta.get(CARRIED_FROM) or {}
    ids = list(names) + [i for i in links if i not in names]   # in the file's order (a SEG's segments)
    if not ids:
        return {}
    return {"features": {"index": ids, **({"name": [names.get(i, "") for i in ids]} if names else {}),
                         **({CARRIED: [links.get(i, 0) for i in ids]} if links else {})}}
