"""The training dock widget under Xvfb: it trains on an image and its Labels layer in a worker,
holds the last slices out, and the Dice it reports is the saved weights' Dice there."""
import numpy as np
import pytest

pytest.importorskip("napari")


def _widget(make_napari_viewer, iterations):
    from napari_halo_seg._train_widget import TrainWidget
    viewer = make_napari_viewer()
    viewer.open_sample("napari-halo-seg", "phantom")
    w = TrainWidget(viewer)
    w.image.setCurrentText("phantom")
    w.labels.setCurrentText("phantom truth")
    w.iterations.setValue(iterations)
    w.patch.setValue(32)
    return viewer, w


def test_training_saves_weights_whose_held_out_dice_is_the_one_reported(make_napari_viewer, qtbot, _user_dir):
    import torch
    from halo_seg.engine.runner import predict_whole
    from halo_seg.engine import normalize
    from halo_seg.engine.weights import load_unet
    from halo_seg.metrics import dice
    viewer, w = _widget(make_napari_viewer, 12)
    w.run()
    assert w.worker is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "weights saved" in w.status.text(), w.status.text()
    path = w.last_weights
    assert path.is_file() and str(_user_dir) in str(path)
    card = path.with_suffix(".md").read_text()   # what the weights are, beside them
    assert "| data | napari layers 'phantom' and 'phantom truth' |" in card
    assert "| validation | held-out regions of the training volumes" in card
    assert f"its model card is {path.stem}.md" in w.status.text()
    net, meta = load_unet(path)
    labels = np.asarray(viewer.layers["phantom truth"].data)
    assert net.config["out_channels"] == int(labels.max()) + 1
    image = np.asarray(viewer.layers["phantom"].data, np.float32)
    spec = meta["normalization"]
    x = normalize.apply(image, *normalize.mean_std(normalize.moments(image, spec), spec), spec)
    pred = predict_whole(net, x, torch.device("cpu")).argmax(0)
    zs = np.flatnonzero(labels.any((1, 2)))
    n = int(round((zs[-1] - zs[0] + 1) * 0.2))
    a, b = zs[-1] + 1 - n, zs[-1] + 1                      # the end of the labelled extent
    held = [dice(pred[a:b] == c, labels[a:b] == c) if ((pred[a:b] == c) | (labels[a:b] == c)).any() else None
            for c in range(1, net.config["out_channels"])]
    text = ", ".join("n/a" if d is None else f"{d:.3f}" for d in held)
    assert f"slices {a}..{b - 1} (n/a: not there): {text}" in w.status.text(), w.status.text()
    shown = viewer.layers[f"phantom ({path.stem})"]                    # the new model's labels, to look at
    assert shown.data.shape == labels.shape and set(np.unique(shown.data)) <= set(range(len(held) + 1))


def test_bad_choices_are_reported_and_cancel_stops(make_napari_viewer, qtbot):
    viewer, w = _widget(make_napari_viewer, 100_000)
    viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="wrong")
    w.labels.setCurrentText("wrong")
    w.run()
    assert w.worker is None and "are not on one voxel grid" in w.status.text()
    truth = viewer.layers["phantom truth"]
    viewer.add_labels(np.asarray(truth.data), name="other scan", scale=(2.5, 1.0, 1.0),
                      metadata={"spacing_known": True})    # one shape, another scan's voxel size
    w.labels.setCurrentText("other scan")
    viewer.layers["phantom"].metadata["spacing_known"] = True     # the phantom's 1 x 1 x 1, as a file would say
    w.run()
    assert w.worker is None and \
        "other scan has voxels of 2.5 x 1 x 1 and phantom of 1 x 1 x 1: they lie on different grids" in w.status.text()
    viewer.layers["phantom"].metadata["spacing_known"] = False
    empty = np.asarray(viewer.layers["phantom truth"].data).copy()
    empty[:] = 0
    viewer.add_labels(empty, name="empty")
    w.labels.setCurrentText("empty")
    w.run()                                        # found once read, in the worker
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "failed" in w.status.text() and "at least one labelled voxel" in w.status.text()
    skipped = (np.asarray(viewer.layers["phantom truth"].data) > 0).astype(np.uint8) * 3   # label 3 alone
    viewer.add_labels(skipped, name="skipped")
    w.labels.setCurrentText("skipped")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "failed" in w.status.text() and "2 of which (1, 2) appear nowhere" in w.status.text()
    w.labels.setCurrentText("phantom truth")
    w.output.setText("model.pt")
    w.run()
    assert w.worker is None and ".safetensors" in w.status.text()
    w.output.setText("")
    w.run()
    qtbot.waitUntil(lambda: w.progress.maximum() > 1, timeout=60_000)
    w.cancel()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60_000)
    assert "cancelled after iteration" in w.status.text() and "no weights saved" in w.status.text()


