"""A segmentation saved cropped to its objects (3D Slicer's way) sits on its scan in napari, and the
widgets that pair two layers put it on the scan's grid: checked against ITK's own crop, whose
origin ITK computes, and against the labels pasted into the scan's grid by hand."""
import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from halo_seg.evaluate import compare_labels  # noqa: E402
from halo_seg.io import open_volume  # noqa: E402
from halo_seg.io.geometry import KEY, axes_position, placed_on, voxel_offset  # noqa: E402

SHAPE = (9, 11, 13)      # (Z, Y, X)
INDEX = (3, 2, 4)        # the crop's first voxel in the scan, ITK's (x, y, z)
SIZE = (6, 7, 4)         # the crop's size, ITK's (x, y, z)


def _scan():
    arr = np.random.default_rng(0).integers(-1000, 1000, SHAPE).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    t = np.radians(20)
    img.SetDirection([np.cos(t), -np.sin(t), 0, np.sin(t), np.cos(t), 0, 0, 0, 1.0])
    img.SetSpacing([0.7, 0.8, 2.5])
    img.SetOrigin([-40.0, 12.5, 30.0])
    return arr, img


@pytest.fixture
def cropped(tmp_path):
    """The scan as NIfTI, its labels over the whole grid, and those labels cropped by ITK to their
    objects' box as a .seg.nrrd (Slicer's)."""
    arr, img = _scan()
    full = np.zeros(SHAPE, np.uint8)
    z, y, x = INDEX[::-1]
    d, h, w = SIZE[::-1]
    full[z:z + d, y:y + h, x:x + w] = np.random.default_rng(1).integers(0, 3, (d, h, w))
    lab = sitk.GetImageFromArray(full)
    lab.CopyInformation(img)
    crop = sitk.RegionOfInterest(lab, list(SIZE), list(INDEX))
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(crop, str(tmp_path / "organs.seg.nrrd"), useCompression=True)
    return arr, full, img, crop, tmp_path


def test_a_crops_offset_and_position_are_itks(cropped):
    arr, full, img, crop, tmp = cropped
    scan, seg = open_volume(tmp / "ct.nii.gz"), open_volume(tmp / "organs.seg.nrrd")
    assert seg.shape == SIZE[::-1]
    off = voxel_offset(seg.meta[KEY], scan.meta[KEY])
    assert off == INDEX[::-1]
    np.testing.assert_array_equal(placed_on(np.asarray(seg.data), off, scan.shape), full)
    assert voxel_offset(scan.meta[KEY], seg.meta[KEY]) == tuple(-i for i in INDEX[::-1])
    # napari draws voxels axis-aligned: the two positions are as far apart as ITK puts the voxels 0
    a, b = np.array(axes_position(seg.meta[KEY])), np.array(axes_position(scan.meta[KEY]))
    np.testing.assert_allclose(a - b, np.array(INDEX[::-1]) * np.array([2.5, 0.8, 0.7]), atol=1e-4)
    apart = np.subtract(crop.TransformIndexToPhysicalPoint((0, 0, 0)), img.TransformIndexToPhysicalPoint((0, 0, 0)))
    np.testing.assert_allclose(np.linalg.norm(a - b), np.linalg.norm(apart), rtol=1e-6)


@pytest.mark.parametrize("change", ["half a voxel", "voxel size", "half a percent", "flipped", "unplaced"])
def test_grids_that_share_no_voxels_have_no_offset(cropped, change):
    arr, full, img, crop, tmp = cropped
    if change == "half a voxel":
        crop.SetOrigin(crop.TransformContinuousIndexToPhysicalPoint((0.5, 0, 0)))
    elif change == "voxel size":
        crop.SetSpacing([0.7, 0.8, 2.0])
    elif change == "half a percent":   # within 1 % a voxel, but 0.025 voxel off at the crop's far end
        crop.SetSpacing([0.7 * 1.005, 0.8, 2.5])
    elif change == "flipped":
        crop = sitk.Flip(crop, [True, False, False])
    sitk.WriteImage(crop, str(tmp / "moved.nrrd"))
    seg, scan = open_volume(tmp / "moved.nrrd"), open_volume(tmp / "ct.nii.gz")
    g = seg.meta[KEY]
    if change == "unplaced":
        g = {**g, "sform_code": 0, "qform_code": 0}
    assert voxel_offset(g, scan.meta[KEY]) is None


