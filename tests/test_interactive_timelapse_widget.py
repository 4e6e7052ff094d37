"""The interactive widget on a time-lapse image (T, Z, Y, X): an object is segmented in the volume of
the time point shown, equal to the engine's on that volume alone; what is drawn, previewed and
committed stays at its own time point; an object is not carried to another time point."""
import numpy as np
import pytest

pytest.importorskip("napari")

from halo_seg.interactive.model_io import default_memnet_installed  # noqa: E402
from halo_seg.interactive.roi import mask_bbox  # noqa: E402
from _steps import split_label  # noqa: E402

pytestmark = pytest.mark.skipif(not default_memnet_installed(), reason="no shipped interactive weights")


def _wait(qtbot, w):
    assert w.worker is not None, w.status.text()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)


def _series():
    """Three time points of the phantom, the objects moving along x; (image, labels), (T, Z, Y, X)."""
    from halo_seg.samples import make_phantom
    ph = make_phantom()
    image = np.stack([np.roll(ph.image, 4 * t, axis=2) for t in range(3)])
    labels = np.stack([np.roll(ph.labels, 4 * t, axis=2) for t in range(3)]).astype(np.uint16)
    return image, labels


def _widget(make_napari_viewer, image):
    from napari_halo_seg._interactive_widget import InteractiveWidget
    viewer = make_napari_viewer()
    viewer.add_image(image, name="movie")
    w = InteractiveWidget(viewer)
    w.image.setCurrentText("movie")
    w.device.setCurrentText("cpu")
    return viewer, w


def _show(viewer, t, z):
    viewer.dims.set_point(0, t)
    viewer.dims.set_point(1, z)


def _box(viewer, t, z, mask):
    y0, x0, y1, x1 = mask_bbox(mask)
    viewer.layers["box"].add_rectangles(np.array([[t, z, y0, x0], [t, z, y0, x1], [t, z, y1, x1], [t, z, y1, x0]],
                                                 float))


def _reference(volume, z, mask):
    from halo_seg import InteractiveSegmenter
    ref = InteractiveSegmenter(volume, device="cpu")
    ref.add_box(z, *mask_bbox(mask))
    return ref.propagate()


def test_an_object_is_segmented_and_committed_at_the_time_point_shown(make_napari_viewer, qtbot):
    image, labels = _series()
    viewer, w = _widget(make_napari_viewer, image)
    truth = labels == 1
    z = int(truth[1].sum((1, 2)).argmax())
    w.ensure_prompt_layers()
    for name in ("objects", "current object", "strokes"):   # one layer over all time points, none drawn yet
        assert viewer.layers[name].data.shape == image.shape
    assert viewer.layers["box"].ndim == 4 and viewer.layers["clicks +"].ndim == 4
    assert w.status.text().startswith("a time-lapse of 3 time points: an object is segmented at the time point shown")

    # a box at time point 0 (for a later object) must not prompt the object begun at time point 1
    _box(viewer, 0, z, truth[0, z])
    viewer.layers["clicks -"].add([0, z, *np.argwhere(truth[0, z])[0]])
    _show(viewer, 1, z)
    _box(viewer, 1, z, truth[1, z])
    w.propagate()
    _wait(qtbot, w)
    preview = viewer.layers["current object"]
    ref = _reference(image[1], z, truth[1, z])
    assert w._t == 1 and w.seg.volume_shape == image.shape[1:]
    assert np.array_equal(np.asarray(preview.data[1]) > 0, ref), w.status.text()   # the engine's, on t=1 alone
    assert not preview.data[0].any() and not preview.data[2].any()

    # a click, then Undo: the click layers show what the session holds, at its time point only
    viewer.layers["clicks +"].add([1, z, *np.argwhere(truth[1, z])[0]])
    w.segment_slice()
    _wait(qtbot, w)
    assert len(viewer.layers["clicks +"].data) == 1
    w.undo()                                   # the segmentation with the click
    w.undo()                                   # the click
    assert len(viewer.layers["clicks +"].data) == 0, w.status.text()
    assert np.round(viewer.layers["clicks -"].data[:, 0]).tolist() == [0]          # time point 0's stays
    assert [int(round(s[0, 0])) for s in viewer.layers["box"].data] == [0, 1]
    assert np.array_equal(np.asarray(preview.data[1]) > 0, ref), w.status.text()
    w.reset()                                  # Reset, then Undo: the box drawn back where it was
    assert [int(round(s[0, 0])) for s in viewer.layers["box"].data] == [0] and not preview.data.any()
    w.undo()
    assert sorted(int(round(s[0, 0])) for s in viewer.layers["box"].data) == [0, 1]
    assert np.array_equal(np.asarray(preview.data[1]) > 0, ref), w.status.text()

    # another time point while the object has prompts: refused, nothing changed
    _show(viewer, 2, z)
    w.segment_slice()
    assert w.worker is None and "this object is at time point 1" in w.status.text(), w.status.text()
    assert np.array_equal(np.asarray(preview.data[1]) > 0, ref) and not preview.data[2].any()
    w.goto_slice(z + 1)                        # a slice of the object (the quality plot): at its time point
    assert viewer.dims.current_step[0] == 1 and w._z() == z + 1
    _show(viewer, 2, z)

    _show(viewer, 1, z)
    w.commit()
    objects = viewer.layers["objects"]
    assert "committed object 1 at time point 1" in w.status.text(), w.status.text()
    assert np.array_equal(objects.data[1] == 1, ref) and not objects.data[0].any() and not objects.data[2].any()
    feats = objects.features
    assert list(feats["index"]) == [1] and list(feats["timepoint"]) == [1]
    assert list(feats["voxels"]) == [int(ref.sum())]
    np.testing.assert_allclose(feats["mean intensity"], [image[1][ref].mean()], atol=1e-3)
    # the commit cleared the object's prompts; those drawn at time point 0 stay
    assert [int(round(s[0, 0])) for s in viewer.layers["box"].data] == [0]
    assert np.round(viewer.layers["clicks -"].data[:, 0]).tolist() == [0]
    assert not preview.data.any()

    w.undo()                                   # right after Commit: out of the objects, current again
    assert not objects.data.any() and np.array_equal(np.asarray(preview.data[1]) > 0, ref), w.status.text()
    w.commit()

    # a second object at time point 0, from the box drawn there first: its own id, at its own time point
    _show(viewer, 0, z)
    w.propagate()
    _wait(qtbot, w)
    from halo_seg import InteractiveSegmenter
    neg = InteractiveSegmenter(image[0], device="cpu")   # the negative click drawn there is a prompt too
    neg.add_box(z, *mask_bbox(truth[0, z]))
    neg.add_click(z, *np.argwhere(truth[0, z])[0], positive=False)
    assert w._t == 0 and np.array_equal(np.asarray(preview.data[0]) > 0, neg.propagate()), w.status.text()
    w.commit()
    assert np.array_equal(objects.data[0] == 2, neg.prediction) and np.array_equal(objects.data[1] == 1, ref)
    assert list(objects.features["timepoint"]) == [1, 0]


def test_a_label_of_a_time_lapse_result_is_corrected_at_its_time_point(make_napari_viewer, qtbot):
    image, labels = _series()
    viewer, w = _widget(make_napari_viewer, image)
    auto = viewer.add_labels(labels.copy(), name="auto")
    truth = labels == 2
    z = int(truth[2].sum((1, 2)).argmax())
    _show(viewer, 2, z)
    viewer.layers.selection.active = auto
    auto.selected_label = 2
    w.edit_label()
    _wait(qtbot, w)
    assert w._t == 2 and np.array_equal(w.seg.prior, truth[2]), w.status.text()
    preview = viewer.layers["current object"]
    assert np.array_equal(np.asarray(preview.data[2]) > 0, truth[2]) and not preview.data[:2].any()
    w._here(preview)[z] = 0                     # the user erases the object on slice z and accepts it
    w.accept_slice()
    w.propagate()
    _wait(qtbot, w)
    expect = w.seg.prediction.copy()
    assert not expect[z].any()
    w.commit()
    assert "label 2 of 'auto' corrected" in w.status.text(), w.status.text()
    np.testing.assert_array_equal(auto.data[:2], labels[:2])            # the other time points untouched
    assert np.array_equal(auto.data[2] == 2, expect & ((labels[2] == 0) | (labels[2] == 2)))
    others = (labels[2] != 2) & (labels[2] != 0)
    np.testing.assert_array_equal(auto.data[2][others], labels[2][others])   # other labels never overwritten
    w.undo()
    np.testing.assert_array_equal(auto.data, labels)

    # labels of another shape than the time-lapse are refused, naming both
    viewer.add_labels(labels[:2].copy(), name="short")
    viewer.layers.selection.active = viewer.layers["short"]
    w.reset()
    w.edit_label()
    assert w.worker is None and "'movie' (3, 64, 96, 96) and 'short' (2, 64, 96, 96): Edit label corrects labels " \
        "over the time-lapse's time points" in w.status.text(), w.status.text()


