"""Labels painted on some slices only (train/sparse.py): the unlabelled slices are unknown, not
background; `halo-seg train --labelled-slices` (unpartitioned and partitioned) and the napari widget
train on the painted slices."""
import numpy as np
import pytest

from halo_seg.cli import main
from halo_seg.samples import make_phantom
from halo_seg.engine.partition import PartitionPlan
from halo_seg.train import partitioned_run, unet_train
from halo_seg.train.partitioned import step_inputs
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


@pytest.mark.parametrize("grid", [None, (2, 1, 1)])
def test_held_out_volumes_painted_on_some_slices_are_scored_there(painted, tmp_path, grid):
    """``held_regions`` limit a held-out volume's Dice to its painted slices: the Dice kept is the saved
    weights' Dice there, not over the unpainted slices (where every object found would count as a
    false positive); regions that do not fit the held-out volumes are refused. Unpartitioned and
    partitioned trainers alike; a held-out volume whose region is None is scored whole."""
    import torch
    from halo_seg.engine import normalize
    from halo_seg.engine.runner import predict_whole
    from halo_seg.engine.weights import load_unet
    from halo_seg.metrics import dice
    img, full, sparse = painted
    held = np.roll(img, 4, axis=2), np.roll(sparse, 4, axis=2)
    region = slab(sparse.shape, 0, labelled_slices(held[1]))
    train_regions = [slab(sparse.shape, 0, labelled_slices(sparse))]
    kw = dict(train_regions=train_regions, val_images=[held[0], img], val_labels=[held[1], full],
              held_regions=[region, None], log=lambda *_: None)
    if grid is None:
        cfg = unet_train.TrainConfig(n_classes=2, patch=(16, 16, 16), iterations=4, base=4, depth=2, epoch=4,
                                     threads=1)
        unet_train.train_unet([img], [sparse], cfg, tmp_path / "w.safetensors", **kw)
    else:
        cfg = dict(n_classes=2, patch=[16, 16, 16], iterations=4, lr=3e-3, base=4, depth=2, epoch=4, threads=1)
        partitioned_run.train_partitioned(img, sparse, cfg, grid, tmp_path / "w.safetensors", **kw)
    net, meta = load_unet(tmp_path / "w.safetensors")
    spec = meta["normalization"]

    def pred(x):
        x = normalize.apply(x, *normalize.mean_std(normalize.moments(x, spec), spec), spec)
        return predict_whole(net, x, torch.device("cpu")).argmax(0) == 1
    there, whole = dice(pred(held[0])[region], held[1][region] == 1), dice(pred(img), full == 1)
    assert meta["training"]["best_val_dice"][0] == pytest.approx((there + whole) / 2, abs=1e-6)
    assert meta["training"]["validated_on"] == "held-out volume regions"
    with pytest.raises(unet_train.TrainingError, match=r"[12] validation regions for 1 held-out volumes"):
        if grid is None:
            unet_train.train_unet([img], [sparse], cfg, tmp_path / "v.safetensors", val_images=[held[0]],
                                  val_labels=[held[1]], held_regions=[region[:8]], log=lambda *_: None)
        else:
            partitioned_run.train_partitioned(img, sparse, cfg, grid, tmp_path / "v.safetensors",
                                              val_images=[held[0]], val_labels=[held[1]],
                                              held_regions=[region, region], log=lambda *_: None)
    if grid is None:
        with pytest.raises(unet_train.TrainingError, match="validation region 0 is empty"):
            unet_train.train_unet([img], [sparse], cfg, tmp_path / "v.safetensors", val_images=[held[0]],
                                  val_labels=[held[1]], held_regions=[np.zeros_like(region)], log=lambda *_: None)
    else:
        for bad, msg in (({"held_regions": [region[:8]]}, r"validation region 0 is \(8, 32, 32\)"),
                         ({"held_regions": [np.zeros_like(region)]}, "validation region 0 is empty"),
                         ({"val_images": None, "val_labels": None, "held_regions": [region]}, "give val_images")):
            with pytest.raises(unet_train.TrainingError, match=msg):
                partitioned_run.train_partitioned(img, sparse, cfg, grid, tmp_path / "v.safetensors",
                                                  **{"val_images": [held[0]], "val_labels": [held[1]], **bad},
                                                  log=lambda *_: None)
    assert not (tmp_path / "v.safetensors").exists()


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
    np.save(tmp_path / "full.npy", full)
    held = ["--val-image", str(tmp_path / "img.npy"), "--val-labels", str(tmp_path / "lab.npy")]
    seen.clear()                                           # held out, painted too: scored on its painted slices
    assert main(args + held) == 0
    zs = labelled_slices(sparse, 0)
    assert np.array_equal(seen["held_regions"][0], slab(sparse.shape, 0, zs))
    assert f"lab.npy: scored on its {len(zs)} labelled slices across z" in capsys.readouterr().out
    assert load_unet(tmp_path / "m.safetensors")[1]["training"]["validated_on"] == "held-out volume regions"
    seen.clear()                                           # trained as complete: scored whole, so said
    assert main(args[:-2] + held) == 0
    assert "held_regions" not in seen
    assert "note: " + gaps_note(sparse, 0, str(tmp_path / "lab.npy"), None) + "; a held-out volume is scored whole" \
        in capsys.readouterr().out
    seen.clear()                                           # held out, labelled whole: scored whole
    assert main(args + ["--val-image", str(tmp_path / "img.npy"), "--val-labels", str(tmp_path / "full.npy")]) == 0
    assert "note:" not in capsys.readouterr().out and "held_regions" not in seen
    with pytest.raises(SystemExit, match="not for it"):
        main(args + ["--folds", "2"])
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


