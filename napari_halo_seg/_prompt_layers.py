"""The interactive widget's prompt layers against the session's prompts.

Each prompt drawn in a layer is known by a key (kind, axis, slice, coordinates) once it has been
handed over to the session, so that it is handed over only once. After an undo, a redo or an opened
session the layers are made to show what the session holds (``InteractiveSegmenter.prompts``):
prompts handed over and no longer held are taken off, held ones are drawn, and what the user drew
but has not handed over yet stays. Each ``sync_*`` returns the keys (or, for strokes, the pixels)
now handed over.
"""
from __future__ import annotations

import numpy as np

from halo_seg.interactive.segmenter import axis_order

STROKE_OBJECT, STROKE_BACKGROUND = 1, 2   # the strokes layer's labels


def slice_of(axis: int, z: int) -> tuple:
    """Index of slice z across ``axis`` of a (Z, Y, X) array."""
    return (slice(None),) * axis + (int(z),)


def click_key(name: str, axis: int, z: int, y, x) -> tuple:
    return (name, axis, z, round(float(y), 2), round(float(x), 2))


def box_key(axis: int, z: int, y0, x0, y1, x1) -> tuple:
    return ("box", axis, z) + tuple(round(float(v)) for v in (y0, x0, y1, x1))


def extreme_key(axis: int, z: int, points) -> tuple:
    return ("extreme", axis, z) + tuple(np.round(np.asarray(points, float), 2).ravel())


def to_layer(axis: int, z: int, points) -> np.ndarray:
    """Session (y, x) points on slice z across ``axis`` as (n, 3) layer coordinates."""
    order = axis_order(axis)
    out = np.zeros((len(points), 3))
    for i, (y, x) in enumerate(points):
        out[i, list(order)] = (z, y, x)
    return out


def sync_clicks(layer, name: str, sign: str, axis: int, held: dict, sent: set) -> set:
    """The clicks of one sign (``sign``: "pos" or "neg") in their Points layer."""
    order = list(axis_order(axis))
    want = {click_key(name, axis, z, y, x): (z, y, x) for z, p in held.items() for y, x in p[sign]}
    pts = np.asarray(layer.data).reshape(-1, 3)
    have = [click_key(name, axis, int(round(q[0])), q[1], q[2]) for q in pts[:, order]]
    keep = [k not in sent or k in want for k in have]
    add = [to_layer(axis, z, [(y, x)]) for k, (z, y, x) in want.items() if k not in have]
    if add or not all(keep):
        layer.data = np.concatenate([pts[keep]] + add)
    return set(want)


def sync_boxes(layer, axis: int, held: dict, sent: set) -> set:
    """The boxes in their Shapes layer (a box is known by its bounds, whatever its corners' order)."""
    order = list(axis_order(axis))
    want = {box_key(axis, z, *p["box"]): (z, p["box"]) for z, p in held.items() if p["box"] is not None}
    have = [box_key(axis, int(round(s[0, 0])), *s[:, 1:].min(0), *s[:, 1:].max(0))
            for s in (np.asarray(shape)[:, order] for shape in layer.data)]
    drop = {i for i, k in enumerate(have) if k in sent and k not in want}
    if drop:
        layer.selected_data = drop
        layer.remove_selected()
    add = [to_layer(axis, z, [(y0, x0), (y0, x1), (y1, x1), (y1, x0)])
           for k, (z, (y0, x0, y1, x1)) in want.items() if k not in have]
    if add:
        layer.add_rectangles(add)
    return set(want)


def sync_extreme(layer, axis: int, held: dict, sent: set) -> set:
    """The extreme points in their Points layer: a slice's points are one prompt."""
    order = list(axis_order(axis))
    pts = np.asarray(layer.data).reshape(-1, 3)
    on = np.round(pts[:, order[0]]).astype(int)
    want = {z: extreme_key(axis, z, p["extreme"]) for z, p in held.items() if p["extreme"] is not None}
    keep = np.ones(len(pts), bool)
    for z in set(on.tolist()):
        k = extreme_key(axis, z, pts[on == z][:, order[1:]])
        keep[on == z] = k not in sent or k == want.get(z)
    # points drawn on a slice and not handed over yet stay in place of the session's there
    add = [to_layer(axis, z, held[z]["extreme"]) for z in want if not (on[keep] == z).any()]
    if add or not keep.all():
        layer.data = np.concatenate([pts[keep]] + add)
    return set(want.values())


def sync_strokes(layer, axis: int, held: dict, sent: dict) -> dict:
    """The strokes in their Labels layer, touching only the planes of slices that have or had
    strokes handed over; ``sent``: (axis, z) -> (object, background) pixels handed over."""
    now_sent, changed = {}, False
    for z in sorted({k[1] for k in sent if k[0] == axis} | set(held)):
        plane = layer.data[slice_of(axis, z)]
        was = sent.get((axis, z), (np.zeros(plane.shape, bool),) * 2)
        now = []
        for label, sign, handed in ((STROKE_OBJECT, "pos_mask", was[0]), (STROKE_BACKGROUND, "neg_mask", was[1])):
            mask = held[z][sign] if z in held and held[z][sign] is not None else np.zeros(plane.shape, bool)
            gone, drawn = (plane == label) & handed & ~mask, mask & (plane == 0)
            if gone.any() or drawn.any():
                plane[gone] = 0
                plane[drawn] = label
                changed = True
            now.append(mask)
        if now[0].any() or now[1].any():
            now_sent[(axis, z)] = tuple(now)
    if changed:
        layer.refresh()
    return now_sent
