"""napari under Xvfb: multi-channel and time-lapse files open as one layer per channel, and the
automatic widget segments the channel a layer shows, and every time point of a time-lapse layer."""
import numpy as np
import pytest
import tifffile
import zarr

pytest.importorskip("napari")


def _reference(source, weights, out, **choice):
    from halo_seg.engine.runner import segment
    segment(source, out, weights, mode="whole", **choice)
    return zarr.open_group(str(out))["labels"][...]


def _run(w, qtbot):
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "done" in w.status.text(), w.status.text()


def _segment_layer(viewer, qtbot, weights, name, out):
    """The automatic widget run on the layer ``name`` (whole mode) into ``out``; the widget."""
    from napari_halo_seg._auto_widget import AutoSegmentWidget
    w = AutoSegmentWidget(viewer)
    w.weights.setCurrentText(str(weights))
    w.mode.setCurrentText("whole")
    w.image.setCurrentText(name)
    w.output.setText(str(out))
    _run(w, qtbot)
    return w


def _cells(tmp_path, phantom_npy, scale) -> np.ndarray:
    """cells.ome.zarr: channels "noise" and "nuclei" (the phantom, returned) of one time point."""
    img = np.load(phantom_npy)
    noise = np.random.default_rng(0).normal(size=img.shape).astype(img.dtype)
    g = zarr.open_group(str(tmp_path / "cells.ome.zarr"), mode="w", zarr_format=2)
    g.create_array("0", shape=(1, 2) + img.shape, chunks=(1, 1) + img.shape, dtype=img.dtype)[...] = \
        np.stack([noise, img])[None]
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": a} for a in "tczyx"],
                               "datasets": [{"path": "0", "coordinateTransformations": [
                                   {"type": "scale", "scale": list(scale)}]}]}]
    g.attrs["omero"] = {"channels": [{"label": "noise"}, {"label": "nuclei"}]}
    return img


def test_channels_open_as_layers_and_the_shown_channel_is_segmented(make_napari_viewer, qtbot, tmp_path,
                                                                     phantom_npy, tiny_weights):
    img = _cells(tmp_path, phantom_npy, [1, 1, 2.0, 0.5, 0.5])
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "cells.ome.zarr"), plugin="napari-halo-seg")
    assert [lay.name for lay in viewer.layers] == ["cells noise", "cells nuclei"]
    nuclei = viewer.layers["cells nuclei"]
    assert nuclei.data.shape == img.shape and tuple(nuclei.scale) == (2.0, 0.5, 0.5)
    assert nuclei.colormap.name == "magenta" and nuclei.blending == "additive"
    np.testing.assert_array_equal(np.asarray(nuclei.data), img)
    _segment_layer(viewer, qtbot, tiny_weights, "cells nuclei", tmp_path / "out.zarr")
    sig = zarr.open_group(str(tmp_path / "out.zarr")).attrs["halo_seg"]["signature"]
    assert sig["input"].endswith("cells.ome.zarr") and sig["channel"] == 1   # read from the file, channel 1
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data),
                                  _reference(phantom_npy, tiny_weights, tmp_path / "ref.zarr"))


def test_a_network_of_several_channels_takes_every_channel_and_names_the_result_after_the_file(
        make_napari_viewer, qtbot, tmp_path, phantom_npy):
    """The layer shows one channel; a two-channel network segments both (the engine's result on the
    file), and the result is named after the file, not the channel shown ("cells nuclei labels")."""
    import torch
    from halo_seg.engine.unet import UNet3D
    from halo_seg.engine.weights import save_unet
    _cells(tmp_path, phantom_npy, [1] * 5)
    torch.manual_seed(0)
    two = save_unet(UNet3D(2, 3, base=4, depth=2), tmp_path / "two.safetensors", channels=["noise", "nuclei"])
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "cells.ome.zarr"), plugin="napari-halo-seg")
    w = _segment_layer(viewer, qtbot, two, "cells nuclei", tmp_path / "out.zarr")
    assert "from 2 channels" in w.status.text(), w.status.text()
    assert viewer.layers[-1].name == "cells labels (whole)" and viewer.layers[-2].name == "cells uncertainty (whole)"
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data),
                                  _reference(tmp_path / "cells.ome.zarr", two, tmp_path / "ref.zarr", channel="all"))