def test_a_model_trained_in_napari_is_offered_to_the_automatic_widget(make_napari_viewer, qtbot, _user_dir):
    """Train a model, then Automatic segmentation lists it by name (read again when its list opens)
    and segments the image with it, as the engine does with those weights."""
    import zarr
    from halo_seg.engine.runner import segment
    from napari_halo_seg._auto_widget import AutoSegmentWidget
    viewer, w = _widget(make_napari_viewer, 12)
    w.predict.setChecked(False)
    auto = AutoSegmentWidget(viewer)
    assert [auto.weights.itemText(i) for i in range(auto.weights.count())] == ["default"]
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "weights saved" in w.status.text(), w.status.text()
    assert len(viewer.layers) == 2                                  # no prediction layer was asked for
    auto.weights.refresh()                                          # what opening its list does
    names = [auto.weights.itemText(i) for i in range(auto.weights.count())]
    assert names == ["default", w.last_weights.name]
    auto.weights.setCurrentText(w.last_weights.name)
    assert auto.weights.choice() == str(w.last_weights)
    auto.image.setCurrentText("phantom")
    auto.mode.setCurrentText("whole")
    auto.output.setText(str(_user_dir / "auto.zarr"))
    auto.run()
    qtbot.waitUntil(lambda: auto.worker is None, timeout=300_000)
    assert "done" in auto.status.text(), auto.status.text()
    ref = segment(np.asarray(viewer.layers["phantom"].data), _user_dir / "ref.zarr", weights=w.last_weights,
                  mode="whole")
    assert np.array_equal(zarr.open_group(str(_user_dir / "auto.zarr"), mode="r")["labels"][...],
                          zarr.open_group(ref.output, mode="r")["labels"][...])
    auto.weights.setCurrentText("typed/path.safetensors")
    assert auto.weights.choice() == "typed/path.safetensors"


def test_bf16_training_from_the_widget(make_napari_viewer, qtbot, _user_dir):
    from halo_seg.engine.weights import load_unet
    viewer, w = _widget(make_napari_viewer, 6)
    assert not w.bf16.isChecked()            # fp32 unless asked
    w.bf16.setChecked(True)
    w.predict.setChecked(False)
    viewer.layers["phantom"].scale = (3.0, 0.5, 0.5)   # a voxel size set on the layer is recorded
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "weights saved" in w.status.text(), w.status.text()
    training = load_unet(w.last_weights)[1]["training"]
    assert training["config"]["precision"] == "bf16" and training["spacing"] == [3.0, 0.5, 0.5]


def test_training_goes_on_from_a_model_trained_before(make_napari_viewer, qtbot, _user_dir):
    """'start from' lists random weights, the shipped model and the models trained here; a second
    round fine-tunes the first round's model (its classifier kept: the same classes)."""
    from halo_seg.engine.weights import load_unet
    viewer, w = _widget(make_napari_viewer, 12)
    w.predict.setChecked(False)
    assert w.start_from.choice() == "random weights"
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    first = w.last_weights
    assert "init" not in load_unet(first)[1]["training"]
    w.start_from.refresh()
    assert [w.start_from.itemText(i) for i in range(w.start_from.count())] == ["random weights", "default", first.name]
    w.start_from.setCurrentText(first.name)
    w.iterations.setValue(10)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "weights saved" in w.status.text() and w.last_weights != first, w.status.text()
    init = load_unet(w.last_weights)[1]["training"]["init"]
    assert init["weights"] == first.name and init["head"] == "kept"
    assert f"fine-tuned from `{first.name}`" in w.last_weights.with_suffix(".md").read_text()
    w.start_from.setCurrentText("missing.safetensors")   # a bad choice is reported, nothing is lost
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "weights file not found: missing.safetensors" in w.status.text(), w.status.text()


def test_a_time_lapse_trains_on_its_labelled_time_points(make_napari_viewer, qtbot, _user_dir):
    """(T, Z, Y, X) image and labels: the labelled time points are the training volumes, the last held
    out whole (its Dice the one reported), time points with no label unused; with "objects of one
    kind" every object id is one class. Before, the widget refused a time-lapse ("not a 3D image")."""
    import torch
    from halo_seg.engine import normalize
    from halo_seg.engine.runner import predict_whole
    from halo_seg.engine.weights import load_unet
    from halo_seg.metrics import dice
    image, labels, _ = _painted_movie()
    labels[1] = 0                                            # time point 1 not labelled: not used
    viewer, w = _movie_widget(make_napari_viewer, image, labels)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "weights saved" in w.status.text(), w.status.text()
    net, meta = load_unet(w.last_weights)
    assert net.config["out_channels"] == int(labels.max()) + 1
    card = w.last_weights.with_suffix(".md").read_text()
    assert "| validation | 1 held-out volume(s), whole (time point 3 of the time-lapse) |" in card
    assert "| data | napari layers 'movie' and 'cells', time points 0, 2 trained on |" in card
    spec = meta["normalization"]
    x = normalize.apply(image[3], *normalize.mean_std(normalize.moments(image[3], spec), spec), spec)
    pred = predict_whole(net, x, torch.device("cpu")).argmax(0)
    held = [dice(pred == c, labels[3] == c) if ((pred == c) | (labels[3] == c)).any() else None
            for c in range(1, net.config["out_channels"])]
    text = ", ".join("n/a" if d is None else f"{d:.3f}" for d in held)
    assert f"held-out time point 3 (n/a: not there): {text}" in w.status.text(), w.status.text()
    shown = viewer.layers[f"movie ({w.last_weights.stem})"]     # the new model's labels where it was measured
    assert shown.data.shape == image.shape and not np.asarray(shown.data[:3]).any()

    w.one_class.setChecked(True)                             # the ids are objects: one class
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "weights saved" in w.status.text(), w.status.text()
    net, meta = load_unet(w.last_weights)
    assert net.config["out_channels"] == 2 and meta["classes"] == ["background", "object"]

    viewer.add_labels(labels[:2], name="short")
    w.labels.setCurrentText("short")
    w.run()
    assert w.worker is None and "'movie' (4, 64, 96, 96) and 'short' (2, 64, 96, 96): a time-lapse trains on Labels " \
        "over its time points, of its shape" in w.status.text(), w.status.text()


