"""`train --folds K` (train/folds.py): each fold's model is validated on the pairs it held out, never
trained on them; the cross-validated Dice is the mean of what the folds' weights record, and the
folds segment as an ensemble."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr

from halo_seg.engine.runner import segment
from halo_seg.engine.weights import load_unet
from halo_seg.samples import make_phantom
from halo_seg.train.folds import fold_path, fold_split
from halo_seg.train.unet_train import TrainingError


def _run(*args):
    return subprocess.run([sys.executable, "-m", "halo_seg.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_fold_split_holds_every_pair_out_once():
    assert fold_split(5, 2) == [[0, 2, 4], [1, 3]]
    assert sorted(i for f in fold_split(7, 3) for i in f) == list(range(7))
    with pytest.raises(TrainingError, match="needs at least 3 image/label pairs"):
        fold_split(2, 3)
    with pytest.raises(TrainingError, match="2 or more"):
        fold_split(4, 1)
    assert str(fold_path("out/model.safetensors", 2)) == "out/model.fold2.safetensors"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    d = tmp_path_factory.mktemp("folds")
    args = []
    for i in range(3):
        ph = make_phantom((24, 24, 24), n_objects=2, seed=40 + i)
        np.save(d / f"img{i}.npy", ph.image)
        np.save(d / f"lab{i}.npy", (ph.labels > 0).astype(np.uint8))
        args += ["--image", d / f"img{i}.npy", "--labels", d / f"lab{i}.npy"]
    return d, args


def test_train_folds_validates_each_model_on_what_it_held_out(pairs, tmp_path):
    d, args = pairs
    out = tmp_path / "m.safetensors"
    r = _run("train", *args, "--out", out, "--folds", "3", "--patch", "16", "16", "16", "--iterations", "3",
             "--epoch", "1", "--base", "4", "--depth", "2", "--quiet", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "m.folds.json").read_text())
    dice = []
    for k in range(3):
        w = fold_path(out, k)
        _, meta = load_unet(w)
        tr = meta["training"]
        assert tr["data"]["validation"] == [str(d / f"img{k}.npy")]                      # fold k held out pair k
        assert str(d / f"img{k}.npy") not in tr["data"]["images"] and len(tr["data"]["images"]) == 2
        assert tr["validated_on"] == "held-out volumes"
        assert summary["folds"][k]["val_dice"] == tr["best_val_dice"]
        assert w.with_suffix(".md").exists()
        dice.append(tr["best_val_dice"][0])
    assert summary["cross_validated_dice"][0] == pytest.approx(np.mean(dice))
    assert f"cross-validated Dice (mean over the folds' held-out volumes): class 1 {np.mean(dice):.3f}" in r.stdout
    cmd = next(line for line in r.stdout.splitlines() if line.startswith("segment with the folds"))
    weights = cmd.split("--weights ")[1:]
    assert [w.strip() for w in weights] == [str(fold_path(out, k)) for k in range(3)]
    res = segment(d / "img0.npy", tmp_path / "e.zarr", [w.strip() for w in weights], mode="whole")
    assert zarr.open_group(res.output, mode="r")["labels"].shape == (24, 24, 24)


def test_train_folds_refusals(pairs, tmp_path):
    d, args = pairs
    base = ["train", *args, "--out", tmp_path / "m.safetensors", "--iterations", "1", "--quiet"]
    r = _run(*base, "--folds", "4")
    assert r.returncode != 0 and "--folds 4 needs at least 4 image/label pairs" in r.stderr
    r = _run(*base, "--folds", "2", "--val-image", d / "img0.npy", "--val-labels", d / "lab0.npy")
    assert r.returncode != 0 and "leave --val-image out" in r.stderr
    assert not list(tmp_path.iterdir())


def test_every_fold_learns_the_classes_of_all_the_volumes(pairs, tmp_path):
    """A class only one volume holds was left out of the network of the fold that held that volume
    out (an ensemble of models with different class counts), or refused as unseen."""
    d, _ = pairs
    lab = np.load(d / "lab2.npy").astype(np.uint8)
    lab[lab > 0] = 2                       # class 2 only here, class 1 only in the other two
    np.save(tmp_path / "lab2.npy", lab)
    args = ["--image", d / "img0.npy", "--labels", d / "lab0.npy", "--image", d / "img1.npy", "--labels",
            d / "lab1.npy", "--image", d / "img2.npy", "--labels", tmp_path / "lab2.npy"]
    out = tmp_path / "m.safetensors"
    r = _run("train", *args, "--out", out, "--folds", "3", "--patch", "16", "16", "16", "--iterations", "1",
             "--epoch", "1", "--base", "4", "--depth", "2", "--quiet", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert [load_unet(fold_path(out, k))[0].config["out_channels"] for k in range(3)] == [3, 3, 3]
