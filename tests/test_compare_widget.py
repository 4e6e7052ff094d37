import numpy as np

from halo_seg.evaluate import compare_labels


def _viewer(make_napari_viewer):
    from napari_halo_seg._compare_widget import CompareWidget
    truth = np.zeros((20, 30, 30), np.uint8)
    truth[4:14, 5:20, 5:20] = 1
    truth[6:12, 22:28, 3:9] = 2
    pred = truth.copy()
    pred[9, 5:20, 5:12] = 0          # label 1 loses most on slice 9
    pred[2:4, 22:28, 3:9] = 2         # label 2 leaks onto slices 2 and 3
    viewer = make_napari_viewer()
    viewer.add_labels(truth, name="truth", scale=(2.0, 1.0, 1.0), metadata={"unit": "mm"})
    viewer.add_labels(pred, name="model", scale=(2.0, 1.0, 1.0), metadata={"unit": "mm"})
    w = CompareWidget(viewer)
    w.labels.setCurrentText("model")
    w.reference.setCurrentText("truth")
    return viewer, w, pred, truth


def test_compare_widget_reports_the_engines_table_and_finds_where_labels_disagree(make_napari_viewer, qtbot,
                                                                                   tmp_path):
    viewer, w, pred, truth = _viewer(make_napari_viewer)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    ref = compare_labels(pred, truth, (2.0, 1.0, 1.0))
    assert list(w.table["label"]) == [1, 2]
    np.testing.assert_allclose(w.table["dice"], ref["dice"])
    np.testing.assert_allclose(w.table["hd95"], ref["hd95"])
    assert w.grid.rowCount() == 2 and w.grid.item(0, 1).text() == f"{ref['dice'][0]:.3f}"
    assert w.grid.horizontalHeaderItem(4).text() == "HD95 mm"
    assert f"mean Dice {ref['dice'].mean():.3f}" in w.status.text()
    w.show_worst_slice(0)
    assert viewer.dims.current_step[0] == 9 and "label 1: slice 9 across z" in w.status.text()
    w.show_worst_slice(1)
    assert viewer.dims.current_step[0] in (2, 3)
    viewer.dims.order = (1, 0, 2)    # slices across y: label 1's loss spans rows 5..19 of slice 9 equally
    w.show_worst_slice(0)
    assert viewer.dims.current_step[1] == 5 and "across y" in w.status.text()   # the first of the equal rows
    w.save_table(str(tmp_path / "c.csv"))
    assert (tmp_path / "c.csv").read_text().splitlines()[0].startswith("label,dice,jaccard")


def test_compare_widget_refusals_keep_the_layers(make_napari_viewer, qtbot):
    viewer, w, pred, truth = _viewer(make_napari_viewer)
    w.reference.setCurrentText("model")
    w.run()
    assert w.worker is None and "same layer" in w.status.text()
    viewer.add_labels(np.zeros((5, 5, 5), np.uint8), name="other grid")
    w.reference.setCurrentText("other grid")
    w.run()
    assert w.worker is None and "'model' (20, 30, 30) and 'other grid' (5, 5, 5) are not on one voxel grid" \
        in w.status.text() and "nothing records where 'model' or 'other grid' lies in the world" in w.status.text(), w.status.text()
    # one shape, two known voxel sizes: two scans' labels, compared voxel by voxel before
    viewer.add_labels(np.asarray(truth), name="other scan", scale=(3.0, 1.0, 1.0), metadata={"spacing_known": True})
    viewer.layers["model"].scale = (1.0, 1.0, 1.0)
    viewer.layers["model"].metadata["spacing_known"] = True
    w.reference.setCurrentText("other scan")
    w.run()
    assert w.worker is None and "voxels of 1 x 1 x 1 and other scan of 3 x 1 x 1" in w.status.text()
    viewer.layers["other scan"].metadata["spacing_known"] = False   # a .npy: no voxel size to go by
    w.run()
    assert w.worker is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "mean Dice" in w.status.text()
    assert len(viewer.layers) == 4 and w.save_btn.isEnabled()
    # one shape and voxel size, placed 40 mm apart by their files' geometries
    from halo_seg.io.geometry import from_affine
    moved = np.diag([1.0, 1.0, 1.0, 1.0])
    moved[1, 3] = 40.0
    viewer.add_labels(np.asarray(truth), name="moved", metadata={"geometry": from_affine(moved, truth.shape)})
    viewer.layers["model"].metadata["geometry"] = from_affine(np.eye(4), truth.shape)
    w.reference.setCurrentText("moved")
    w.run()
    assert w.worker is None and "model and moved lie 40 mm apart in the world" in w.status.text()


