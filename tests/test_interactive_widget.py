"""The interactive dock widget under Xvfb: box -> segment -> propagate -> recommended slice ->
correct -> commit, asserted against the phantom's ground truth on the Labels layers."""
import numpy as np
import pytest

pytest.importorskip("napari")

from halo_seg.interactive.model_io import default_memnet_installed  # noqa: E402
from halo_seg.interactive.roi import mask_bbox  # noqa: E402
from halo_seg.metrics import dice  # noqa: E402
from _steps import split_label  # noqa: E402

needs_default = pytest.mark.skipif(not default_memnet_installed(), reason="no shipped interactive weights")


def _wait(qtbot, w):
    assert w.worker is not None, w.status.text()     # the work went to a background thread
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)


def _phantom_widget(make_napari_viewer):
    from napari_halo_seg._interactive_widget import InteractiveWidget
    viewer = make_napari_viewer()
    viewer.open_sample("napari-halo-seg", "phantom")
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("phantom")
    w.device.setCurrentText("cpu")
    return viewer, w


def _box(w, z, mask):
    y0, x0, y1, x1 = mask_bbox(mask)
    w.viewer.layers["box"].add_rectangles(np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], float))


def _box_and_segment(qtbot, w, truth):
    """A box on the object's largest slice, segmented: (that slice, the preview layer)."""
    z = int(truth.sum((1, 2)).argmax())
    w.goto_slice(z)
    w.ensure_prompt_layers()
    _box(w, z, truth[z])
    w.segment_slice()
    _wait(qtbot, w)
    return z, w.viewer.layers["current object"]


@needs_default
def test_ends_where_a_sweep_was_stopped_are_shown_to_the_user(make_napari_viewer, qtbot):
    """The session cannot tell whether the object goes on where the quality rule stopped a sweep;
    the user sees it, so those slices are named in the status and marked on the quality plot."""
    viewer, w = _phantom_widget(make_napari_viewer)
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    z, _ = _box_and_segment(qtbot, w, truth)
    w.seg.quality_stop = 1.0            # every sweep stopped at once: the object is slice z alone
    w.propagate()
    _wait(qtbot, w)
    assert w.seg.cut_ends == [z - 1, z + 1]
    assert f"stopped early before slices {z - 1} and {z + 1}: if the object goes on there" in w.status.text()
    assert w.plot.cut == [z - 1, z + 1]
    w.seg.quality_stop = 0.0            # no sweep stopped by the rule: nothing to say
    w.propagate()
    _wait(qtbot, w)
    assert w.seg.cut_ends == [] and w.plot.cut == [] and "stopped early" not in w.status.text()


def _committed_phantom_object(make_napari_viewer, qtbot):
    """The phantom's object 1 from a box, propagated and committed as object 1 of `objects`."""
    viewer, w = _phantom_widget(make_napari_viewer)
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    _box_and_segment(qtbot, w, truth)
    w.propagate()
    _wait(qtbot, w)
    w.commit()
    return viewer, w


@needs_default
def test_full_interactive_flow(make_napari_viewer, qtbot, tmp_path):
    from napari_halo_seg._interactive_widget import InteractiveWidget
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-halo-seg", "phantom")
    labels = np.asarray(viewer.layers["phantom truth"].data)
    sizes = np.bincount(labels.ravel())[1:]
    first, second = (int(k) + 1 for k in np.argsort(sizes)[::-1][:2])
    w = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.image.setCurrentText("phantom")
    w.device.setCurrentText("cpu")

    truth = labels == first
    z, preview = _box_and_segment(qtbot, w, truth)
    assert dice(np.asarray(preview.data[z]) > 0, truth[z]) >= 0.8, w.status.text()
    assert not w.seg.strict_ends
    w.strict.setChecked(True)                # reaches the open session
    assert w.seg.strict_ends
    w.strict.setChecked(False)

    w.propagate()
    _wait(qtbot, w)
    d1 = dice(np.asarray(preview.data) > 0, truth)
    assert d1 >= 0.7, w.status.text()
    assert w.recommended is not None and "recommended" in w.status.text()
    assert " on cpu through " in w.status.text()   # where it ran: the choice, resolved
    shown = np.asarray(preview.data) > 0             # the counts, made in the worker, are the preview's
    assert f" through {int(shown.any((1, 2)).sum())} slices (" in w.status.text(), w.status.text()
    assert f"slices ({w._volume_text(int(shown.sum()))})" in w.status.text(), w.status.text()
    import torch
    assert [w.device.itemText(i) for i in range(w.device.count())] == \
        ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    assert np.isfinite(w.plot.quality).sum() > 3

    w.goto_recommended()
    r = w._z()
    assert r == w.recommended
    if truth[r].any():
        _box(w, r, truth[r])
    else:                                   # the object is not there: paint the slice empty and accept it
        preview.data[r] = 0
        w.accept_slice()
    w.propagate()
    _wait(qtbot, w)
    d2 = dice(np.asarray(preview.data) > 0, truth)
    assert d2 >= d1 - 0.02, (d1, d2)

    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot[..., :3].std() > 10
    first_pred = np.asarray(preview.data) > 0
    w.commit()
    objects = np.asarray(viewer.layers["objects"].data)
    assert np.array_equal(objects == 1, first_pred)
    assert not np.asarray(preview.data).any() and len(viewer.layers["box"].data) == 0

    truth2 = labels == second
    z2 = int(truth2.sum((1, 2)).argmax())
    w.goto_slice(z2)
    _box(w, z2, truth2[z2])
    w.propagate()                            # segments the prompted slice, then propagates
    _wait(qtbot, w)
    assert dice(np.asarray(preview.data) > 0, truth2) >= 0.6, w.status.text()
    w.commit()
    objects = np.asarray(viewer.layers["objects"].data)
    second_pred = objects == 2
    w.undo()                                                 # right after Commit: back out of objects
    objects = np.asarray(viewer.layers["objects"].data)
    assert not (objects == 2).any() and np.array_equal(objects == 1, first_pred), w.status.text()
    assert list(viewer.layers["objects"].features["index"]) == [1]
    assert np.array_equal((np.asarray(preview.data) > 0) & ~first_pred, second_pred)   # the current object again
    assert "taken back out" in w.status.text()
    current = np.asarray(preview.data) > 0
    w.commit()                                               # and in again, the same
    overlap = int((current & first_pred).sum())
    assert (f", {overlap} left to earlier objects" in w.status.text()) == (overlap > 0), w.status.text()
    objects = np.asarray(viewer.layers["objects"].data)
    assert np.array_equal(objects == 2, second_pred)
    assert np.array_equal(objects == 1, first_pred)          # object 1 is never overwritten
    assert (objects == 2).any() and not ((objects == 2) & first_pred).any()
    # each object's size rides on the layer, and napari shows it under the cursor
    layer = viewer.layers["objects"]
    feats = layer.features
    voxels = [int((objects == k).sum()) for k in (1, 2)]
    assert list(feats["index"]) == [1, 2] and list(feats["voxels"]) == voxels
    np.testing.assert_allclose(feats["volume (voxel units³)"], np.array(voxels) * np.prod(layer.scale))
    img = np.asarray(viewer.layers["phantom"].data, np.float64)
    np.testing.assert_allclose(feats["mean intensity"], [img[objects == k].mean() for k in (1, 2)], atol=1e-3)
    inside = (z2, *np.argwhere(objects[z2] == 2)[0])            # on the slice shown, which the status reads
    assert f"voxels: {voxels[1]}" in layer.get_status(inside)["coordinates"]


