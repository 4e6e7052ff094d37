"""The model card written beside trained weights (train/model_card.py): its facts come from the
weights and their history, and say what the validation was."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from halo_seg.engine.weights import load_unet
from halo_seg.samples import make_phantom


def _run(*args):
    return subprocess.run([sys.executable, "-m", "halo_seg.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_train_writes_a_card_that_matches_its_weights(tmp_path):
    train, held = make_phantom((32, 32, 32), n_objects=3, seed=1), make_phantom((32, 32, 32), n_objects=3, seed=2)
    for name, s in (("a", train), ("v", held)):
        np.save(tmp_path / f"{name}_img.npy", s.image)
        np.save(tmp_path / f"{name}_lab.npy", (s.labels > 0).astype(np.uint8))
    out = tmp_path / "m.safetensors"
    r = _run("train", "--image", tmp_path / "a_img.npy", "--labels", tmp_path / "a_lab.npy", "--out", out,
             "--val-image", tmp_path / "v_img.npy", "--val-labels", tmp_path / "v_lab.npy", "--patch", "16", "16", "16",
             "--iterations", "4", "--epoch", "2", "--base", "4", "--depth", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    card = out.with_suffix(".md")
    assert f"model card: {card}" in r.stdout
    text = card.read_text()
    tr = load_unet(out)[1]["training"]
    history = json.loads((tmp_path / "m.safetensors.history.json").read_text())
    assert f"| class 1 | {tr['best_val_dice'][0]:.3f} |" in text
    assert f"| selected | iteration {tr['iteration']} of 4," in text
    assert "| validation | 1 held-out volume(s), whole |" in text
    assert f"`{tmp_path / 'a_img.npy'}` + `{tmp_path / 'a_lab.npy'}`; validated on `{tmp_path / 'v_img.npy'}`" in text
    assert "| voxel size | not recorded" in text          # .npy files record none
    assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| 2 ") or line.startswith("| 4 ")] \
        == [f"| {e['iteration']}" for e in history]      # every validation of this short run is in the curve
    # written again from the weights alone, the same facts
    r = _run("card", out, "--out", tmp_path / "again.md")
    assert r.returncode == 0 and (tmp_path / "again.md").read_text() == text


def test_a_card_says_when_the_scores_are_on_the_training_volumes(tmp_path):
    s = make_phantom((32, 32, 32), n_objects=3, seed=1)
    np.save(tmp_path / "img.npy", s.image)
    np.save(tmp_path / "lab.npy", (s.labels > 0).astype(np.uint8))
    out = tmp_path / "p.safetensors"
    r = _run("train", "--image", tmp_path / "img.npy", "--labels", tmp_path / "lab.npy", "--out", out,
             "--patch", "16", "16", "16", "--iterations", "2", "--base", "4", "--depth", "2", "--quiet",
             "--grid", "2,1,1")
    assert r.returncode == 0, r.stderr
    text = out.with_suffix(".md").read_text()
    assert "the training volumes themselves (no held-out volume was given" in text
    assert "partitioned over a 2x1x1 grid" in text and "flips and gamma" in text
    assert f"`{tmp_path / 'img.npy'}` + `{tmp_path / 'lab.npy'}`" in text