def test_time_lapse_sessions_and_objects_are_kept_and_restored(make_napari_viewer, qtbot, _user_dir):
    """Strokes prompt at their time point; each propagation keeps the session of its time point; the
    objects of every time point are kept in one (T, Z, Y, X) file, which opens over the time-lapse
    and is restored at their time points after a restart."""
    import zarr
    from halo_seg import InteractiveSegmenter
    from napari_halo_seg._interactive_widget import InteractiveWidget
    from napari_halo_seg._kept_objects import kept_objects_path
    from napari_halo_seg._reader import read_volume
    image, labels = _series()
    viewer, w = _widget(make_napari_viewer, image)
    truth = labels == 3
    z = int(truth[2].sum((1, 2)).argmax())
    w.ensure_prompt_layers()
    strokes = viewer.layers["strokes"]
    inside = np.zeros(truth.shape[2:], bool)
    ys = np.flatnonzero(truth[2, z].any(1))
    row = (ys[0] + ys[-1]) // 2
    inside[row] = truth[2, z, row]                      # a stroke along the object's middle row
    strokes.data[2, z][inside] = 1                      # drawn at time point 2
    strokes.data[0, z][truth[0, z]] = 2                 # and one at time point 0, not this object's
    _show(viewer, 2, z)
    w.propagate()
    _wait(qtbot, w)
    ref = InteractiveSegmenter(image[2], device="cpu")
    ref.add_scribble(z, inside, positive=True)
    assert np.array_equal(np.asarray(viewer.layers["current object"].data[2]) > 0, ref.propagate()), w.status.text()
    session = w._kept_session_path()
    assert session.name.endswith(".t0002.last.npz") and session.exists()
    reopened = InteractiveSegmenter.from_session(session, image[2], device="cpu")
    assert np.array_equal(reopened.prediction, ref.prediction)
    w.commit()
    assert not strokes.data[2].any() and np.array_equal(strokes.data[0, z] == 2, truth[0, z])   # t=0's stay

    objects = viewer.layers["objects"]
    kept = kept_objects_path(w._kept_path())
    w._keeper.wait()
    on_disk = np.asarray(zarr.open_array(str(kept), mode="r")[...])
    assert on_disk.shape == image.shape and np.array_equal(on_disk, objects.data) and (on_disk[2] == 1).any()
    (data, meta, kind), = read_volume(str(kept))
    assert kind == "labels" and data.shape == image.shape and len(meta["scale"]) == 4
    viewer.add_labels(data, **{k: v for k, v in meta.items() if k in ("scale", "translate")}, name="reopened")

    for name in [lay.name for lay in viewer.layers if lay.metadata.get("image") == "movie"]:
        viewer.layers.remove(name)
    w2 = InteractiveWidget(viewer)
    w2.image.setCurrentText("movie")
    assert "Restore objects brings them back" in w2.status.text()
    w2.restore_objects()
    _wait(qtbot, w2)
    restored = viewer.layers["objects"]
    assert restored.data.shape == image.shape and np.array_equal(restored.data, on_disk), w2.status.text()
    assert list(restored.features["timepoint"]) == [2]
    assert list(restored.features["voxels"]) == [int((on_disk == 1).sum())]


def test_links_made_with_next_time_point_are_kept_and_restored_onto_the_ids_restored(make_napari_viewer, qtbot,
                                                                                     _user_dir):
    """The links of objects followed over time (each row's 'carried from') are kept with the objects
    on disk and Restore objects brings them back onto the ids their objects come back as."""
    import zarr
    from napari_halo_seg._interactive_widget import InteractiveWidget
    from napari_halo_seg._kept_objects import kept_objects_path, read_kept
    from napari_halo_seg._measure import CARRIED, layer_links, set_row
    image, labels = _series()
    viewer, w = _widget(make_napari_viewer, image)
    w.ensure_prompt_layers()
    objects = viewer.layers["objects"]
    data = objects.data
    for t in range(3):                                # object 1 followed on as 2 and 3, as Commit leaves them
        data[t][labels[t] == 1] = t + 1
    objects.data = data
    for t in range(3):
        set_row(objects, {"index": t + 1, "timepoint": t, **({CARRIED: t} if t else {})})
    w._keeper.write(objects)
    w._keeper.wait()
    kept = kept_objects_path(w._kept_path())
    assert zarr.open_array(str(kept), mode="r").attrs["carried_from"] == {"2": 1, "3": 2}
    assert read_kept(kept, image.shape)[2] == {2: 1, 3: 2}
    from napari_halo_seg._reader import read_volume
    (data_read, meta, kind), = read_volume(str(kept))   # opened as a file: the links under the cursor too
    assert kind == "labels" and layer_links(viewer.add_labels(data_read, **meta).features) == {2: 1, 3: 2}
    viewer.layers.remove(viewer.layers[-1])

    for name in [lay.name for lay in viewer.layers if lay.metadata.get("image") == "movie"]:
        viewer.layers.remove(name)
    w2 = InteractiveWidget(viewer)
    w2.image.setCurrentText("movie")
    w2.ensure_prompt_layers()
    fresh = viewer.layers["objects"]
    data = fresh.data
    data[0][labels[0] == 3] = 1                       # an object of this session first: the kept ones come after
    fresh.data = data
    w2.restore_objects()
    _wait(qtbot, w2)
    assert "as ids 2 to 4" in w2.status.text(), w2.status.text()
    assert all(np.array_equal(fresh.data[t] == t + 2, labels[t] == 1) for t in range(3))
    assert layer_links(fresh.features) == {3: 2, 4: 3}
    paths = viewer.layers["objects paths"]           # drawn through the restored objects' centres
    assert len(set(paths.data[:, 0])) == 1
    assert np.allclose(paths.data[:, 1:], [(t, *np.argwhere(labels[t] == 1).mean(0)) for t in range(3)])
    w2._keeper.wait()
    assert read_kept(kept, image.shape)[2] == {3: 2, 4: 3}


def _painted(make_napari_viewer, objects: list):
    """The phantom's time-lapse with objects painted into the objects layer, as committed: each
    (id, time point, the phantom's label there, the id it was carried from or None), with its row.
    (image, labels, viewer, widget, objects layer)."""
    from napari_halo_seg._measure import CARRIED, set_row
    image, labels = _series()
    viewer, w = _widget(make_napari_viewer, image)
    w.ensure_prompt_layers()
    layer = viewer.layers["objects"]
    data = layer.data
    for k, t, cell, _ in objects:
        data[t][labels[t] == cell] = k
    layer.data = data
    for k, t, _, link in objects:
        set_row(layer, {"index": k, "timepoint": t, **({CARRIED: link} if link else {})})
    return image, labels, viewer, w, layer

def test_a_merge_among_the_links_restored_is_said_not_drawn_silently(make_napari_viewer, qtbot, _user_dir):
    """Links kept with two objects before one (object 3 carried from 1, and object 2, before it,
    carried from 3: typed by hand, Next time point makes none): the paths draw one of them, and
    the status line says, after what Restore objects says, which link is not drawn; said once."""
    from napari_halo_seg._interactive_widget import InteractiveWidget
    image, labels, viewer, w, objects = _painted(make_napari_viewer, [(1, 0, 1, None), (2, 0, 2, 3), (3, 1, 1, 1)])
    w._keeper.write(objects)
    w._keeper.wait()
    for name in [lay.name for lay in viewer.layers if lay.metadata.get("image") == "movie"]:
        viewer.layers.remove(name)
    w2 = InteractiveWidget(viewer)
    w2.image.setCurrentText("movie")
    w2.ensure_prompt_layers()
    w2.restore_objects()
    _wait(qtbot, w2)
    note = "object 3 has two objects before it: its path from 2 is not drawn (a merge"
    qtbot.waitUntil(lambda: note in w2.status.text(), timeout=5_000)
    assert w2.status.text().index("restored") < w2.status.text().index(note), w2.status.text()
    paths = viewer.layers["objects paths"]           # object 1's path to 3 alone
    assert len(paths.data) == 2 and set(paths.data[:, 1]) == {0, 1}
    assert np.allclose(paths.data[0, 2:], np.argwhere(labels[0] == 1).mean(0))
    w2.status.setText("something else")
    w2._show_paths()                                 # redrawn with the same merge: not said again
    qtbot.wait(50)
    assert w2.status.text() == "something else"