def test_partitioned_patches_come_from_the_labelled_slices(painted):
    """A rank grid's trainer: no voxel off the painted slices weighs in the loss, and every patch
    holds some of them (drawn anywhere, a 16-slice patch of a 32-slice stack painted on slices 2 to
    10 missed them half the time)."""
    img, full, sparse = painted
    region = slab(sparse.shape, 0, [2, 6, 10])
    data = partitioned_run.prepare_data(img, sparse, {"normalization": {"kind": "zscore"}}, region)
    assert (data["weights"][~region] == 0).all() and (data["weights"][region] > 0).all()
    assert set(np.unique(data["centres"][:, 0])) == {2, 6, 10}
    assert set(np.unique(data["fg"][1][:, 0])) <= {2, 6, 10} and len(data["fg"][1]) == (sparse[region] == 1).sum()
    assert np.array_equal(data["val_region"], ~region)
    plan = PartitionPlan((16, 16, 16), (2, 1, 1), 4)
    rng = np.random.default_rng(0)
    for _ in range(30):
        _, _, w = step_inputs(data["image"], data["labels"], data["weights"], (16, 16, 16), plan, None, rng,
                              augment=True, centres=data["centres"])
        assert w.any()
    drawn = [step_inputs(data["image"], data["labels"], data["weights"], (16, 16, 16), plan, None, rng)[2].any()
             for _ in range(30)]
    assert not all(drawn)   # the check above can fail: drawn anywhere, some patches miss the slices


