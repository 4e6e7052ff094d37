"""napari under Xvfb: the plugin's sample data and reader appear in a real viewer."""
import numpy as np
import pytest

pytest.importorskip("napari")


def test_sample_data_open_in_viewer_and_render(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)  # a hidden canvas renders nothing
    viewer.open_sample("napari-halo-seg", "colin27")
    names = [l.name for l in viewer.layers]
    assert "colin27 T1" in names and "AAL subcortical (truth)" in names
    assert tuple(viewer.layers["colin27 T1"].scale) == (2.0, 2.0, 2.0)
    viewer.dims.set_point(0, 90.0)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot[..., :3].std() > 10, "the canvas rendered blank"


def test_reader_in_viewer(make_napari_viewer, tmp_path):
    np.save(tmp_path / "v.npy", np.random.default_rng(0).random((8, 9, 10)).astype(np.float32))
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "v.npy"), plugin="napari-halo-seg")
    assert viewer.layers[0].data.shape == (8, 9, 10)


def _auto_widget(make_napari_viewer, phantom_npy, weights, out):
    from napari_halo_seg._auto_widget import AutoSegmentWidget
    viewer = make_napari_viewer()
    viewer.open(str(phantom_npy), plugin="napari-halo-seg")
    w = AutoSegmentWidget(viewer)
    w.weights.setCurrentText(str(weights))
    w.output.setText(str(out))
    return viewer, w


def test_auto_widget_segments_in_background(make_napari_viewer, qtbot, tmp_path, phantom_npy, tiny_weights):
    import zarr
    from halo_seg.engine.runner import segment
    viewer, w = _auto_widget(make_napari_viewer, phantom_npy, tiny_weights, tmp_path / "out.zarr")
    import torch
    assert w.grid.text() == "auto" and [w.device.itemText(i) for i in range(w.device.count())] == \
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])   # cuda is offered where there is a GPU
    w.grid.setText("2,1,1")
    w.run()
    assert w.worker is not None and not w.run_btn.isEnabled()  # returned at once, work is in the background
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "done" in w.status.text() and "(halo, grid 2x1x1 on cpu)" in w.status.text(), w.status.text()
    lab = viewer.layers[-1]
    assert lab.__class__.__name__ == "Labels"
    segment(phantom_npy, tmp_path / "ref.zarr", tiny_weights, mode="whole")
    ref = zarr.open_group(str(tmp_path / "ref.zarr"))["labels"][...]
    np.testing.assert_array_equal(np.asarray(lab.data), ref)
    # each class's name and size: on the layer (napari shows it under the cursor) and in the status line
    classes = [k for k in np.unique(ref) if k]
    names = {1: "a", 2: "b"}                                 # tiny_weights' classes: bg, a, b
    assert list(lab.features["index"]) == classes and list(lab.features["name"]) == [names[k] for k in classes]
    assert list(lab.features["voxels"]) == [int((ref == k).sum()) for k in classes]
    assert f"{names[classes[0]]}: {int((ref == classes[0]).sum())} voxel units³" in w.status.text()


def test_auto_widget_mirror_views(make_napari_viewer, qtbot, tmp_path, phantom_npy, tiny_weights):
    import zarr
    from halo_seg.engine.runner import segment
    viewer, w = _auto_widget(make_napari_viewer, phantom_npy, tiny_weights, tmp_path / "m.zarr")
    w.mode.setCurrentText("whole")
    w.mirror.setCurrentIndex(w.mirror.findData("zyx"))
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "done" in w.status.text(), w.status.text()
    for name, mirror in (("ref.zarr", "zyx"), ("plain.zarr", "")):
        segment(phantom_npy, tmp_path / name, tiny_weights, mode="whole", mirror=mirror)
    ref, plain = (zarr.open_group(str(tmp_path / n))["labels"][...] for n in ("ref.zarr", "plain.zarr"))
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data), ref)
    assert (ref != plain).any()   # the choice reached the engine


def test_auto_widget_bf16(make_napari_viewer, qtbot, tmp_path, phantom_npy, tiny_weights):
    import zarr
    from halo_seg.engine.runner import segment
    viewer, w = _auto_widget(make_napari_viewer, phantom_npy, tiny_weights, tmp_path / "b.zarr")
    assert w.precision.currentData() == "fp32"   # exact unless asked
    w.mode.setCurrentText("whole")
    w.precision.setCurrentIndex(w.precision.findData("bf16"))
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "(whole on cpu, bf16)" in w.status.text(), w.status.text()
    segment(phantom_npy, tmp_path / "ref.zarr", tiny_weights, mode="whole", precision="bf16",
            save_probabilities=True)
    segment(phantom_npy, tmp_path / "f.zarr", tiny_weights, mode="whole", save_probabilities=True)
    ref = zarr.open_group(str(tmp_path / "ref.zarr"))
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data), ref["labels"][...])
    assert zarr.open_group(str(tmp_path / "b.zarr")).attrs["halo_seg"]["signature"]["precision"] == "bf16"
    # the choice reached the engine: its probabilities are not fp32's
    assert not np.array_equal(ref["probabilities"][...], zarr.open_group(str(tmp_path / "f.zarr"))["probabilities"][...])