def _carried(image, t, rec_mask, step):
    """The box Next (or Previous) time point should end with at t from the object ``rec_mask`` of the
    time point it comes from, the engine's result from it, and which box it came from (0: where the
    object was on its largest slice; 1: that box moved by ``step``): each segmented on its slice and
    replaced by the tight box of what it found, the one kept whose segmentation the prompt network
    predicts the better Dice of, less half the log of how unlike the object's largest slice its area
    is; that one, where it found under 0.85 of that area, widened where what it found reaches the
    carried box's sides (carry._widened) and kept so if the network, less that cost, prefers it
    (the last of the five returned: whether it was, as the status line says)."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import _widened
    z = int(rec_mask.sum((1, 2)).argmax())
    y0, x0, y1, x1 = mask_bbox(rec_mask[z])
    tried = [(z, (y0, x0, y1, x1))]
    if any(step):
        tried.append((z + step[0], (y0 + step[1], x0 + step[2], y1 + step[1], x1 + step[2])))
    ref = InteractiveSegmenter(image[t], device="cpu")
    best = None
    area = rec_mask[z].sum()
    for i, (zz, box) in enumerate(tried):
        tight = mask_bbox(ref.try_box(zz, box)[0])
        found, q = ref.try_box(zz, tight)
        q -= 0.5 * abs(np.log((found.sum() + 1) / (area + 1)))
        if best is None or q > best[0]:
            best = (q, zz, tight, i, found.sum() < 0.85 * area)
    q, zz, box, which, clipped = best
    widened = ""
    if clipped:
        wide = mask_bbox(_widened(ref, zz, tried[which][1], ref.try_box(zz, tried[which][1])[0]))
        found, q2 = ref.try_box(zz, wide)
        if q2 - 0.5 * abs(np.log((found.sum() + 1) / (area + 1))) > q and wide != box:
            box, widened = wide, ", widened where the cell grew out of it"
    ref.add_box(zz, *box)
    return zz, box, ref.propagate(), which, widened


def test_next_time_point_follows_an_object_with_its_box_moved_by_its_last_step(make_napari_viewer, qtbot):
    """Next time point commits the object and looks for it at the next time point with its box where
    it was on its largest slice and, once it has a last step, moved by it; each box becomes the
    tight box of what the slice's segmentation finds in it, the one the network is surer of is kept,
    and the object is propagated: the result is the engine's from those steps on that time point's
    volume alone, and the box layer shows the box it holds."""
    from halo_seg.metrics import dice
    image, labels = _series()                       # the objects move 4 voxels along x a time point
    viewer, w = _widget(make_napari_viewer, image)
    truth = labels == 1
    z = int(truth[0].sum((1, 2)).argmax())
    w.ensure_prompt_layers()
    w.next_timepoint()
    assert "commit an object at this time point first" in w.status.text(), w.status.text()
    _show(viewer, 0, z)
    _box(viewer, 0, z, truth[0, z])
    w.propagate()
    _wait(qtbot, w)
    objects, preview = viewer.layers["objects"], viewer.layers["current object"]

    def expected(t, rec_mask, step):
        return _carried(image, t, rec_mask, step)

    first = np.asarray(preview.data[0]) > 0
    w.next_timepoint()                               # commits object 1 at t=0, carries its box to t=1
    _wait(qtbot, w)
    assert np.array_equal(objects.data[0] == 1, first)
    z1, box1, ref1, _, wide1 = expected(1, first, (0, 0, 0))   # no step known yet: where it was
    assert w._t == 1 and w._z() == z1
    assert w.status.text().startswith(f"object 1 carried to time point 1 (its box where it was, on slice {z}{wide1}); "
                                      "propagated"), w.status.text()
    drawn = [s for s in viewer.layers["box"].data if round(s[0, 0]) == 1]
    assert len(drawn) == 1 and (*drawn[0][:, 2:].min(0), *drawn[0][:, 2:].max(0)) == box1
    assert np.array_equal(np.asarray(preview.data[1]) > 0, ref1), w.status.text()

    w.next_timepoint()                               # object 2 at t=1; its step from object 1 moves the box
    _wait(qtbot, w)
    from scipy import ndimage as ndi
    step = np.round(np.array(ndi.center_of_mass(ref1)) - np.array(ndi.center_of_mass(first))).astype(int)
    assert step[2] >= 2, step                        # it went along x
    z2, box2, ref2, which, wide2 = expected(2, ref1, tuple(step))
    assert which == 1                                # a cell going on is found where its step takes it
    drawn = [s for s in viewer.layers["box"].data if round(s[0, 0]) == 2]
    assert len(drawn) == 1 and (*drawn[0][:, 2:].min(0), *drawn[0][:, 2:].max(0)) == box2
    assert w._z() == z2 and np.array_equal(np.asarray(preview.data[2]) > 0, ref2), w.status.text()
    assert w.status.text().startswith(f"object 2 carried to time point 2 (its box moved by its last step, on slice "
                                      f"{z2}{wide2})"), w.status.text()
    assert "two cells" not in w.status.text()
    assert dice(ref2, truth[2]) > 0.8
    assert np.array_equal(objects.data[1] == 2, ref1) and list(objects.features["timepoint"]) == [0, 1]

    w.next_timepoint()                               # the last time point: committed, nothing carried
    assert "time point 2 is the last" in w.status.text() and np.array_equal(objects.data[2] == 3, ref2)
    assert w.worker is None
    from napari_halo_seg._measure import layer_links
    assert layer_links(objects.features) == {2: 1, 3: 2}   # each carried from the one before: the cell's track


def test_next_time_point_says_where_it_widened_the_box_of_a_cell_that_grew(make_napari_viewer, qtbot):
    """A cell that was a ball and changed shape by the next time point (flatter along y, 1.8 times as
    long along x): the box carried clips what it finds (under 0.85 of the ball's area), so it is
    widened where the cell reaches its sides, and the status line says so (the box drawn is larger
    than the one carried); the result is the engine's from that box, which takes in the whole cell."""
    from halo_seg.metrics import dice
    shape = (16, 48, 64)
    zz, yy, xx = np.ogrid[:16, :48, :64]
    ball = (zz - 8) ** 2 + (yy - 24) ** 2 + (xx - 32) ** 2 <= 25
    long = (zz - 8) ** 2 + ((yy - 24) / 0.6) ** 2 + ((xx - 32) / 1.8) ** 2 <= 25
    rng = np.random.default_rng(0)
    image = np.stack([m * 1.0 + rng.normal(0, 0.2, shape) for m in (ball, long)]).astype(np.float32)
    viewer, w = _widget(make_napari_viewer, image)
    w.ensure_prompt_layers()
    _show(viewer, 0, 8)
    _box(viewer, 0, 8, ball[8])
    w.propagate()
    _wait(qtbot, w)
    first = np.asarray(viewer.layers["current object"].data[0]) > 0
    assert dice(first, ball) > 0.9
    w.next_timepoint()
    _wait(qtbot, w)
    z1, box1, ref1, _, wide1 = _carried(image, 1, first, (0, 0, 0))
    assert wide1, "the reference did not widen: this test no longer tests it"
    assert w.status.text().startswith(f"object 1 carried to time point 1 (its box where it was, on slice {z1}, "
                                      "widened where the cell grew out of it); "), w.status.text()
    drawn = [s for s in viewer.layers["box"].data if round(s[0, 0]) == 1]
    assert len(drawn) == 1 and (*drawn[0][:, 2:].min(0), *drawn[0][:, 2:].max(0)) == box1
    assert box1[3] - box1[1] > 15                    # the cell's length, not the ball's (10)
    carried = np.asarray(viewer.layers["current object"].data[1]) > 0
    assert np.array_equal(carried, ref1) and dice(carried, long) > 0.9

def _dividing(make_napari_viewer, qtbot, n: int):
    """A procedural time-lapse's first ``n`` time points, where cell 2 divides into two at time point
    1: (the time-lapse, her daughters' ids, viewer, widget), the mother boxed and propagated at 0."""
    from halo_seg.tracking.phantom import cell_timelapse
    tl = cell_timelapse(shape=(32, 96, 96), cells=14, timepoints=12, radius=5.0, speed=1.5, divisions=3, seed=3)
    daughters = [int(k) for k, first, _, parent in tl.lineage if parent == 2 and first == 1]
    assert len(daughters) == 2 and (tl.ids[0] == 2).any()
    viewer, w = _widget(make_napari_viewer, tl.image[:n])
    mother = tl.ids[0] == 2
    z = int(mother.sum((1, 2)).argmax())
    w.ensure_prompt_layers()
    _show(viewer, 0, z)
    _box(viewer, 0, z, mother[z])
    w.propagate()
    _wait(qtbot, w)
    return tl, daughters, viewer, w


def test_next_time_point_says_where_the_object_looks_like_two_cells(make_napari_viewer, qtbot):
    """A cell dividing between two time points: the box carried from the mother takes in both
    daughters, and the status line says it looks like two cells (a division), the object's parts
    being the two daughters; a cell that does not divide is not said to (the phantom's objects
    above)."""
    from halo_seg.interactive.carry import two_cells
    from halo_seg.metrics import dice
    tl, daughters, viewer, w = _dividing(make_napari_viewer, qtbot, 2)
    assert "two cells" not in w.status.text()
    w.next_timepoint()
    _wait(qtbot, w)
    said = w.status.text()
    assert "It looks like two cells touching at time point 1 (object 1 divided?): Commit as two commits them as " \
        "two objects (Commit object keeps them as one)" in said, said
    carried = np.asarray(viewer.layers["current object"].data[1]) > 0
    a, b = (tl.ids[1] == d for d in daughters)
    parts = two_cells(carried)
    assert max(dice(parts[0], a) + dice(parts[1], b), dice(parts[0], b) + dice(parts[1], a)) / 2 > 0.8


def test_commit_as_two_commits_the_daughters_and_either_is_followed(make_napari_viewer, qtbot, monkeypatch):
    """Commit as two splits the carried object that took in both daughters into two objects (each a
    daughter); Undo takes both back out; Next time point follows the larger, or the other once her
    label is selected in the objects layer. A single cell is refused, nothing committed."""
    from halo_seg.metrics import dice
    tl, daughters, viewer, w = _dividing(make_napari_viewer, qtbot, 3)
    objects, preview = viewer.layers["objects"], viewer.layers["current object"]
    key = next(f for k, f in viewer.keymap.items() if str(k) == "Shift+W")
    key(viewer)                                      # Shift-W on one cell: refused, nothing committed
    _wait(qtbot, w)
    assert "does not look like two touching" in w.status.text() and not objects.data.any(), w.status.text()
    w.next_timepoint()                               # object 1 committed at 0, carried to 1: both daughters
    _wait(qtbot, w)
    carried = np.asarray(preview.data[1]) > 0
    w.commit_as_two()
    _wait(qtbot, w)
    two = [np.asarray(objects.data[1]) == k for k in (2, 3)]
    assert two[0].sum() >= two[1].sum() > 0 and np.array_equal(two[0] | two[1], carried), w.status.text()
    truth = [tl.ids[1] == d for d in daughters]
    best = max((dice(two[0], truth[0]) + dice(two[1], truth[1])) / 2, (dice(two[0], truth[1]) + dice(two[1], truth[0])) / 2)
    assert best > 0.8
    assert w.status.text().startswith("committed the object as two, objects 2 (") and \
        f", {two[0].sum()} voxels) and 3 (" in w.status.text() and f", {two[1].sum()} voxels) at time point 1" \
        in w.status.text(), w.status.text()
    assert "Next time point follows 2: select 3 in objects (its label) to follow that one instead" in w.status.text()
    assert objects.selected_label == 2 and list(objects.features["index"]) == [1, 2, 3]
    assert list(objects.features["timepoint"]) == [0, 1, 1] and not preview.data.any()
    from napari_halo_seg._measure import layer_links
    assert layer_links(objects.features) == {2: 1, 3: 1}   # both carried from their mother: a division
    paths = viewer.layers["objects paths"]           # drawn as committed: the mother's path, then her daughters'
    assert paths.graph == {2: [1], 3: [1]} and paths.data[:, :2].tolist() == [[1, 0], [2, 1], [3, 1]]
    assert np.allclose(paths.data[1:, 2:], [np.argwhere(m).mean(0) for m in two])
    assert viewer.layers.selection.active is not paths   # clicks still go where they went
    w.undo()                                         # both back out: the whole object is current again
    assert "objects 2 and 3 taken back out of objects" in w.status.text(), w.status.text()
    assert not objects.data[1].any() and list(objects.features["index"]) == [1] and not layer_links(objects.features)
    assert "objects paths" not in viewer.layers      # no link left: no path
    assert np.array_equal(np.asarray(preview.data[1]) > 0, carried)
    w.commit_as_two()
    _wait(qtbot, w)
    her = daughters[0] if dice(two[1], truth[0]) > dice(two[1], truth[1]) else daughters[1]   # object 3's cell
    objects.selected_label = 3                       # the smaller daughter, followed instead
    w.next_timepoint()
    _wait(qtbot, w)
    assert w.status.text().startswith("object 3 carried to time point 2"), w.status.text()
    at2 = np.asarray(preview.data[2]) > 0
    # her record (her step from her mother's) carried at 2, as the engine does it
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import carried_boxes, carry_record, find_again
    record = carry_record(np.asarray(objects.data[1]) == 3, 1, carry_record(np.asarray(objects.data[0]) == 1, 0))
    ref = InteractiveSegmenter(tl.image[2], device="cpu")
    z3, box3 = find_again(ref, carried_boxes(record, tl.image.shape[1:]), record["area"])[:2]
    assert np.array_equal(at2, ref.propagate()), w.status.text()
    y0, x0, y1, x1 = box3                            # and it looked for her, not for her sister
    sister = daughters[1] if her == daughters[0] else daughters[0]
    inside = tl.ids[2, z3, y0:y1 + 1, x0:x1 + 1]
    assert (inside == her).sum() > 2 * (inside == sister).sum(), w.status.text()
    # where the box she is looked for with takes in her touching sister too (this very carry did, Dice 0.59
    # against her; here made certain, whatever the box rule): said, and Commit as two commits them apart,
    # the part where her sister was at time point 1 carried from her sister
    w.reset()
    import halo_seg.interactive.carry as carry

    def both_boxed(seg, boxes, area=None, grow=False):
        pair = np.isin(tl.ids[2], daughters)
        zz = int(pair.sum((1, 2)).argmax())
        seg.add_box(zz, *mask_bbox(pair[zz]))
        return carry.Found(zz, mask_bbox(pair[zz]), 0)
    monkeypatch.setattr(carry, "find_again", both_boxed)
    assert objects.selected_label == 3
    viewer.dims.set_point(0, 1)                      # at her time point again, her label selected
    w.next_timepoint()
    _wait(qtbot, w)
    monkeypatch.undo()
    assert "It looks like two cells touching at time point 2: object 3's and object 2's, committed next to it at " \
        "time point 1: Commit as two commits them apart, each carried from its own" in w.status.text(), w.status.text()
    w.commit_as_two()
    _wait(qtbot, w)
    assert "4 carried from 3, 5 from 2 (the cell next to it there); Next time point follows 4" in w.status.text(), \
        w.status.text()
    assert dice(np.asarray(objects.data[2]) == 4, tl.ids[2] == her) > 0.8
    assert dice(np.asarray(objects.data[2]) == 5, tl.ids[2] == sister) > 0.8
    assert layer_links(objects.features) == {2: 1, 3: 1, 4: 3, 5: 2} and objects.selected_label == 4
    _tracked_as_followed(viewer, qtbot, objects)
    data = objects.data                              # object 4 corrected (half of it gone): its point moves
    half = (np.asarray(data[2]) == 4) & (np.arange(data.shape[-1]) < np.argwhere(np.asarray(data[2]) == 4)[:, 2].mean())
    data[2][half] = 0
    objects.data = data
    w._painted_centres(objects, (slice(2, 3),) + tuple(slice(0, n) for n in data.shape[1:]))   # as Edit label's Commit
    moved = viewer.layers["objects paths"].data
    assert np.allclose(moved[(moved[:, 1] == 2) & (moved[:, 0] == 3), 2:],   # 4 goes on from 3: track 3
                       np.argwhere(np.asarray(data[2]) == 4).mean(0))

    def point(track, t):
        p = viewer.layers["objects paths"].data
        return p[(p[:, 0] == track) & (p[:, 1] == t), 2:]
    five = np.argwhere(np.asarray(objects.data[2]) == 5)
    assert np.allclose(point(2, 2), five.mean(0))     # 5 goes on from 2: track 2
    objects.n_edit_dimensions = 3
    objects.fill((2, *five[0]), 0)                   # object 5 erased whole with the bucket: no point there
    qtbot.waitUntil(lambda: len(point(2, 2)) == 0)
    assert len(point(2, 1)) == 1 and len(point(3, 2)) == 1
    objects.undo()                                   # napari's own Undo of it: back, and its point
    assert np.allclose(point(2, 2), five.mean(0))
    objects.n_edit_dimensions = 2
    data = objects.data                              # an object painted with the brush at time point 0
    data[0][(tl.ids[0] == 2) & (data[0] == 0)] = 9
    objects.data = data
    painted = np.asarray(data[0]) == 9
    objects.selected_label = 9
    _show(viewer, 0, 0)
    w.next_timepoint()
    _wait(qtbot, w)
    assert w.status.text().startswith("object 9 carried to time point 1"), w.status.text()
    ref = _carried(tl.image[:3], 1, painted, (0, 0, 0))[2]   # from where it is, no step known
    assert np.array_equal(np.asarray(preview.data[1]) > 0, ref)


def _tracked_as_followed(viewer, qtbot, objects):
    """The Objects widget's tracking of the objects layer keeps the links made with Next time point
    (mother 1 at time point 0, her daughters 2 and 3 at 1, followed on as 5 and 4 at 2): it equals
    the engine's with those links, and the lineage is the one followed."""
    import tempfile
    from pathlib import Path

    import zarr
    from halo_seg.tracking import track_objects
    from napari_halo_seg._objects_widget import ObjectsWidget
    ow = ObjectsWidget(viewer)
    ow.labels.setCurrentText("objects")
    ow.track.setChecked(True)
    ow.classes.setText("1")
    ow.run()
    assert ow.worker is None and "followed with Next time point" in ow.status.text() and "clear classes" in \
        ow.status.text(), ow.status.text()
    ow.classes.setText("")
    ow.run()
    qtbot.waitUntil(lambda: ow.worker is None, timeout=120_000)
    assert "1 division" in ow.status.text() and "the 4 links made with Next time point kept" in ow.status.text(), \
        ow.status.text()
    data = np.asarray(objects.data)
    ref = Path(tempfile.mkdtemp()) / "ref.zarr"
    res = track_objects(data, ref, objects_given=True, links={2: 1, 3: 1, 4: 3, 5: 2})
    tracked = np.asarray(viewer.layers["objects tracked"].data)
    assert np.array_equal(tracked, zarr.open_group(str(ref))["labels"][...])
    track = {k: int(np.unique(tracked[data == k])[0]) for k in (1, 2, 3, 4, 5)}
    lineage = {int(k): (int(b), int(e), int(p)) for k, b, e, p in res.lineage}
    assert lineage[track[1]] == (0, 0, 0) and len(lineage) == 3
    assert track[4] == track[3] and track[5] == track[2] != track[3]
    assert lineage[track[3]] == lineage[track[2]] == (1, 2, track[1])
    # the paths drawn as they were committed are the tracks the tracking made of them
    from halo_seg.io.track_output import track_points
    points, graph = track_points(ref)
    paths = viewer.layers["objects paths"]
    assert _groups(paths.data, paths.graph) == _groups(points, graph)
    for name in ("objects tracked", "objects tracks"):
        viewer.layers.remove(name)


def _groups(points, graph):
    """Each track as the set of its (t, centre), and each daughter track's mother as such a set."""
    key = {}
    for k, t, z, y, x in np.asarray(points).tolist():
        key.setdefault(int(k), set()).add((int(t), round(z, 2), round(y, 2), round(x, 2)))
    tracks = {k: frozenset(v) for k, v in key.items()}
    return set(tracks.values()), {tracks[d]: tracks[m[0]] for d, m in graph.items()}


def _last_boxed(make_napari_viewer, qtbot):
    """The phantom series' object 1 boxed at its last time point (2) and propagated there:
    (image, viewer, widget)."""
    image, labels = _series()
    viewer, w = _widget(make_napari_viewer, image)
    truth = labels == 1
    z = int(truth[2].sum((1, 2)).argmax())
    w.ensure_prompt_layers()
    _show(viewer, 2, z)
    _box(viewer, 2, z, truth[2, z])
    w.propagate()
    _wait(qtbot, w)
    return image, viewer, w


def test_previous_time_point_follows_an_object_back(make_napari_viewer, qtbot):
    """Previous time point: the same, to the time point before, the step taken backward."""
    from scipy import ndimage as ndi
    image, viewer, w = _last_boxed(make_napari_viewer, qtbot)
    objects, preview = viewer.layers["objects"], viewer.layers["current object"]
    last = np.asarray(preview.data[2]) > 0
    w.previous_timepoint()
    _wait(qtbot, w)
    z1, box1, ref1, _, _ = _carried(image, 1, last, (0, 0, 0))
    assert w._t == 1 and np.array_equal(objects.data[2] == 1, last)
    assert np.array_equal(np.asarray(preview.data[1]) > 0, ref1), w.status.text()
    w.previous_timepoint()
    _wait(qtbot, w)
    back = np.round(np.array(ndi.center_of_mass(ref1)) - np.array(ndi.center_of_mass(last))).astype(int)
    assert back[2] <= -2, back                       # it came from smaller x
    z0, box0, ref0, which, wide0 = _carried(image, 0, ref1, tuple(back))
    how = "moved by its last step" if which else "where it was"   # this large object is found by either
    assert w.status.text().startswith(f"object 2 carried to time point 0 (its box {how}, on slice {z0}{wide0})"), \
        w.status.text()
    assert w._t == 0 and np.array_equal(np.asarray(preview.data[0]) > 0, ref0), w.status.text()
    w.previous_timepoint()
    assert "time point 0 is the first" in w.status.text() and list(objects.features["timepoint"]) == [2, 1, 0]
    from napari_halo_seg._measure import layer_links
    assert layer_links(objects.features) == {2: 1, 3: 2}   # carried back: each from the one after it


def test_learn_from_objects_takes_the_time_point_worked_on(make_napari_viewer, qtbot, _user_dir, monkeypatch):
    """On a time-lapse, the quality model learns from the objects committed at the object's time
    point, over that time point's volume (not from the objects of every time point over one volume)."""
    import halo_seg.train.quality_fit as quality_fit
    image, labels = _series()
    viewer, w = _widget(make_napari_viewer, image)
    w.ensure_prompt_layers()
    objects = viewer.layers["objects"]
    data = np.zeros(image.shape, np.uint16)
    data[0][labels[0] == 1] = 7                                 # one object at time point 0
    for k in (1, 2, 3):
        data[1][labels[1] == k] = 10 + k                        # three at time point 1
    objects.data = data
    seen = {}

    def fake_fit(volume, labels_, ids, **kw):
        seen.update(volume=np.asarray(volume), labels=np.asarray(labels_), ids=list(ids), note=kw["data_note"])
        raise ValueError("stopped here by the test")
    monkeypatch.setattr(quality_fit, "fit_quality", fake_fit)
    _show(viewer, 0, 10)
    w.learn_quality()
    _wait(qtbot, w)
    assert "commit at least 3 objects first (1 so far at time point 0)" in w.status.text(), w.status.text()
    _show(viewer, 1, 10)
    w.learn_quality()
    _wait(qtbot, w)
    assert "stopped here by the test" in w.status.text(), w.status.text()
    assert np.array_equal(seen["volume"], image[1]) and np.array_equal(seen["labels"], data[1])
    assert seen["ids"] == [11, 12, 13] and seen["note"].endswith("on 'movie' at time point 1")



def test_commit_as_two_of_an_object_followed_back_links_its_larger_part_only(make_napari_viewer, qtbot, monkeypatch):
    """Followed back in time, two parts lying in one object of the time point after would read as two
    cells merging into one, which no lineage holds (the tracking refuses it): the larger part keeps the
    link, the other none, and the status line says so."""
    import napari_halo_seg._interactive_objects as objects_module
    from napari_halo_seg._measure import layer_links
    image, viewer, w = _last_boxed(make_napari_viewer, qtbot)
    w.previous_timepoint()                           # object 1 committed at 2, carried back to 1
    _wait(qtbot, w)

    def halves(mask, spacing=None, at_neck=False):   # taken for two: split across x at its middle
        xs = np.flatnonzero(mask.any((0, 1)))
        left = np.zeros(mask.shape, bool)
        left[..., :xs[len(xs) * 3 // 5]] = True
        return mask & left, mask & ~left
    monkeypatch.setattr(objects_module, "two_cells", halves)
    w.commit_as_two()
    _wait(qtbot, w)
    assert "2 carried from 1, 3 from none (two cells are not one's past)" in w.status.text(), w.status.text()
    objects = viewer.layers["objects"]
    assert (objects.data[1] == 2).sum() > (objects.data[1] == 3).sum() > 0
    assert layer_links(objects.features) == {2: 1}


def test_all_to_next_time_point_carries_every_object_and_undo_takes_them_back(make_napari_viewer, qtbot,
                                                                             monkeypatch):
    """All to next time point: every object committed at the time point shown, carried to the next as
    Next time point carries each alone (the independent reference _carried), committed there under
    new ids, each carried from its own, drawn in the paths; pressed again, each goes on with its
    step; Undo takes the last ones back out. Refused with nothing changed where the current object
    is not committed or there is no next time point; a cancelled run commits nothing."""
    from napari_halo_seg._measure import layer_links
    from halo_seg.metrics import dice
    ids = [1, 2, 5]                                  # three of the phantom's objects, committed at time point 0
    image, labels, viewer, w, objects = _painted(make_napari_viewer, [(k, 0, k, None) for k in ids])
    _show(viewer, 0, 30)
    z = int((labels[0] == 3).sum((1, 2)).argmax())   # a current object not committed: refused
    _show(viewer, 0, z)
    _box(viewer, 0, z, labels[0, z] == 3)
    w.segment_slice()
    _wait(qtbot, w)
    w.all_to_next_timepoint()
    assert "the current object is not committed: Commit or Reset it first" in w.status.text(), w.status.text()
    assert w.worker is None and not objects.data[1].any()
    w.reset()

    w.all_to_next_timepoint()
    assert w.status.text().startswith("carrying the objects of time point 0 to 1 ..."), w.status.text()
    _wait(qtbot, w)
    assert w._t == 1 and viewer.dims.current_step[0] == 1
    assert w.status.text().startswith("carried 3 objects from time point 0 to 1: objects 6 to 8 ("), w.status.text()
    assert w.status.text().endswith("s); Undo takes them back out"), w.status.text()   # nothing to check told
    assert layer_links(objects.features) == {6: 1, 7: 2, 8: 5}
    at1 = np.asarray(objects.data[1])
    taken = np.zeros(at1.shape, bool)
    for new, k in zip((6, 7, 8), ids):              # each as Next time point carries it alone, on earlier ones' free voxels
        ref = _carried(image, 1, labels[0] == k, (0, 0, 0))[2]
        assert np.array_equal(at1 == new, ref & ~taken), new
        assert dice(at1 == new, labels[1] == k) > 0.8, new
        taken |= ref
    assert list(objects.features["timepoint"])[-3:] == [1, 1, 1]
    paths = viewer.layers["objects paths"]           # three paths of two points each
    assert len(paths.data) == 6 and len(set(paths.data[:, 0])) == 3

    w.all_to_next_timepoint()                        # on with their steps: to time point 2
    _wait(qtbot, w)
    assert layer_links(objects.features) == {6: 1, 7: 2, 8: 5, 9: 6, 10: 7, 11: 8}
    from scipy import ndimage as ndi
    at2 = np.asarray(objects.data[2])
    step = np.round(np.array(ndi.center_of_mass(at1 == 6)) - np.array(ndi.center_of_mass(labels[0] == 1))).astype(int)
    assert step[2] >= 2, step
    ref = _carried(image, 2, at1 == 6, tuple(step))[2]
    assert np.array_equal(at2 == 9, ref)
    w.all_to_next_timepoint()                        # the last time point
    assert "time point 2 is the last: nothing to carry to" in w.status.text() and w.worker is None

    w.undo()                                         # the second carry taken back out, the first kept
    assert w.status.text() == "objects 9 to 11 taken back out of objects", w.status.text()
    assert not objects.data[2].any() and np.array_equal(np.asarray(objects.data[1]), at1)
    assert layer_links(objects.features) == {6: 1, 7: 2, 8: 5}
    assert len(viewer.layers["objects paths"].data) == 6
    w.undo()                                         # nothing of the session's to undo: the objects stay
    assert np.array_equal(np.asarray(objects.data[1]), at1)
    viewer.dims.set_point(0, 2)                      # no object at time point 2 any more: nothing carried back
    w.all_to_previous_timepoint()
    _wait(qtbot, w)
    assert w.status.text() == "no object committed at time point 2: All to previous time point carries the " \
        "objects committed there", w.status.text()
    assert viewer.dims.current_step[0] == 2 and np.array_equal(np.asarray(objects.data[1]), at1)

    import halo_seg.interactive.carry_all as carry_all
    viewer.dims.set_point(0, 1)

    def cancelled(*a, **k):
        raise InterruptedError("cancelled after 1 of 3 objects")
    monkeypatch.setattr(carry_all, "carry_all", cancelled)
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    assert w.status.text() == "cancelled: cancelled after 1 of 3 objects" and not objects.data[2].any()
    assert layer_links(objects.features) == {6: 1, 7: 2, 8: 5} and np.array_equal(np.asarray(objects.data[1]), at1)
    monkeypatch.undo()
    viewer.dims.set_point(0, 1)
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    viewer.layers.remove("objects")                  # the layer removed: Undo has nothing to take back out
    w.undo()
    assert w.status.text() == "the objects layer is gone: nothing to take back out" and w._last_commit is None


def test_all_to_next_time_point_says_which_objects_to_check(make_napari_viewer, qtbot):
    """The status line names the carried objects to check: one that looks like two cells touching (a
    mother whose daughters her box took in), one found mostly where an object carried before it
    lies (two objects drawn on one cell: both carried onto it)."""
    from halo_seg.interactive.carry import two_cells
    from halo_seg.tracking.phantom import cell_timelapse
    tl = cell_timelapse(shape=(32, 96, 96), cells=14, timepoints=12, radius=5.0, speed=1.5, divisions=3, seed=3)
    viewer, w = _widget(make_napari_viewer, tl.image[:2])
    w.ensure_prompt_layers()
    objects = viewer.layers["objects"]
    data = objects.data
    data[0][tl.ids[0] == 2] = 1                      # the mother, who divides at time point 1
    other = tl.ids[0] == 5                           # another cell, drawn as two objects: its halves
    half = other & (np.arange(96) < np.argwhere(other)[:, 2].mean())
    data[0][half], data[0][other & ~half] = 2, 3
    objects.data = data
    _show(viewer, 0, 16)
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    said = w.status.text()
    at1 = np.asarray(objects.data[1])
    assert said.startswith("carried 3 objects from time point 0 to 1: objects 4 to"), said
    assert two_cells(at1 == 4) is not None           # the mother's, carried: both daughters
    assert "object 4 looks like two cells touching (divided?): Edit label, then Commit as two" in said, said
    assert "object 6 found mostly where another object is (check it)" in said, said
    assert (at1 == 5).sum() > 4 * (at1 == 6).sum()   # the first half's took the cell, the second's what was left

    # as said: Edit label on object 4, then Commit as two: the daughters, both carried from the mother
    from napari_halo_seg._measure import layer_links
    z = int((at1 == 4).sum((1, 2)).argmax())
    _show(viewer, 1, z)
    split_label(viewer, qtbot, w, objects, 4)
    assert "label 4 of 'objects' corrected and split in two" in w.status.text(), w.status.text()
    assert layer_links(objects.features) == {4: 1, 5: 2, 6: 3, 7: 1}
    paths = viewer.layers["objects paths"]           # the mother's path divides into her daughters'
    assert paths.graph == {4: [1], 5: [1]}, paths.graph   # tracks 4 and 5 (objects 4 and 7) from track 1 (object 1)
    at7 = np.argwhere(np.asarray(objects.data[1]) == 7).mean(0)
    assert any(np.allclose(p[2:], at7) for p in paths.data if p[1] == 1)
    w.undo()                                         # the split undone: its point and link gone with it
    assert 7 not in layer_links(objects.features) and not (np.asarray(objects.data[1]) == 7).any()
    assert not any(np.allclose(p[2:], at7) for p in viewer.layers["objects paths"].data if p[1] == 1)


def test_all_to_next_time_point_leaves_the_objects_followed_there_already(make_napari_viewer, qtbot):
    """An object already followed to the next time point (an object there carried from it, as Next
    time point leaves it) is not carried again: the others are, and the status line says which was
    left; where every object was followed already, nothing is carried."""
    from napari_halo_seg._measure import CARRIED, layer_links, set_row
    # 3: object 2 followed to time point 1
    image, labels, viewer, w, objects = _painted(make_napari_viewer, [(1, 0, 1, None), (2, 0, 2, None), (3, 1, 2, 2)])
    _show(viewer, 0, 30)
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    said = w.status.text()
    assert said.startswith("carried 1 object from time point 0 to 1: object 4 ("), said
    assert "; object 2 of time point 0 followed there already: left as it is" in said, said
    assert layer_links(objects.features) == {3: 2, 4: 1}
    assert np.array_equal(np.asarray(objects.data[1]) == 3, labels[1] == 2)   # as it was
    w.undo()
    viewer.dims.set_point(0, 0)
    set_row(objects, {"index": 9, "timepoint": 1, CARRIED: 1})   # now both followed (a row of a link only)
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    assert w.status.text() == "no object committed at time point 0 but those already followed to time point 1 " \
        "(objects 1, 2): All to next time point carries the objects committed there", w.status.text()


def test_an_object_whose_cell_is_gone_is_said_to_have_faded_not_committed(make_napari_viewer, qtbot):
    """A cell gone at time point 1 (left the field): All to next time point finds noise where it was,
    which has faded into the background (carry.faded), and commits the others only, saying which;
    Next time point on it alone carries it (not committed) and says it faded, as Reset drops it.
    A cell that came in at time point 1 is marked (new_cells) in a points layer and said; Undo of the
    carry takes the mark back out."""
    from scipy import ndimage as ndi

    from halo_seg.interactive.carry import contrast, noise_level
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._measure import layer_links
    tl = cell_timelapse(shape=(24, 64, 64), cells=4, timepoints=2, radius=5.0, speed=1.5, divisions=0, seed=4)
    ids1 = np.where(tl.ids[1] == 2, 0, tl.ids[1])   # cell 2 left
    room = np.pad(ndi.distance_transform_edt(~((tl.ids[0] > 0) | (tl.ids[1] > 0))[6:-6, 6:-6, 6:-6]), 6)
    centre = np.unravel_index(room.argmax(), room.shape)   # a cell came in where none was
    assert room.max() > 11
    zz, yy, xx = np.ogrid[:24, :64, :64]
    came = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= 25
    ids1[came] = 9
    image = tl.image.copy()
    rng = np.random.default_rng(0)
    image[1] = ndi.gaussian_filter((ids1 > 0).astype(np.float32), 1) + rng.normal(0, 0.2, ids1.shape)
    viewer, w = _widget(make_napari_viewer, image)
    w.ensure_prompt_layers()
    objects = viewer.layers["objects"]
    data = objects.data
    data[0] = tl.ids[0]
    objects.data = data
    _show(viewer, 0, 12)
    w.add_marked_cells()
    assert w.status.text().startswith("no cells marked: All to next time point marks the cells no object holds")
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    said = w.status.text()
    assert said.startswith("carried 4 objects from time point 0 to 1: objects 5 to 7 ("), said
    assert ("; object 2 of time point 0 faded into the background there (left the field or gone?): not committed "
            "(Next time point on it carries it alone)") in said, said
    assert said.endswith("; 1 cell no object holds at time point 1 (came in? a daughter left out?): marked in "
                         "'cells no object holds'; Add marked cells adds it (delete a mark to leave its cell out), "
                         "or box one to follow it"), said
    marks = viewer.layers["cells no object holds"]
    assert len(marks.data) == 1 and marks.data[0][0] == 1 and np.allclose(marks.data[0][1:], centre, atol=1)
    w.undo()                                         # the carry taken back out, its marks with it
    assert not np.asarray(objects.data[1]).any() and len(marks.data) == 0, w.status.text()
    viewer.dims.set_point(0, 0)
    w.all_to_next_timepoint()                        # and again
    _wait(qtbot, w)
    assert len(marks.data) == 1 and w.status.text().endswith("box one to follow it")
    links = layer_links(objects.features)
    w.add_marked_cells()                             # the cell that came in: a new object, from a box on it
    _wait(qtbot, w)
    said = w.status.text()
    assert said.startswith("added 1 new object at time point 1: object 8 ("), said
    assert said.endswith("; Undo takes them back out") and len(marks.data) == 0
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.new_cells import new_cells
    cell = new_cells(image[1], np.where(np.asarray(objects.data[1]) == 8, 0, np.asarray(objects.data[1])))[0]
    ref = InteractiveSegmenter(image[1], device="cpu")   # the reference: a box on its largest slice, propagated
    ref.add_box(cell.slice, *cell.box2d)
    assert np.array_equal(np.asarray(objects.data[1]) == 8, ref.propagate() & ~np.isin(objects.data[1], [5, 6, 7]))
    assert ((np.asarray(objects.data[1]) == 8) & came).sum() > 0.8 * came.sum()
    assert layer_links(objects.features) == links and 8 in list(objects.features["index"])   # carried from nothing
    w.add_marked_cells()
    assert w.status.text() == "no marks left of the cells no object held at time point 1: nothing to add"
    w.undo()                                         # taken back out, its mark back
    assert not (np.asarray(objects.data[1]) == 8).any() and len(marks.data) == 1
    w.add_marked_cells()                             # added again; then the mark deleted: nothing to add
    _wait(qtbot, w)
    w.undo()
    marks.data = np.zeros((0, 4))
    w.add_marked_cells()
    assert w.status.text() == "no marks left of the cells no object held at time point 1: nothing to add"
    assert sorted(layer_links(objects.features).values()) == [1, 3, 4]
    at1 = np.asarray(objects.data[1])
    assert not at1[tl.ids[0] == 2].any()             # nothing committed where cell 2 was
    for new, k in layer_links(objects.features).items():
        assert ((at1 == new) & (ids1 == k)).sum() > 0.8 * (at1 == new).sum(), k

    viewer.dims.set_point(0, 0)                      # cell 2 alone: carried, said faded, not committed
    objects.selected_label = 2
    w.next_timepoint()
    _wait(qtbot, w)
    said = w.status.text()
    assert said.startswith("object 2 carried to time point 1 ("), said
    found = np.asarray(viewer.layers["current object"].data[1]) > 0
    def tight(mask):
        return tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))
    box, cell = tight(found), tl.ids[0] == 2
    now, was = contrast(image[1], found[box], box), contrast(image[0], cell[tight(cell)], tight(cell))
    now, was = now / noise_level(image[1]), was / noise_level(image[0])   # compared in each volume's noise
    assert now < 0.5 * was
    assert (f"It has faded into the background at time point 1 (contrast {now:.3g} times its noise level, {was:.3g} "
            "at time point 0): left the field or gone? Reset drops it (Commit object keeps it)") in said, said
    assert not np.asarray(objects.data[1])[found].any()


def _cells_widget(make_napari_viewer, ids: list, seed: int):
    """The widget on an image of the cells ``ids`` (one per time point: blurred, under noise), the
    first time point's committed as they are, shown at slice 12; (viewer, widget, objects, image)."""
    from scipy import ndimage as ndi
    rng = np.random.default_rng(seed)
    image = np.stack([ndi.gaussian_filter((i > 0).astype(np.float32), 1) + rng.normal(0, 0.15, i.shape)
                      for i in ids]).astype(np.float32)
    viewer, w = _widget(make_napari_viewer, image)
    w.ensure_prompt_layers()
    objects = viewer.layers["objects"]
    data = objects.data
    data[0] = ids[0]
    objects.data = data
    _show(viewer, 0, 12)
    return viewer, w, objects, image


def test_a_carry_into_a_removed_layer_commits_nothing_and_only_the_marks_left_are_added(make_napari_viewer,
                                                                                            qtbot):
    """The objects layer removed while All to next time point works: said, nothing committed, the
    image untouched. Two cells came in at time point 1: both marked; one mark deleted, Add marked
    cells adds the other only and leaves the deleted one's cell unmarked; Undo brings the mark left
    back as it was."""
    from _cells import balls
    shape = (24, 64, 64)
    held, came = [(12, 16, 16), (12, 48, 48)], [(12, 16, 48), (12, 48, 16)]
    ids0, ids1 = balls(shape, held, 6), balls(shape, held + came, 6)
    viewer, w, objects, image = _cells_widget(make_napari_viewer, [ids0, ids1], 2)
    before = np.array(objects.data)
    w.all_to_next_timepoint()
    viewer.layers.remove(objects)                    # while the worker carries
    _wait(qtbot, w)
    assert w.status.text() == "the objects layer is gone or changed shape meanwhile; nothing was committed"
    assert np.array_equal(np.asarray(objects.data), before) and np.array_equal(viewer.layers["movie"].data, image)
    assert "cells no object holds" not in viewer.layers
    viewer.add_layer(objects)                        # back, and carried
    viewer.dims.set_point(0, 0)
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    marks = viewer.layers["cells no object holds"]
    assert len(marks.data) == 2, w.status.text()
    found = {int(ids1[tuple(np.round(p[1:]).astype(int))]) for p in marks.data}
    assert found == {3, 4} and all(p[0] == 1 for p in marks.data)
    both = np.array(marks.data)
    keep = next(i for i, p in enumerate(both) if ids1[tuple(np.round(p[1:]).astype(int))] == 4)
    marks.data = both[[keep]]                        # the mark on cell 3 deleted
    w.add_marked_cells()
    _wait(qtbot, w)
    at1 = np.asarray(objects.data[1])
    new = [int(v) for v in np.unique(at1[ids1 == 4]) if v]
    assert w.status.text().startswith(f"added 1 new object at time point 1: object {new[0]} ("), w.status.text()
    assert not at1[ids1 == 3].any() and len(new) == 1
    assert ((at1 == new[0]) & (ids1 == 4)).sum() > 0.8 * (ids1 == 4).sum()
    assert len(marks.data) == 0                      # cell 3's mark stays deleted, cell 4's added
    w.add_marked_cells()
    assert w.status.text() == "no marks left of the cells no object held at time point 1: nothing to add"
    w.undo()                                         # cell 4 taken back out; the marks as before the add
    assert not (np.asarray(objects.data[1]) == new[0]).any()
    assert np.array_equal(np.asarray(marks.data), both[[keep]])


def test_a_carry_that_commits_nothing_leaves_undo_to_the_carry_before_with_its_marks(make_napari_viewer, qtbot):
    """All to next time point from 0 to 1 commits two objects and marks a cell that came in; from 1
    to 2, where every cell is gone, it commits none. Undo then takes the first carry back out and
    shows the marks as they were before it (none), not those the second carry found in place."""
    from _cells import balls
    shape = (24, 64, 64)
    held = [(12, 16, 16), (12, 48, 48)]
    ids0, ids1 = balls(shape, held, 6), balls(shape, held + [(12, 16, 48)], 6)
    viewer, w, objects, _ = _cells_widget(make_napari_viewer, [ids0, ids1, np.zeros(shape)], 3)   # all gone at 2
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    assert w.status.text().startswith("carried 2 objects from time point 0 to 1: objects 3 to 4 ("), w.status.text()
    marks = viewer.layers["cells no object holds"]
    assert len(marks.data) == 1 and ids1[tuple(np.round(marks.data[0][1:]).astype(int))] == 3
    committed = np.asarray(objects.data[1]).copy()
    viewer.dims.set_point(0, 1)
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    said = w.status.text()
    assert said.startswith("carried 2 objects from time point 1 to 2: none committed ("), said
    assert "faded into the background" in said and "Undo takes them back out" not in said
    assert not np.asarray(objects.data[2]).any() and np.array_equal(np.asarray(objects.data[1]), committed)
    w.undo()                                         # the carry from 0 to 1, and the marks from before it
    assert not np.asarray(objects.data[1]).any(), w.status.text()
    assert len(marks.data) == 0


def test_all_to_next_time_point_writes_a_cell_left_out_of_an_object_as_its_own(make_napari_viewer, qtbot,
                                                                               monkeypatch):
    """A cell an object had grown over, left out of it (carry_all's keep_own, the default; made here
    by a stand-in around the real carry_all: cell 3, which came in at time point 1) is committed as
    its own object after the objects carried, linked to nothing, named on the status line to check
    and not marked as a cell no object holds; Undo takes it out with the others."""
    from _cells import balls
    import halo_seg.interactive.carry_all as carry_all_module
    from halo_seg.interactive.carry import carry_record
    from napari_halo_seg._measure import layer_links
    shape = (24, 64, 64)
    held = [(12, 16, 16), (12, 48, 48)]
    ids0, ids1 = balls(shape, held, 6), balls(shape, held + [(12, 16, 44)], 6)
    viewer, w, objects, _ = _cells_widget(make_napari_viewer, [ids0, ids1], 5)
    real, cell = carry_all_module.carry_all, ids1 == 3
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(cell))

    def with_left_out(*args, **kwargs):
        out = real(*args, **kwargs)
        return out + [carry_all_module.Carried(0, None, box, cell[box], carry_record(cell, 1, None, 0, 0, box=box),
                                               grown_from=1)]
    monkeypatch.setattr(carry_all_module, "carry_all", with_left_out)
    w.all_to_next_timepoint()
    _wait(qtbot, w)
    said = w.status.text()
    assert said.startswith("carried 2 objects from time point 0 to 1: objects 3 to 5 ("), said
    assert "; object 5 is a cell an object had grown over, left out of it (check it)" in said, said
    at1 = np.asarray(objects.data[1])
    assert np.array_equal(at1 == 5, cell & (at1 != 3) & (at1 != 4)) and (at1 == 5).sum() > 0.9 * cell.sum()
    assert layer_links(objects.features) == {3: 1, 4: 2}
    marks = [layer for layer in viewer.layers if layer.name == "cells no object holds"]
    assert not marks or len(marks[0].data) == 0                    # held: not a cell no object holds
    w.undo()
    assert not np.asarray(objects.data[1]).any(), w.status.text()