def test_compare_widget_as_objects(make_napari_viewer, qtbot):
    from halo_seg.evaluate import compare_instances
    from napari_halo_seg._compare_widget import OBJECT_IOUS, CompareWidget
    truth = np.zeros((10, 20, 20), np.uint16)
    truth[1:4, 1:6, 1:6], truth[5:9, 10:16, 10:16], truth[2:4, 12:15, 2:5] = 1, 2, 3
    pred = np.zeros_like(truth)
    pred[1:4, 1:6, 1:6], pred[5:9, 10:16, 10:14] = 40, 41      # ids of their own; the second one cut
    viewer = make_napari_viewer()
    viewer.add_labels(truth, name="truth")
    viewer.add_labels(pred, name="nuclei")
    w = CompareWidget(viewer)
    w.labels.setCurrentText("nuclei")
    w.reference.setCurrentText("truth")
    w.objects.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    ref = compare_instances(pred, truth, OBJECT_IOUS)
    assert list(w.table["tp"]) == list(ref["tp"]) == [2, 1, 1]
    assert w.grid.rowCount() == 3 and w.grid.horizontalHeaderItem(1).text() == "TP"
    assert w.grid.item(0, 1).text() == "2" and f"F1 {ref['f1'][0]:.3f} at IoU 0.5" in w.status.text()
    step = viewer.dims.current_step
    w.show_worst_slice(0)        # object rows are thresholds: the view stays
    assert viewer.dims.current_step == step


def test_compare_widget_matches_structures_by_name(make_napari_viewer, qtbot):
    """Two structure sets that number the same organs differently (read from RTSTRUCT or SEG, their
    names in the layers' features): by id the table compares different organs and says so; matched
    by name, each organ with itself."""
    viewer, w, pred, truth = _viewer(make_napari_viewer)
    viewer.layers["truth"].features = {"index": [1, 2], "name": ["Liver", "spleen"]}
    swapped = np.select([pred == 1, pred == 2], [2, 1], 0).astype(np.uint8)
    viewer.layers["model"].data = swapped
    viewer.layers["model"].features = {"index": [1, 2, 3], "name": ["Spleen", "liver", "kidney"]}
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert list(w.table["dice"]) == [0.0, 0.0] and "2 ids name different structures" in w.status.text()
    assert [w.grid.item(i, 1).text() for i in range(2)] == ["Liver", "spleen"]
    w.by_name.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    ref = compare_labels(pred, truth, (2.0, 1.0, 1.0))     # what comparing the same organs gives
    np.testing.assert_allclose(w.table["dice"], ref["dice"])
    assert list(w.table["name"]) == ["Liver", "spleen"] and "left out: kidney" in w.status.text()
    viewer.layers["truth"].features = {}
    w.run()
    assert w.worker is None and "needs both volumes to name their labels" in w.status.text()


def test_compare_widget_on_a_time_lapse_compares_the_time_point_shown(make_napari_viewer, qtbot):
    """Two (T, Z, Y, X) Labels layers (an automatic result over a time-lapse and its corrected copy):
    compared at the time point shown, the engine's table of that time point; the worst slice is
    shown there. Before, both were refused as holding several volumes."""
    from napari_halo_seg._compare_widget import CompareWidget
    truth = np.zeros((3, 20, 30, 30), np.uint8)
    for t in range(3):
        truth[t, 4:14, 5 + t:20 + t, 5:20] = 1
    pred = truth.copy()
    pred[1, 9, 5:21, 5:12] = 0                    # time point 1 loses most on slice 9
    viewer = make_napari_viewer()
    viewer.add_labels(truth, name="truth")
    viewer.add_labels(pred, name="model")
    w = CompareWidget(viewer)
    w.labels.setCurrentText("model")
    w.reference.setCurrentText("truth")
    viewer.dims.set_point(0, 1)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    ref = compare_labels(pred[1], truth[1], (1.0, 1.0, 1.0))
    np.testing.assert_allclose(w.table["dice"], ref["dice"])
    assert ref["dice"][0] < 1 and w.status.text().startswith("time point 1: mean Dice"), w.status.text()
    viewer.dims.set_point(0, 2)                    # looking elsewhere: the row goes back to time point 1
    w.show_worst_slice(0)
    assert viewer.dims.current_step[:2] == (1, 9), w.status.text()
    viewer.dims.set_point(0, 0)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert list(w.table["dice"]) == [1.0] and w.status.text().startswith("time point 0:")
    viewer.add_labels(truth[:2], name="short")
    w.reference.setCurrentText("short")
    w.run()
    assert w.worker is None and "'model' (3, 20, 30, 30) and 'short' (2, 20, 30, 30)" in w.status.text()