def _movie(tmp_path, phantom_npy):
    """movie.tif, an ImageJ hyperstack (T, Z, C, Y, X) of 3 time points: channel 0 noise, channel 1
    the phantom brightened by t; returned as (T, C, Z, Y, X)."""
    img = np.load(phantom_npy)
    rng = np.random.default_rng(1)
    movie = np.stack([[rng.normal(size=img.shape), img + t] for t in range(3)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "movie.tif", movie.transpose(0, 2, 1, 3, 4), imagej=True,
                     metadata={"axes": "TZCYX"})
    return movie


def test_every_time_point_of_a_time_lapse_layer_is_segmented(make_napari_viewer, qtbot, tmp_path,
                                                             phantom_npy, tiny_weights):
    """A (T, Z, Y, X) layer: each time point segmented by the engine from the file (the layer's
    channel), equal to segmenting that time point alone; one (T, Z, Y, X) Labels layer over it."""
    movie = _movie(tmp_path, phantom_npy)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "movie.tif"), plugin="napari-halo-seg")
    assert [lay.name for lay in viewer.layers] == ["movie c0", "movie c1"]
    layer = viewer.layers["movie c1"]
    assert layer.data.shape == movie[:, 1].shape
    w = _segment_layer(viewer, qtbot, tiny_weights, "movie c1", tmp_path / "out.zarr")
    assert "3 time points" in w.status.text(), w.status.text()
    labels = viewer.layers[-1]
    assert labels.name == "movie c1 labels (time points)" and labels.data.shape == movie[:, 1].shape
    assert tuple(labels.scale) == tuple(layer.scale)
    refs = [_reference(tmp_path / "movie.tif", tiny_weights, tmp_path / f"ref{t}.zarr", channel=1, timepoint=t)
            for t in range(3)]
    for t in range(3):
        np.testing.assert_array_equal(np.asarray(labels.data[t]), refs[t])
    # each class's smallest and largest size over the time points (the file records no voxel size: voxels)
    k = int(max(np.unique(refs[0])))
    lo, hi = min(int((r == k).sum()) for r in refs), max(int((r == k).sum()) for r in refs)
    span = f"{lo} voxel units³" + (f" to {hi} voxel units³" if hi > lo else "")
    assert f"{'ab'[k - 1]}: {span};" in w.status.text(), w.status.text()
    assert zarr.open_group(str(tmp_path / "out.zarr/t0002")).attrs["halo_seg"]["signature"]["channel"] == 1
    # a brush stroke on time point 2 goes into that time point's output only, stamped as corrected
    from halo_seg.engine.output import CORRECTED
    stored = lambda t: zarr.open_group(str(tmp_path / f"out.zarr/t{t:04d}"), mode="r")["labels"]   # noqa: E731
    labels.brush_size = 1
    new = 2 if refs[2][2, 3, 4] != 2 else 1
    labels.paint((2, 2, 3, 4), new)
    qtbot.waitUntil(lambda: stored(2)[2, 3, 4] == new, timeout=10_000)
    w._keeper.wait()
    np.testing.assert_array_equal(stored(2)[...], labels.data[2])
    assert stored(2).attrs.get(CORRECTED) and not stored(1).attrs.get(CORRECTED)
    np.testing.assert_array_equal(stored(1)[...], refs[1])
    # saved, the layer is a file per time point, each on its voxel grid; a DICOM SEG (one scan's) is refused
    from halo_seg.io import open_volume
    from napari_halo_seg._writer import WriteError, write_labels
    meta = {"scale": tuple(labels.scale), "metadata": labels.metadata}
    written = write_labels(str(tmp_path / "x.nii.gz"), labels.data, meta)
    assert [p.split("/")[-1] for p in written] == [f"x_t{t:04d}.nii.gz" for t in range(3)]
    for t, p in enumerate(written):
        np.testing.assert_array_equal(np.asarray(open_volume(p).data), labels.data[t])
    with pytest.raises(WriteError, match=r"3 time points.*save it as .nii.gz"):
        write_labels(str(tmp_path / "x.dcm"), labels.data, meta)
    # the one shown: time point 1 only, the others background
    viewer.dims.set_current_step(0, 1)
    w.timepoints.setCurrentText("the one shown")
    w.output.setText(str(tmp_path / "one.zarr"))
    _run(w, qtbot)
    assert "time point 1 in" in w.status.text(), w.status.text()
    one = np.asarray(viewer.layers[-1].data)
    np.testing.assert_array_equal(one[1], np.asarray(labels.data[1]))
    assert not one[0].any() and not one[2].any()
    # painted on a time point that was not segmented: kept in the layer, and said not to be in the output
    viewer.layers[-1].paint((0, 2, 3, 4), 1)
    qtbot.waitUntil(lambda: "time point 0 was not segmented" in (str(w._keeper.error) + w.status.text()),
                    timeout=10_000)
    # a range typed wrong: said, nothing started, no layer added
    n = len(viewer.layers)
    w.timepoints.setCurrentText("2-5")
    w.run()
    assert w.worker is None and "out of range" in w.status.text() and len(viewer.layers) == n