def test_a_touching_cell_an_object_grew_over_is_said_and_committed_apart_from_nothing(make_napari_viewer, qtbot,
                                                                                       monkeypatch):
    """Next time point on a cell whose carried object takes in a touching cell no object held (a cell
    that came in; the box made certain to take in both here): the status line says it grew over a
    touching cell (one part lying where it was not), not that it divided; Commit as two commits its
    own part carried from it and the other carried from nothing (not her daughter), Next time point
    following its own."""
    from halo_seg.metrics import dice
    from napari_halo_seg._measure import layer_links
    viewer, w, ids = _grown_over_at_1(make_napari_viewer, qtbot, monkeypatch)
    said = w.status.text()
    assert "It looks like two cells touching at time point 1: object 1's and a touching cell it grew over (one " \
        "part lies where it was not at time point 0): Next time point commits them apart (its own part followed " \
        "on, the other as a new cell), as Commit as two does; Commit object keeps them as one" in said, said
    assert "divided?" not in said
    w.commit_as_two()
    _wait(qtbot, w)
    said = w.status.text()
    assert "; 2 carried from 1, 3 from none (a touching cell it grew over, not a daughter); Next time point " \
        "follows 2" in said, said
    objects = viewer.layers["objects"]
    assert dice(np.asarray(objects.data[1]) == 2, ids[1] == 1) > 0.8 and dice(np.asarray(objects.data[1]) == 3,
                                                                            ids[1] == 2) > 0.8
    assert layer_links(objects.features) == {2: 1} and objects.selected_label == 2


