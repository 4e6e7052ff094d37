"""Labels layers the plugin makes are in memory where they fit, so napari's brush stays fast on them;
a volume too large stays on file and says so."""
import dask.array as da
import numpy as np
import pytest
import zarr

pytest.importorskip("napari")

import napari_halo_seg._paintable as paintable_mod  # noqa: E402
from napari_halo_seg._paintable import paintable  # noqa: E402


def test_paintable_reads_what_fits_and_leaves_what_does_not(monkeypatch, tmp_path):
    lab = np.random.default_rng(0).integers(0, 5, (6, 7, 8)).astype(np.uint16)
    assert paintable(lab)[0] is lab
    z = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=lab.shape, chunks=(2, 7, 8), dtype=lab.dtype)
    z[...] = lab
    for lazy in (z, da.from_zarr(z)):
        data, note = paintable(lazy)
        assert isinstance(data, np.ndarray) and note == ""
        np.testing.assert_array_equal(data, lab)
    monkeypatch.setattr(paintable_mod, "room", lambda: 4 * lab.nbytes - 1)   # a quarter of it is too little
    data, note = paintable(da.from_zarr(z))
    assert hasattr(data, "dask") and "too large to hold in memory" in note


def test_painting_on_a_segment_output_opened_in_napari_does_not_build_a_dask_graph(
        make_napari_viewer, tmp_path, phantom_npy, tiny_weights, monkeypatch):
    from halo_seg.engine.runner import segment
    out = tmp_path / "seg.zarr"
    segment(phantom_npy, out, tiny_weights, mode="whole")
    ref = zarr.open_group(str(out))["labels"][...]
    viewer = make_napari_viewer()
    layer, = viewer.open(str(out), plugin="napari-halo-seg")[:1]
    assert isinstance(layer.data, np.ndarray) and layer.__class__.__name__ == "Labels"
    layer.brush_size = 3
    layer.paint((5, 6, 7), 9)                     # the brush writes into the array, a dab at a time
    assert layer.data[5, 6, 7] == 9 and (layer.data != ref).sum() <= 27
    assert zarr.open_group(str(out))["labels"][5, 6, 7] == ref[5, 6, 7]   # the file is as it was
    monkeypatch.setattr(paintable_mod, "room", lambda: 1)
    with pytest.warns(UserWarning, match="too large to hold in memory"):
        layer2, = viewer.open(str(out), plugin="napari-halo-seg")[:1]
    assert hasattr(layer2.data, "dask")


def _segmented_in_the_widget(make_napari_viewer, qtbot, phantom_npy, weights, out):
    """The automatic widget's result on the phantom: (viewer, widget)."""
    from napari_halo_seg._auto_widget import AutoSegmentWidget
    viewer = make_napari_viewer()
    viewer.open(str(phantom_npy), plugin="napari-halo-seg")
    w = AutoSegmentWidget(viewer)
    w.weights.setCurrentText(str(weights))
    w.mode.setCurrentText("whole")
    w.output.setText(str(out))
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    return viewer, w


def test_the_widgets_results_are_in_memory(make_napari_viewer, qtbot, tmp_path, phantom_npy, tiny_weights,
                                           monkeypatch):
    from napari_halo_seg._objects_widget import ObjectsWidget
    viewer, w = _segmented_in_the_widget(make_napari_viewer, qtbot, phantom_npy, tiny_weights, tmp_path / "out.zarr")
    auto = viewer.layers[-1]
    assert "done" in w.status.text() and isinstance(auto.data, np.ndarray), w.status.text()
    np.testing.assert_array_equal(auto.data, zarr.open_group(str(tmp_path / "out.zarr"))["labels"][...])
    o = ObjectsWidget(viewer)
    o.labels.setCurrentText(auto.name)
    monkeypatch.setattr(paintable_mod, "room", lambda: 1)   # now too large: from the file, and said so
    o.run()
    qtbot.waitUntil(lambda: o.worker is None, timeout=60_000)
    assert hasattr(viewer.layers[-1].data, "dask") and "too large to hold in memory" in o.status.text(), \
        o.status.text()


