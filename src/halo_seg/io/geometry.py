"""Where a volume lies in the scanner's space, carried from the image a user opened to every label
volume written for it.

A NIfTI scan places its voxels in the world with an affine (orientation, voxel size, origin) and
says which space that is (its sform and qform codes: scanner, aligned, talairach, MNI). The engine's
labels come out on the scan's voxel grid in (Z, Y, X) order (where the network ran on a resampled
copy, its probabilities are brought back first), so they overlay the scan exactly when they are
written with the scan's affines and codes. Written with the
voxel size alone they would sit at the world origin, unrotated, in 3D Slicer, ITK-SNAP or FSLeyes:
125 mm away from the Colin27 scan.

A geometry is a plain dict, so that it fits a zarr attribute and a napari layer's metadata:
``{"shape": [Z, Y, X], "sform": 4x4, "sform_code": int, "qform": 4x4, "qform_code": int}``, the
matrices as nested lists in NIfTI's (x, y, z) world convention.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .volume import VolumeError

KEY = "geometry"   # the name under which volumes, zarr attributes and napari layers carry it
LABEL_INTENT = "label"   # NIFTI_INTENT_LABEL: the file's voxels are label ids, not intensities


def from_nifti(img, shape_zyx) -> dict:
    """The geometry of a nibabel NIfTI image whose data, in (Z, Y, X) order, has ``shape_zyx``."""
    hdr = img.header
    sform, scode = hdr.get_sform(coded=True)
    qform, qcode = hdr.get_qform(coded=True)
    best = np.asarray(img.affine, float)
    return {"shape": [int(s) for s in shape_zyx],
            "sform": (best if sform is None else np.asarray(sform, float)).tolist(), "sform_code": int(scode),
            "qform": (best if qform is None else np.asarray(qform, float)).tolist(), "qform_code": int(qcode)}


def from_affine(ras, shape_zyx, code: int = 1) -> dict:
    """A geometry whose sform and qform are both the (x, y, z) -> RAS affine ``ras``, coded ``code``
    (1: scanner), for a volume of ``shape_zyx``; what a DICOM series gives."""
    ras = np.asarray(ras, float).tolist()
    return {"shape": [int(s) for s in shape_zyx], "sform": ras, "sform_code": int(code),
            "qform": ras, "qform_code": int(code)}


def check(geometry: Any, shape_zyx=None, what: str = "geometry") -> dict:
    """``geometry`` validated (and for ``shape_zyx``, the shape it was made for), else VolumeError."""
    try:
        g = {"shape": [int(s) for s in geometry["shape"]],
             "sform": np.asarray(geometry["sform"], float), "sform_code": int(geometry["sform_code"]),
             "qform": np.asarray(geometry["qform"], float), "qform_code": int(geometry["qform_code"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise VolumeError(f"{what} is not a volume geometry (shape, sform, qform and their codes): {exc}") from exc
    for name in ("sform", "qform"):
        m = g[name]
        if m.shape != (4, 4) or not np.isfinite(m).all() or abs(np.linalg.det(m[:3, :3])) < 1e-12:
            raise VolumeError(f"{what}: {name} must be a finite, invertible 4x4 affine")
    if len(g["shape"]) != 3:
        raise VolumeError(f"{what}: shape must have 3 entries (Z, Y, X), got {g['shape']}")
    if shape_zyx is not None and tuple(g["shape"]) != tuple(int(s) for s in shape_zyx):
        raise VolumeError(f"{what} belongs to a volume of shape {tuple(g['shape'])}, not "
                          f"{tuple(int(s) for s in shape_zyx)}: these labels are not on that image's grid")
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in g.items()}


def resampled(geometry: dict, shape_zyx) -> dict:
    """The geometry of the same extent resampled to ``shape_zyx`` voxels, voxel centres placed as
    engine/resample.py places them: new voxel j at old voxel (j + 0.5) * old / new - 0.5."""
    g = check(geometry)
    f = np.array([o / n for o, n in zip(g["shape"], shape_zyx)], float)[::-1]   # (x, y, z), as the affines
    m = np.eye(4)
    m[:3, :3] = np.diag(f)
    m[:3, 3] = (f - 1) / 2
    return {**g, "shape": [int(s) for s in shape_zyx], "sform": (np.asarray(g["sform"]) @ m).tolist(),
            "qform": (np.asarray(g["qform"]) @ m).tolist()}


def best_affine(geometry: dict) -> np.ndarray:
    """The voxel-to-world affine a NIfTI reader uses: the sform if coded, else the qform if coded."""
    g = check(geometry)
    return np.asarray(g["sform"] if g["sform_code"] or not g["qform_code"] else g["qform"])


def spacing_of(geometry: dict) -> tuple[float, float, float]:
    """Voxel spacing (z, y, x) of a geometry: the lengths of its affine's columns."""
    zooms = np.sqrt((best_affine(geometry)[:3, :3] ** 2).sum(0))
    return float(zooms[2]), float(zooms[1]), float(zooms[0])


