"""3D U-Net training: it learns, resumes, normalises as asked and refuses bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest

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
    for im, lb, msg in [(img, lab[:, :, :16], "differ"), (img, np.zeros_like(lab), "empty"),
                        (img[14:18], lab[14:18], "too small"), (img[0], lab[0], "3D"), (img, lab + 5, "n_classes")]:
        with pytest.raises(TrainingError, match=msg):
            train_unet([im], [lb], cfg, tmp_path / "x.safetensors", log=lambda *a: None)


def test_cli_grid_training(pair, tmp_path):
    img, lab = pair
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", lab.astype(np.uint8))
    out = tmp_path / "g.safetensors"
    r = subprocess.run([sys.executable, "-m", "halo_seg.cli", "train", "--image", str(tmp_path / "img.npy"),
                        "--labels", str(tmp_path / "lab.npy"), "--out", str(out), "--grid", "2,1,1",
                        "--patch", "16", "16", "16", "--iterations", "2", "--base", "4", "--depth", "2", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["grid"] == [2, 1, 1]
    assert load_unet(out)[1]["training"]["partitioned"]
    r = subprocess.run([sys.executable, "-m", "halo_seg.cli", "train", "--image", str(tmp_path / "img.npy"),
                        "--labels", str(tmp_path / "lab.npy"), "--out", str(out), "--normalization", "minmax"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "unknown normalisation" in r.stderr