def test_auto_widget_steps_through_the_slices_to_review(make_napari_viewer, qtbot, tmp_path, phantom_npy,
                                                       tiny_weights):
    import zarr
    from halo_seg.review import expected_errors, review_order
    viewer, w = _auto_widget(make_napari_viewer, phantom_npy, tiny_weights, tmp_path / "r.zarr")
    assert not w.review_btn.isEnabled()
    w.mode.setCurrentText("whole")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert w.review_btn.isEnabled(), w.status.text()
    unc = viewer.layers[-2]
    assert unc.name.endswith("uncertainty (whole)") and not unc.visible
    u = zarr.open_group(str(tmp_path / "r.zarr"))["uncertainty"][...]
    np.testing.assert_array_equal(np.asarray(unc.data), u)
    per_z = u.sum((1, 2)) / 100.0
    order = review_order(per_z, 10)
    for k in range(2):
        w.next_review_slice()
        assert viewer.dims.current_step[0] == order[k]
        assert f"{k + 1} of the {len(order)} slices" in w.status.text()
    viewer.dims.order = (2, 0, 1)     # slices across x now: its own ranking, from its first slice
    w.next_review_slice()
    assert viewer.dims.current_step[2] == review_order(expected_errors(u)[2])[0]
    assert "across x" in w.status.text()
    viewer.dims.ndisplay = 3
    w.next_review_slice()
    assert "2D view" in w.status.text()


def test_auto_widget_cancel_and_errors_keep_layers(make_napari_viewer, qtbot, tmp_path, phantom_npy, tiny_weights):
    viewer, w = _auto_widget(make_napari_viewer, phantom_npy, tiny_weights, tmp_path / "c.zarr")
    w.mode.setCurrentText("tile")
    w.run()
    w.cancel()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "cancelled" in w.status.text() and len(viewer.layers) == 1
    w.weights.setCurrentText(str(tmp_path / "missing.safetensors"))
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "failed" in w.status.text() and "not found" in w.status.text()
    assert len(viewer.layers) == 1 and w.run_btn.isEnabled()


def test_a_colour_photo_is_refused_not_read_as_a_volume_3_voxels_thick(make_napari_viewer):
    from napari_halo_seg._layers import layer_volume
    viewer = make_napari_viewer()
    photo = viewer.add_image(np.random.default_rng(0).random((40, 50, 3)), rgb=True, name="photo")
    stack = viewer.add_image(np.random.default_rng(0).random((6, 40, 50, 3)), rgb=True, name="stack")
    for layer in (photo, stack):
        with pytest.raises(ValueError, match=f"layer '{layer.name}' .* is an RGB colour image"):
            layer_volume(layer)
    assert layer_volume(viewer.add_image(np.zeros((6, 40, 50)), name="grey")).shape == (6, 40, 50)


def test_auto_widget_on_lazy_zarr(make_napari_viewer, qtbot, tmp_path, phantom_npy, tiny_weights):
    """A zarr opened through the plugin's reader stays lazy and is segmented by the ranks from the file."""
    import zarr
    src = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=np.load(phantom_npy).shape,
                          chunks=(9, 17, 15), dtype="f4")
    src[...] = np.load(phantom_npy)
    viewer, w = _auto_widget(make_napari_viewer, tmp_path / "in.zarr", tiny_weights, tmp_path / "out.zarr")
    assert hasattr(viewer.layers[0].data, "dask")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "done" in w.status.text(), w.status.text()
    ref = tmp_path / "ref.zarr"
    from halo_seg.engine.runner import segment
    segment(phantom_npy, ref, tiny_weights, mode="whole")
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data), zarr.open_group(str(ref))["labels"][...])