@needs_default
def test_errors_undo_and_cancel_keep_the_work(make_napari_viewer, qtbot):
    viewer, w = _phantom_widget(make_napari_viewer)
    w.propagate()                                    # nothing drawn yet
    _wait(qtbot, w)
    assert "error" in w.status.text() and "propagate needs" in w.status.text()
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    z = int(truth.sum((1, 2)).argmax())
    w.goto_slice(z)
    _box(w, z, truth[z])
    w.propagate()
    _wait(qtbot, w)
    before = np.asarray(viewer.layers["current object"].data).copy()
    assert before.any()
    viewer.layers["extreme points"].add(np.array([[z, 5, 5], [z, 6, 6]], float))   # only 2 of 4 points
    w.segment_slice()
    assert w.worker is None and "4" in w.status.text()
    assert np.array_equal(np.asarray(viewer.layers["current object"].data), before)
    viewer.layers["extreme points"].data = np.zeros((0, 3))
    w.propagate()
    w.cancel()
    _wait(qtbot, w) if w.worker is not None else None
    assert np.array_equal(np.asarray(viewer.layers["current object"].data), before)
    w.reset()
    assert not np.asarray(viewer.layers["current object"].data).any()
    w.undo()
    assert np.array_equal(np.asarray(viewer.layers["current object"].data), before)


@needs_default
def test_the_preview_shows_exactly_the_current_object_after_every_step(make_napari_viewer, qtbot):
    # each step rewrites only the part of the preview that can have changed (a large volume is never
    # copied whole): paint left unaccepted on a slice far from the object, slices that an undo takes
    # out and a reset must all be put right
    viewer, w = _phantom_widget(make_napari_viewer)
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    z, preview = _box_and_segment(qtbot, w, truth)

    held = preview.data

    def shown_right():   # and written in place: no step replaced the volume's array
        return preview.data is held and np.array_equal(preview.data, w.seg.prediction.astype(np.uint8))
    assert shown_right()
    w.propagate()
    _wait(qtbot, w)
    assert shown_right() and w.seg.prediction.sum() > truth[z].sum()
    far = int(np.flatnonzero(~truth.any((1, 2)))[-1])
    preview.paint((far, 3, 3), 1)            # the brush, as a user paints (a paint event), never accepted
    assert preview.data[far, 3, 3] == 1
    w.undo()                                 # back to the box's slice alone
    assert shown_right() and not np.asarray(preview.data)[far].any()
    w.reset()
    assert not np.asarray(preview.data).any()
    w.undo()
    assert shown_right() and np.asarray(preview.data).any()


@needs_default
def test_clicks_after_a_box_correct_its_slice_one_way(make_napari_viewer, qtbot):
    """A user's clicks on a slice segmented from a box: a negative click only takes away from the
    shown mask, a positive one only adds, and the box is not asked for again."""
    viewer, w = _phantom_widget(make_napari_viewer)
    z, preview = _box_and_segment(qtbot, w, np.asarray(viewer.layers["phantom truth"].data) == 1)
    first = np.asarray(preview.data[z]) > 0
    ys, xs = np.nonzero(first)
    inner = (ys.min() + 1, int(np.median(xs[ys == ys.min() + 1])))   # just inside the mask's top row
    w.negative.setChecked(True)
    viewer.layers["clicks -"].add(np.array([[z, *inner]], float))
    w.segment_slice()
    _wait(qtbot, w)
    second = np.asarray(preview.data[z]) > 0
    assert not (second & ~first).any() and second.any(), w.status.text()
    w.negative.setChecked(False)
    outer = (ys.max() + 2, int(np.median(xs[ys == ys.max()])))     # just below the mask
    viewer.layers["clicks +"].add(np.array([[z, *outer]], float))
    w.segment_slice()
    _wait(qtbot, w)
    third = np.asarray(preview.data[z]) > 0
    assert not (second & ~third).any(), w.status.text()
    p = w.seg._s.prompts[z]
    assert p.box is not None and p.segmented and len(p.neg) == len(p.pos) == 1


@needs_default
def test_strokes_correct_a_segmented_slice_and_are_handed_over_once(make_napari_viewer, qtbot):
    """A stroke along the middle of the largest error of a box-segmented slice (as the simulated user
    of benchmarks/clicks.py draws it) reaches the session as a scribble of its sign, moves the mask
    only its way, is not handed over again, and Commit clears the strokes."""
    from halo_seg.interactive.simulate import corrective_scribble
    viewer, w = _phantom_widget(make_napari_viewer)
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    z, preview = _box_and_segment(qtbot, w, truth)
    first = np.asarray(preview.data[z]) > 0
    stroke, positive = corrective_scribble(first, truth[z])
    w.negative.setChecked(not positive)
    w.draw_strokes()
    strokes = viewer.layers["strokes"]
    assert viewer.layers.selection.active is strokes and strokes.mode == "paint"
    assert strokes.selected_label == (1 if positive else 2)
    w.negative.setChecked(positive)               # the sign switches the strokes' label, not the layer
    assert viewer.layers.selection.active is strokes and strokes.selected_label == (2 if positive else 1)
    strokes.data[z][stroke] = 1 if positive else 2
    w.segment_slice()
    _wait(qtbot, w)
    second = np.asarray(preview.data[z]) > 0
    p = w.seg._s.prompts[z]
    assert np.array_equal(p.pos_mask if positive else p.neg_mask, stroke) and (p.neg_mask if positive else p.pos_mask) is None
    assert not ((second & ~first) if not positive else (first & ~second)).any(), w.status.text()
    assert dice(second, truth[z]) > dice(first, truth[z]), w.status.text()
    assert (second[stroke] == positive).all()     # what was stroked is kept
    n = len(w.seg._history)
    w.segment_slice()                             # nothing new drawn: the stroke is not added again
    _wait(qtbot, w)
    assert np.array_equal(np.asarray(preview.data[z]) > 0, second) and len(w.seg._history) == n + 1
    p = w.seg._s.prompts[z]
    assert np.array_equal(p.pos_mask if positive else p.neg_mask, stroke)
    w.commit()
    assert not np.asarray(strokes.data).any() and w._strokes_sent == {}


@needs_default
def test_the_prompt_layers_show_what_the_session_holds_after_undo(make_napari_viewer, qtbot):
    """An undone click is taken off its layer (so clicking there again hands it over again), a click
    drawn on another slice and not handed over yet stays, and Reset then Undo draws the box, the click
    and the stroke back, without handing them over a second time; the same for extreme points."""
    from halo_seg.interactive.simulate import corrective_scribble, extreme_points
    viewer, w = _phantom_widget(make_napari_viewer)
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    z, preview = _box_and_segment(qtbot, w, truth)
    first = np.asarray(preview.data[z]) > 0
    ys, xs = np.nonzero(first)
    inner = (int(ys.min()) + 1, int(np.median(xs[ys == ys.min() + 1])))
    neg, pos, strokes = viewer.layers["clicks -"], viewer.layers["clicks +"], viewer.layers["strokes"]
    neg.add(np.array([[z, *inner]], float))
    w.segment_slice()
    _wait(qtbot, w)
    pos.add(np.array([[z + 2, 5, 5]], float))              # drawn elsewhere, not handed over
    w.undo()                                               # the segmentation with the click
    w.undo()                                               # the click
    assert w.seg.prompts[z]["neg"] == [] and len(neg.data) == 0, w.status.text()
    assert np.array_equal(np.asarray(pos.data), [[z + 2, 5, 5]])
    neg.add(np.array([[z, *inner]], float))                # clicked again: handed over again
    w.segment_slice()
    _wait(qtbot, w)
    assert w.seg.prompts[z]["neg"] == [inner]
    second = np.asarray(preview.data[z]) > 0
    stroke, positive = corrective_scribble(second, truth[z])
    strokes.data[z][stroke] = 1 if positive else 2
    w.segment_slice()
    _wait(qtbot, w)
    pos.data = np.zeros((0, 3))
    w.reset()
    assert len(viewer.layers["box"].data) == len(neg.data) == 0 and not np.asarray(strokes.data).any()
    w.undo()
    (box,) = viewer.layers["box"].data
    assert np.all(box[:, 0] == z) and (*box[:, 1:].min(0), *box[:, 1:].max(0)) == mask_bbox(truth[z])
    assert np.array_equal(np.asarray(neg.data), [[z, *inner]]) and len(pos.data) == 0
    assert np.array_equal(np.asarray(strokes.data[z]) > 0, stroke) and not np.delete(
        np.asarray(strokes.data), z, 0).any()
    n = len(w.seg._history)
    w.segment_slice()                                      # nothing is handed over twice
    _wait(qtbot, w)
    assert len(w.seg._history) == n + 1 and w.seg.prompts[z]["neg"] == [inner]
    z2 = z + 2                                             # extreme points on another slice
    w.goto_slice(z2)
    ext, points = viewer.layers["extreme points"], extreme_points(truth[z2])
    ext.add(np.array([[z2, y, x] for y, x in points], float))
    w.segment_slice()
    _wait(qtbot, w)
    w.reset()
    assert len(ext.data) == 0
    w.undo()
    assert np.array_equal(np.asarray(ext.data), [[z2, y, x] for y, x in points])
    w.undo()                                               # their segmentation
    w.undo()                                               # the points
    assert len(ext.data) == 0 and z2 not in w.seg.prompts and len(viewer.layers["box"].data) == 1