def axes_position(geometry: dict) -> tuple[float, float, float]:
    """Where voxel (0, 0, 0) lies along the volume's own axes, (z, y, x) in its length unit: the
    translation a viewer that draws voxels axis-aligned (napari, by scale and translate) gives it, so
    that every volume of one orientation sits where it lies in the world, in world units (a
    segmentation saved cropped to its objects over its scan)."""
    a = best_affine(geometry)
    axes = a[:3, :3] / np.sqrt((a[:3, :3] ** 2).sum(0))   # the unit direction of each voxel axis
    x, y, z = np.linalg.solve(axes, a[:3, 3])
    return float(z), float(y), float(x)


def is_placed(geometry) -> bool:
    """Whether a geometry places its volume in a space (a coded sform or qform): a file saved with
    np.eye(4) and no codes lies nowhere in particular."""
    return bool(geometry) and bool(geometry.get("sform_code") or geometry.get("qform_code"))


def grid_corners(shape_zyx, faces: bool = False) -> np.ndarray:
    """The eight corners of a grid of ``shape_zyx`` voxels as (x, y, z, 1) rows, in voxel indices as
    the affines take them: the corner voxels' centres, or with ``faces`` their outer faces (half a
    voxel further)."""
    lo = -0.5 if faces else 0.0
    hi = np.array(shape_zyx[::-1], float) - 1 - lo
    return np.array([[i, j, k, 1.0] for i in (lo, hi[0]) for j in (lo, hi[1]) for k in (lo, hi[2])])


def voxel_offset(geometry: dict | None, on: dict | None, tol: float = 0.01) -> tuple[int, int, int] | None:
    """The (z, y, x) voxel of grid ``on`` where voxel (0, 0, 0) of ``geometry``'s grid lies, where
    the two grids share their voxels (one orientation and voxel size, a whole number of voxels
    apart: a crop of one scan, or a padded copy), else None. Both must be placed (a coded space;
    None is a volume placed nowhere)."""
    if not (is_placed(geometry) and is_placed(on)):
        return None
    a, b = best_affine(geometry), best_affine(on)
    if np.abs(a[:3, :3] - b[:3, :3]).max() > tol * np.abs(b[:3, :3]).max():
        return None
    # every corner voxel a whole number of on's voxels away, the same number: a voxel size a
    # fraction of a percent apart passes per voxel but drifts over the grid's extent
    corners = grid_corners(check(geometry)["shape"])
    moved = (corners @ np.linalg.solve(b, a).T - corners)[:, :3]   # (x, y, z) voxels of ``on``
    v = np.round(moved[0])
    if np.abs(moved - v).max() > tol:
        return None
    x, y, z = (int(c) for c in v)
    return z, y, x