@pytest.mark.parametrize("offset", [(0, 0, 0), (2, -3, 5), (-4, 1, -2), (9, 0, 0), (0, -7, 0), (-20, 30, 1)])
def test_placed_on_matches_pasting_by_hand(offset):
    import dask.array as da
    src = np.random.default_rng(2).integers(1, 9, (4, 7, 6)).astype(np.uint8)
    shape = (9, 8, 10)
    want = np.zeros(shape, np.uint8)
    for (z, y, x), v in np.ndenumerate(src):
        p = (z + offset[0], y + offset[1], x + offset[2])
        if all(0 <= c < n for c, n in zip(p, shape)):
            want[p] = v
    np.testing.assert_array_equal(placed_on(src, offset, shape), want)
    lazy = placed_on(da.from_array(src, chunks=3), offset, shape)
    assert hasattr(lazy, "dask")
    np.testing.assert_array_equal(lazy.compute(), want)


def test_napari_puts_the_crop_on_its_scan_and_the_widgets_on_its_grid(make_napari_viewer, qtbot, cropped):
    from napari_halo_seg._compare_widget import CompareWidget
    from napari_halo_seg._objects_widget import ObjectsWidget
    from napari_halo_seg._train_widget import TrainWidget
    arr, full, img, crop, tmp = cropped
    viewer = make_napari_viewer()
    ct, = viewer.open(str(tmp / "ct.nii.gz"), plugin="napari-halo-seg")
    seg, = viewer.open(str(tmp / "organs.seg.nrrd"), plugin="napari-halo-seg")
    assert seg.__class__.__name__ == "Labels" and seg.data.shape == SIZE[::-1]
    for v in [(0, 0, 0), (3, 6, 5), (1, 4, 2)]:   # each voxel of the crop drawn over its scan voxel
        np.testing.assert_allclose(seg.data_to_world(v), ct.data_to_world(np.add(v, INDEX[::-1])), atol=1e-4)
    # compared with labels on the scan's grid, either way round: on the scan's grid, so that the
    # shifted labels' voxels beyond the crop count against them
    shifted = np.roll(full, 1, axis=2)
    shifted[0:2, 0:3, 0:3] = 1
    viewer.add_labels(shifted, name="shifted", scale=ct.scale, translate=ct.translate,
                      metadata={KEY: ct.metadata[KEY]})
    w = CompareWidget(viewer)
    for a, b, pred, truth in [("organs", "shifted", full, shifted), ("shifted", "organs", shifted, full)]:
        w.labels.setCurrentText(a)
        w.reference.setCurrentText(b)
        w.run()
        qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
        ref = compare_labels(pred, truth, tuple(ct.scale))
        assert "mean Dice" in w.status.text(), w.status.text()
        np.testing.assert_allclose(w.table["dice"], ref["dice"])
        assert 0 < min(w.table["dice"]) < 1
        w.show_worst_slice(0)   # a slice of the scan's grid, shown through the scan's layer
        assert "slice" in w.status.text() and w._result[0] is viewer.layers["shifted"]
    # training: the crop's labels on the image's grid, 0 (background) beyond the crop
    t = TrainWidget(viewer)
    t.image.setCurrentText("ct")
    t.labels.setCurrentText("organs")
    t.output.setText(str(tmp / "w.safetensors"))
    _, image, labels, _ = t._choices()
    assert image.shape == SHAPE
    np.testing.assert_array_equal(np.asarray(labels), full)
    # measuring the crop's objects: the image's voxels under them
    o = ObjectsWidget(viewer)
    o.labels.setCurrentText("organs")
    o.image.setCurrentText("ct")
    _, data, under = o._chosen()
    z, y, x = INDEX[::-1]
    np.testing.assert_array_equal(np.asarray(under), arr[z:z + SIZE[2], y:y + SIZE[1], x:x + SIZE[0]])
    # a crop that records no place is refused, naming why
    viewer.add_labels(np.asarray(seg.data), name="unplaced")
    t.labels.setCurrentText("unplaced")
    with pytest.raises(ValueError, match="nothing records where 'unplaced' lies in the world"):
        t._choices()


