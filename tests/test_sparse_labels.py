"""Labels painted on some slices only (train/sparse.py): the unlabelled slices are unknown, not
background; `halo-seg train --labelled-slices` and the napari widget train on the painted slices."""
import numpy as np
import pytest

from halo_seg.cli import main
from halo_seg.samples import make_phantom
from halo_seg.train import unet_train
from halo_seg.train.sparse import SparseLabelsError, gaps_note, labelled_slices, slab, sparse_regions


@pytest.fixture(scope="module")
def painted():
    """A phantom whose labels were painted on every 4th slice (2, 6, 10, ...), off the sampler's grid."""
    ph = make_phantom((32, 32, 32), n_objects=3, seed=2, noise=0.05)
    full = (ph.labels > 0).astype(np.int64)
    every = slab(full.shape, 0, np.arange(2, 32, 4))
    return ph.image.astype(np.float32), full, np.where(every, full, 0)


def test_labels_painted_every_few_slices_are_noticed(painted):
    _, full, sparse = painted
    assert gaps_note(full) is None                           # a complete label volume: nothing to say
    note = gaps_note(sparse, 0, "lab.npy")
    assert note.startswith("lab.npy hold no label on") and "--labelled-slices" in note
    two = np.zeros_like(full)
    two[3:9] = full[3:9]
    two[20:26] = full[20:26]                                  # two objects at two depths: one gap
    assert gaps_note(two) is None


def test_regions_are_the_labelled_slices_with_some_held_out_across_the_stack(painted):
    _, full, sparse = painted
    zs = labelled_slices(sparse, 0)
    assert list(zs) == [z for z in range(2, 32, 4) if full[z].any()]
    train, val, held = sparse_regions(sparse, 0, 0.2)
    assert set(held) < set(zs) and len(held) >= 1
    assert not (train & val).any()
    assert np.array_equal(train | val, slab(sparse.shape, 0, zs))
    assert np.array_equal(labelled_slices(train, 0), np.setdiff1d(zs, held))
    left = np.zeros(sparse.shape, bool)
    left[..., :16] = True
    t, v, _ = sparse_regions(sparse, 0, 0.2, within=left)
    assert not (t | v)[..., 16:].any()
    t, v, h = sparse_regions(sparse, 1, 0.0)   # across y: the labels reach these y slices; nothing held out
    assert v is None and len(h) == 0 and np.array_equal(labelled_slices(t, 1), labelled_slices(sparse, 1))
    one = np.zeros_like(sparse)
    one[5, 10, 10] = 1
    with pytest.raises(SparseLabelsError, match="on 1 slice"):
        sparse_regions(one, 0, 0.2)


def test_background_patches_are_drawn_from_a_region_between_the_samplers_grid(painted):
    """The sampler looked for background patch centres on every 4th voxel only: labelled slices at
    2, 6, 10, ... gave it none, and training crashed (numpy's 'high <= 0')."""
    img, _, sparse = painted
    region = slab(sparse.shape, 0, [2, 6, 10])
    rng = np.random.default_rng(0)
    for _ in range(10):
        _, _, w = unet_train._sample_patch(img[None], sparse, np.ones(img.shape, np.float32), region, {}, (16, 16, 16),
                                           rng, 0.0)
        assert w.any()   # a patch that holds some of the region


def test_cli_trains_on_the_labelled_slices_only(painted, tmp_path, monkeypatch, capsys):
    img, full, sparse = painted
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", sparse)
    args = ["train", "--image", str(tmp_path / "img.npy"), "--labels", str(tmp_path / "lab.npy"),
            "--out", str(tmp_path / "m.safetensors"), "--iterations", "4", "--epoch", "2", "--patch", "16", "16", "16",
            "--base", "4", "--depth", "2", "--labelled-slices", "z"]
    seen = {}
    real = unet_train.train_unet

    def spy(images, labels, cfg, out, **kw):
        seen.update(kw)
        return real(images, labels, cfg, out, **kw)
    monkeypatch.setattr(unet_train, "train_unet", spy)
    assert main(args) == 0
    train, val, held = sparse_regions(sparse, 0, 0.2)
    assert np.array_equal(seen["train_regions"][0], train) and np.array_equal(seen["val_regions"][0], val)
    out = capsys.readouterr().out
    assert f"{len(labelled_slices(train, 0))} labelled slices across z trained on, {len(held)} held out" in out
    assert (tmp_path / "m.safetensors").is_file()
    from halo_seg.engine.weights import load_unet
    assert load_unet(tmp_path / "m.safetensors")[0].config["out_channels"] == 2   # background and the objects
    assert "note:" not in out
    # without the option every slice is trained on, the unpainted ones as background
    seen.clear()
    assert main(args[:-2]) == 0
    assert "train_regions" not in seen
    note = capsys.readouterr().out   # the user is told what the gaps would teach
    assert "note: " in note and "hold no label on" in note and "--labelled-slices" in note
    for extra, why in ((["--grid", "2,1,1"], "trains on one process"), (["--folds", "2"], "not for it")):
        with pytest.raises(SystemExit, match=why):
            main(args + extra)
    np.save(tmp_path / "one.npy", np.where(slab(sparse.shape, 0, [10]), full, 0))
    with pytest.raises(SystemExit, match="on 1 slice"):
        main(args[:4] + [str(tmp_path / "one.npy")] + args[5:])


def test_the_widget_trains_on_painted_slices(make_napari_viewer, qtbot, _user_dir):
    pytest.importorskip("napari")
    from napari_halo_seg._train_widget import TrainWidget
    viewer = make_napari_viewer()
    viewer.open_sample("napari-halo-seg", "phantom")
    truth = np.asarray(viewer.layers["phantom truth"].data)
    painted = np.where(slab(truth.shape, 0, np.arange(1, truth.shape[0], 3)), truth, 0)
    viewer.add_labels(painted, name="painted")
    w = TrainWidget(viewer)
    w.image.setCurrentText("phantom")
    w.labels.setCurrentText("painted")
    w.iterations.setValue(12)
    w.patch.setValue(32)
    w.predict.setChecked(False)
    w.sparse.setChecked(False)      # taken as complete: the user is told what the gaps would teach
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "Note: the labels hold no label on" in w.status.text(), w.status.text()
    assert "tick 'labels painted on some slices only'" in w.status.text()
    w.sparse.setChecked(True)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=300_000)
    assert "Note:" not in w.status.text()
    _, _, held = sparse_regions(painted, 0, 0.2)
    assert "weights saved" in w.status.text(), w.status.text()
    assert f"held-out slices {', '.join(map(str, held))} (n/a" in w.status.text(), w.status.text()
    card = w.last_weights.with_suffix(".md").read_text()
    assert "only painted slices trained on" in card
