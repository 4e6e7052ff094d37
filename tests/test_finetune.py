"""Fine-tuning (`train --init`, train/init_weights.py): a run starts from trained weights, keeps
their classifier only where the classes fit, records what it started from, and refuses what
cannot start it."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from halo_seg.engine.unet import UNet3D
from halo_seg.engine.weights import load_unet, save_unet, weights_dir
from halo_seg.samples import make_phantom
from halo_seg.train.init_weights import InitError, load_into, read_start
from halo_seg.train.unet_train import TrainConfig, TrainingError, train_unet

NORM = {"kind": "window", "window": [0.0, 1.0]}


@pytest.fixture(scope="module")
def pair():
    ph = make_phantom((32, 32, 32), n_objects=3, seed=11, noise=0.05)
    return ph.image, (ph.labels > 0).astype(np.int64)


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """Random 2-class weights with a normalisation and voxel size of their own."""
    torch.manual_seed(123)
    p = tmp_path_factory.mktemp("init") / "start.safetensors"
    save_unet(UNet3D(1, 2, base=4, depth=2), p, normalization=NORM, classes=["background", "cell"],
              training={"spacing": [2.0, 2.0, 2.0], "unit": "mm"})
    return p


def _tensors(path):
    return load_unet(path)[0].state_dict()


def test_every_layer_is_copied_and_the_classifier_only_where_the_classes_fit(start):
    ref = _tensors(start)
    kept = UNet3D(1, 2, base=4, depth=2)
    assert load_into(kept, read_start(start))["head"] == "kept"
    assert all(torch.equal(v, ref[k]) for k, v in kept.state_dict().items())
    for net, new_head in ((UNet3D(1, 3, base=4, depth=2), False), (UNet3D(1, 2, base=4, depth=2), True)):
        fresh = {k: v.clone() for k, v in net.state_dict().items()}
        info = load_into(net, read_start(start), new_head)
        assert info["head"] == "new" and info["n_classes"] == 2 and info["weights"] == "start.safetensors"
        for k, v in net.state_dict().items():
            assert torch.equal(v, fresh[k] if k.startswith("head.") else ref[k]), k
    with pytest.raises(InitError, match="this run builds"):
        load_into(UNet3D(1, 2, base=8, depth=2), read_start(start))


def test_a_fine_tune_at_no_learning_rate_is_its_starting_model(pair, start, tmp_path):
    """With the rate ~0 the saved weights must be the starting ones: what a run starts from is the
    file, and it inherits the file's normalisation and class names (the classifier was kept)."""
    img, lab = pair
    cfg = TrainConfig(n_classes=2, patch=(16, 16, 16), iterations=2, batch=1, lr=1e-12, base=4, depth=2, epoch=1,
                      init=str(start))
    train_unet([img], [lab], cfg, tmp_path / "f.safetensors", log=lambda *a: None)
    net, meta = load_unet(tmp_path / "f.safetensors")
    ref = _tensors(start)
    assert all(torch.allclose(v, ref[k], atol=1e-8) for k, v in net.state_dict().items())
    assert meta["normalization"] == NORM and meta["classes"] == ["background", "cell"]
    init = meta["training"]["init"]
    assert init["weights"] == "start.safetensors" and init["head"] == "kept" and len(init["sha256"]) == 16
    # a new classifier: names are not inherited, and it is not the starting one
    cfg3 = TrainConfig(**{**cfg.__dict__, "n_classes": 3})
    lab3 = lab.copy()
    lab3[:, :, :8][lab3[:, :, :8] == 1] = 2
    train_unet([img], [lab3], cfg3, tmp_path / "g.safetensors", log=lambda *a: None)
    _, meta3 = load_unet(tmp_path / "g.safetensors")
    assert meta3["training"]["init"]["head"] == "new" and meta3["classes"] == []


def test_fine_tuning_learns_from_where_it_starts(pair, tmp_path):
    """A model trained on the phantom, fine-tuned for 5 steps, still segments it; 5 steps from random
    weights do not (an independent check that training really starts from the file)."""
    from halo_seg.engine import normalize
    from halo_seg.engine.runner import predict_whole
    from halo_seg.metrics import dice
    img, lab = pair
    base = TrainConfig(n_classes=2, patch=(32, 32, 32), iterations=40, batch=1, lr=3e-3, base=4, depth=2, epoch=20)
    train_unet([img], [lab], base, tmp_path / "a.safetensors", log=lambda *a: None)
    scores = {}
    for name, init in (("init", str(tmp_path / "a.safetensors")), ("scratch", None)):
        cfg = TrainConfig(**{**base.__dict__, "iterations": 5, "epoch": 5, "lr": 1e-3, "seed": 1, "init": init})
        train_unet([img], [lab], cfg, tmp_path / f"{name}.safetensors", log=lambda *a: None)
        net, meta = load_unet(tmp_path / f"{name}.safetensors")
        spec = normalize.resolve(meta["normalization"], img)
        m, s = normalize.mean_std(normalize.moments(img, spec), spec)
        scores[name] = dice(predict_whole(net, normalize.apply(img, m, s, spec), "cpu").argmax(0) == 1, lab == 1)
    assert scores["init"] > 0.6 and scores["init"] > scores["scratch"] + 0.2, scores