def test_a_time_series_split_into_volumes_segments_one_time_point(make_napari_viewer, qtbot, tmp_path,
                                                                   phantom_npy, tiny_weights):
    from napari.layers._layer_actions import _split_stack
    movie = _movie(tmp_path, phantom_npy)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "movie.tif"), plugin="napari-halo-seg")
    layer = viewer.layers["movie c1"]
    n_layers = len(viewer.layers)
    viewer.layers.selection.active = layer
    _split_stack(viewer.layers)
    assert len(viewer.layers) == n_layers + 2
    third = [lay for lay in viewer.layers if lay.ndim == 3 and lay.data.shape == movie.shape[2:]][2]
    np.testing.assert_array_equal(np.asarray(third.data), movie[2, 1])
    _segment_layer(viewer, qtbot, tiny_weights, third.name, tmp_path / "out.zarr")
    np.testing.assert_array_equal(
        np.asarray(viewer.layers[-1].data),
        _reference(tmp_path / "movie.tif", tiny_weights, tmp_path / "ref.zarr", channel=1, timepoint=2))


@pytest.mark.parametrize("channels", [1, 2])
def test_an_ome_zarr_pyramid_opens_multiscale_and_is_segmented_at_full_resolution(
        make_napari_viewer, qtbot, tmp_path, tiny_weights, channels):
    """napari draws the level the zoom needs (3D rendering of a huge volume reads a coarse level);
    the widgets and the engine work on the full-resolution level."""
    pytest.importorskip("ome_zarr")
    from ome_zarr.writer import write_image
    from halo_seg.samples import make_phantom
    img = make_phantom((16, 32, 40), n_objects=3, seed=2).image.astype(np.float32)
    stack = np.stack([img] * channels)[None]
    stack[0, -1] *= 2.0
    grp = zarr.open_group(str(tmp_path / "p.ome.zarr"), mode="w", zarr_format=2)
    write_image(stack, grp, axes="tczyx", scale_factors=[{"z": 1, "y": 2, "x": 2}, {"z": 1, "y": 4, "x": 4}],
                scale={"t": 1.0, "c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5})
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "p.ome.zarr"), plugin="napari-halo-seg")
    assert len(viewer.layers) == channels
    layer = viewer.layers[-1]
    assert layer.multiscale and [tuple(d.shape) for d in layer.data] == [(16, 32, 40), (16, 16, 20), (16, 8, 10)]
    assert tuple(layer.scale) == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(layer.data[0]), stack[0, -1])
    _segment_layer(viewer, qtbot, tiny_weights, layer.name, tmp_path / "out.zarr")
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data),
                                  _reference(stack[0, -1], tiny_weights, tmp_path / "ref.zarr"))


def test_time_lapse_volumes_are_in_the_unit_cubed_and_said_in_millilitres(tmp_path, phantom_npy, tiny_weights):
    """The widget's sizes over time: each time point's class volume in mm³ (voxels x voxel volume),
    written in mL as the 3D result's status line writes them."""
    from napari_halo_seg._timelapse import segment_timelapse_or_error, volumes_text
    movie = _movie(tmp_path, phantom_npy)
    (res, volumes, _, names), exc = segment_timelapse_or_error(
        str(tmp_path / "movie.tif"), tmp_path / "out.zarr", [0, 2], unit="mm", measure_spacing=(2.0, 1.0, 1.5),
        weights=tiny_weights, mode="whole", channel=1)
    assert exc is None and sorted(volumes) == [0, 2]
    for t in (0, 2):
        ref = _reference(tmp_path / "movie.tif", tiny_weights, tmp_path / f"r{t}.zarr", channel=1, timepoint=t)
        assert volumes[t] == {int(k): float((ref == k).sum()) * 3.0 for k in np.unique(ref) if k}
    assert movie.shape[0] == 3
    assert volumes_text({0: {1: 1000.0}, 2: {1: 2500.0, 2: 10.0}}, {1: "brain"}, "mm") == \
        "brain: 1 mL to 2.5 mL; class 2: 0 mL to 0.01 mL"