@needs_default
def test_redo_goes_forward_again_but_never_drops_a_commit_taken_back(make_napari_viewer, qtbot):
    viewer, w = _phantom_widget(make_napari_viewer)
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    z, preview = _box_and_segment(qtbot, w, truth)
    w.propagate()
    _wait(qtbot, w)
    shown = np.asarray(preview.data).copy()
    box, objects = viewer.layers["box"], viewer.layers["objects"]

    def showing(expected):
        return np.array_equal(np.asarray(preview.data), expected) and np.array_equal(
            np.asarray(preview.data), w.seg.prediction.astype(np.uint8))
    w.undo()                                               # the propagation: the box's slice alone
    only_z = np.where(np.arange(len(shown))[:, None, None] == z, shown, 0)
    assert showing(only_z) and not np.array_equal(only_z, shown)
    w.redo()
    assert showing(shown) and w.status.text() == "redone"
    for _ in range(3):                                     # the propagation, the segmentation, the box
        w.undo()
    assert len(box.data) == 0 and not np.asarray(preview.data).any()
    w.redo()                                               # the box, drawn again
    assert len(box.data) == 1 and not np.asarray(preview.data).any()
    w.redo()
    w.redo()
    assert showing(shown)
    w.redo()
    assert "nothing to redo" in w.status.text() and showing(shown)
    w.commit()
    assert np.array_equal(np.asarray(objects.data) == 1, shown > 0)
    w.undo()                                               # the commit taken back: the current object again
    w.redo()
    assert "nothing to redo" in w.status.text(), w.status.text()
    assert showing(shown) and not np.asarray(objects.data).any()
    w.commit()
    assert np.array_equal(np.asarray(objects.data) == 1, shown > 0)


@needs_default
def test_learning_from_committed_objects(make_napari_viewer, qtbot, _user_dir, monkeypatch):
    from halo_seg.interactive.quality import FEATURES, QualityModel
    from halo_seg.train.quality_fit import POOL_SHARE
    from napari_halo_seg import _interactive_files
    from napari_halo_seg._interactive_widget import AUTO, MIN_LEARN, InteractiveWidget
    monkeypatch.setattr(_interactive_files, "MAX_LEARN", MIN_LEARN)   # to see the cap with few objects
    viewer, w = _phantom_widget(make_napari_viewer)
    assert w.quality.currentText() == AUTO and w.quality.count() == 1   # nothing learned yet
    truth = np.asarray(viewer.layers["phantom truth"].data)
    ids = [int(v) for v in np.unique(truth) if v]
    assert len(ids) >= MIN_LEARN
    w.ensure_prompt_layers()
    objects = viewer.layers["objects"]
    objects.data = (truth == ids[0]).astype(np.uint16)           # one committed object is not enough
    w.learn_quality()                                            # the layer is read in the worker
    _wait(qtbot, w)
    assert f"error: commit at least {MIN_LEARN} objects first (1 so far)" in w.status.text(), w.status.text()
    committed = np.where(np.isin(truth, ids[:MIN_LEARN + 1]), truth, 0).astype(np.uint16)
    objects.data = committed.copy()                              # as if each had been committed
    ids = ids[1:MIN_LEARN + 1]                                   # the latest MAX_LEARN of them are used
    shipped = w._session().quality_model
    seen = []                                                     # what reached the progress bar
    w._bridge.progressed.connect(lambda d, t: seen.append((d, t, w.progress.value(), w.progress.maximum())))
    w.learn_quality()
    _wait(qtbot, w)
    assert f"adjusted to the {MIN_LEARN} latest of {MIN_LEARN + 1} objects" in w.status.text(), w.status.text()
    learned = w.seg.quality_model
    assert learned is not shipped
    assert learned.meta["regions"] == ids and "napari" in learned.meta["data"]
    assert learned.meta["pooled_with"].endswith("memseg_default.quality.npz")   # adjusted, not replaced
    assert learned.meta["share"] == POOL_SHARE
    n = 4 * len(ids)                                              # 2 passes x with and without the mirror
    assert [s[:2] for s in seen] == [(k, n) for k in range(1, n + 1)]
    assert seen[-1][2:] == (n, n)
    # saved, selected, and what a new session loads
    saved = sorted((_user_dir / "quality").glob("*phantom.quality.json"))
    assert len(saved) == 1 and w._quality_choice() == str(saved[0]) and str(saved[0]) in w.status.text()
    assert w.quality.currentText() == saved[0].name                # listed by name
    probe = {0: np.linspace(-1, 2, len(FEATURES)), 1: np.linspace(2, -1, len(FEATURES))}
    assert QualityModel.load(saved[0]).predict(probe, True) == pytest.approx(learned.predict(probe, True))
    assert learned.predict(probe, True) != pytest.approx(shipped.predict(probe, True))
    w.seg = None
    assert w._session().quality_model.predict(probe, True) == pytest.approx(learned.predict(probe, True))

    # a later napari session lists it; choosing auto or a bad path in a live session
    w2 = InteractiveWidget(viewer)
    assert [w2.quality.itemText(i) for i in range(w2.quality.count())] == [AUTO, saved[0].name]
    w2.quality.setCurrentIndex(1)
    assert w2._quality_choice() == str(saved[0])
    w.quality.setCurrentIndex(0)
    assert w.seg.quality_model.predict(probe, True) == pytest.approx(shipped.predict(probe, True))
    before = w.seg.quality_model
    w.quality.addItem(str(_user_dir / "missing.quality.json"))
    w.quality.setCurrentIndex(w.quality.count() - 1)
    assert "error" in w.status.text() and "missing.quality.json" in w.status.text()
    assert w.seg.quality_model is before                          # the session is as it was

    w.quality.setCurrentIndex(0)
    w.propagate()                                                 # a step running while the field changes
    w.quality.setCurrentIndex(1)
    assert w.seg.quality_model is not learned and w.worker is not None
    _wait(qtbot, w)
    assert w.seg.quality_model.predict(probe, True) == pytest.approx(learned.predict(probe, True))
    w.learn_quality()
    w.cancel()
    _wait(qtbot, w)
    assert "cancelled" in w.status.text()
    assert w.seg.quality_model.predict(probe, True) == pytest.approx(learned.predict(probe, True))
    assert len(list((_user_dir / "quality").glob("*.json"))) == 1   # nothing saved by the cancelled run
    assert np.array_equal(np.asarray(objects.data), committed)    # the user's objects are untouched


