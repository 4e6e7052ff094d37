"""Labels into the OME-Zarr image they belong to, read back by ome-zarr-py (the specification's
reference reader) and by this package."""
import numpy as np
import pytest
import zarr

pytest.importorskip("ome_zarr")

from halo_seg.cli import main  # noqa: E402
from halo_seg.io import VolumeError, open_volume  # noqa: E402
from halo_seg.io.ome_labels import write_ome_labels  # noqa: E402


def _image(tmp_path, version, levels=2, tc=(1, 1)):
    """A 5D (t, c, z, y, x) OME-Zarr image with a pyramid downsampled 2x in y and x, 0.5 um in z."""
    from ome_zarr.format import format_from_version
    from ome_zarr.writer import write_image
    rng = np.random.default_rng(0)
    img = rng.normal(100, 5, tuple(tc) + (12, 32, 40)).astype(np.float32)
    img[..., 3:8, 10:20, 12:30] += 80
    path = tmp_path / f"img{version}.ome.zarr"
    grp = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    write_image(img, grp, axes="tczyx", fmt=format_from_version(version),
                scale_factors=[{"z": 1, "y": 2 ** k, "x": 2 ** k} for k in range(1, levels)],
                scale={"t": 1.0, "c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5})
    return path, img[0, 0]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_labels_join_their_image_and_ome_tools_read_them(tmp_path, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    path, img = _image(tmp_path, version)
    labels = (img > 140).astype(np.uint16) * 7
    out = write_ome_labels(labels, path, name="blobs")
    assert out == path / "labels" / "blobs"
    # the reference reader finds them as the image's labels, with the image's pyramid and pixel size
    nodes = {str(n.zarr).split(" ")[0].rstrip("/"): n for n in Reader(parse_url(str(path)))()}
    node = nodes[str(path / "labels" / "blobs")]
    assert {type(s).__name__ for s in node.specs} == {"Label", "Multiscales"}
    assert len(node.data) == 2                                      # two levels, as the image has
    np.testing.assert_array_equal(np.asarray(node.data[0])[0, 0], labels)
    np.testing.assert_array_equal(np.asarray(node.data[1])[0, 0], labels[:, ::2, ::2])
    attrs = zarr.open_group(str(path / "labels"), mode="r").attrs.asdict()
    assert attrs.get("labels", attrs.get("ome", {}).get("labels")) == ["blobs"]
    # and this package opens them as a volume on the image's grid, with its spacing
    v = open_volume(out)
    assert v.shape == labels.shape and v.spacing == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(v.data), labels)


def test_export_from_segment_and_refusals(tmp_path, tiny_weights, capsys):
    path, img = _image(tmp_path, "0.4", levels=1)
    assert main(["segment", str(path), str(tmp_path / "seg.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole"]) == 0
    assert main(["export", str(tmp_path / "seg.zarr"), str(path), "--name", "auto"]) == 0
    np.testing.assert_array_equal(np.asarray(open_volume(path / "labels" / "auto").data),
                                  zarr.open_group(str(tmp_path / "seg.zarr"))["labels"][...])
    from halo_seg.io import write_labels
    with pytest.raises(VolumeError, match="is an OME-Zarr image; labels go into it"):
        write_labels(np.zeros((12, 32, 40), np.uint8), path)       # the image is never overwritten
    assert open_volume(path).shape == (12, 32, 40)
    with pytest.raises(VolumeError, match="not on the grid"):
        write_ome_labels(np.zeros((12, 32, 41), np.uint8), path)
    with pytest.raises(VolumeError, match="integer or boolean"):
        write_ome_labels(np.zeros((12, 32, 40), np.float32), path)
    with pytest.raises(VolumeError, match="plain name"):
        write_ome_labels(np.zeros((12, 32, 40), np.uint8), path, name="../x")
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    plain.create_array("a", shape=(2, 2, 2), dtype="u1")
    with pytest.raises(VolumeError, match="not an OME-Zarr image"):
        write_ome_labels(np.zeros((12, 32, 40), np.uint8), tmp_path / "plain.zarr")


def test_labels_of_a_stack(tmp_path):
    """Labels have no channels, so those of a two-channel image go into it; a time series' labels
    cover every time point, so one volume's labels are refused there."""
    path, img = _image(tmp_path / "c", "0.4", levels=1, tc=(1, 2))
    labels = (img > 140).astype(np.uint8)
    write_ome_labels(labels, path, name="cells")
    np.testing.assert_array_equal(np.asarray(open_volume(path / "labels" / "cells").data), labels)
    path, img = _image(tmp_path / "t", "0.4", levels=1, tc=(3, 1))
    with pytest.raises(VolumeError, match=r"several volumes \(t=3\).*save them as their own zarr"):
        write_ome_labels(np.zeros((12, 32, 40), np.uint8), path)
    assert not (path / "labels").exists()


def test_napari_saves_a_layer_into_the_image_and_reads_it_back_as_labels(make_napari_viewer, tmp_path):
    pytest.importorskip("napari")
    from napari_halo_seg._reader import get_reader
    path, img = _image(tmp_path, "0.5")
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-halo-seg")
    labels = (img > 140).astype(np.uint16)
    viewer.add_labels(labels, name="my nuclei", scale=viewer.layers[0].scale)
    viewer.layers["my nuclei"].save(str(path), plugin="napari-halo-seg")
    assert open_volume(path).shape == (12, 32, 40)                  # the image is still there
    [(data, meta, kind)] = get_reader(str(path / "labels" / "my_nuclei"))(str(path / "labels" / "my_nuclei"))
    assert kind == "labels" and meta["scale"] == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(data), labels)
    # a multiscale (pyramid) Labels layer is saved at its full resolution (np.asarray of napari's
    # multiscale data is its coarsest level: the labels were saved at half the resolution)
    viewer.add_labels([labels, labels[::2, ::2, ::2]], name="pyramid", multiscale=True)
    viewer.layers["pyramid"].save(str(tmp_path / "pyramid.zarr"), plugin="napari-halo-seg")
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "pyramid.zarr").data), labels)