def test_a_time_lapse_run_cancelled_adds_nothing_and_keeps_the_layers(make_napari_viewer, qtbot, tmp_path,
                                                                      phantom_npy, tiny_weights):
    from napari_halo_seg._auto_widget import AutoSegmentWidget
    _movie(tmp_path, phantom_npy)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "movie.tif"), plugin="napari-halo-seg")
    w = AutoSegmentWidget(viewer)
    w.weights.setCurrentText(str(tiny_weights))
    w.image.setCurrentText("movie c1")
    w.grid.setText("2,1,1")                       # halo: the ranks are stopped
    w.output.setText(str(tmp_path / "out.zarr"))
    w.run()
    w.cancel()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "cancelled" in w.status.text(), w.status.text()
    assert [lay.name for lay in viewer.layers] == ["movie c0", "movie c1"] and w.run_btn.isEnabled()


def test_objects_of_a_time_lapse_are_counted_at_each_time_point(make_napari_viewer, qtbot, tmp_path):
    """The Objects widget on (T, Z, Y, X) labels: each time point's connected objects (scipy's own
    count per time point), numbered on across time points, a table row per object with its time
    point; "Measure labels as they are" a row per label and time point."""
    from scipy import ndimage
    from halo_seg.measure import measure_labels
    from napari_halo_seg._objects_widget import ObjectsWidget
    rng = np.random.default_rng(0)
    labels = np.zeros((3, 12, 20, 20), np.uint8)
    for t in range(3):                                  # t + 2 separate cubes at time point t
        for k in range(t + 2):
            z, y, x = rng.integers(0, 8), 4 * k, rng.integers(0, 16)
            labels[t, z:z + 3, y:y + 3, x:x + 3] = 1 + k % 2
    image = rng.random(labels.shape).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="movie", scale=(1, 2.0, 1.0, 1.0))
    viewer.add_labels(labels, name="movie labels", scale=(1, 2.0, 1.0, 1.0))
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("movie labels")
    w.image.setCurrentText("movie")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    expect = [ndimage.label(labels[t] > 0)[1] for t in range(3)]
    assert expect == [2, 3, 4] and f"{sum(expect)} objects: 2, 3, 4 per time point" in w.status.text(), \
        w.status.text()
    objects = viewer.layers[-1]
    assert objects.data.shape == labels.shape and tuple(objects.scale) == (1, 2.0, 1.0, 1.0)
    for t in range(3):   # ids of one time point are not those of another, and cover its objects exactly
        ids = set(np.unique(objects.data[t]).tolist()) - {0}
        assert len(ids) == expect[t] and ((objects.data[t] > 0) == (labels[t] > 0)).all()
    assert list(w.table["timepoint"]) == [0] * 2 + [1] * 3 + [2] * 4
    assert list(w.table["label"]) == list(range(1, 10)) and list(w.table["voxels"]) == [27] * 9
    assert list(objects.features["timepoint"]) == list(w.table["timepoint"])
    np.testing.assert_allclose(w.table["volume"], 27 * 2.0)
    # as they are: each label value at each time point, the image at that time point
    w.measure()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    for t in range(3):
        ref = measure_labels(labels[t], (2.0, 1.0, 1.0), image=image[t])
        mine = w.table["timepoint"] == t
        assert list(w.table["label"][mine]) == list(ref["label"])
        np.testing.assert_allclose(w.table["mean"][mine], ref["mean"], rtol=1e-5)
    # an image that is not the labels' time-lapse is refused, nothing added
    n = len(viewer.layers)
    viewer.add_image(image[0], name="one volume")
    w.image.setCurrentText("one volume")
    w.run()
    assert w.worker is None and "is not that time-lapse" in w.status.text() and len(viewer.layers) == n + 1


def test_objects_of_a_time_lapse_too_large_for_memory_are_refused_before_any_work(make_napari_viewer, qtbot,
                                                                                monkeypatch):
    """The objects layer holds every time point: refused, with the command that does one at a
    time, when all of them would not fit (each alone might)."""
    from napari_halo_seg import _paintable
    from napari_halo_seg._objects_widget import ObjectsWidget
    labels = np.zeros((4, 6, 8, 8), np.uint8)
    labels[:, 2:4, 2:4, 2:4] = 1
    monkeypatch.setattr(_paintable, "room", lambda: 4 * labels[0].size * 4 * 2)   # one time point's ids fit
    viewer = make_napari_viewer()
    viewer.add_labels(labels, name="movie labels")
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("movie labels")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "do not fit in memory" in w.status.text() and "halo-seg instances" in w.status.text(), w.status.text()
    assert len(viewer.layers) == 1