def _movie_widget(make_napari_viewer, image, labels):
    """The training widget on a time-lapse "movie" and its Labels "cells", 12 iterations of 32³ patches."""
    from napari_halo_seg._train_widget import TrainWidget
    viewer = make_napari_viewer()
    viewer.add_image(image, name="movie")
    viewer.add_labels(labels, name="cells")
    w = TrainWidget(viewer)
    w.image.setCurrentText("movie")
    w.labels.setCurrentText("cells")
    w.iterations.setValue(12)
    w.patch.setValue(32)
    return viewer, w


def _painted_movie():
    """A 4-time-point phantom movie, labels painted on every 4th slice at time points 0, 2 and 3."""
    from halo_seg.samples import make_phantom
    ph = make_phantom()
    image = np.stack([np.roll(ph.image, 3 * t, axis=2) for t in range(4)])
    full = np.stack([np.roll(ph.labels, 3 * t, axis=2) for t in range(4)]).astype(np.uint16)
    painted = np.zeros_like(full)
    painted[[0, 2, 3], 2::4] = full[[0, 2, 3], 2::4]
    return image, full, painted


def test_a_time_lapse_painted_on_some_slices_trains_there_only():
    """With "labels painted on some slices only", each labelled time point trains on its painted slices
    and the held-out one is measured on its own, the unpainted slices being unknown; unticked, the
    gaps are named with their time point. Before, a time-lapse with painted slices was refused."""
    from halo_seg.train.sparse import labelled_slices
    from napari_halo_seg._train_timelapse import prepare_series
    image, _, painted = _painted_movie()
    run = prepare_series(image, painted, 0.2, 32, 10, sparse=True)
    assert run["train"] == [0, 2] and run["held"] == [3] and run["note"] is None
    for t, region in zip([0, 2], run["train_regions"]):
        zs = labelled_slices(painted[t])
        assert set(zs) <= set(range(2, 64, 4)) and len(zs) > 5
        assert np.array_equal(np.flatnonzero(region.any((1, 2))), zs) and region[zs].all()
    assert np.array_equal(np.flatnonzero(run["held_regions"][0].any((1, 2))), labelled_slices(painted[3]))
    assert run["painted"][3] == [int(z) for z in labelled_slices(painted[3])]
    whole = prepare_series(image, painted, 0.2, 32, 10)
    assert whole["train_regions"] is None and whole["held_regions"] is None
    assert whole["note"].startswith("the labels at time point 0 hold no label on ") and "tick 'labels painted" \
        in whole["note"]


def test_the_widget_trains_on_a_time_lapse_s_painted_slices(make_napari_viewer, qtbot, _user_dir):
    """The Dice reported for the held-out time point is the saved weights' Dice on its painted slices
    (not over its unpainted ones, which are unknown), and the model card says so."""
    import torch
    from halo_seg.engine import normalize
    from halo_seg.engine.runner import predict_whole
    from halo_seg.engine.weights import load_unet
    from halo_seg.metrics import dice
    from halo_seg.train.sparse import labelled_slices
    image, _, painted = _painted_movie()
    viewer, w = _movie_widget(make_napari_viewer, image, painted)
    w.one_class.setChecked(True)
    w.sparse.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "weights saved" in w.status.text(), w.status.text()
    net, meta = load_unet(w.last_weights)
    zs = labelled_slices(painted[3])
    card = w.last_weights.with_suffix(".md").read_text()
    assert "| validation | 1 held-out volume(s), where labelled only (time point 3 of the time-lapse, on slices " \
        f"{', '.join(map(str, zs))} at time point 3 (only painted slices trained on)) |" in card, card
    assert "the painted slices of time points 0, 2 trained on" in card
    spec = meta["normalization"]
    x = normalize.apply(image[3], *normalize.mean_std(normalize.moments(image[3], spec), spec), spec)
    pred = predict_whole(net, x, torch.device("cpu")).argmax(0)
    on_painted = dice(pred[zs] == 1, painted[3][zs] > 0)
    assert f"held-out time point 3, on its painted slices (n/a: not there): {on_painted:.3f}" in w.status.text(), \
        w.status.text()
