"""`halo-seg train-quality`: fit the quality model (interactive/quality.py) for one network.

Simulated sessions (the benchmark's user: a box on the largest slice, then one box or empty mask
per round on the recommended slice) on labelled regions give, per propagated slice, the quality
features and the true Dice. The sessions are run twice: first with the head's raw output deciding
where sweeps end and which slice is recommended, then with a first fit deciding both, because
that shapes what the model sees; the final fit uses both. One model with the mirrored pass
(test-time augmentation on, the default) and one without (it also judges where sweeps end).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..interactive.model_io import load_memnet
from ..interactive.quality import FEATURES, SINGLE, QualityModel, fit_logistic, sidecar
from ..interactive.segmenter import InteractiveSegmenter
from ..interactive.simulate import run_session, thick_slices
from ..metrics import pearson


def check_regions(labels, regions):
    """Before any session runs: a typo should not cost minutes of simulation first."""
    present = set(np.unique(np.asarray(labels)).tolist())
    missing = [k for k in regions if k not in present]
    if missing:
        raise ValueError(f"region {missing[0]} is not in the label volume" if len(missing) == 1 else
                         f"regions {missing} are not in the label volume")


def session_samples(image, labels, regions, weights="default", spacing=None, rounds=6, tta=True,
                    quality_model=None, device="cpu", log=print):
    """(features (N, F), true Dice (N,), region (N,)) from one simulated session per region."""
    check_regions(labels, regions)
    xs, ys, rs = [], [], []
    for k in regions:
        truth = np.asarray(labels == k)
        seg = InteractiveSegmenter(image, spacing=spacing, device=device, weights=weights, tta=tta,
                                   quality_model=quality_model)
        for rec in run_session(seg, truth, rounds, "recommend", seed=int(k)):
            for f, d in rec["samples"]:
                xs.append(f)
                ys.append(d)
                rs.append(k)
        log(f"region {k}: {len(ys)} slices so far")
    return np.array(xs).reshape(len(ys), len(FEATURES)), np.array(ys, float), np.array(rs)


def _fit(samples: dict) -> dict:
    """name -> fitted model dict, from name -> (features, true Dice)."""
    return {name: fit_logistic(x[:, [FEATURES.index(f) for f in feats]], y, feats)
            for name, feats in (("tta", FEATURES), ("single", SINGLE)) for x, y in [samples[name]]}


def train_quality(image, labels, regions, weights="default", out=None, spacing=None, rounds=6, device="cpu",
                  data_note="", log=print, thickness=(1,)) -> tuple[QualityModel, Path]:
    """``thickness``: also simulate sessions on the volume resliced into slices this many times
    thicker (simulate.thick_slices), so the model learns how slice spacing changes its features."""
    t0 = time.time()
    meta_w = load_memnet(weights, "cpu")[1]
    check_regions(labels, regions)
    spacing = tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0)
    volumes = []
    for k in thickness:
        img, lab, sp = (image, labels, spacing) if k == 1 else thick_slices(image, labels, k, spacing)
        there = [r for r in regions if (lab == r).any()]   # a thin region may miss every kept slice
        volumes.append((img, lab, sp, there))

    def simulate(model) -> dict:
        """name -> (features, true Dice) of sessions with and without the mirrored pass, every thickness."""
        out = {}
        for name, tta in (("tta", True), ("single", False)):
            parts = []
            for img, lab, sp, there in volumes:
                parts.append(session_samples(img, lab, there, weights, sp, rounds, tta, model, device, log)[:2])
            out[name] = tuple(np.concatenate([p[i] for p in parts]) for i in (0, 1))
        return out

    first = simulate(None)   # the head decides where sweeps end and which slice is recommended
    if not all(len(y) for _, y in first.values()):
        raise ValueError("the sessions propagated no slice to learn from")
    # then a first fit decides both; it may leave no sample (a fit that ends every sweep at once)
    passes = [first, simulate(QualityModel(_fit(first)))]
    both = {name: tuple(np.concatenate([p[name][i] for p in passes]) for i in (0, 1)) for name in ("tta", "single")}
    models = _fit(both)
    metrics = {}
    for name, tta in (("tta", True), ("single", False)):
        x, y = both[name]
        p = QualityModel(models).predict(dict(enumerate(x)), tta)
        metrics[name] = {"slices": int(len(y)), "pearson_r_fit": pearson([(p[i], y[i]) for i in range(len(y))]),
                         "pearson_r_head": pearson(np.stack([x[:, 0], y], 1))}
        log(f"{name}: {len(y)} slices, r of the fit {metrics[name]['pearson_r_fit']:.3f} "
            f"(head alone {metrics[name]['pearson_r_head']:.3f})")
    model = QualityModel(models, {"weights_sha256": meta_w["sha256"], "regions": [int(r) for r in regions],
                                  "thickness": [int(k) for k in thickness],
                                  "rounds": rounds, "data": data_note, "metrics": metrics,
                                  "seconds": round(time.time() - t0, 1), "date": time.strftime("%Y-%m-%d")})
    path = model.save(out or sidecar(meta_w["path"]))
    log(f"saved {path}")
    return model, path