def placed_on(data, offset, shape):
    """``data`` (Z, Y, X) put on a grid of ``shape`` whose voxel ``offset`` is its voxel (0, 0, 0):
    cut where it passes that grid, 0 where it does not reach; lazily for a dask array."""
    src, pad = [], []
    for o, n, m in zip(offset, data.shape, shape):
        lo, hi = max(0, -o), max(0, min(n, m - o))
        lo = min(lo, hi)
        src.append(slice(lo, hi))
        before = min(m, max(0, o))
        pad.append((before, m - before - (hi - lo)))
    part = data[tuple(src)]
    if hasattr(part, "dask"):
        import dask.array as da
        if 0 in part.shape:   # dask pads no empty array: nothing of ``data`` on the grid
            return da.zeros(shape, dtype=part.dtype, chunks=data.chunksize)
        return da.pad(part, pad)
    return np.pad(np.asarray(part), pad)


def orientation(geometry: dict) -> str:
    """Axis codes of the NIfTI voxel axes (x, y, z), e.g. 'RAS' or 'LPS', as nibabel names them."""
    import nibabel as nib
    return "".join(nib.aff2axcodes(best_affine(geometry)))


def to_nifti(data_zyx: np.ndarray, geometry: dict | None, spacing=(1.0, 1.0, 1.0), labels: bool = True):
    """A NIfTI image of a (Z, Y, X) label volume, marked as labels (``labels=False``: an image); with
    ``geometry`` placed where that geometry's scan lies (its affines and codes), else with the voxel
    size alone."""
    import nibabel as nib
    arr = np.asarray(data_zyx)
    if geometry is None:
        img = nib.Nifti1Image(arr.transpose(2, 1, 0), np.diag([spacing[2], spacing[1], spacing[0], 1.0]))
    else:
        g = check(geometry, arr.shape)
        img = nib.Nifti1Image(arr.transpose(2, 1, 0), None)
        img.set_qform(np.asarray(g["qform"]), code=g["qform_code"])
        img.set_sform(np.asarray(g["sform"]), code=g["sform_code"])
    if labels:
        img.header.set_intent(LABEL_INTENT)
    return img


def is_label_nifti(img) -> bool:
    """Whether a NIfTI file says its voxels are labels (NIFTI_INTENT_LABEL), as those written here do."""
    try:
        return img.header.get_intent()[0] == LABEL_INTENT
    except Exception:   # an unknown intent code is not a label file
        return False


def grid_mismatch(a, b, name_a: str = "the first volume", name_b: str = "the second") -> str | None:
    """Why two opened volumes of one shape do not lie on one voxel grid, or None: their recorded voxel
    sizes differ, or their scan geometries put a corner voxel more than half a voxel apart (another
    scan, a shifted or flipped copy). Only what both record is compared: a .npy lies anywhere."""
    if a.spacing_known and b.spacing_known and not np.allclose(a.spacing, b.spacing, rtol=1e-3):
        return (f"{name_a} has voxels of {' x '.join(f'{v:g}' for v in a.spacing)} and {name_b} of "
                f"{' x '.join(f'{v:g}' for v in b.spacing)}")
    ga, gb = a.meta.get(KEY), b.meta.get(KEY)
    if not (is_placed(ga) and is_placed(gb)):   # a file with no coded space (np.eye(4) saved by a script) lies nowhere
        return None
    corners = grid_corners(a.shape)
    pa, pb = corners @ best_affine(ga).T, corners @ best_affine(gb).T
    apart = float(np.linalg.norm(pa[:, :3] - pb[:, :3], axis=1).max())
    if apart > 0.5 * min(min(a.spacing), min(b.spacing)):
        return (f"{name_a} and {name_b} lie {apart:.3g} {a.meta.get('unit') or 'units'} apart in the world "
                f"({orientation(ga)} origin {np.round(pa[0, :3], 2).tolist()}, {orientation(gb)} origin "
                f"{np.round(pb[0, :3], 2).tolist()})")
    return None


RESAMPLE_FIX = "resample one onto the other's grid first (halo-seg resample IN OUT --like OTHER [--labels])"


def world_overlap(a, b) -> float:
    """The share of the smaller of two placed volumes' world boxes (axis-aligned around their voxels'
    outer faces) that the other's box covers: near 1 for one scan stored in two orientations or
    resolutions (a resampling brings it onto the other's grid), near 0 for two scans apart."""
    boxes = []
    for v in (a, b):
        w = (grid_corners(v.shape, faces=True) @ best_affine(v.meta[KEY]).T)[:, :3]
        boxes.append((w.min(0), w.max(0)))
    (lo_a, hi_a), (lo_b, hi_b) = boxes
    common = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None)
    size = min(np.prod(hi_a - lo_a), np.prod(hi_b - lo_b))
    return float(np.prod(common) / size)