def test_what_cannot_start_a_run_is_refused(pair, start, tmp_path):
    img, lab = pair
    cfg = TrainConfig(n_classes=2, patch=(16, 16, 16), iterations=1, base=4, depth=2, init=str(start))
    run = dict(log=lambda *a: None)
    with pytest.raises(TrainingError, match="--base 8 differs from the starting weights' base 4"):
        train_unet([img], [lab], TrainConfig(**{**cfg.__dict__, "base": 8}), tmp_path / "x.safetensors", **run)
    with pytest.raises(TrainingError, match="--resume continues a run and --init starts one"):
        train_unet([img], [lab], cfg, tmp_path / "x.safetensors", resume=start, **run)
    with pytest.raises(TrainingError, match="--init: 3D U-Net weights file not found"):
        train_unet([img], [lab], TrainConfig(**{**cfg.__dict__, "init": str(tmp_path / "no.safetensors")}),
                   tmp_path / "x.safetensors", **run)
    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    with pytest.raises(TrainingError, match="corrupt"):
        train_unet([img], [lab], TrainConfig(**{**cfg.__dict__, "init": str(tmp_path / "bad.safetensors")}),
                   tmp_path / "x.safetensors", **run)
    with pytest.raises(TrainingError, match="not the 3D U-Net"):   # the interactive network's weights
        train_unet([img], [lab], TrainConfig(**{**cfg.__dict__, "init": str(weights_dir() / "memseg_default.safetensors")}),
                   tmp_path / "x.safetensors", **run)
    assert not (tmp_path / "x.safetensors").exists()


def test_the_user_is_told_what_differs_from_the_starting_weights(pair, start, tmp_path):
    img, lab = pair
    lines = []
    cfg = TrainConfig(n_classes=3, patch=(16, 16, 16), iterations=1, base=4, depth=2, init=str(start),
                      normalization={"kind": "zscore"})
    lab3 = lab.copy()
    lab3[:, :, :8][lab3[:, :, :8] == 1] = 2
    train_unet([img], [lab3], cfg, tmp_path / "n.safetensors", log=lines.append,
               meta={"spacing": [1.0, 1.0, 1.0], "unit": "mm"})
    notes = [line for line in lines if line.startswith("note: ")]
    assert any("classifier starts afresh (the labels have 3 classes, the starting weights 2)" in n for n in notes)
    assert any("trained on {'kind': 'window'" in n and "relearn the intensities" in n for n in notes)
    assert any("learned at 2 x 2 x 2 mm voxels, these volumes are 1 x 1 x 1 mm" in n and "halo-seg resample" in n
               for n in notes)
    lines.clear()   # the same voxel size (within 10 %), its normalisation, the same classes: nothing to say
    train_unet([img], [lab], TrainConfig(**{**cfg.__dict__, "n_classes": 2, "normalization": None}),
               tmp_path / "m.safetensors", log=lines.append, meta={"spacing": [2.1, 2.0, 2.0], "unit": "mm"})
    assert not [line for line in lines if line.startswith("note: ")]


def test_partitioned_fine_tune_starts_every_rank_from_the_file(pair, start, tmp_path):
    from halo_seg.train.partitioned_run import train_partitioned
    img, lab = pair
    lab3 = lab.copy()
    lab3[:, :, :8][lab3[:, :, :8] == 1] = 2
    cfg = dict(n_classes=3, patch=[16, 16, 16], iterations=2, lr=1e-12, base=4, depth=2, seed=0, epoch=1,
               init=str(start))
    train_partitioned(img, lab3, cfg, (2, 1, 1), tmp_path / "p.safetensors", log=lambda *a: None)
    net, meta = load_unet(tmp_path / "p.safetensors")
    ref = _tensors(start)
    torch.manual_seed(0)
    fresh = UNet3D(1, 3, base=4, depth=2).state_dict()   # what every rank builds before loading the file
    for k, v in net.state_dict().items():
        assert torch.allclose(v, fresh[k] if k.startswith("head.") else ref[k], atol=1e-8), k
    assert meta["training"]["init"]["head"] == "new" and meta["normalization"] == NORM
    with pytest.raises(TrainingError, match="--depth 3 differs"):
        train_partitioned(img, lab3, {**cfg, "depth": 3}, (2, 1, 1), tmp_path / "q.safetensors", log=lambda *a: None)


def _run(*args):
    return subprocess.run([sys.executable, "-m", "halo_seg.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_train_init_on_the_command_line(pair, start, tmp_path):
    img, lab = pair
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", lab.astype(np.uint8))
    common = ["train", "--image", tmp_path / "img.npy", "--labels", tmp_path / "lab.npy", "--patch", "16", "16", "16",
              "--iterations", "2", "--epoch", "1", "--quiet", "--device", "cpu"]
    out = tmp_path / "c.safetensors"
    r = _run(*common, "--out", out, "--init", start, "--new-head")
    assert r.returncode == 0, r.stderr
    assert "note: the classifier starts afresh (--new-head)" in r.stdout
    net, meta = load_unet(out)
    assert net.config["base"] == 4 and net.config["depth"] == 2 and meta["normalization"] == NORM
    assert ("| started from | fine-tuned from `start.safetensors` (SHA-256 "
            in out.with_suffix(".md").read_text())
    assert "every layer but its classifier (2 classes there), which started afresh |" in out.with_suffix(".md").read_text()
    r = _run(*common, "--out", tmp_path / "d.safetensors", "--new-head")
    assert r.returncode != 0 and "--new-head is for fine-tuning" in r.stderr
    r = _run(*common, "--out", tmp_path / "d.safetensors", "--init", start, "--depth", "3")
    assert r.returncode != 0 and "--depth 3 differs from the starting weights' depth 2" in r.stderr
    assert not (tmp_path / "d.safetensors").exists()