def test_objects_widget_labels_and_measures_in_background(make_napari_viewer, qtbot, tmp_path):
    from scipy import ndimage as ndi
    from napari_halo_seg._objects_widget import ObjectsWidget
    viewer = make_napari_viewer()
    viewer.open_sample("napari-halo-seg", "phantom")
    truth = np.asarray(viewer.layers["phantom truth"].data)
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("phantom truth")
    w.image.setCurrentText("phantom")
    w.classes.setText("x")                                 # a typo: reported, nothing added
    w.run()
    assert w.worker is None and "classes" in w.status.text() and len(viewer.layers) == 2
    w.classes.setText("")
    w.min_voxels.setValue(30)
    w.run()
    assert w.worker is not None                            # the work went to a background thread
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    layer = viewer.layers["phantom truth objects"]
    out = np.asarray(layer.data)
    ref, n = ndi.label(truth > 0)
    sizes = np.bincount(ref.ravel())
    kept = [k for k in range(1, n + 1) if sizes[k] >= 30]
    assert f"{len(kept)} objects" in w.status.text(), w.status.text()
    # the same objects as scipy's labelling of the whole array, numbered 1..K
    pairs = set(zip(out[out > 0].tolist(), ref[out > 0].tolist()))
    assert len(pairs) == len(kept) == int(out.max()) and set(ref[out > 0].tolist()) == set(kept)
    feats = layer.features
    assert sorted(feats["voxels"]) == sorted(int(sizes[k]) for k in kept)
    img = np.asarray(viewer.layers["phantom"].data, np.float64)
    np.testing.assert_allclose(feats["mean intensity"], [img[out == k].mean() for k in feats["index"]], atol=1e-3)
    w.save_table(str(tmp_path / "objects.csv"))
    rows = (tmp_path / "objects.csv").read_text().splitlines()
    assert len(rows) == len(kept) + 1 and rows[0].startswith("label,voxels,volume")
    np.testing.assert_array_equal(truth, np.asarray(viewer.layers["phantom truth"].data))   # input untouched
    # split touching objects: the engine's own split of the same components, wired through
    import zarr
    from halo_seg.instances import label_instances, split_touching
    label_instances(truth, tmp_path / "ref.zarr", min_voxels=30, dtype=np.uint32)
    expected = split_touching(tmp_path / "ref.zarr")
    w.split.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert f"{expected} objects" in w.status.text(), w.status.text()
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data), zarr.open_array(str(tmp_path / "ref.zarr"))[...])


def test_objects_widget_cancel_keeps_the_layers(make_napari_viewer, qtbot, monkeypatch):
    from halo_seg import instances
    from napari_halo_seg._objects_widget import ObjectsWidget
    monkeypatch.setattr(instances, "SLAB_VOXELS", 1)          # a slab per slice: many chances to stop
    viewer = make_napari_viewer()
    viewer.open_sample("napari-halo-seg", "phantom")
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText("phantom truth")
    w.run()
    w.cancel()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert w.status.text().startswith("cancelled"), w.status.text()
    assert len(viewer.layers) == 2 and w.run_btn.isEnabled() and not w.save_btn.isEnabled()


def test_objects_widget_measures_labels_as_they_are(make_napari_viewer, qtbot, tmp_path):
    from napari_halo_seg._objects_widget import ObjectsWidget
    viewer = make_napari_viewer()
    viewer.open_sample("napari-halo-seg", "colin27")              # 2 mm, in mm: volumes in mL
    atlas = viewer.layers["AAL subcortical (truth)"]
    lab = np.asarray(atlas.data)
    w = ObjectsWidget(viewer)
    w.labels.setCurrentText(atlas.name)
    w.image.setCurrentText("colin27 T1")
    w.measure()
    assert w.worker is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    ids = [int(k) for k in np.unique(lab) if k]
    assert w.status.text().startswith(f"{len(ids)} labels"), w.status.text()
    feats = atlas.features                                         # on the layer itself, one row per label
    assert list(feats["index"]) == ids
    assert dict(zip(feats["index"], feats["name"]))[77] == "Thalamus_L"   # beside the names the sample gives
    np.testing.assert_allclose(feats["volume (mL)"], [(lab == k).sum() * 8e-3 for k in ids], rtol=1e-3)
    atlas.visible = True                                           # the sample shows it hidden
    inside = np.argwhere(lab == 77)[0]
    viewer.dims.set_point(0, float(atlas.data_to_world(inside)[0]))   # the status reads the slice shown
    assert f"voxels: {int((lab == 77).sum())}" in atlas.get_status(inside)["coordinates"]
    assert len(viewer.layers) == 2 and w.run_btn.isEnabled() and w.measure_btn.isEnabled()
    # a layer with features of its own keeps them (names alone get the sizes beside them, as above)
    atlas.features = {"index": ids, "name": [f"s{k}" for k in ids], "grade": list(range(len(ids)))}
    w.measure()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert list(atlas.features.columns) == ["index", "name", "grade"] and "own features" in w.status.text()
    w.save_table(str(tmp_path / "atlas.csv"))
    rows = (tmp_path / "atlas.csv").read_text().splitlines()
    assert len(rows) == len(ids) + 1 and rows[0].startswith("label,name,") and rows[1].split(",")[1] == f"s{ids[0]}"
    other = viewer.add_image(np.asarray(viewer.layers["colin27 T1"].data), name="other scan", scale=(1, 1, 1),
                             metadata={"spacing_known": True})   # one shape, another voxel size
    w.image.setCurrentText(other.name)
    w.measure()
    assert w.worker is None and "they lie on different grids" in w.status.text()