def test_followed_back_a_touching_cell_it_grew_over_is_committed_apart_its_own_part_linked(make_napari_viewer,
                                                                                           qtbot, monkeypatch):
    """Previous time point the same as Next time point: where the object carried back took in a
    touching cell (larger than the cell followed), the note says so, and Previous time point pressed
    again commits them apart, its own part carried from it (not the larger part, as two parts of one
    object followed back are otherwise linked) and followed on, the other a new cell
    (benchmarks/carry.py --backward). Commit as two links its own part the same way."""
    from halo_seg.metrics import dice
    from napari_halo_seg._measure import layer_links
    viewer, w, ids = _grown_over_at_1(make_napari_viewer, qtbot, monkeypatch, back=True)
    assert "object 1's and a touching cell it grew over (one part lies where it was not at time point 2)" \
        in w.status.text(), w.status.text()
    at1 = _pressed_again_committed_apart(qtbot, viewer, w, ids, back=True)
    assert (at1 == 3).sum() > (at1 == 2).sum()   # the cell it grew over is the larger
    # Commit as two: the same parts and link (before, the larger part took the link)
    viewer, w, ids = _grown_over_at_1(make_napari_viewer, qtbot, monkeypatch, back=True)
    w.commit_as_two()
    _wait(qtbot, w)
    said = w.status.text()
    assert "; 2 carried from 1, 3 from none (a touching cell it grew over); Next time point follows 2" in said, said
    at1 = np.asarray(viewer.layers["objects"].data[1])
    assert dice(at1 == 2, ids[1] == 1) > 0.8 and dice(at1 == 3, ids[1] == 2) > 0.8
    assert layer_links(viewer.layers["objects"].features) == {2: 1}


