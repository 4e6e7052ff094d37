"""The output zarr group: `labels`, `uncertainty`, optional `probabilities`, and a per-block `done`
map for resume.

`uncertainty` is 100 x (1 - the largest class probability), rounded to uint8: in percent, the
probability that a voxel's label is wrong, so its sum over a slice is that slice's expected number of
wrong voxels (halo_seg.review ranks slices by it).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io.labels import create_zarr_array, label_dtype, zarr_node
from ..io.volume import SEGMENT_NAMES, VolumeError, names_attr


UNCERTAINTY = "uncertainty"


def uncertainty_percent(probs: np.ndarray) -> np.ndarray:
    """(C, ...) class probabilities -> uint8 percent probability that the argmax label is wrong."""
    u = probs.max(0).astype(np.float32)   # one block-sized temporary, worked on in place
    np.subtract(1.0, u, out=u)
    u *= 100.0
    np.rint(u, out=u)
    np.clip(u, 0, 100, out=u)
    return u.astype(np.uint8)


CORRECTED = "corrected_in_napari"   # a labels array's attribute: brush corrections were kept in it (when)


def open_output(path, shape, chunks, grid, n_classes, spacing, signature: dict, probabilities: bool,
                resume: bool, geometry: dict | None = None, unit: str | None = None, classes=None):
    """Create the output group (or reopen it for --resume after checking it is the same job).
    ``geometry``: the input scan's (io.geometry), kept with the labels for `halo-seg export`;
    ``unit``: the length unit of ``spacing`` when the input named one, for `halo-seg measure`;
    ``classes``: the model's class names (background first), kept as the labels' names for napari,
    DICOM SEG and RT structure sets."""
    import zarr
    path = Path(path)
    if path.exists() and not resume:
        if not is_output(path):   # the input image, the user's labels, any other store: never removed
            raise VolumeError(f"output {path} exists and is not an output of halo-seg segment; choose a new path")
        when = corrected_when(path)
        if when:   # the user's work on it is not the engine's to replace
            raise VolumeError(f"output {path} holds corrections made in napari (last {when}); choose a new path, "
                              "or move it away first")
        import shutil
        shutil.rmtree(path)
    if resume and path.exists():
        grp = zarr.open_group(str(path), mode="r")
        old = grp.attrs.get("halo_seg", {}).get("signature")
        if old != json.loads(json.dumps(signature)):
            raise VolumeError(f"cannot resume into {path}: it was written by a different job "
                              f"({old}) than this one ({signature})")
    grp = zarr.open_group(str(path), mode="a")
    grp.attrs["halo_seg"] = {"signature": signature}
    grp.attrs["spacing"] = list(map(float, spacing))
    if unit:
        grp.attrs["unit"] = unit
    labels = create_zarr_array(path, shape, chunks, label_dtype(n_classes - 1), name="labels", spacing=spacing,
                               geometry=geometry)
    if classes and len(classes) == n_classes:
        labels.attrs[SEGMENT_NAMES] = names_attr({i: c for i, c in enumerate(classes) if i})
    unc = create_zarr_array(path, shape, chunks, np.uint8, name=UNCERTAINTY, spacing=spacing)
    unc.attrs["meaning"] = "percent probability that the label is wrong: 100 * (1 - max class probability)"
    if probabilities:
        create_zarr_array(path, (n_classes,) + tuple(shape), (1,) + tuple(chunks), np.float32,
                          name="probabilities", spacing=spacing)
    create_zarr_array(path, grid, (1, 1, 1), np.uint8, name="done", spacing=spacing)
    return grp


def corrected_when(path) -> str | None:
    """When brush corrections were last kept in the labels of the output ``path``, or None."""
    import zarr
    path = Path(path)
    if not (is_output(path) and (path / "labels").is_dir()):
        return None
    return zarr.open_group(str(path), mode="r")["labels"].attrs.get(CORRECTED)


def is_output(path) -> bool:
    """Whether ``path`` is a group written by open_output (it carries the job's signature)."""
    import zarr
    node = zarr_node(path)
    return isinstance(node, zarr.Group) and "signature" in (node.attrs.get("halo_seg") or {})


def done_map(path) -> np.ndarray:
    import zarr
    return np.asarray(zarr.open_group(str(path), mode="r")["done"][...])


def write_block(path, region, probs: np.ndarray, coords, probabilities: bool, mark_done: bool = True):
    """Write one block's labels (and probabilities), then mark it done: a crash in between re-runs it.
    A block written in pieces (tile mode's bands) passes `mark_done` only with its last piece."""
    import zarr
    grp = zarr.open_group(str(path), mode="a")
    lab = grp["labels"]
    lab[region] = probs.argmax(0).astype(lab.dtype)
    grp[UNCERTAINTY][region] = uncertainty_percent(probs)
    if probabilities:
        grp["probabilities"][(slice(None),) + tuple(region)] = probs
    if mark_done:
        grp["done"][tuple(coords)] = 1