@needs_default
def test_changing_weights_or_device_starts_a_new_session(make_napari_viewer, tmp_path):
    import torch
    from halo_seg.interactive.memnet import MemSegNet
    from halo_seg.interactive.model_io import save_memnet
    viewer, w = _phantom_widget(make_napari_viewer)
    first = w._session()
    assert w._session() is first                                  # unchanged choices keep the session
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    zs = [int(z) for z in np.flatnonzero(truth.any((1, 2)))[[0, -1]]]
    for z in zs:
        first.set_slice_mask(z, truth[z])                         # as if painted and accepted
    torch.manual_seed(0)
    other = save_memnet(MemSegNet(size=32, width=4), tmp_path / "other.safetensors")
    w.weights.setCurrentText(str(other))
    second = w._session()
    assert second is not first and second.weights_meta["sha256"] != first.weights_meta["sha256"]
    assert second.quality_model is None                           # auto: nothing fitted for those weights
    assert second.annotated_slices == sorted(zs)                  # the user's slices came along
    assert all(np.array_equal(second.annotation(z), truth[z]) for z in zs)
    viewer.add_image(np.zeros((5, 16, 16), np.float32), name="other image")
    w.image.setCurrentText("other image")
    assert w._session().annotated_slices == []                    # another image starts empty


@needs_default
def test_a_second_image_gets_its_own_layers_and_the_first_keeps_its_objects(make_napari_viewer, qtbot):
    """Two images of other shapes and scales in one viewer: each object is committed on its own
    image's grid, slices are the chosen image's whatever the other layers' scales, and the first
    image's objects come back when it is chosen again."""
    viewer, w = _committed_phantom_object(make_napari_viewer, qtbot)
    first = np.asarray(viewer.layers["objects"].data).copy()
    assert first.any()

    viewer.open_sample("napari-halo-seg", "colin27")        # 2 mm voxels, another shape
    w.image.setCurrentText("colin27 T1")
    assert "objects (phantom)" in viewer.layers and not viewer.layers["objects (phantom)"].visible
    np.testing.assert_array_equal(np.asarray(viewer.layers["objects (phantom)"].data), first)
    thal = np.asarray(viewer.layers["AAL subcortical (truth)"].data) == 77
    z = int(thal.sum((1, 2)).argmax())
    w.goto_slice(z)
    assert w._z() == z                                    # in the 2 mm image's slices, not world steps
    _box_and_segment(qtbot, w, thal)
    w.propagate()
    _wait(qtbot, w)
    w.commit()
    objects = viewer.layers["objects"]
    assert objects.data.shape == thal.shape and tuple(objects.scale) == (2.0, 2.0, 2.0)
    assert dice(np.asarray(objects.data) == 1, thal) > 0.5, w.status.text()
    n = int((np.asarray(objects.data) == 1).sum())           # a scan in mm: its objects measure in mL
    assert objects.features["volume (mL)"][0] == pytest.approx(n * 8e-3, rel=1e-3)
    assert f"{n * 8e-3:.4g} mL" in w.status.text()

    w.image.setCurrentText("phantom")                      # back: its objects are its own again
    np.testing.assert_array_equal(np.asarray(viewer.layers["objects"].data), first)
    assert viewer.layers["objects"].visible and "objects (colin27 T1)" in viewer.layers


@needs_default
def test_an_object_prompted_in_another_plane_is_propagated_across_it(make_napari_viewer, qtbot):
    """With the dims rolled to show slices across axis 1, a box drawn there segments that slice and
    propagates across axis 1, exactly as the engine's session along axis 1 does; going back to the
    axial view refuses new prompts for this object and loses nothing, and after Commit the next
    object is prompted axially."""
    from halo_seg import InteractiveSegmenter
    viewer, w = _phantom_widget(make_napari_viewer)
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    viewer.dims.order = (1, 0, 2)                       # shows (axis 0, axis 2) slices across axis 1
    assert w._view_axis() == 1
    z = int(truth.sum((0, 2)).argmax())
    w.goto_slice(z)
    assert w._z() == z
    w.ensure_prompt_layers()
    y0, x0, y1, x1 = mask_bbox(truth[:, z, :])
    viewer.layers["box"].add_rectangles(np.array([[y0, z, x0], [y0, z, x1], [y1, z, x1], [y1, z, x0]], float))
    w.segment_slice()
    _wait(qtbot, w)
    preview = viewer.layers["current object"]
    assert w.seg.axis == 1
    assert dice(np.asarray(preview.data[:, z, :]) > 0, truth[:, z, :]) >= 0.8, w.status.text()
    w.propagate()
    _wait(qtbot, w)
    got = np.asarray(preview.data) > 0
    assert "across axis 1" in w.status.text()
    ref = InteractiveSegmenter(np.asarray(viewer.layers["phantom"].data), device="cpu", axis=1,
                               spacing=tuple(viewer.layers["phantom"].scale))
    ref.add_box(z, y0, x0, y1, x1)
    assert np.array_equal(got, ref.propagate())
    assert dice(got, truth) >= 0.7
    drawn = [np.asarray(s).copy() for s in viewer.layers["box"].data]
    w.reset()
    assert len(viewer.layers["box"].data) == 0
    w.undo()                                            # the box drawn back where it was, across axis 1
    (back,) = viewer.layers["box"].data
    assert np.array_equal(np.sort(back, 0), np.sort(drawn[0], 0)) and np.all(back[:, 1] == z)
    assert np.array_equal(np.asarray(preview.data) > 0, got)

    viewer.dims.order = (0, 1, 2)                       # back to axial slices
    za = int(truth.sum((1, 2)).argmax())
    _box(w, za, truth[za])
    w.segment_slice()
    assert w.worker is None and "across axis 1" in w.status.text() and "Commit or Reset" in w.status.text()
    assert np.array_equal(np.asarray(preview.data) > 0, got) and w.seg.axis == 1
    w.commit()
    assert np.array_equal(np.asarray(viewer.layers["objects"].data) == 1, got)
    w.goto_slice(za)                                    # the next object begins across the slices shown
    assert w._z() == za
    _box(w, za, truth[za])                              # its prompts (commit cleared the others)
    w.segment_slice()
    _wait(qtbot, w)
    assert w.seg.axis == 0 and dice(np.asarray(preview.data[za]) > 0, truth[za]) >= 0.8
    viewer.dims.ndisplay = 3
    w.propagate()
    assert w.worker is None and "2D view" in w.status.text()


@needs_default
def test_images_of_one_name_keep_their_sessions_apart(make_napari_viewer, tmp_path, _user_dir):
    """Kept sessions were named after the layer alone: another patient's "scan" propagated later
    wrote over this one's kept session."""
    from napari_halo_seg._interactive_widget import InteractiveWidget
    viewer = make_napari_viewer()
    w = InteractiveWidget(viewer)
    paths = []
    for k in range(2):
        np.save(tmp_path / f"p{k}.npy", np.zeros((8, 16, 16), np.float32))
        (tmp_path / f"patient{k}").mkdir()
        (tmp_path / f"p{k}.npy").rename(tmp_path / f"patient{k}" / "scan.npy")
        layer = viewer.open(str(tmp_path / f"patient{k}" / "scan.npy"), plugin="napari-halo-seg")[0]
        w.image.setCurrentText(layer.name)
        paths.append(w._kept_path())
        viewer.layers.remove(layer)
    assert layer.name == "scan" and paths[0] != paths[1] and paths[0].name.startswith("scan.")
    viewer.add_image(np.zeros((8, 16, 16)), name="scan")           # made in napari: its shape tells
    w.image.setCurrentText("scan")
    made = w._kept_path()
    viewer.layers.remove("scan")
    viewer.add_image(np.zeros((9, 16, 16)), name="scan")
    w.image.setCurrentText("scan")
    assert w._kept_path() not in (made, *paths) and made not in paths