def _grown_over_at_1(make_napari_viewer, qtbot, monkeypatch, back: bool = False):
    """A cell followed to time point 1 of 3, where its carried object takes in a touching cell that
    came in (the box made certain to take in both there); the cells as ids per time point.
    ``back``: followed back from time point 2 (Previous time point), the touching cell at 1 larger
    than the cell followed (radius 7, 6)."""
    from scipy import ndimage as ndi
    from _cells import balls
    import halo_seg.interactive.carry as carry
    shape = (24, 64, 64)
    ids = [balls(shape, [(12, 32, 20)], 6), balls(shape, [(12, 32, 22), (12, 32, 34)], 6),
           balls(shape, [(12, 32, 23), (12, 32, 36)], 6)]
    if back:
        ids[1] = balls(shape, [(12, 32, 22)], 6)
        ids[1][(balls(shape, [(12, 32, 35)], 7) > 0) & (ids[1] == 0)] = 2
        ids = [ids[1], ids[1], balls(shape, [(12, 32, 24)], 6)]
    rng = np.random.default_rng(7)
    image = np.stack([ndi.gaussian_filter((i > 0).astype(np.float32), 1) + rng.normal(0, 0.15, shape)
                      for i in ids]).astype(np.float32)
    viewer, w = _widget(make_napari_viewer, image)
    w.ensure_prompt_layers()
    start = 2 if back else 0
    _show(viewer, start, 12)
    _box(viewer, start, 12, ids[start][12] == 1)
    w.propagate()
    _wait(qtbot, w)

    def both_boxed(seg, boxes, area=None, grow=False):
        pair = ids[1][12] > 0
        seg.add_box(12, *mask_bbox(pair))
        return carry.Found(12, mask_bbox(pair), 0)
    monkeypatch.setattr(carry, "find_again", both_boxed)
    w.previous_timepoint() if back else w.next_timepoint()
    _wait(qtbot, w)
    monkeypatch.undo()
    assert ("Previous" if back else "Next") + " time point commits them apart" in w.status.text(), w.status.text()
    return viewer, w, ids


