"""What a clinician or a microscopist reads off a segmentation: per object, its size in physical
units, where it lies and what the image shows inside it.

Label volumes may be far larger than memory (the engine's output of a whole-brain light-sheet
stack), so they are read in slabs of whole slices and each statistic is accumulated from sums,
minima and maxima that combine exactly across slabs; the result equals what one pass over the
whole array gives (tests compare it with scikit-image's regionprops).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from .io.labels import check_label_volume, read_label_slab, slabs
from .io.volume import VolumeError, length_unit

# slab size for reading: a few tens of MB of labels and image at a time
SLAB_VOXELS = 1 << 23
_ML_PER = {"mm": 1e-3, "cm": 1.0, "m": 1e6}


def millilitres_per(unit: str | None) -> float | None:
    """mL in one cubic ``unit``, for the units a scan is measured in (mm, cm, m); else None."""
    return _ML_PER.get(length_unit(unit) or "")


class _Acc:
    """Per-label running sums, kept in arrays sorted by label id."""

    def __init__(self, with_image: bool):
        self.ids = np.zeros(0, np.int64)
        self.with_image = with_image
        self.cols = {k: np.zeros(0) for k in self._names()}

    def _names(self):
        names = ["n", "sz", "sy", "sx", "z0", "y0", "x0", "z1", "y1", "x1"]
        return names + (["si", "si2", "imin", "imax"] if self.with_image else [])

    _fill = {"z0": np.inf, "y0": np.inf, "x0": np.inf, "imin": np.inf,
             "z1": -np.inf, "y1": -np.inf, "x1": -np.inf, "imax": -np.inf}

    def add(self, ids: np.ndarray, part: dict):
        merged = np.union1d(self.ids, ids)
        if len(merged) != len(self.ids):   # new labels: grow every column in sorted order
            pos = np.searchsorted(merged, self.ids)
            for k, v in self.cols.items():
                grown = np.full(len(merged), self._fill.get(k, 0.0))
                grown[pos] = v
                self.cols[k] = grown
            self.ids = merged
        at = np.searchsorted(self.ids, ids)
        for k, v in part.items():
            c = self.cols[k]
            if k in ("z0", "y0", "x0", "imin"):
                c[at] = np.minimum(c[at], v)
            elif k in ("z1", "y1", "x1", "imax"):
                c[at] = np.maximum(c[at], v)
            else:
                c[at] += v


def _slab_stats(lab: np.ndarray, z_offset: int, img: np.ndarray | None):
    flat = np.flatnonzero(lab)
    if not len(flat):
        return None, None
    vals = lab.reshape(-1)[flat]
    # one stable sort groups each label's voxels, still in raster order; every statistic is then a
    # reduction over contiguous runs (np.ufunc.reduceat), far faster than scattering with ufunc.at
    order = np.argsort(vals, kind="stable")
    flat, vals = flat[order], vals[order]
    starts = np.concatenate([[0], np.flatnonzero(vals[1:] != vals[:-1]) + 1])
    ids = vals[starts].astype(np.int64)
    zz, yy, xx = np.unravel_index(flat, lab.shape)
    part = {"n": np.diff(np.append(starts, len(flat))).astype(float)}
    for name, c in (("z", zz + z_offset), ("y", yy), ("x", xx)):
        part["s" + name] = np.add.reduceat(c.astype(np.float64), starts)
        part[name + "0"] = np.minimum.reduceat(c, starts).astype(float)
        part[name + "1"] = np.maximum.reduceat(c, starts).astype(float)
    if img is not None:
        v = img.reshape(-1)[flat].astype(np.float64)
        part["si"] = np.add.reduceat(v, starts)
        part["si2"] = np.add.reduceat(v * v, starts)
        part["imin"] = np.minimum.reduceat(v, starts)
        part["imax"] = np.maximum.reduceat(v, starts)
    return ids, part


def measure_labels(labels, spacing=(1.0, 1.0, 1.0), image=None, unit: str | None = None,
                   affine: np.ndarray | None = None, cancel=None) -> dict[str, np.ndarray]:
    """One row per label id (> 0) of a (Z, Y, X) label volume (numpy, dask, zarr; read in slabs).

    Columns: ``label``, ``voxels``, ``volume`` (in ``unit``\\ :sup:`3` of ``spacing``), ``volume_ml``
    (when ``unit`` is a length such as "mm"), ``equivalent_diameter`` (of the sphere of that volume,
    in ``unit``), ``centroid_z/y/x`` (voxel indices), ``bbox_z0 .. bbox_x1`` (inclusive), with
    ``affine`` (voxel (x, y, z) -> world, NIfTI's convention) also ``centroid_world_x/y/z``, and with
    ``image`` (same shape) ``mean``, ``std``, ``min``, ``max`` of the image inside each object.
    ``cancel``: a callable returning True to stop between slabs (raises InterruptedError).
    """
    shape = check_label_volume(labels)
    if image is not None and tuple(image.shape) != shape:
        raise VolumeError(f"the image has shape {tuple(image.shape)} but the labels {shape}: "
                          "they must lie on one voxel grid")
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise VolumeError(f"spacing must be three positive numbers (z, y, x), got {spacing!r}")
    step, starts = slabs(shape, SLAB_VOXELS)
    acc = _Acc(image is not None)
    for z0 in starts:
        lab = read_label_slab(labels, z0, step, cancel)
        img = None if image is None else np.asarray(image[z0:z0 + step])
        ids, part = _slab_stats(lab, z0, img)
        if ids is not None:
            acc.add(ids, part)
    return _table(acc, sp, unit, affine)


def _table(acc: _Acc, sp, unit, affine) -> dict[str, np.ndarray]:
    c, n = acc.cols, acc.cols["n"]
    vol = n * sp[0] * sp[1] * sp[2]
    out = {"label": acc.ids, "voxels": n.astype(np.int64), "volume": vol}
    per = millilitres_per(unit)
    if per is not None:
        out["volume_ml"] = vol * per
    out["equivalent_diameter"] = np.cbrt(6.0 * vol / np.pi)
    cz, cy, cx = (c["s" + a] / np.maximum(n, 1) for a in "zyx")
    out.update(centroid_z=cz, centroid_y=cy, centroid_x=cx)
    if affine is not None:
        world = np.asarray(affine, float) @ np.stack([cx, cy, cz, np.ones_like(cz)])
        out.update(centroid_world_x=world[0], centroid_world_y=world[1], centroid_world_z=world[2])
    for a in ("z0", "y0", "x0", "z1", "y1", "x1"):
        out["bbox_" + a] = c[a].astype(np.int64)
    if acc.with_image:
        mean = c["si"] / np.maximum(n, 1)
        out.update(mean=mean, std=np.sqrt(np.maximum(c["si2"] / np.maximum(n, 1) - mean ** 2, 0.0)),
                   min=c["imin"], max=c["imax"])
    return out


def bbox_slices(table: dict[str, np.ndarray], i: int) -> tuple[slice, slice, slice]:
    """Row i's bounding box (inclusive columns bbox_z0 .. bbox_x1) as slices into the volume."""
    return tuple(slice(int(table[f"bbox_{a}0"][i]), int(table[f"bbox_{a}1"][i]) + 1) for a in "zyx")


def add_shape(table: dict[str, np.ndarray], labels, spacing=(1.0, 1.0, 1.0), cancel=None) -> dict[str, np.ndarray]:
    """``table`` (from measure_labels) with ``surface_area`` (in unit^2) and ``sphericity`` (1 for a
    ball, about 0.8 for a cube) of each object's surface: marching cubes at its mask's 0.5 level in
    physical spacing, as radiomics shape features do (sphericity = pi^(1/3) (6 V)^(2/3) / A, V the
    volume the surface encloses). Reads each object's bounding box once; ``cancel()`` True stops."""
    from skimage.measure import marching_cubes, mesh_surface_area
    area = np.zeros(len(table["label"]))
    sphericity = np.zeros(len(table["label"]))
    for i, k in enumerate(table["label"]):
        if cancel is not None and cancel():
            raise InterruptedError("stopped before every object was measured")
        box = bbox_slices(table, i)
        crop = np.pad(np.asarray(labels[box]) == k, 1).astype(np.float32)
        verts, faces, _, _ = marching_cubes(crop, 0.5, spacing=tuple(float(s) for s in spacing))
        area[i] = mesh_surface_area(verts, faces)
        a, b, c = (verts[faces[:, j]] for j in range(3))
        enclosed = abs(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0
        sphericity[i] = np.pi ** (1 / 3) * (6 * enclosed) ** (2 / 3) / area[i]
    return dict(table, surface_area=area, sphericity=sphericity)


def measure_mask(mask: np.ndarray, label: int = 1, spacing=(1.0, 1.0, 1.0), image=None, unit: str | None = None,
                 affine: np.ndarray | None = None, box: tuple | None = None) -> dict[str, np.ndarray]:
    """measure_labels of one object given as a boolean (Z, Y, X) mask, reading only the image under
    its bounding box (a lazy image stays lazy): the one-row table, in the full volume's coordinates.
    ``box``: the (Z, Y, X) slices of the volume that ``mask`` covers, when it is a crop (the volume is
    empty outside it), so that a caller who knows where the object is never builds the whole mask."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 3:
        raise VolumeError(f"the mask must be 3D (Z, Y, X), got shape {mask.shape}")
    base = (0, 0, 0) if box is None else tuple(int(b.start) for b in box)
    if box is not None and tuple(int(b.stop) - int(b.start) for b in box) != mask.shape:
        raise VolumeError(f"the mask has shape {mask.shape} but its box {box} another")
    if image is not None and box is None and tuple(image.shape) != mask.shape:
        raise VolumeError(f"the image has shape {tuple(image.shape)} but the mask {mask.shape}")
    if image is not None and box is not None and any(int(b.stop) > n for b, n in zip(box, image.shape)):
        raise VolumeError(f"the mask's box {box} does not fit the image's shape {tuple(image.shape)}")
    if not mask.any():
        return measure_labels(np.zeros((1, 1, 1), np.uint8), spacing, unit=unit)   # no rows
    spans = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    inner = tuple(slice(int(s[0]), int(s[-1]) + 1) for s in spans)
    lo = [o + int(s[0]) for o, s in zip(base, spans)]
    if affine is not None:   # the crop's voxel (0, 0, 0) is the volume's (x0, y0, z0)
        shift = np.eye(4)
        shift[:3, 3] = lo[2], lo[1], lo[0]
        affine = np.asarray(affine, float) @ shift
    where = tuple(slice(o, o + (i.stop - i.start)) for o, i in zip(lo, inner))
    t = measure_labels(mask[inner].view(np.uint8), spacing, None if image is None else image[where], unit=unit,
                       affine=affine)
    t["label"] = np.array([int(label)], np.int64)
    for k, o in zip("zyx", lo):
        for col in ("centroid_" + k, f"bbox_{k}0", f"bbox_{k}1"):
            t[col] = t[col] + o
    return t


def volume_text(volume: float, unit: str | None) -> str:
    """A volume in the unit a reader expects: mL for scans in mm (a clinician's unit), else unit^3."""
    per = millilitres_per(unit)
    if per is not None:
        return f"{volume * per:.4g} mL"
    return f"{volume:.4g} {unit}³" if unit else f"{volume:.4g} voxel units³"


def write_csv(table: dict[str, np.ndarray], path: str | Path) -> Path:
    """The table as CSV at ``path``; an existing file is replaced only if it is a text file (an
    earlier table): `--csv` naming the input volume by mistake wrote the table over it."""
    path = Path(path)
    check_table_path(path)
    cols = list(table)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(len(table[cols[0]]) if cols else 0):   # every column holds one value per row
            w.writerow([_fmt(table[k][i]) for k in cols])
    return path


def check_table_path(path: Path) -> None:
    if path.is_dir():
        raise VolumeError(f"{path} is a folder; give the table a file name (e.g. table.csv)")
    if not path.exists():
        return
    with path.open("rb") as f:
        head = f.read(4096)
    try:
        head.decode("utf-8")
        text = b"\0" not in head
    except UnicodeDecodeError as exc:   # a character cut at 4096 bytes is still text
        text = b"\0" not in head and exc.start >= len(head) - 3
    if not text:
        raise VolumeError(f"{path} exists and is not a text table (a volume, weights?); the table is not "
                          "written over it: choose another name (e.g. table.csv)")


def _fmt(v) -> str:
    if isinstance(v, str):   # a case name
        return v
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    return f"{float(v):.6g}"


def by_timepoint(tables: list[tuple[int, dict]]) -> dict[str, np.ndarray]:
    """The tables of a time-lapse's time points, [(t, table)], as one with a ``timepoint`` column
    first (a row per object and time point)."""
    if not tables:
        return {"timepoint": np.zeros(0, int), "label": np.zeros(0, int), "voxels": np.zeros(0, int),
                "volume": np.zeros(0)}
    out = {"timepoint": np.concatenate([np.full(len(tb["label"]), t) for t, tb in tables])}
    for c in tables[0][1]:
        out[c] = np.concatenate([tb[c] for _, tb in tables])
    return out


def with_names(table: dict[str, np.ndarray], names: dict | None) -> dict[str, np.ndarray]:
    """The table with a ``name`` column after ``label`` (the names a SEG, a structure set or a
    model's classes give the ids; '' for an id without one); unchanged without names."""
    if not names:
        return table
    out = {}
    for key, column in table.items():
        out[key] = column
        if key == "label":
            out["name"] = np.array([str(names.get(int(v), "")) for v in column], dtype=object)
    return out


def format_table(table: dict[str, np.ndarray], unit: str | None, most: int = 20) -> str:
    """A short human-readable table: the largest ``most`` objects, and the count and total."""
    n = len(table["label"])
    if n == 0:
        return "no objects (every voxel is 0)"
    u = unit or "units"
    size = ("volume_ml", "mL") if "volume_ml" in table else ("volume", f"{u}^3")
    rows = np.argsort(-table["voxels"], kind="stable")[:most]
    wide = max([4] + [len(v) for v in table["name"]]) if "name" in table else 0
    head = f"{'label':>8}" + (f" {'name':<{wide}}" if wide else "")
    head += f" {'voxels':>12} {size[1]:>12} {'centroid z,y,x (voxels)':>26}"
    head += f" {'mean':>10}" if "mean" in table else ""
    head += f" {'sphericity':>10}" if "sphericity" in table else ""
    lines = [head]
    for i in rows:
        line = (f"{int(table['label'][i]):>8}" + (f" {table['name'][i]:<{wide}}" if wide else "")
                + f" {int(table['voxels'][i]):>12} {table[size[0]][i]:>12.4g} "
                f"{table['centroid_z'][i]:>8.1f},{table['centroid_y'][i]:>8.1f},{table['centroid_x'][i]:>8.1f}")
        line += f" {table['mean'][i]:>10.4g}" if "mean" in table else ""
        line += f" {table['sphericity'][i]:>10.3f}" if "sphericity" in table else ""
        lines.append(line)
    if n > most:
        lines.append(f"... {n - most} smaller objects (--csv writes them all)")
    lines.append(f"{n} objects, {int(table['voxels'].sum())} voxels, {table[size[0]].sum():.4g} {size[1]} in all")
    return "\n".join(lines)