def test_sessions_are_kept_on_disk_and_open_again(make_napari_viewer, qtbot, _user_dir, monkeypatch):
    """Every propagation saves the object's session; after napari is closed (a new widget), opening
    it brings the object back as it was, and a saved session opens only on its own image."""
    from napari_halo_seg._interactive_widget import InteractiveWidget
    from napari_halo_seg._paths import last_session_path
    viewer, w = _phantom_widget(make_napari_viewer)
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    _box_and_segment(qtbot, w, truth)
    w.propagate()
    _wait(qtbot, w)
    shown = np.asarray(viewer.layers["current object"].data).copy()
    rec, slices = w.recommended, w.seg.annotated_slices
    kept = w._kept_path()
    assert kept.is_file() and str(_user_dir) in str(kept) and kept.name.startswith("phantom.")
    assert last_session_path("phantom", "another patient's scan") != kept
    from qtpy.QtWidgets import QFileDialog
    asked = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda parent, title, start, kinds: asked.append(start) or (
                            str(_user_dir / "mine.npz"), kinds)))
    w.save_session()                                           # the dialog opens where sessions are kept
    _wait(qtbot, w)
    assert asked == [str(kept.parent)]
    assert "session saved" in w.status.text() and (_user_dir / "mine.npz").is_file()
    w.open_session(str(kept))                                  # the current object has work: refused
    assert "Commit or Reset it first" in w.status.text()
    # where the session cannot be kept (here a folder stands at its path) the propagation still lands
    import napari_halo_seg._interactive_files as files
    monkeypatch.setattr(files, "last_session_path", lambda name, identity="": _user_dir)
    w.propagate()
    _wait(qtbot, w)
    assert "propagated in" in w.status.text() and "the session could not be saved" in w.status.text()
    assert "is a folder" in w.status.text()
    monkeypatch.setattr(files, "last_session_path", last_session_path)

    w2 = InteractiveWidget(viewer)                            # as after a restart
    w2.image.setCurrentText("phantom")
    w2.device.setCurrentText("cpu")
    viewer.layers["current object"].data = np.zeros_like(shown)
    viewer.layers["box"].data = []                           # nothing drawn in this napari yet
    w2.open_session(str(kept))
    _wait(qtbot, w2)
    assert "session opened" in w2.status.text(), w2.status.text()
    assert np.array_equal(np.asarray(viewer.layers["current object"].data), shown)
    (box,) = viewer.layers["box"].data                        # the session's box, drawn where it was
    z = int(truth.sum((1, 2)).argmax())
    assert np.all(box[:, 0] == z) and (*box[:, 1:].min(0), *box[:, 1:].max(0)) == mask_bbox(truth[z])
    assert w2.recommended == rec and w2.seg.annotated_slices == slices

    viewer.add_image(np.zeros((5, 16, 16), np.float32), name="other image")
    w3 = InteractiveWidget(viewer)
    w3.image.setCurrentText("other image")
    w3.device.setCurrentText("cpu")
    w3.open_session(str(kept))
    _wait(qtbot, w3)
    assert "error" in w3.status.text() and "shape" in w3.status.text() and w3.seg is None


@needs_default
def test_a_5d_image_with_single_time_and_channel_is_segmented_as_3d(make_napari_viewer, qtbot, tmp_path):
    """A (1, 1, Z, Y, X) zarr image, as another OME-Zarr reader opens it: the widget works on its 3D
    volume (read lazily), the object equals the engine's on the 3D array, and its row is measured."""
    import zarr
    from halo_seg import InteractiveSegmenter
    from napari_halo_seg._interactive_widget import InteractiveWidget
    from halo_seg.samples import make_phantom
    ph = make_phantom()
    stored = zarr.open(str(tmp_path / "tczyx.zarr"), mode="w", shape=(1, 1) + ph.image.shape,
                       chunks=(1, 1, 8, 32, 32), dtype=ph.image.dtype)
    stored[0, 0] = ph.image
    viewer = make_napari_viewer()
    viewer.add_image(stored, name="tczyx")
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("tczyx")
    w.device.setCurrentText("cpu")
    truth = ph.labels == 1
    z, preview = _box_and_segment(qtbot, w, truth)
    assert w._z() == z and preview.data.shape == truth.shape
    w.propagate()
    _wait(qtbot, w)
    ref = InteractiveSegmenter(ph.image, device="cpu")
    ref.add_box(z, *mask_bbox(truth[z]))
    assert np.array_equal(np.asarray(preview.data) > 0, ref.propagate())
    w.commit()
    objects = viewer.layers["objects"]
    assert list(objects.features["index"]) == [1] and objects.features["voxels"][0] == ref.prediction.sum()


@needs_default
def test_editing_a_label_corrects_it_in_place_and_undo_restores_it(make_napari_viewer, qtbot):
    viewer, w = _phantom_widget(make_napari_viewer)
    labels = np.asarray(viewer.layers["phantom truth"].data)
    first = int(np.bincount(labels.ravel())[1:].argmax()) + 1
    truth = labels == first
    zs = np.flatnonzero(truth.any((1, 2)))
    cut = zs[0] + 2 * len(zs) // 3
    auto = labels.copy()
    auto[cut:][auto[cut:] == first] = 0          # an automatic result that missed the object's top third
    import dask.array as da
    layer = viewer.add_labels(da.from_array(auto.copy(), chunks=16), name="auto")   # as the automatic widget's

    viewer.layers.selection.active = viewer.layers["phantom"]
    w.edit_label()                                # no Labels layer selected: refused, nothing started
    assert w.worker is None and "select the Labels layer" in w.status.text()
    viewer.layers.selection.active = layer
    layer.selected_label = 250                    # not in the layer
    w.edit_label()
    _wait(qtbot, w)
    assert "label 250 is not in layer 'auto'" in w.status.text() and w.seg.prior is None
    other = viewer.add_labels(auto.copy(), name="other scan", scale=(3.0, 1.0, 1.0), metadata={"spacing_known": True})
    viewer.layers["phantom"].metadata["spacing_known"] = True
    viewer.layers.selection.active = other       # one shape, another scan's voxel size: refused
    other.selected_label = first
    w.edit_label()
    assert w.worker is None and "they lie on different grids" in w.status.text() and w.seg.prior is None
    viewer.layers["phantom"].metadata["spacing_known"] = False
    viewer.layers.remove(other)
    viewer.layers.selection.active = layer

    layer.selected_label = first
    w.edit_label()
    _wait(qtbot, w)
    preview = viewer.layers["current object"]
    assert np.array_equal(w.seg.prior, auto == first), w.status.text()
    assert np.array_equal(np.asarray(preview.data) > 0, auto == first)
    z = cut + 1                                   # the user paints one missed slice and accepts it
    w.goto_slice(z)
    preview.data[z] = truth[z]
    w.accept_slice()
    w.propagate()
    _wait(qtbot, w)
    corrected = np.asarray(preview.data) > 0
    assert dice(corrected, truth) > dice(auto == first, truth) + 0.05, w.status.text()
    differ = int((corrected != (auto == first)).any((1, 2)).sum())
    assert f"; {differ} slices differ from the label edited" in w.status.text(), w.status.text()

    objects_before = np.asarray(viewer.layers["objects"].data).copy()
    w.commit()                                    # back into "auto" under its own id
    after = np.asarray(layer.data)
    assert np.array_equal(after == first, corrected & ((auto == 0) | (auto == first))), w.status.text()
    others = (auto != first) & (auto != 0)
    assert np.array_equal(after[others], auto[others])       # other objects untouched
    assert np.array_equal(np.asarray(viewer.layers["objects"].data), objects_before)
    assert f"label {first} of 'auto' corrected" in w.status.text() and "held in memory" in w.status.text()
    assert isinstance(layer.data, np.ndarray)
    assert w.seg.prior is None                    # a new object begins

    w.undo()                                      # the layer as it was, the corrected object current again
    assert np.array_equal(np.asarray(layer.data), auto)
    assert np.array_equal(np.asarray(preview.data) > 0, corrected)
    w.commit()
    assert np.array_equal(np.asarray(layer.data) == first, after == first)

    viewer.layers.selection.active = layer        # the layer it came from deleted before the commit:
    w.edit_label()                                # the object goes into objects, nothing is lost
    _wait(qtbot, w)
    edited = w.seg.prediction.copy()
    viewer.layers.remove(layer)
    w.commit()
    assert "'auto' it was taken from is gone" in w.status.text(), w.status.text()
    assert np.array_equal(np.asarray(viewer.layers["objects"].data) == 1, edited)


