"""Labels written into the OME-Zarr image they belong to (``image.ome.zarr/labels/NAME``), as the
OME-NGFF specification places them. napari-ome-zarr, Fiji's MoBIE, webKnossos and other OME tools
find them there, beside the image.

ome-zarr-py, the specification's reference implementation, writes the multiscale and image-label
metadata and the pyramid. These labels follow the image: the same axes (t and c as size 1), the
same pixel size, and one pyramid level for each of the image's levels, downsampled by the image's
own factors. The shape must be the image's full-resolution shape.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .volume import VolumeError, _ome_multiscales, ome_transform


def is_ome_image(path: Path) -> bool:
    """Whether ``path`` is an existing OME-Zarr image (a zarr group with multiscales metadata)."""
    import zarr
    path = Path(path)
    if not path.is_dir():
        return False
    try:
        return bool(_ome_multiscales(dict(zarr.open_group(str(path), mode="r").attrs))[0])
    except Exception:   # not a zarr group at all
        return False


def _image_multiscales(path: Path):
    import zarr
    try:
        grp = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        raise VolumeError(f"{path} is not a zarr group: {exc}") from exc
    ms, version = _ome_multiscales(dict(grp.attrs))
    if not ms:
        raise VolumeError(f"{path} is not an OME-Zarr image (no multiscales metadata): labels are written into "
                          f"the OME-Zarr image they belong to")
    return grp, ms[0], version


def write_ome_labels(labels, image, name: str = "halo-seg") -> Path:
    """Write the (Z, Y, X) ``labels`` computed on the OME-Zarr ``image`` into ``image/labels/name``;
    returns that path. An existing label image of that name is replaced."""
    try:
        from ome_zarr.format import format_from_version
        from ome_zarr.writer import write_labels
    except ImportError as exc:
        raise VolumeError("writing OME-Zarr labels needs ome-zarr: pip install 'napari-halo-seg[ome]'") from exc
    import dask.array as da
    import zarr
    from .labels import check_label_dtype
    image = Path(image)
    if not name or "/" in name or name.startswith("."):
        raise VolumeError(f"label image name {name!r}: a plain name such as 'nuclei'")
    _, ms, version = _image_multiscales(image)
    axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])] or ["z", "y", "x"]
    spatial = [i for i, a in enumerate(axes) if a in ("z", "y", "x")]
    if len(spatial) != 3:
        raise VolumeError(f"{image}: labels need an image with z, y and x axes, it has {axes}")
    grp = zarr.open_group(str(image), mode="a")
    level0 = grp[ms["datasets"][0]["path"]]
    shape = tuple(level0.shape[i] for i in spatial)
    if tuple(labels.shape) != shape:
        raise VolumeError(f"labels of shape {tuple(labels.shape)} are not on the grid of {image}, whose z, y, x "
                          f"shape is {shape}")
    check_label_dtype(labels.dtype)
    # one label image has one volume: per channel is fine (labels have no channels), per time point not
    longer = [f"{axes[i]}={level0.shape[i]}" for i in range(len(axes))
              if i not in spatial and axes[i] != "c" and level0.shape[i] > 1]
    if longer:
        raise VolumeError(f"{image} holds several volumes ({', '.join(longer)}) and OME-Zarr labels cover them "
                          f"all: labels of one volume cannot go into its labels/; save them as their own zarr or NIfTI")
    scales = [ome_transform(ms, ds, len(axes))[0] for ds in ms["datasets"]]
    # the image's own downsampling, level by level, on the spatial axes (t and c are never downsampled)
    factors = [{axes[i]: max(1, int(round(sc[i] / scales[0][i]))) for i in spatial} for sc in scales[1:]]
    arr = labels if isinstance(labels, da.Array) else da.from_array(np.asarray(labels), chunks=64)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    for i, ax in enumerate(axes):   # singleton t and c, as the image has them
        if i not in spatial:
            arr = da.expand_dims(arr, i)
    units = {a["name"]: a["unit"] for a in ms.get("axes", []) if isinstance(a, dict) and a.get("unit")}
    # scaler=None: ome-zarr 0.18's default scaler would override scale_factors with its own pyramid
    write_labels(arr.rechunk(tuple(1 if i not in spatial else 64 for i in range(len(axes)))), grp, name=name,
                 scaler=None, scale_factors=factors, fmt=format_from_version(version or "0.4"), axes=axes,
                 scale={a: (scales[0][i] if i in spatial else 1.0) for i, a in enumerate(axes)},
                 axes_units=units or None, **{"image-label": {"source": {"image": "../../"}}})
    _same_transforms(image / "labels" / name, ms)
    return image / "labels" / name


def _same_transforms(labels_path: Path, image_ms: dict) -> None:
    """Give the label image its image's transformations, level by level (the multiscale's own folded
    in): ome-zarr-py writes a scale from the image's pixel size and its own half-pixel shifts, and
    no translation, so that the labels of an image that is a crop or tile of a larger acquisition
    (a translation) would lie at the origin, away from it, in napari-ome-zarr or MoBIE."""
    import zarr
    grp = zarr.open_group(str(labels_path), mode="a")
    attrs = grp.attrs.asdict()
    ms_list, _ = _ome_multiscales(attrs)
    ms = ms_list[0]
    ndim = len(ms.get("axes") or image_ms.get("axes"))
    for own, theirs in zip(ms["datasets"], image_ms["datasets"]):
        scale, shift, _ = ome_transform(image_ms, theirs, ndim)
        own["coordinateTransformations"] = [{"type": "scale", "scale": scale}] + (
            [{"type": "translation", "translation": shift}] if any(shift) else [])
    ms.pop("coordinateTransformations", None)
    if "ome" in attrs:   # OME-Zarr 0.5: under "ome"
        grp.attrs["ome"] = {**attrs["ome"], "multiscales": ms_list}
    else:
        grp.attrs["multiscales"] = ms_list
