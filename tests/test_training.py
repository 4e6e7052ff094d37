"""3D U-Net training: it learns, resumes, normalises as asked and refuses bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from halo_seg.engine import normalize
from halo_seg.engine.weights import WeightsError, load_unet
from halo_seg.metrics import dice
from halo_seg.samples import make_phantom
from halo_seg.train.unet_train import TrainConfig, TrainingError, train_unet


@pytest.fixture(scope="module")
def pair():
    ph = make_phantom((32, 32, 32), n_objects=3, seed=11, noise=0.05)
    return ph.image, (ph.labels > 0).astype(np.int64)


def test_training_learns_and_resumes(pair, tmp_path):
    from halo_seg.engine.runner import predict_whole
    img, lab = pair
    cfg = TrainConfig(n_classes=2, patch=(32, 32, 32), iterations=40, batch=1, lr=3e-3, base=4, depth=2, epoch=20,
                      normalization={"kind": "percentile", "percentiles": [1.0, 99.0]})
    steps = []
    train_unet([img], [lab], cfg, tmp_path / "a.safetensors", log=lambda *a: None,
                     progress=lambda i, n: steps.append(i))
    assert steps == list(range(1, 41))
    net, meta = load_unet(tmp_path / "a.safetensors")
    assert meta["normalization"] == {"kind": "percentile", "percentiles": [1.0, 99.0]}
    spec = normalize.resolve(meta["normalization"], img)
    m, s = normalize.mean_std(normalize.moments(img, spec), spec)
    pred = predict_whole(net, normalize.apply(img, m, s, spec), "cpu").argmax(0)
    assert dice(pred == 1, lab == 1) > 0.6          # a random net scores about the foreground fraction
    cfg2 = TrainConfig(**{**cfg.__dict__, "iterations": 50})
    steps.clear()
    train_unet([img], [lab], cfg2, tmp_path / "b.safetensors", log=lambda *a: None,
               resume=tmp_path / "a.safetensors", progress=lambda i, n: steps.append(i))
    assert steps[0] == meta["training"]["iteration"] + 1 and steps[-1] == 50
    bad = TrainConfig(**{**cfg.__dict__, "base": 8})
    with pytest.raises(WeightsError, match="cannot resume"):
        train_unet([img], [lab], bad, tmp_path / "c.safetensors", log=lambda *a: None, resume=tmp_path / "a.safetensors")


def test_normalisation_specs():
    x = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    w = normalize.resolve(normalize.parse("percentile:10,90"), x)
    assert w["kind"] == "window" and w["window"] == pytest.approx([99.9, 899.1], abs=1e-6)
    assert normalize.parse("window:-160,240") == {"kind": "window", "window": [-160.0, 240.0]}
    for bad in ("percentile:90,10", "window:5", "minmax", "percentile:a,b"):
        with pytest.raises(ValueError):
            normalize.parse(bad)


def test_bad_training_input(pair, tmp_path):
    img, lab = pair
    cfg = TrainConfig(n_classes=2, patch=(16, 16, 16), iterations=1, base=4, depth=2)
    holed = img.astype(np.float32).copy()
    holed[2, 3, 4] = np.inf   # trained on NaN losses before
    for im, lb, msg in [(img, lab[:, :, :16], "differ"), (img, np.zeros_like(lab), "empty"),
                        (holed, lab, "holds 1 NaN or infinite voxels"),
                        (img[14:17], lab[14:17], "too small"), (img[0], lab[0], "3D"), (img, lab + 5, "n_classes")]:
        with pytest.raises(TrainingError, match=msg):
            train_unet([im], [lb], cfg, tmp_path / "x.safetensors", log=lambda *a: None)


def test_thin_volumes_train_with_patches_cut_to_the_network_and_bad_schedules_are_refused(pair, tmp_path):
    """A 10-slice volume with the 48-voxel patch gave 10-slice patches, which a depth-3 network cannot
    take (a shape error); 0 iterations saved an untrained network."""
    from halo_seg.train.unet_train import fitting_patch
    assert fitting_patch((48, 48, 48), (10, 20, 100), 8) == [8, 16, 48]
    img, lab = pair
    cfg = TrainConfig(n_classes=2, patch=(16, 16, 16), iterations=2, base=4, depth=2, epoch=1)
    res = train_unet([img[10:20]], [lab[10:20]], cfg, tmp_path / "thin.safetensors", log=lambda *a: None)
    assert (tmp_path / "thin.safetensors").exists() and res["history"]
    for kw, msg in (({"iterations": 0}, "iterations must be at least 1"), ({"lr": -1.0}, "learning rate must be a number >= 0"),
                    ({"patch": (0, 16, 16)}, "positive multiple"), ({"batch": 0}, "batch must hold at least 1")):
        with pytest.raises(TrainingError, match=msg):
            train_unet([img], [lab], TrainConfig(**{**cfg.__dict__, **kw}), tmp_path / "x.safetensors", log=lambda *a: None)
    # the output is checked before training: not a .safetensors path, or another file already there
    (tmp_path / "scan.npy").write_bytes(b"the user's data")
    (tmp_path / "old.safetensors").write_bytes(b"not weights")
    for out, msg in (("scan.npy", "give --out a path ending in .safetensors"),
                     ("old.safetensors", "exists and is not a safetensors file")):
        with pytest.raises(TrainingError, match=msg):
            train_unet([img], [lab], cfg, tmp_path / out, log=lambda *a: None)
    assert (tmp_path / "scan.npy").read_bytes() == b"the user's data"
    assert (tmp_path / "old.safetensors").read_bytes() == b"not weights"
    z = int(lab.sum((1, 2)).argmax())
    with pytest.raises(TrainingError, match=r"need >= 4 voxels per axis"):   # depth 2: 4 slices are the least
        train_unet([img[z:z + 3]], [lab[z:z + 3]], cfg, tmp_path / "x.safetensors", log=lambda *a: None)
    assert not (tmp_path / "x.safetensors").exists()


def test_cli_train_refuses_fractional_labels_before_training(pair, tmp_path, capsys):
    """Labels of 0.5 (resampled with interpolation) were cast to 0 and trained on as background."""
    from halo_seg.cli import main
    img, lab = pair
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", lab * 0.5)
    out = tmp_path / "m.safetensors"
    assert main(["train", "--image", str(tmp_path / "img.npy"), "--labels", str(tmp_path / "lab.npy"),
                 "--out", str(out), "--iterations", "1", "--quiet"]) == 2
    assert "lab.npy holds float64 values that are not labels (e.g. 0.5)" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def held_out():
    ph = make_phantom((24, 40, 32), n_objects=2, seed=4, noise=0.05)
    return ph.image * 3 + 5, (ph.labels > 0).astype(np.int64)   # another scale: its own normalisation counts


@pytest.mark.parametrize("grid", [None, (2, 1, 1)])
def test_validation_on_held_out_volumes(pair, held_out, tmp_path, grid, whole_dice):
    """The Dice that chose the weights is theirs on the held-out volume (whole, normalised on its own),
    not on the training volume; unpartitioned and partitioned trainers alike."""
    from halo_seg.train.partitioned_run import train_partitioned
    img, lab = pair
    out = tmp_path / "v.safetensors"
    if grid is None:
        cfg = TrainConfig(n_classes=2, patch=(32, 32, 32), iterations=20, batch=1, lr=3e-3, base=4, depth=2, epoch=10)
        train_unet([img], [lab], cfg, out, log=lambda *a: None, val_images=[held_out[0]], val_labels=[held_out[1]])
    else:
        cfg = dict(n_classes=2, patch=[32, 32, 32], iterations=20, lr=3e-3, base=4, depth=2, epoch=10)
        train_partitioned(img, lab, cfg, grid, out, log=lambda *a: None, val_images=[held_out[0]],
                          val_labels=[held_out[1]])
    there, meta = whole_dice(out, *held_out)
    assert meta["training"]["validation_volumes"] == 1
    assert meta["training"]["best_val_dice"][0] == pytest.approx(there, abs=1e-6)
    assert abs(whole_dice(out, img, lab)[0] - there) > 1e-3
    bad = [([held_out[0]], []), ([held_out[0]], [held_out[1][:, :8]]), ([held_out[0]], [held_out[1] * 3])]
    for vi, vl in bad:
        with pytest.raises(TrainingError, match="pairs|validation volume 0"):
            if grid is None:
                train_unet([img], [lab], cfg, tmp_path / "x.safetensors", log=lambda *a: None, val_images=vi,
                           val_labels=vl)
            else:
                train_partitioned(img, lab, cfg, grid, tmp_path / "x.safetensors", log=lambda *a: None,
                                  val_images=vi, val_labels=vl)
    assert not (tmp_path / "x.safetensors").exists()


def test_cli_grid_training(pair, held_out, tmp_path):
    img, lab = pair
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", lab.astype(np.uint8))
    np.save(tmp_path / "val.npy", held_out[0])
    np.save(tmp_path / "vlab.npy", held_out[1].astype(np.uint8))
    out = tmp_path / "g.safetensors"
    r = subprocess.run([sys.executable, "-m", "halo_seg.cli", "train", "--image", str(tmp_path / "img.npy"),
                        "--labels", str(tmp_path / "lab.npy"), "--out", str(out), "--grid", "2,1,1",
                        "--val-image", str(tmp_path / "val.npy"), "--val-labels", str(tmp_path / "vlab.npy"),
                        "--patch", "16", "16", "16", "--iterations", "2", "--base", "4", "--depth", "2", "--quiet",
                        "--precision", "bf16"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["grid"] == [2, 1, 1]
    assert load_unet(out)[1]["training"]["partitioned"]
    assert load_unet(out)[1]["training"]["config"]["precision"] == "bf16"
    assert load_unet(out)[1]["training"]["validation_volumes"] == 1
    r = subprocess.run([sys.executable, "-m", "halo_seg.cli", "train", "--image", str(tmp_path / "img.npy"),
                        "--labels", str(tmp_path / "lab.npy"), "--out", str(out), "--val-image",
                        str(tmp_path / "val.npy")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "1 --val-image but 0 --val-labels" in r.stderr
    r = subprocess.run([sys.executable, "-m", "halo_seg.cli", "train", "--image", str(tmp_path / "img.npy"),
                        "--labels", str(tmp_path / "lab.npy"), "--out", str(out), "--normalization", "minmax"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "unknown normalisation" in r.stderr


def test_train_dry_run_checks_times_and_saves_nothing(tmp_path):
    import json
    import subprocess
    import sys
    from halo_seg.samples import make_phantom
    s = make_phantom((32, 32, 32), n_objects=3, seed=1)
    np.save(tmp_path / "img.npy", s.image)
    np.save(tmp_path / "lab.npy", (s.labels > 0).astype(np.uint8))
    out = tmp_path / "m.safetensors"
    args = [sys.executable, "-m", "halo_seg.cli", "train", "--image", str(tmp_path / "img.npy"), "--labels",
            str(tmp_path / "lab.npy"), "--out", str(out), "--patch", "16", "16", "16", "--base", "4", "--depth", "2",
            "--iterations", "300", "--epoch", "50", "--dry-run"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout.strip().splitlines()[-1])["dry_run"]
    assert plan["iterations"] == 300 and plan["seconds_per_iteration"] > 0 and plan["seconds_per_validation"] > 0
    expected = plan["setup_seconds"] + 300 * plan["seconds_per_iteration"] + 6 * plan["seconds_per_validation"]
    assert abs(plan["estimated_minutes"] - expected / 60) < 0.06
    assert "300 iterations validated every 50 would take about" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.npy", "lab.npy"]   # no weights, card or history
    np.save(tmp_path / "lab.npy", np.zeros((32, 32, 32), np.uint8))   # what a run would refuse, a dry run refuses
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "labels are empty" in r.stderr


def test_label_ids_with_classes_that_appear_nowhere_are_refused(tmp_path, capsys):
    """Ids 3 and 300 trained a 301-class network, 299 of its outputs taught by nothing (instance ids,
    or a skipped number); --classes keeps them on purpose."""
    from halo_seg.cli import main
    from halo_seg.train.unet_train import check_class_ids
    lab = np.zeros((16, 16, 16), np.uint16)
    lab[2:6, 2:6, 2:6], lab[8:14, 8:14, 8:14] = 3, 300
    with pytest.raises(TrainingError, match=r"ids in x are 3, 300: .* classes 0 to 300, 298 of which \(1, 2, 4"):
        check_class_ids([lab], "x")
    other = np.zeros_like(lab)
    other[1:3, 1:3, 1:3] = 1
    other[5:7, 5:7, 5:7] = 2
    assert check_class_ids([lab.clip(0, 3), other]) == 4   # together the volumes hold every class
    np.save(tmp_path / "img.npy", np.random.default_rng(0).random(lab.shape).astype(np.float32))
    np.save(tmp_path / "lab.npy", lab)
    args = ["train", "--image", str(tmp_path / "img.npy"), "--labels", str(tmp_path / "lab.npy"), "--iterations", "1",
            "--patch", "8", "8", "8", "--base", "4", "--depth", "2", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a.safetensors")]) == 2
    assert "appear nowhere" in capsys.readouterr().err and not (tmp_path / "a.safetensors").exists()
    np.save(tmp_path / "lab.npy", lab.clip(0, 3))   # 3 alone: classes 1 and 2 unseen, kept with --classes
    assert main(args + ["--classes", "4", "--out", str(tmp_path / "b.safetensors")]) == 0
    assert (tmp_path / "b.safetensors").exists()


def test_foreground_voxels_are_kept_as_flat_indices_of_exactly_the_class_voxels():
    # kept narrow (4 bytes a voxel, not 24), they must still name each class's voxels, in the same order
    from halo_seg.train.unet_train import _sample_patch, class_voxels, compact_labels
    s = make_phantom((20, 24, 28), n_objects=4, seed=3)
    region = np.zeros(s.labels.shape, bool)
    region[2:18] = True
    fg = class_voxels(s.labels, region)
    assert sorted(fg) == sorted(int(k) for k in np.unique(s.labels[region]) if k)
    for k, flat in fg.items():
        assert flat.dtype == np.int32
        np.testing.assert_array_equal(np.stack(np.unravel_index(flat, s.labels.shape), 1),
                                      np.argwhere((s.labels == k) & region))
    lab = compact_labels(s.labels.astype(np.int64))
    assert lab.dtype == np.uint8 and np.array_equal(lab, s.labels)
    assert compact_labels(np.array([0, 300])).dtype == np.uint16
    rng = np.random.default_rng(0)
    k = min(fg)
    for _ in range(20):   # a patch drawn on the foreground holds that foreground
        img, patch_lab, w = _sample_patch(s.image[None], lab, np.ones(lab.shape, np.float32), region, {k: fg[k]},
                                          (8, 8, 8), rng, 1.0)
        assert (patch_lab == k).any() and patch_lab.shape == (8, 8, 8) and img.shape == (1, 8, 8, 8)


def test_patches_drawn_anywhere_are_those_of_a_whole_volume_region():
    # everywhere() draws a background patch without listing the candidates: the same draws as listing them
    from halo_seg.train.unet_train import _sample_patch, everywhere
    s = make_phantom((21, 30, 26), n_objects=2, seed=1)
    w = np.ones(s.labels.shape, np.float32)
    for region in (everywhere(s.labels.shape), np.ones(s.labels.shape, bool)):
        rng = np.random.default_rng(7)
        drawn = [_sample_patch(s.image[None], s.labels, w, region, {}, (8, 16, 8), rng, 0.0)[0] for _ in range(40)]
        if region.strides == (0, 0, 0):
            lazy = drawn
    for a, b in zip(lazy, drawn):
        np.testing.assert_array_equal(a, b)
    assert len({a.tobytes() for a in lazy}) > 20   # and they are spread over the volume


def test_border_weights_of_many_objects_are_those_of_all_their_distance_maps():
    # the two nearest objects' distances, kept as each map comes, against all n maps sorted (the formula)
    from scipy import ndimage as ndi
    from halo_seg.train.losses import unet_weight_map
    rng = np.random.default_rng(5)
    lab = np.zeros((12, 40, 40), np.uint8)
    for _ in range(14):
        z, y, x = rng.integers(0, 12), rng.integers(0, 40), rng.integers(0, 40)
        lab[max(z - 1, 0):z + 2, max(y - 2, 0):y + 3, max(x - 2, 0):x + 3] = rng.integers(1, 3)
    comps, n = ndi.label(lab > 0)
    assert n >= 6
    d = np.sort(np.stack([ndi.distance_transform_edt(comps != i) for i in range(1, n + 1)]), 0)
    for sigma in (5.0, 1.0):   # at 1 each object's distances are taken within 7 voxels of it only
        border = 10.0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma ** 2))
        expected = 1.0 + (border * (lab == 0)).astype(np.float32)
        got = unet_weight_map(lab, sigma=sigma, class_balance=False)
        # what lies further than 7 sigmas from an object is below 10 exp(-24.5) = 2.3e-10
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        assert (got > 1.01).sum() == (expected > 1.01).sum() > 100


def test_volumes_kept_on_disk_train_the_same_weights_and_are_removed(pair, tmp_path):
    img, lab = pair
    cfg = TrainConfig(n_classes=int(lab.max()) + 1, patch=(16, 16, 16), iterations=6, epoch=3, base=4, depth=2)
    train_unet([img], [lab], cfg, tmp_path / "ram.safetensors", log=lambda *_: None, val_images=[img],
               val_labels=[lab])
    seen = []

    def look(it, total):   # while it trains: the prepared volumes are files in the scratch folder
        seen.append(sorted(p.name for p in (tmp_path / "scratch").glob("halo-seg-prepared-*/*.npy")))
    import dask.array as da
    train_unet([da.from_array(img, chunks=8)], [lab], cfg, tmp_path / "disk.safetensors", log=lambda *_: None,
               val_images=[img], val_labels=[lab], on_disk=tmp_path / "scratch", progress=look)
    assert {"volume0_0.npy", "volume0_1.npy", "volume0_2.npy", "validation0_0.npy", "validation0_1.npy"} <= set(seen[0])
    assert not list((tmp_path / "scratch").iterdir())      # removed at the end
    a, b = load_unet(tmp_path / "ram.safetensors")[0], load_unet(tmp_path / "disk.safetensors")[0]
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k


def test_a_run_whose_volumes_do_not_fit_is_told_about_on_disk(pair, tmp_path, monkeypatch):
    from halo_seg.train import train_memory
    img, lab = pair
    monkeypatch.setattr(train_memory, "UNPARTITIONED_DATA", 10 ** 7)   # as if the volumes took far more than the RAM
    cfg = TrainConfig(n_classes=int(lab.max()) + 1, patch=(16, 16, 16), iterations=2, base=4, depth=2)
    with pytest.raises(TrainingError, match="--on-disk DIR. \\(a folder on a local disk"):
        train_unet([img], [lab], cfg, tmp_path / "m.safetensors", log=lambda *_: None)
    train_unet([img], [lab], cfg, tmp_path / "m.safetensors", log=lambda *_: None, on_disk=tmp_path)
    assert (tmp_path / "m.safetensors").exists()