@needs_default
def test_a_label_of_a_layer_too_large_for_memory_is_not_written_back_and_not_lost(make_napari_viewer, qtbot,
                                                                                   monkeypatch):
    import dask.array as da
    import napari_halo_seg._paintable as paintable_mod
    viewer, w = _phantom_widget(make_napari_viewer)
    labels = np.asarray(viewer.layers["phantom truth"].data)
    first = int(np.bincount(labels.ravel())[1:].argmax()) + 1
    layer = viewer.add_labels(da.from_array(labels.copy(), chunks=16), name="huge")   # as if from a huge file
    viewer.layers.selection.active = layer
    layer.selected_label = first
    w.edit_label()
    _wait(qtbot, w)
    monkeypatch.setattr(paintable_mod, "room", lambda: 1)   # a whole copy of the layer would not fit
    w.commit()
    assert "was not written back into 'huge'" in w.status.text() and "too large" in w.status.text(), \
        w.status.text()
    assert hasattr(layer.data, "dask") and np.array_equal(np.asarray(layer.data), labels)
    assert np.array_equal(w.seg.prior, labels == first)      # the object is still the current one
    assert not np.asarray(viewer.layers["objects"].data).any()
    monkeypatch.undo()                                       # with room, the same commit goes in
    w.commit()
    assert "label" in w.status.text() and "held in memory" in w.status.text(), w.status.text()
    assert isinstance(layer.data, np.ndarray)
    layer.metadata["source"] = "seg.zarr"                    # as the reader's or automatic widget's result
    viewer.layers.selection.active = layer
    layer.selected_label = first
    w.edit_label()
    _wait(qtbot, w)
    w.commit()
    assert "its file is as it was (save the layer" in w.status.text(), w.status.text()


@needs_default
def test_editing_a_committed_object_keeps_its_id_and_measurements_true(make_napari_viewer, qtbot):
    viewer, w = _committed_phantom_object(make_napari_viewer, qtbot)
    objects = viewer.layers["objects"]
    first = np.asarray(objects.data) == 1
    viewer.layers.selection.active = objects
    objects.selected_label = 1
    w.edit_label()
    _wait(qtbot, w)
    top = int(np.flatnonzero(first.any((1, 2))).max())
    w.goto_slice(top)                              # the object does not reach its top slice: erase it there
    viewer.layers["current object"].data[top] = 0
    w.accept_slice()
    w.propagate()
    _wait(qtbot, w)
    far = (0, 0, 0)                                # painted with the label in the layer meanwhile: kept
    assert not first[far]
    objects.data[far] = 1
    w.commit()
    now = np.asarray(objects.data) == 1
    assert now[far] and list(objects.features["index"]) == [1] and objects.features["voxels"][0] == now.sum()
    now[far] = False
    assert not now[top].any() and np.array_equal(now[:top], first[:top])   # an empty fix propagates nothing
    assert now.sum() < first.sum() and int(np.asarray(objects.data).max()) == 1   # no new id


@needs_default
def test_paint_left_without_accept_is_taken_by_the_next_step_not_drawn_over(make_napari_viewer, qtbot):
    """Painting a correction in `current object` and pressing Propagate (or Commit) without Accept
    painted slice drew the propagation over the paint: the user's correction was lost, silently."""
    viewer, w = _phantom_widget(make_napari_viewer)
    truth = np.asarray(viewer.layers["phantom truth"].data) == 1
    z, preview = _box_and_segment(qtbot, w, truth)
    w.propagate()
    _wait(qtbot, w)
    zs = np.flatnonzero(w.seg.prediction.any((1, 2)))
    far = int(zs[-1])                                   # the last slice the object was propagated to
    w.goto_slice(far)
    preview.selected_label = 0
    preview.brush_size = 9
    for x in range(0, preview.data.shape[2], 4):        # erase a band through it with the brush
        for y in range(0, preview.data.shape[1], 4):
            preview.paint((far, y, x), 0)
    preview.selected_label = 1
    preview.paint((far, 10, 10), 1)                    # and add a blob where there was nothing
    painted = np.asarray(preview.data[far]) > 0
    assert not np.array_equal(painted, w.seg.prediction[far])
    w.goto_slice(z)
    w.propagate()
    _wait(qtbot, w)
    assert far in w.seg.painted_slices and f"painted slice {far} accepted first" in w.status.text()
    np.testing.assert_array_equal(w.seg.annotation(far), painted)
    np.testing.assert_array_equal(np.asarray(preview.data[far]) > 0, painted)
    # painted while a propagation runs (the result arrives after): kept, and said
    w.propagate()
    preview.paint((far - 1, 12, 12), 1)
    during = np.asarray(preview.data[far - 1]) > 0
    _wait(qtbot, w)
    assert f"slice {far - 1} painted while it ran: accepted" in w.status.text()
    np.testing.assert_array_equal(w.seg.annotation(far - 1), during)
    np.testing.assert_array_equal(np.asarray(preview.data[far - 1]) > 0, during)
    # painted again, then Commit: the object committed is the one shown, paint included
    preview.paint((far, 30, 30), 1)
    shown = np.asarray(preview.data).astype(bool).copy()
    w.commit()
    assert f"painted slice {far} accepted first" in w.status.text()
    np.testing.assert_array_equal(np.asarray(viewer.layers["objects"].data) == 1, shown)


