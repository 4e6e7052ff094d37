"""Labels as surface meshes (STL, PLY, OBJ) in the scanner's millimetres: for 3D printing, surgical
planning and 3D viewers, which take surfaces rather than voxels (3D Slicer's "export to model").

Each object's surface is scikit-image's marching cubes at the 0.5 level of its mask, cut out of the
volume by its bounding box so that a label volume larger than memory is read object by object;
trimesh (a well-kept mesh library) optionally smooths it (Taubin: no shrinkage) and writes the file.
Vertices go through the scan's affine, so the mesh overlays the scan in any viewer that places
both in world coordinates; without a geometry they are in voxel spacing units.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .labels import check_label_dtype
from .volume import VolumeError

MESH_SUFFIXES = (".stl", ".ply", ".obj")


def object_mesh(mask: np.ndarray, origin_zyx=(0, 0, 0), spacing=(1.0, 1.0, 1.0), affine: np.ndarray | None = None,
                smooth: int = 0):
    """The closed surface of a boolean (Z, Y, X) mask whose voxel (0, 0, 0) is the volume's
    ``origin_zyx``: a trimesh.Trimesh in world coordinates (``affine``: voxel (x, y, z) -> world, as
    NIfTI) or else in spacing units, (x, y, z) order, outward normals."""
    try:
        import trimesh
    except ImportError as exc:
        raise VolumeError("writing meshes needs trimesh: pip install 'napari-halo-seg[mesh]'") from exc
    from skimage.measure import marching_cubes
    padded = np.pad(np.asarray(mask, np.float32), 1)   # closes surfaces that touch the crop's faces
    verts, faces, _, _ = marching_cubes(padded, 0.5)
    zyx = verts - 1 + np.asarray(origin_zyx, float)
    xyz1 = np.column_stack([zyx[:, ::-1], np.ones(len(zyx))])
    if affine is None:
        affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    world = (np.asarray(affine, float) @ xyz1.T).T[:, :3]
    mesh = trimesh.Trimesh(world, faces, process=True)
    if smooth:
        trimesh.smoothing.filter_taubin(mesh, iterations=int(smooth))
    if mesh.volume < 0:   # the (z, y, x) -> (x, y, z) swap and a mirroring affine each flip the winding
        mesh.invert()
    return mesh


def write_meshes(labels, output, spacing=(1.0, 1.0, 1.0), affine: np.ndarray | None = None, label=None,
                 smooth: int = 0) -> list[Path]:
    """One mesh file per label value (``output`` itself when there is one object or ``label`` picks
    it, else ``<stem>_<label><suffix>`` beside it). Returns the files written."""
    from ..measure import bbox_slices, measure_labels
    output = Path(output)
    if output.suffix.lower() not in MESH_SUFFIXES:
        raise VolumeError(f"a mesh is written as {', '.join(MESH_SUFFIXES)}, not {output.name}")
    if len(getattr(labels, "shape", ())) != 3:
        raise VolumeError(f"labels must be a 3D (Z, Y, X) volume, got shape {tuple(getattr(labels, 'shape', ()))}")
    check_label_dtype(np.dtype(labels.dtype), "the label volume")
    if int(smooth) != smooth or smooth < 0:   # a negative count smoothed nothing, silently
        raise VolumeError(f"smoothing iterations must be a whole number >= 0, got {smooth}")
    table = measure_labels(labels, spacing)
    ids = table["label"].tolist()
    if label is not None:
        if int(label) not in ids:
            raise VolumeError(f"label {label} is not in the volume (it holds {ids[:20]}{' ...' if len(ids) > 20 else ''})")
        ids = [int(label)]
    if not ids:
        raise VolumeError("the label volume is empty: there is no object to mesh")
    written = []
    for k in ids:
        i = int(np.flatnonzero(table["label"] == k)[0])
        box = bbox_slices(table, i)
        crop = np.asarray(labels[box]) == k
        mesh = object_mesh(crop, [s.start for s in box], spacing, affine, smooth)
        path = output if len(ids) == 1 else output.with_name(f"{output.stem}_{k}{output.suffix}")
        mesh.export(str(path))
        written.append(path)
    return written