def _csv(path) -> dict:
    import csv
    rows = list(csv.DictReader(open(path)))
    return {k: [r[k] for r in rows] for k in rows[0]}


def test_the_command_line_puts_a_crop_on_its_scans_grid(cropped, capsys):
    from halo_seg.cli import main
    arr, full, img, crop, tmp = cropped
    # a prediction on the scan's grid with a false positive beyond the reference's crop: counted
    pred = full.copy()
    pred[0:2, 0:3, 0:3] = 1
    p = sitk.GetImageFromArray(pred)
    p.CopyInformation(img)
    sitk.WriteImage(p, str(tmp / "pred.nrrd"))
    want = compare_labels(pred, full, (2.5, 0.8, 0.7))
    for a, b in (("pred.nrrd", "organs.seg.nrrd"), ("organs.seg.nrrd", "pred.nrrd")):
        assert main(["evaluate", str(tmp / a), str(tmp / b), "--csv", str(tmp / "e.csv")]) == 0
        got = _csv(tmp / "e.csv")
        ref = want if a == "pred.nrrd" else compare_labels(full, pred, (2.5, 0.8, 0.7))
        np.testing.assert_allclose([float(d) for d in got["dice"]], ref["dice"], rtol=1e-6)
    assert float(want["dice"][0]) < 1
    # the scan's intensities under the crop's objects
    assert main(["measure", str(tmp / "organs.seg.nrrd"), "--image", str(tmp / "ct.nii.gz"),
                 "--csv", str(tmp / "m.csv")]) == 0
    got = _csv(tmp / "m.csv")
    ids = [int(k) for k in np.unique(full) if k]
    assert [int(k) for k in got["label"]] == ids
    np.testing.assert_allclose([float(m) for m in got["mean"]], [arr[full == k].mean() for k in ids], rtol=1e-4)
    # training on the crop: its labels on the scan's grid
    assert main(["train", "--image", str(tmp / "ct.nii.gz"), "--labels", str(tmp / "organs.seg.nrrd"),
                 "--out", str(tmp / "w.safetensors"), "--iterations", "1", "--patch", "8", "8", "8", "--depth", "1",
                 "--quiet"]) == 0
    assert (tmp / "w.safetensors").exists()
    # a crop that reaches beyond the scan, or another scan's grid: refused, naming both
    sitk.WriteImage(sitk.RegionOfInterest(img, [5, 5, 5], [0, 0, 0]), str(tmp / "small.nii.gz"))
    assert main(["measure", str(tmp / "organs.seg.nrrd"), "--image", str(tmp / "small.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "organs.seg.nrrd reaches beyond" in err and "small.nii.gz" in err and "resample" in err
    moved = sitk.RegionOfInterest(img, [5, 5, 5], [1, 1, 1])
    moved.SetOrigin(moved.TransformContinuousIndexToPhysicalPoint((0.5, 0, 0)))
    sitk.WriteImage(moved, str(tmp / "moved.nii.gz"))
    assert main(["evaluate", str(tmp / "moved.nii.gz"), str(tmp / "pred.nrrd")]) == 2
    assert "place them on grids of different voxels" in capsys.readouterr().err


def test_the_interactive_widget_works_on_a_placed_image(make_napari_viewer, qtbot):
    """Slices, boxes and the objects layer through a layer's translation (a scan placed by its file),
    not the world's coordinates taken for voxels."""
    from halo_seg.interactive.model_io import default_memnet_installed
    from halo_seg.interactive.roi import mask_bbox
    from halo_seg.metrics import dice
    from halo_seg.samples import make_phantom
    from napari_halo_seg._interactive_widget import InteractiveWidget
    if not default_memnet_installed():
        pytest.skip("no shipped interactive weights")
    s = make_phantom()
    viewer = make_napari_viewer()
    layer = viewer.add_image(s.image, name="placed", scale=(2.0, 1.0, 1.0), translate=(-37.0, 12.25, 40.5))
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("placed")
    w.device.setCurrentText("cpu")
    for z in (0, 7, s.image.shape[0] - 1):
        w.goto_slice(z)
        assert w._z() == z
    truth = s.labels == np.bincount(s.labels.ravel())[1:].argmax() + 1
    z = int(truth.sum((1, 2)).argmax())
    w.goto_slice(z)
    w.ensure_prompt_layers()
    box = viewer.layers["box"]
    assert tuple(box.translate[-3:]) == tuple(layer.translate) and tuple(viewer.layers["objects"].translate) == \
        tuple(layer.translate)
    y0, x0, y1, x1 = mask_bbox(truth[z])
    box.add_rectangles(np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], float))
    w.segment_slice()
    assert w.worker is not None, w.status.text()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    preview = np.asarray(viewer.layers["current object"].data)
    assert dice(preview[z] > 0, truth[z]) >= 0.8, w.status.text()


def test_edit_label_corrects_a_crop_on_the_images_grid(make_napari_viewer, qtbot):
    """Edit label on labels saved cropped to their objects: the layer is put on the image's grid (its
    labels unchanged, background around them), the object taken from the right voxels, and a
    correction committed there; a crop reaching beyond the image is refused, the layer untouched."""
    from halo_seg.interactive.model_io import default_memnet_installed
    from halo_seg.io.geometry import from_affine
    from halo_seg.samples import make_phantom
    from napari_halo_seg._interactive_widget import InteractiveWidget
    if not default_memnet_installed():
        pytest.skip("no shipped interactive weights")
    s = make_phantom()
    first = int(np.bincount(s.labels.ravel())[1:].argmax()) + 1
    zs, ys, xs = (np.flatnonzero(s.labels.any(axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    lo, hi = np.array([zs[0], ys[0], xs[0]]), np.array([zs[-1], ys[-1], xs[-1]]) + 1
    crop = s.labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.uint8)

    def affine(origin_zyx):
        a = np.diag([0.8, 0.8, 1.5, 1.0])   # (x, y, z) voxel sizes
        a[:3, 3] = np.array(origin_zyx, float)[::-1] * [0.8, 0.8, 1.5] + [-20.0, 7.0, 3.0]
        return a
    viewer = make_napari_viewer()
    g_image = from_affine(affine((0, 0, 0)), s.image.shape)
    image = viewer.add_image(s.image, name="scan", scale=(1.5, 0.8, 0.8), translate=(3.0, 7.0, -20.0),
                             metadata={KEY: g_image, "spacing_known": True})
    layer = viewer.add_labels(crop.copy(), name="organs", scale=(1.5, 0.8, 0.8),
                              translate=tuple(np.add((3.0, 7.0, -20.0), lo * [1.5, 0.8, 0.8])),
                              metadata={KEY: from_affine(affine(lo), crop.shape), "spacing_known": True})
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("scan")
    w.device.setCurrentText("cpu")
    viewer.layers.selection.active = layer
    layer.selected_label = first
    w.edit_label()
    assert w.worker is not None, w.status.text()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert "now on the image's grid" in w.status.text(), w.status.text()
    full = np.zeros(s.labels.shape, np.uint8)
    full[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = crop
    np.testing.assert_array_equal(layer.data, full)
    assert tuple(layer.translate) == tuple(image.translate) and layer.metadata[KEY] == g_image
    np.testing.assert_array_equal(w.seg.prior, full == first)
    w.commit()   # unchanged object: written back where it was taken from
    np.testing.assert_array_equal(layer.data, full)
    # a crop that reaches beyond the image: refused, the layer as it was
    beyond = viewer.add_labels(crop.copy(), name="beyond", metadata={KEY: from_affine(affine(lo + [0, 0, 60]),
                                                                                        crop.shape)})
    viewer.layers.selection.active = beyond
    beyond.selected_label = first
    w.edit_label()
    assert w.worker is None and "'beyond' reaches beyond 'scan'" in w.status.text(), w.status.text()
    np.testing.assert_array_equal(beyond.data, crop)
