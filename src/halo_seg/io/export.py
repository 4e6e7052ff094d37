"""Labels out to where other tools look for them: NIfTI (or zarr) placed on the scan they were
computed on, DICOM SEG or an RT structure set referencing the DICOM series, or the OME-Zarr image's
labels/ group. `halo-seg export` is this function."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import geometry
from .labels import check_label_dtype, open_labels, write_labels
from .volume import ITK_WRITE, NIFTI_SUFFIXES, SEGMENT_NAMES, TIFF_SUFFIXES, VolumeError, open_volume


def _made_from(labels_path) -> str | None:
    """The input an output group of `segment` was computed on, if ``labels_path`` is one."""
    import zarr
    try:
        return zarr.open_group(str(labels_path), mode="r").attrs["halo_seg"]["signature"]["input"]
    except Exception:   # not a zarr group, or not one of ours
        return None


def export_labels(labels_path, output, like=None, name: str = "halo-seg", label=None, smooth: int = 0) -> str:
    """Write the label volume at ``labels_path`` to ``output``; ``like``: the scan (NIfTI, DICOM
    series) they belong to, by default the input `segment` kept. For a mesh (.stl, .ply, .obj):
    ``label`` picks one object (default: a file per label), ``smooth`` Taubin iterations. Returns
    what was written, in words."""
    from .mesh import MESH_SUFFIXES
    from .ome_labels import is_ome_image
    lower = str(output).lower()
    writable = (".zarr", ".dcm") + NIFTI_SUFFIXES + ITK_WRITE + TIFF_SUFFIXES + MESH_SUFFIXES
    if not (is_ome_image(Path(output)) or lower.endswith(writable)):
        raise VolumeError(f"cannot export to '{Path(output).name}': use .nii.gz, .nii, .nrrd, .mha, .tif or .zarr "
                          f"(labels), .dcm (DICOM SEG), .rtstruct.dcm (RT structure set), {', '.join(MESH_SUFFIXES)} "
                          "(surface meshes) or an OME-Zarr image")
    if not is_ome_image(Path(output)):   # into an OME-Zarr image is where its labels go; over a scan never
        for what, p in (("the labels", labels_path), ("the scan given with --like", like),
                        ("the scan they were computed on", _made_from(labels_path))):
            if p and Path(output).resolve() == Path(p).resolve():
                raise VolumeError(f"the output {output} is {what}; write to a new path")
    lab = open_labels(labels_path)
    check_label_dtype(lab.data.dtype, str(labels_path))
    from .mesh import MESH_SUFFIXES, write_meshes
    if str(output).lower().endswith(MESH_SUFFIXES):
        g = _scan_geometry(like, lab)
        files = write_meshes(lab.data, output, spacing=geometry.spacing_of(g) if g else lab.spacing,
                             affine=geometry.best_affine(g) if g else None, label=label, smooth=smooth)
        where = "in the scan's world millimetres" if g else "in voxel spacing units (no scan geometry; give --like SCAN)"
        return f"{', '.join(map(str, files))}: {len(files)} surface mesh{'es' if len(files) > 1 else ''} {where}"
    from .ome_labels import is_ome_image, write_ome_labels
    if is_ome_image(Path(output)):
        out = write_ome_labels(lab.data, output, name=name)
        return f"{out}: OME-Zarr labels of {tuple(lab.shape)} in the image {output}"
    made_from = _made_from(labels_path)
    if str(output).lower().endswith(".dcm"):
        from .dicom import looks_like_series
        from .dicom_seg import SERIES_KEY, write_dicom_seg
        from .rtstruct import wants_rtstruct, write_rtstruct
        rt = wants_rtstruct(output, lab.meta.get("format"))
        what = "RT structure set" if rt else "DICOM SEG"
        series = like or made_from or lab.meta.get(SERIES_KEY)   # a SEG read in knows its series
        if not series or not looks_like_series(Path(series)):
            raise VolumeError(f"{'an' if rt else 'a'} {what} references the DICOM series the labels were "
                              "computed on: give it with --like SERIES_FOLDER")
        # the names a model gave its classes, or a SEG or structure set read in gave its labels
        write = write_rtstruct if rt else write_dicom_seg
        write(np.asarray(lab.data), series, output, names=lab.meta.get(SEGMENT_NAMES),
              automatic=made_from is not None)
        return f"{output}: {what} of {tuple(lab.shape)} labels on the series {series}"
    g = _scan_geometry(like, lab)
    # a scan geometry is in millimetres; else the labels' own unit (µm of a microscope's stack), which
    # left out would be read back as NIfTI's mm and measure a billion times too large
    unit = "mm" if g else lab.meta.get("unit")
    write_labels(lab.data, output, spacing=geometry.spacing_of(g) if g else lab.spacing, geometry=g, unit=unit,
                 names=lab.meta.get(SEGMENT_NAMES))
    tiff = str(output).lower().endswith(TIFF_SUFFIXES)
    where = ("with the voxel size alone: TIFF records no scan placement (NIfTI does)" if tiff
             else f"placed as {like or labels_path} ({geometry.orientation(g)})" if g
             else "with the voxel size alone: no scan geometry was found (give --like SCAN)")
    return f"{output} {tuple(lab.shape)}, {where}"


def _scan_geometry(like, lab):
    """The geometry of ``like`` (checked against the labels' grid), else the labels' own, or None."""
    if not like:
        return lab.meta.get(geometry.KEY)
    g = open_volume(like).meta.get(geometry.KEY)
    if g is None:
        raise VolumeError(f"{like} carries no scan geometry (NIfTI files, DICOM series and halo-seg outputs "
                          f"of them do); leave out --like to write the voxel size alone")
    geometry.check(g, lab.shape, what=f"the geometry of {like}")
    return g