def _translated(path, version):
    """Give the image a translation, as a crop or tile of a larger acquisition has: one per level and
    one for the whole multiscale (OME-NGFF applies it after the level's)."""
    grp = zarr.open_group(str(path), mode="a")
    attrs = grp.attrs.asdict()
    ms_list = attrs["ome"]["multiscales"] if version == "0.5" else attrs["multiscales"]
    for ds in ms_list[0]["datasets"]:
        ds["coordinateTransformations"].append({"type": "translation", "translation": [0, 0, 1.0, 2.0, 3.0]})
    ms_list[0]["coordinateTransformations"] = [{"type": "scale", "scale": [1, 1, 1, 1, 1]},
                                               {"type": "translation", "translation": [0, 0, 30.0, -4.0, 6.0]}]
    if version == "0.5":
        grp.attrs["ome"] = {**attrs["ome"], "multiscales": ms_list}
    else:
        grp.attrs["multiscales"] = ms_list
    return ms_list[0]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_translated_image_and_its_labels_lie_where_it_says(tmp_path, version, make_napari_viewer, tiny_weights):
    path, img = _image(tmp_path, version)
    ms = _translated(path, version)
    from halo_seg.io.geometry import KEY, axes_position
    v = open_volume(path)
    assert v.spacing == (2.0, 0.5, 0.5) and axes_position(v.meta[KEY]) == (31.0, -2.0, 9.0)
    labels = (img > 140).astype(np.uint16) * 7
    out = write_ome_labels(labels, path, name="blobs")
    lab = open_volume(out)
    assert lab.spacing == v.spacing and lab.meta[KEY] == v.meta[KEY]
    # level by level, the image's own transformations with the multiscale's folded in
    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()
    own = (attrs["ome"] if version == "0.5" else attrs)["multiscales"][0]["datasets"]
    for mine, theirs in zip(own, ms["datasets"]):
        sc = next(t["scale"] for t in theirs["coordinateTransformations"] if t["type"] == "scale")
        # the multiscale's scale is 1: its translation adds to the level's (ome-zarr-py's half-pixel
        # shift of a downsampled level, then ours)
        tr = list(np.sum([t["translation"] for t in theirs["coordinateTransformations"] if t["type"] == "translation"]
                         + [[0, 0, 30.0, -4.0, 6.0]], axis=0))
        assert mine["coordinateTransformations"] == [{"type": "scale", "scale": sc},
                                                     {"type": "translation", "translation": tr}]
    viewer = make_napari_viewer()
    import warnings
    with warnings.catch_warnings():   # an image with label images in it, not labels
        warnings.simplefilter("error")
        image_layer, = viewer.open(str(path), plugin="napari-halo-seg")
    assert image_layer.__class__.__name__ == "Image"
    label_layer, = viewer.open(str(out), plugin="napari-halo-seg")
    # the labels `segment` computes on it lie there too
    assert main(["segment", str(path), str(tmp_path / "seg.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole"]) == 0
    assert open_volume(tmp_path / "seg.zarr").meta[KEY] == v.meta[KEY]
    seg_layers = viewer.open(str(tmp_path / "seg.zarr"), plugin="napari-halo-seg")
    for layer in (image_layer, label_layer, *seg_layers):
        np.testing.assert_allclose(layer.translate[-3:], (31.0, -2.0, 9.0))
        np.testing.assert_allclose(layer.scale[-3:], (2.0, 0.5, 0.5))
    # a multi-channel image: each channel's layer where the image lies
    (tmp_path / "two").mkdir()
    two, _ = _image(tmp_path / "two", version, tc=(1, 2))
    _translated(two, version)
    layers = viewer.open(str(two), plugin="napari-halo-seg")
    assert len(layers) == 2
    for layer in layers:
        np.testing.assert_allclose(layer.translate[-3:], (31.0, -2.0, 9.0))


def test_info_gives_a_translated_images_origin_in_its_unit(tmp_path, capsys):
    import json
    path, _ = _image(tmp_path, "0.4")
    ms = _translated(path, "0.4")
    for a in ms["axes"]:
        if a["name"] in "zyx":
            a["unit"] = "micrometer"
    zarr.open_group(str(path), mode="a").attrs["multiscales"] = [ms]
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["unit"] == "µm" and info["origin"] == [9.0, -2.0, 31.0] and "origin_mm" not in info