def check_one_grid(a, b, name_a: str, name_b: str, why: str = "a voxel-by-voxel comparison would pair the wrong voxels") -> None:
    """VolumeError when two volumes of one shape lie on different grids (grid_mismatch)."""
    if tuple(a.shape) == tuple(b.shape):
        found = grid_mismatch(a, b, name_a, name_b)
        if found:
            raise VolumeError(f"{found}: not one voxel grid, so {why}; {mismatch_fix(found, a, b)}")


def mismatch_fix(found: str, a, b) -> str:
    """What to do about two grids grid_mismatch ``found`` apart: a registration where they barely
    overlap in the world (two scans), else a resampling (one scan in two orientations or voxel sizes)."""
    if "apart in the world" in found and world_overlap(a, b) < 0.5:
        return "they barely overlap in the world, as two scans do: register one to the other first (3D Slicer, ANTs)"
    return RESAMPLE_FIX


def _held(offset, shape, grid_shape) -> bool:
    """Whether a box of ``shape`` at voxel ``offset`` of a grid of ``grid_shape`` lies all inside it."""
    return all(0 <= o and o + n <= m for o, n, m in zip(offset, shape, grid_shape))


def on_grid(vol, like, name: str, name_like: str, why: str = "a voxel-by-voxel comparison would pair the wrong voxels",
            cut: bool = False):
    """``vol``'s voxels (its ``data``) on ``like``'s voxel grid: as they are where their shapes agree
    (check_one_grid), else placed by the two scan geometries where ``like``'s grid holds all of
    ``vol``'s voxels (a segmentation saved cropped to its objects, as 3D Slicer does, on its scan: 0
    beyond the crop), lazily; ``cut``: where ``vol``'s grid holds all of ``like``'s instead (a scan
    read under a crop of it). ``vol`` and ``like``: opened volumes, or anything with their shape,
    spacing, spacing_known, meta and data. A VolumeError where the grids share no voxels, or one
    does not hold the other as asked."""
    if tuple(vol.shape) == tuple(like.shape):
        check_one_grid(vol, like, name, name_like, why)
        return vol.data
    ga, gb = vol.meta.get(KEY), like.meta.get(KEY)
    offset = voxel_offset(ga, gb)
    held = offset is not None and (_held(tuple(-o for o in offset), like.shape, vol.shape) if cut
                                   else _held(offset, vol.shape, like.shape))
    if not held:
        unplaced = [n for n, g in ((name, ga), (name_like, gb)) if not is_placed(g)]
        reason = ((f"{name_like} reaches beyond {name}" if cut else f"{name} reaches beyond {name_like}")
                  if offset is not None else "their scan geometries place them on grids of different voxels"
                  if not unplaced else f"nothing records where {' or '.join(unplaced)} lies in the world")
        raise VolumeError(f"{name} {tuple(vol.shape)} and {name_like} {tuple(like.shape)} are not on one voxel grid "
                          f"({reason}), so {why}; {RESAMPLE_FIX}")
    return placed_on(vol.data, offset, like.shape)


def on_one_grid(a, b, name_a: str, name_b: str, why: str = "a voxel-by-voxel comparison would pair the wrong voxels"):
    """(a's data, b's data, the volume whose grid they are on): on the grid of the one that holds
    the other (on_grid), so that nothing of either is cut away (a prediction's false positives
    beyond a reference cropped to its objects are counted)."""
    if tuple(a.shape) != tuple(b.shape):
        offset = voxel_offset(a.meta.get(KEY), b.meta.get(KEY))
        if offset is not None and not _held(offset, a.shape, b.shape) \
                and _held(tuple(-o for o in offset), b.shape, a.shape):
            return a.data, on_grid(b, a, name_b, name_a, why), a
    return on_grid(a, b, name_a, name_b, why), b.data, b