@needs_default
def test_committed_objects_are_kept_on_disk_and_restored_after_a_restart(make_napari_viewer, qtbot, _user_dir):
    """The kept session holds the current object only: a crash lost every committed object. The
    objects layer is now kept as it changes (Commit, its Undo, the brush), and a new napari session
    restores it; one that commits first sets the earlier file aside and restores from there."""
    import zarr
    from napari_halo_seg._interactive_widget import InteractiveWidget
    from napari_halo_seg._kept_objects import kept_objects_path
    viewer, w = _committed_phantom_object(make_napari_viewer, qtbot)
    objects = viewer.layers["objects"]
    kept = kept_objects_path(w._kept_path())
    assert str(_user_dir) in str(kept)

    widgets = [w]

    def on_disk(path=kept):
        for one in widgets:
            one._keeper.wait()
        return np.asarray(zarr.open_array(str(path), mode="r")[...])

    first = np.asarray(objects.data).copy()
    assert first.max() == 1 and np.array_equal(on_disk(), first)
    objects.brush_size = 3
    objects.paint((5, 4, 4), 9)                                  # the user's own brush on the layer
    qtbot.waitUntil(lambda: on_disk()[5, 4, 4] == 9)
    assert np.array_equal(on_disk(), np.asarray(objects.data))
    objects.undo()                                               # napari's own Undo of the stroke
    assert on_disk()[5, 4, 4] == 0 and np.array_equal(on_disk(), first)
    objects.redo()
    assert on_disk()[5, 4, 4] == 9
    objects.paint((5, 4, 4), 0)
    qtbot.waitUntil(lambda: on_disk()[5, 4, 4] == 0)
    w.undo()                                                     # the commit taken back out
    assert not on_disk().any()
    w.object_name.setText("left blob")
    w.commit()                                                   # and committed again, named
    assert np.array_equal(on_disk(), first) and w.object_name.text() == ""
    assert list(objects.features["name"]) == ["left blob"] and objects.features["voxels"][0] == first.sum()
    assert zarr.open_array(str(kept), mode="r").attrs["segment_names"] == {"1": "left blob"}
    # the layer opens as labels where it lies, as any halo-seg labels file
    from napari_halo_seg._reader import read_volume
    (data, meta, kind), = read_volume(str(kept))
    assert kind == "labels" and tuple(meta["scale"]) == tuple(objects.scale)

    def restart():
        """As after closing napari: the working layers and the widget are gone, the image stays."""
        for name in [lay.name for lay in viewer.layers if lay.metadata.get("image") == "phantom"]:
            viewer.layers.remove(name)
        widgets.append(InteractiveWidget(viewer))
        widgets[-1].image.setCurrentText("phantom")
        widgets[-1].device.setCurrentText("cpu")
        return widgets[-1]

    w2 = restart()
    assert "Restore objects brings them back" in w2.status.text()
    assert not np.asarray(viewer.layers["objects"].data).any()  # not taken over unasked
    w2.restore_objects()
    _wait(qtbot, w2)
    assert "restored 1 object" in w2.status.text(), w2.status.text()
    assert np.array_equal(np.asarray(viewer.layers["objects"].data), first)
    assert dict(zip(viewer.layers["objects"].features["index"], viewer.layers["objects"].features["name"])) == \
        {1: "left blob"}                                         # its name came back with it
    w2.restore_objects()
    assert "no objects of an earlier napari session" in w2.status.text()

    # another restart, and an object committed before Restore: the earlier file is set aside, not lost
    w3 = restart()
    truth2 = np.asarray(viewer.layers["phantom truth"].data) == 2
    _box_and_segment(qtbot, w3, truth2)
    w3.object_name.setText("right blob")
    w3.commit()
    second = np.asarray(viewer.layers["objects"].data).copy()
    on_disk()
    aside = [p for p in kept.parent.iterdir() if p.name.startswith(kept.name.replace(".zarr", ".")) and p != kept]
    assert len(aside) == 1 and np.array_equal(on_disk(aside[0]), first)
    assert np.array_equal(on_disk(), second)
    w3.restore_objects()
    _wait(qtbot, w3)
    now = np.asarray(viewer.layers["objects"].data)
    assert "as ids 2 to 2" in w3.status.text(), w3.status.text()
    assert np.array_equal(now == 1, second == 1)                 # this session's object keeps its id
    assert np.array_equal(now == 2, first.astype(bool) & (second == 0))   # the earlier one joins after it
    assert np.array_equal(on_disk(), now)
    features = viewer.layers["objects"].features
    assert dict(zip(features["index"], features["name"])) == {1: "right blob", 2: "left blob"}
    assert list(features["voxels"]) == [int((now == 1).sum()), int((now == 2).sum())]


def test_the_layers_to_draw_in_are_there_from_the_start(make_napari_viewer, qtbot):
    """The status line says "draw a box ..." but the prompt layers were made only by the first
    Segment slice: a new user had nothing to draw in."""
    from napari_halo_seg._interactive_widget import InteractiveWidget
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((6, 16, 16), np.float32), name="scan")
    InteractiveWidget(viewer)
    for name in ("box", "clicks +", "clicks -", "extreme points", "strokes", "current object", "objects"):
        assert name in viewer.layers, name
    assert viewer.layers["objects"].metadata["image"] == "scan"

    later = make_napari_viewer()                      # the widget first, then the image
    w = InteractiveWidget(later)
    assert len(later.layers) == 0
    later.add_image(np.zeros((6, 16, 16), np.float32), name="scan")
    qtbot.waitUntil(lambda: "box" in later.layers)
    assert w.image.currentText() == "scan"

    flat = make_napari_viewer()                       # a 2D image: said, nothing made
    flat.add_image(np.zeros((16, 16), np.float32), name="photo")
    w = InteractiveWidget(flat)
    assert "box" not in flat.layers and "needs a 3D image" in w.status.text()


@needs_default
def test_another_patients_scan_of_the_same_name_gets_its_own_layers_and_session(make_napari_viewer, qtbot,
                                                                                 tmp_path):
    """The working layers and the session were keyed by the image's name: after one "scan" was
    closed and another patient's "scan" opened, the new scan was segmented on the closed scan's
    volume and its object committed into the closed scan's objects layer (another shape)."""
    from halo_seg.samples import make_phantom
    from napari_halo_seg._interactive_widget import InteractiveWidget
    viewer = make_napari_viewer()
    truths = []
    for k, shape in enumerate([(40, 64, 64), (48, 80, 72)]):
        ph = make_phantom(shape, n_objects=2, seed=k, noise=0.05)
        (tmp_path / f"p{k}").mkdir()
        np.save(tmp_path / f"p{k}" / "scan.npy", ph.image.astype(np.float32))
        truths.append(ph.labels == 1)
    first = viewer.open(str(tmp_path / "p0" / "scan.npy"), plugin="napari-halo-seg")[0]
    w = InteractiveWidget(viewer)
    w.device.setCurrentText("cpu")
    for k in (0, 1):
        if k:
            viewer.layers.remove(first)
            viewer.open(str(tmp_path / "p1" / "scan.npy"), plugin="napari-halo-seg")
            qtbot.waitUntil(lambda: viewer.layers["objects"].data.shape == truths[1].shape)
        _box_and_segment(qtbot, w, truths[k])
        assert w.seg.volume_shape == truths[k].shape
        w.propagate()
        _wait(qtbot, w)
        w.commit()
        assert "committed object 1" in w.status.text()
        mine = np.asarray(viewer.layers["objects"].data) == 1
        assert mine.shape == truths[k].shape and dice(mine, truths[k]) > 0.7
    parked = viewer.layers["objects (scan)"]               # the closed scan's, hidden, as it was
    assert not parked.visible and parked.data.shape == truths[0].shape
    assert dice(np.asarray(parked.data) == 1, truths[0]) > 0.7


def test_a_labels_box_is_found_a_slab_at_a_time():
    """Measuring an edited label compared the whole volume at once (1.5 s of frozen napari on
    300 x 1024 x 1024); its box is now found slab by slab, equal to numpy's whole-volume answer."""
    from scipy import ndimage
    from napari_halo_seg._interactive_widget import _label_box
    rng = np.random.default_rng(3)
    data = np.zeros((37, 40, 33), np.uint16)
    data[3:9, 5:30, 2:4] = 2
    data[30:35, 1:2, 20:33] = 2          # a second piece of label 2, in a later slab
    data[10:20, 10:20, 10:20] = 7
    data[rng.random(data.shape) < 0.001] = 9
    for label in (2, 7, 9):
        assert _label_box(data, label, slab_voxels=4 * 40 * 33) == \
            ndimage.find_objects((data == label).astype(np.uint8))[0]
    assert _label_box(data, 5) is None


