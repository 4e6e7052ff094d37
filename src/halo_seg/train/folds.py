"""K-fold cross-validation (`train --folds K`, as nnU-Net trains): the volume pairs are split into K
folds; model k trains on the others and is validated on fold k's volumes, whole, which it never
saw. The mean of the folds' held-out Dice estimates how a model of this recipe does on new volumes,
and the K models are an ensemble for `segment` (engine/ensemble.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .unet_train import TrainingError


def fold_split(n_pairs: int, k: int) -> list[list[int]]:
    """The pairs each fold holds out: pair i goes to fold i % k (the order given, so a user who
    lists volumes by subject or site decides how they mix)."""
    if k < 2:
        raise TrainingError(f"--folds must be 2 or more, got {k}")
    if n_pairs < k:
        raise TrainingError(f"--folds {k} needs at least {k} image/label pairs (each fold holds one or more out), "
                            f"got {n_pairs}")
    return [[i for i in range(n_pairs) if i % k == f] for f in range(k)]


def fold_path(out, k: int) -> Path:
    """model.safetensors -> model.fold0.safetensors"""
    out = Path(out)
    return out.with_name(f"{out.stem}.fold{k}{out.suffix}")


def summarise(out, weights: list, held: list[list[str]]) -> dict:
    """What each fold's kept weights scored on its held-out volumes, and the mean over the folds
    per class (a class no held-out volume of a fold has is left out of that fold's mean); written
    to <out stem>.folds.json."""
    from ..engine.weights import read_meta
    folds = []
    for k, (w, h) in enumerate(zip(weights, held)):
        tr = read_meta(w).get("training") or {}
        folds.append({"fold": k, "weights": str(w), "held_out": h, "iteration": tr.get("iteration"),
                      "val_dice": tr.get("best_val_dice")})
    scores = np.array([[np.nan if d is None else d for d in f["val_dice"] or []] for f in folds], float)
    mean = [None if np.isnan(c).all() else float(np.nanmean(c)) for c in scores.T] if scores.size else []
    result = {"folds": folds, "cross_validated_dice": mean, "classes": read_meta(weights[0]).get("classes") or []}
    Path(out).with_suffix(".folds.json").write_text(json.dumps(result, indent=1))
    return result