def _pressed_again_committed_apart(qtbot, viewer, w, ids, back: bool = False) -> np.ndarray:
    """Next (``back``: Previous) time point pressed again after _grown_over_at_1's note: object 2, its
    own part, carried from 1 and followed on, and object 3, the touching cell, from nothing, at time
    point 1 (returned), said."""
    from halo_seg.metrics import dice
    from napari_halo_seg._measure import layer_links
    w.previous_timepoint() if back else w.next_timepoint()
    _wait(qtbot, w)
    said = w.status.text()
    assert said.startswith("object 2 committed apart from a touching cell it had grown over (object 3, a new cell); "
                           f"object 2 carried to time point {0 if back else 2} ("), said
    objects = viewer.layers["objects"]
    at1 = np.asarray(objects.data[1])
    assert dice(at1 == 2, ids[1] == 1) > 0.8 and dice(at1 == 3, ids[1] == 2) > 0.8
    assert layer_links(objects.features) == {2: 1}
    assert w._carry_source["label"] == 2 and w._carry_source["t"] == 1   # its own part followed
    return at1


def test_next_time_point_commits_a_touching_cell_it_grew_over_apart_and_follows_its_own(make_napari_viewer, qtbot,
                                                                                          monkeypatch):
    """Next time point pressed again where its note said the object grew over a touching cell: the
    object's own part committed (carried from it) and the other apart as a new cell (from nothing),
    its own part followed on (benchmarks/carry.py: crowded cells followed lost 3.5 % -> 2 % of time
    points); said. Commit object keeps them as one; a result changed since the note is committed as
    it is."""
    from halo_seg.metrics import dice
    viewer, w, ids = _grown_over_at_1(make_napari_viewer, qtbot, monkeypatch)
    _pressed_again_committed_apart(qtbot, viewer, w, ids)
    # Commit object: one object, as the user asked
    viewer, w, ids = _grown_over_at_1(make_napari_viewer, qtbot, monkeypatch)
    w.commit()
    at1 = np.asarray(viewer.layers["objects"].data[1])
    assert set(np.unique(at1)) == {0, 2} and dice(at1 == 2, ids[1] > 0) > 0.8
    # the session's result changed since the note (a correction): committed as it is, not cut
    viewer, w, ids = _grown_over_at_1(make_napari_viewer, qtbot, monkeypatch)
    w._grown_over["pred"] = ~w._grown_over["pred"]
    w.next_timepoint()
    _wait(qtbot, w)
    at1 = np.asarray(viewer.layers["objects"].data[1])
    assert set(np.unique(at1)) == {0, 2} and "committed apart" not in w.status.text()