@needs_default
def test_a_2d_image_opens_as_one_plane_and_is_segmented_there(make_napari_viewer, qtbot, tmp_path):
    """A 2D TIFF (a microscope's field) opens as a volume of one plane, which the widget segments from
    a box as the engine does on that plane; a 2D colour photo is refused naming napari's own reader.
    Before, the reader refused every 2D image ("expected a 3D (Z, Y, X) volume")."""
    import tifffile
    from halo_seg import InteractiveSegmenter
    from halo_seg.samples import make_phantom
    from napari_halo_seg._interactive_widget import InteractiveWidget
    from napari_halo_seg._reader import read_volume
    ph = make_phantom()
    truth = ph.labels == 1
    z = int(truth.sum((1, 2)).argmax())
    tifffile.imwrite(tmp_path / "field.tif", ph.image[z])
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "field.tif"), plugin="napari-halo-seg")
    layer = viewer.layers["field"]
    assert layer.data.shape == (1,) + ph.image.shape[1:]
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("field")
    w.device.setCurrentText("cpu")
    w.ensure_prompt_layers()
    y0, x0, y1, x1 = mask_bbox(truth[z])
    viewer.layers["box"].add_rectangles(np.array([[0, y0, x0], [0, y0, x1], [0, y1, x1], [0, y1, x0]], float))
    w.propagate()
    _wait(qtbot, w)
    ref = InteractiveSegmenter(ph.image[z][None], device="cpu")
    ref.add_box(0, y0, x0, y1, x1)
    got = np.asarray(viewer.layers["current object"].data) > 0
    assert np.array_equal(got, ref.propagate()) and dice(got[0], truth[z]) > 0.8, w.status.text()
    tifffile.imwrite(tmp_path / "photo.tif", np.zeros((20, 30, 3), np.uint8), photometric="rgb")
    with pytest.raises(ValueError, match="2D colour .RGB. image .* napari's own reader"):
        read_volume(str(tmp_path / "photo.tif"))


@needs_default
def test_two_touching_nuclei_boxed_as_one_are_committed_as_two(make_napari_viewer, qtbot, monkeypatch):
    """In a 3D stack, one box round two touching nuclei segments both as one object; Commit as two
    commits them as two ids, each one nucleus (against the truth), and Undo takes both back out. A
    step failing after its worker is said in the status line, the object kept."""
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._interactive_widget import InteractiveWidget
    tl = cell_timelapse(shape=(32, 96, 96), cells=14, timepoints=12, radius=5.0, speed=1.5, divisions=3, seed=3)
    pair = [int(k) for k, first, _, parent in tl.lineage if parent == 2 and first == 1]   # just divided: touching
    viewer = make_napari_viewer()
    viewer.add_image(tl.image[1], name="nuclei")
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("nuclei")
    w.device.setCurrentText("cpu")
    both = np.isin(tl.ids[1], pair)
    z, preview = _box_and_segment(qtbot, w, both)
    w.propagate()
    _wait(qtbot, w)
    whole = np.asarray(preview.data) > 0
    objects = viewer.layers["objects"]

    def boom(*_a, **_k):
        raise ValueError("boom")
    monkeypatch.setattr(w, "_commit_parts", boom)
    w.commit_as_two()
    _wait(qtbot, w)
    assert w.status.text() == "error: boom" and w.buttons["Propagate"].isEnabled()   # before: "splitting ..."
    assert not objects.data.any() and np.array_equal(np.asarray(preview.data) > 0, whole)
    monkeypatch.undo()
    w.commit_as_two()
    _wait(qtbot, w)
    assert w.status.text().startswith("committed the object as two, objects 1 (") and "Next time point" not in \
        w.status.text(), w.status.text()
    one, two = (np.asarray(objects.data) == k for k in (1, 2))
    assert np.array_equal(one | two, whole) and one.sum() >= two.sum() > 0
    a, b = (tl.ids[1] == k for k in pair)
    assert max(dice(one, a) + dice(two, b), dice(one, b) + dice(two, a)) / 2 > 0.8
    assert list(objects.features["index"]) == [1, 2]
    w.undo()
    assert not objects.data.any() and np.array_equal(np.asarray(preview.data) > 0, whole), w.status.text()


@needs_default
def test_a_merged_label_of_an_automatic_result_is_split_in_place(make_napari_viewer, qtbot):
    """Two touching nuclei merged into one label of an automatic result: Edit label, then Commit as two
    keeps the label's id for the larger and gives the other the layer's next id, other labels left
    as they were; Undo merges them back."""
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._interactive_widget import InteractiveWidget
    tl = cell_timelapse(shape=(32, 96, 96), cells=14, timepoints=12, radius=5.0, speed=1.5, divisions=3, seed=3)
    a, b = [int(k) for k, first, _, parent in tl.lineage if parent == 2 and first == 1]
    auto = tl.ids[1].copy()
    auto[auto == b] = a                                   # merged, as a threshold would give them
    viewer = make_napari_viewer()
    viewer.add_image(tl.image[1], name="nuclei")
    layer = viewer.add_labels(auto.copy(), name="auto")
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("nuclei")
    w.device.setCurrentText("cpu")
    split_label(viewer, qtbot, w, layer, a)
    new = int(auto.max()) + 1
    out = np.asarray(layer.data)
    assert w.status.text().startswith(f"label {a} of 'auto' corrected and split in two: 0 voxels added, 0 removed; the "
                                      f"second part is new label {new} ("), w.status.text()
    assert np.array_equal(out[(auto != a)], auto[auto != a])   # the other labels as they were
    assert np.array_equal((out == a) | (out == new), auto == a) and (out == a).sum() >= (out == new).sum() > 0
    truth = [tl.ids[1] == k for k in (a, b)]
    assert max(dice(out == a, truth[0]) + dice(out == new, truth[1]),
               dice(out == a, truth[1]) + dice(out == new, truth[0])) / 2 > 0.8
    w.undo()
    assert np.array_equal(np.asarray(layer.data), auto), w.status.text()
    assert f"label {a} of 'auto' is as it was (and label {new} gone)" in w.status.text()


@needs_default
def test_three_merged_nuclei_come_apart_in_two_splits_and_none_is_lost(make_napari_viewer, qtbot):
    """Three touching nuclei in a row merged into one label: Commit as two splits off one whole
    nucleus (the cut at the lower neck, not through the middle one) and keeps every voxel; Edit
    label on the two left and Commit as two again gives each its own label."""
    from scipy import ndimage as ndi

    from _cells import balls
    from napari_halo_seg._interactive_widget import InteractiveWidget
    shape = (24, 48, 80)
    truth = balls(shape, [(12, 24, 26), (12, 24, 38), (12, 24, 51)], 6)
    image = ndi.gaussian_filter((truth > 0).astype(np.float32), 1) + np.random.default_rng(0).normal(0, 0.15, shape)
    auto = (truth > 0).astype(np.uint16) * 5
    viewer = make_napari_viewer()
    viewer.add_image(image.astype(np.float32), name="nuclei")
    layer = viewer.add_labels(auto.copy(), name="auto")
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("nuclei")
    w.device.setCurrentText("cpu")
    for new in (6, 7):
        split_label(viewer, qtbot, w, layer, 5)
        assert w.status.text().startswith(f"label 5 of 'auto' corrected and split in two: 0 voxels added, 0 removed; "
                                          f"the second part is new label {new} ("), w.status.text()
        out = np.asarray(layer.data)
        assert np.array_equal(out > 0, truth > 0)   # every voxel kept
        for j in (1, 2, 3):                          # and no nucleus cut: each (almost) whole in one label
            assert np.bincount(out[truth == j]).max() > 0.97 * (truth == j).sum(), (new, j)
    best = {k: max((1, 2, 3), key=lambda j: dice(out == k, truth == j)) for k in (5, 6, 7)}
    assert sorted(best.values()) == [1, 2, 3] and all(dice(out == k, truth == j) > 0.95 for k, j in best.items())