def test_float_stored_nifti_labels_open_as_labels_and_fractions_as_an_image(make_napari_viewer, tmp_path):
    # FSL and SPM store masks as float32; napari's Labels layer refused them with a TypeError
    import nibabel as nib
    lab = np.zeros((10, 12, 8), np.float32)
    lab[2:5, 3:6, 1:4] = 2
    for name, arr in (("mask", lab), ("prob", lab * 0.3)):
        img = nib.Nifti1Image(arr.transpose(2, 1, 0), np.eye(4))
        img.header.set_intent("label")
        nib.save(img, tmp_path / f"{name}.nii.gz")
    viewer = make_napari_viewer()
    layer, = viewer.open(str(tmp_path / "mask.nii.gz"), plugin="napari-halo-seg")
    assert layer.__class__.__name__ == "Labels" and layer.data.dtype == np.uint8
    np.testing.assert_array_equal(layer.data, lab.astype(np.uint8))
    with pytest.warns(UserWarning, match="not labels .*opened as an image"):
        layer, = viewer.open(str(tmp_path / "prob.nii.gz"), plugin="napari-halo-seg")
    assert layer.__class__.__name__ == "Image"


def test_images_open_with_a_contrast_that_shows_the_tissue(make_napari_viewer, tmp_path):
    import nibabel as nib
    rng = np.random.default_rng(0)
    mr = rng.normal(300, 30, (20, 40, 40)).astype(np.float32)
    mr[10, 20, 20:24] = 5000                                  # a few very bright voxels (a vessel, a marker)
    ct = np.full((20, 40, 40), -1000, np.int16)               # air around a body of soft tissue and bone
    ct[:, 8:32, 8:32] = rng.normal(40, 20, (20, 24, 24)).astype(np.int16)
    ct[:, 18:22, 18:22] = 1200
    for name, arr in (("mr", mr), ("ct", ct)):
        nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0), np.eye(4)), tmp_path / f"{name}.nii.gz")
    viewer = make_napari_viewer()
    layer, = viewer.open(str(tmp_path / "mr.nii.gz"), plugin="napari-halo-seg")
    lo, hi = layer.contrast_limits
    assert 150 < lo < 300 < hi < 450                          # min and max would be about 180 and 5000
    layer, = viewer.open(str(tmp_path / "ct.nii.gz"), plugin="napari-halo-seg")
    assert list(layer.contrast_limits) == [-160.0, 240.0]     # soft tissue, not -1000 to 1200


def test_brush_corrections_of_a_result_are_kept_in_its_output(make_napari_viewer, qtbot, tmp_path, phantom_npy,
                                                              tiny_weights):
    from halo_seg.engine.output import CORRECTED
    from halo_seg.engine.runner import segment
    out = tmp_path / "out.zarr"
    viewer, w = _segmented_in_the_widget(make_napari_viewer, qtbot, phantom_npy, tiny_weights, out)
    assert "corrections with the brush are kept in it" in w.status.text(), w.status.text()
    result = viewer.layers[-1]
    stored = lambda: zarr.open_group(str(out), mode="r")["labels"]   # noqa: E731
    before = stored()[...]
    result.brush_size = 3
    result.paint((5, 6, 7), 2)                    # a stroke: into the output, once napari has drawn it
    qtbot.waitUntil(lambda: stored()[5, 6, 7] == 2, timeout=10_000)
    w._keeper.wait()
    np.testing.assert_array_equal(stored()[...], result.data)
    assert stored().attrs.get(CORRECTED)
    result.undo()                                 # napari's own Undo: the output as it was
    w._keeper.wait()
    np.testing.assert_array_equal(stored()[...], before)
    with pytest.raises(Exception, match="holds corrections made in napari"):   # a new run never replaces them
        segment(phantom_npy, out, tiny_weights, mode="whole")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "holds corrections made in napari" in w.status.text(), w.status.text()