def test_auto_widget_refuses_a_run_that_will_not_fit(make_napari_viewer, qtbot, tmp_path, phantom_npy,
                                                     tiny_weights, monkeypatch):
    import zarr
    from halo_seg.engine import memory
    monkeypatch.setattr(memory, "host_available", lambda: memory.MIB)
    viewer, w = _auto_widget(make_napari_viewer, phantom_npy, tiny_weights, tmp_path / "m.zarr")
    n_layers = len(viewer.layers)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "not enough memory" in w.status.text() and len(viewer.layers) == n_layers
    assert not (tmp_path / "m.zarr").exists()
    w.memory_check.setChecked(False)   # the user knows better: it runs, on the grid the engine chooses
    w.grid.setText("auto")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "done" in w.status.text(), w.status.text()
    assert zarr.open_group(str(tmp_path / "m.zarr"))["done"].size == 2   # 2 ranks on CPU


def test_auto_widget_runs_the_model_at_its_voxel_size(make_napari_viewer, qtbot, tmp_path):
    """A 1 mm scan and weights trained at 2 mm: the widget's run is resampled as `segment`'s is; a
    layer whose voxel size nobody knows (napari's scale of 1, no file saying so) runs as it is."""
    import nibabel as nib
    import torch
    import zarr
    from halo_seg.engine.runner import segment
    from halo_seg.engine.unet import UNet3D
    from halo_seg.engine.weights import save_unet
    from napari_halo_seg._auto_widget import AutoSegmentWidget
    from napari_halo_seg._layers import layer_spacing
    torch.manual_seed(0)
    weights = save_unet(UNet3D(1, 3, base=4, depth=2), tmp_path / "w.safetensors",
                        training={"spacing": [2.0, 2.0, 2.0], "unit": "mm"})
    x = np.random.default_rng(0).normal(size=(24, 32, 32)).astype(np.float32)
    nib.save(nib.Nifti1Image(x.transpose(2, 1, 0), np.eye(4)), str(tmp_path / "scan.nii.gz"))
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "scan.nii.gz"), plugin="napari-halo-seg")
    viewer.add_image(x, name="bare")
    assert layer_spacing(viewer.layers["scan"]) == (1.0, 1.0, 1.0) and layer_spacing(viewer.layers["bare"]) is None
    w = AutoSegmentWidget(viewer)
    w.weights.setCurrentText(str(weights))
    for name in ("scan", "bare"):
        w.image.setCurrentText(name)
        w.output.setText(str(tmp_path / f"{name}.zarr"))
        w.run()
        qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
        assert "done" in w.status.text(), w.status.text()
        assert ("at the model's voxel size 2 x 2 x 2" in w.status.text()) == (name == "scan"), w.status.text()
    segment(tmp_path / "scan.nii.gz", tmp_path / "ref.zarr", weights, grid=(1, 1, 1))
    ref = zarr.open_group(str(tmp_path / "ref.zarr"))["labels"][...]
    np.testing.assert_array_equal(np.asarray(viewer.layers["scan labels (halo)"].data), ref)


def test_auto_widget_ensemble_of_several_weights(make_napari_viewer, qtbot, tmp_path, phantom_npy, tiny_weights,
                                                 monkeypatch):
    """Several files chosen together (or joined by ' + ') segment as an ensemble."""
    import torch
    import zarr
    from qtpy.QtWidgets import QFileDialog
    from halo_seg.engine.runner import segment
    from halo_seg.engine.unet import UNet3D
    from halo_seg.engine.weights import save_unet
    torch.manual_seed(5)
    other = tmp_path / "other.safetensors"
    save_unet(UNet3D(1, 3, base=4, depth=2), other, classes=["bg", "a", "b"])
    viewer, w = _auto_widget(make_napari_viewer, phantom_npy, tiny_weights, tmp_path / "e.zarr")
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(tiny_weights), str(other)], ""))
    w._browse()
    assert w.weights.choices() == [str(tiny_weights), str(other)]
    w.mode.setCurrentText("whole")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "(whole on cpu, an ensemble of 2 models)" in w.status.text(), w.status.text()
    segment(phantom_npy, tmp_path / "ref.zarr", [tiny_weights, other], mode="whole")
    segment(phantom_npy, tmp_path / "one.zarr", tiny_weights, mode="whole")
    ref, one = (zarr.open_group(str(tmp_path / n))["labels"][...] for n in ("ref.zarr", "one.zarr"))
    np.testing.assert_array_equal(np.asarray(viewer.layers[-1].data), ref)
    assert (ref != one).any()   # both models reached the engine