def test_partitioned_training_on_painted_slices_validates_on_the_held_out_ones(painted, tmp_path, monkeypatch,
                                                                               capsys):
    """`train --labelled-slices z --grid 2,1,1`: the ranks train on the painted slices and report the
    Dice of the held-out painted slices, which the saved weights give there run whole; the unpainted
    slices are learnt as objects, not background."""
    from halo_seg.engine import normalize
    from halo_seg.engine.runner import predict_whole
    from halo_seg.engine.weights import load_unet
    from halo_seg.metrics import dice
    img, full, sparse = painted
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", sparse)
    seen = {}
    real = partitioned_run.train_partitioned

    def spy(*args, **kw):
        seen.update(kw)
        return real(*args, **kw)
    monkeypatch.setattr(partitioned_run, "train_partitioned", spy)
    out = tmp_path / "m.safetensors"
    args = ["train", "--image", str(tmp_path / "img.npy"), "--labels", str(tmp_path / "lab.npy"), "--out", str(out),
            "--iterations", "40", "--epoch", "20", "--patch", "32", "32", "32", "--lr", "1e-2", "--base", "4", "--depth",
            "2", "--grid", "2,1,1", "--labelled-slices", "z"]
    assert main(args) == 0
    train, val, held = sparse_regions(sparse, 0, 0.2)
    assert np.array_equal(seen["train_regions"][0], train) and np.array_equal(seen["val_regions"][0], val)
    assert "held out" in capsys.readouterr().out
    net, meta = load_unet(out)
    assert meta["training"]["validated_on"] == "held-out regions" and meta["training"]["partitioned"]
    spec = normalize.resolve(meta["normalization"], img)
    m, s = normalize.mean_std(normalize.moments(img, spec), spec)
    pred = predict_whole(net, normalize.apply(img, m, s, spec), "cpu").argmax(0) == 1
    on_held = dice(pred & val, (full == 1) & val)
    assert meta["training"]["best_val_dice"][0] == pytest.approx(on_held, abs=1e-6)
    assert on_held != pytest.approx(dice(pred, sparse == 1), abs=0.05)   # not the whole volume's Dice
    unpainted = ~slab(sparse.shape, 0, labelled_slices(sparse, 0))
    learnt = dice(pred & unpainted, (full == 1) & unpainted)
    # the same run taking the unpainted slices as background learns little but background
    assert main(args[:-2]) == 0
    net = load_unet(out)[0]
    pred = predict_whole(net, normalize.apply(img, m, s, spec), "cpu").argmax(0) == 1
    assert learnt > 0.4 and learnt > dice(pred & unpainted, (full == 1) & unpainted) + 0.3, learnt


def test_torchrun_ranks_train_on_the_painted_slices_as_spawned_ones_do(painted, tmp_path):
    """Under torchrun every rank finds the painted slices itself: the weights equal those of ranks
    spawned for the run given the regions. The two ranks share the pairs they prepare in the
    --on-disk folder, which is empty again when training ends."""
    import os
    import subprocess
    import sys
    from safetensors.torch import load_file
    from halo_seg.engine.runner import _free_port
    img, _, sparse = painted
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", sparse.astype(np.uint8))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "halo_seg.cli", "train", "--image", str(tmp_path / "img.npy"), "--labels", str(tmp_path / "lab.npy"),
           "--out", str(tmp_path / "t.safetensors"), "--grid", "2,1,1", "--labelled-slices", "z", "--quiet",
           "--patch", "16", "16", "16", "--iterations", "6", "--epoch", "3", "--base", "4", "--depth", "2", "--lr",
           "3e-3", "--threads", "1", "--on-disk", str(tmp_path / "scratch")]
    (tmp_path / "scratch").mkdir()
    r = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"prepared and shared from disk by the 2 rank(s) of this machine (in {tmp_path / 'scratch'})" in r.stdout
    assert not list((tmp_path / "scratch").iterdir())
    train, val, _ = sparse_regions(sparse, 0, 0.2)
    cfg = dict(n_classes=2, patch=[16, 16, 16], iterations=6, epoch=3, base=4, depth=2, lr=3e-3, threads=1, batch=2)
    partitioned_run.train_partitioned(img, sparse, cfg, (2, 1, 1), tmp_path / "s.safetensors", log=lambda *a: None,
                                      train_regions=[train], val_regions=[val])
    a, b = load_file(str(tmp_path / "t.safetensors")), load_file(str(tmp_path / "s.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_regions_that_do_not_fit_the_pairs_are_refused_before_any_rank_starts(painted, tmp_path):
    from halo_seg.train.unet_train import TrainingError
    img, _, sparse = painted
    cfg = dict(n_classes=2, patch=[16, 16, 16], iterations=1, base=4, depth=2)
    train, val, _ = sparse_regions(sparse, 0, 0.2)
    out = tmp_path / "m.safetensors"
    for kw, says in ((dict(val_regions=[val]), "give train_regions too"),
                     (dict(train_regions=[train, train]), "2 training regions for 1 volume pairs"),
                     (dict(train_regions=[train[:8]]), r"training region 0 is \(8, 32, 32\), its labels \(32, 32, 32\)"),
                     (dict(train_regions=[train], val_regions=[val[:, :4]]), "validation region 0 is"),
                     (dict(train_regions=[np.zeros_like(train)]), "training region 0 is empty")):
        with pytest.raises(TrainingError, match=says):
            partitioned_run.train_partitioned(img, sparse, cfg, (2, 1, 1), out, log=lambda *a: None, **kw)
    assert not out.exists()
