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

from ..interactive.model_io import load_memnet, resolve_memnet_weights
from ..interactive.quality import (FEATURES, SINGLE, QualityModel, fit_logistic, load_samples, sample_path_for,
                                   samples_path, save_samples, sidecar)
from ..interactive.segmenter import InteractiveSegmenter, axis_order
from ..interactive.simulate import run_session, thick_slices
from ..io.labels import label_ids
from ..metrics import pearson

# the share of the weight a pooled fit gives the user's new objects: 0.25 gained on held-out nuclei
# (+0.05 from one box) and cost nothing outside the noise on MRI, where the shipped model is
# in-domain; 0.5 cost 0.013 there (benchmarks/README.md, "Learning from the user's objects")
POOL_SHARE = 0.25


def check_regions(labels, regions):
    """Before any session runs: a typo should not cost minutes of simulation first."""
    present = set(label_ids(labels))
    missing = [k for k in regions if k not in present]
    if missing:
        raise ValueError(f"region {missing[0]} is not in the label volume" if len(missing) == 1 else
                         f"regions {missing} are not in the label volume")


def session_samples(image, labels, regions, weights="default", spacing=None, rounds=6, tta=True,
                    quality_model=None, device="cpu", log=print, cancel=None, on_region=None):
    """(features (N, F), true Dice (N,), region (N,)) from one simulated session per region."""
    check_regions(labels, regions)
    xs, ys, rs = [], [], []
    for k in regions:
        truth = np.asarray(labels == k)
        seg = InteractiveSegmenter(image, spacing=spacing, device=device, weights=weights, tta=tta,
                                   quality_model=quality_model)
        for rec in run_session(seg, truth, rounds, "recommend", seed=int(k), cancel=cancel):
            for f, d in rec["samples"]:
                xs.append(f)
                ys.append(d)
                rs.append(k)
        log(f"region {k}: {len(ys)} slices so far")
        if on_region is not None:
            on_region()
    return np.array(xs).reshape(len(ys), len(FEATURES)), np.array(ys, float), np.array(rs)


def _fit(samples: dict, prior: dict | None = None, share: float = POOL_SHARE) -> dict:
    """name -> fitted model dict, from name -> (features, true Dice). With ``prior`` (the same, from an
    earlier fit) the new samples carry ``share`` of the total weight and the prior's the rest: a few
    objects then adjust a model fitted on many instead of replacing it."""
    models = {}
    for name, feats in (("tta", FEATURES), ("single", SINGLE)):
        x, y = samples[name]
        weight = None
        if prior is not None:
            px, py = prior[name]
            weight = np.concatenate([np.full(len(py), (1 - share) / len(py)), np.full(len(y), share / len(y))])
            weight *= len(weight)
            x, y = np.concatenate([px, x]), np.concatenate([py, y])
        models[name] = fit_logistic(x[:, [FEATURES.index(f) for f in feats]], y, feats, weight=weight)
    return models


def fit_quality(image, labels, regions, weights="default", spacing=None, rounds=6, device="cpu", data_note="",
                log=print, thickness=(1,), pool=None, share=None, cancel=None,
                progress=None, axes=(0,)) -> tuple[QualityModel, dict]:
    """The quality model for ``weights`` from simulated sessions on ``regions`` of ``labels``, and its
    samples (name -> (features, true Dice)). ``thickness``: also simulate sessions on the volume
    resliced into slices this many times thicker (simulate.thick_slices), so the model learns how
    slice spacing changes its features. ``pool``: "auto" (the samples beside the weights' quality
    model) or a samples file (quality.samples_path) to pool with, the new sessions weighing ``share``
    (default POOL_SHARE).
    ``cancel``: a callable; when it returns True the running session stops (InterruptedError).
    ``progress(done, total)`` is called after each simulated session. ``axes``: the axes sessions
    slice across (InteractiveSegmenter's ``axis``), each simulated in turn."""
    t0 = time.time()
    if tuple(np.shape(labels)) != tuple(np.shape(image)):
        raise ValueError(f"labels of shape {tuple(np.shape(labels))} do not match the image's {tuple(np.shape(image))}")
    meta_w = load_memnet(weights, "cpu")[1]
    check_regions(labels, regions)
    share = POOL_SHARE if share is None else float(share)
    if pool is not None and not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    prior = None
    if pool is not None:
        pool = sample_path_for(meta_w) if pool == "auto" else Path(pool)
        prior = load_samples(pool, meta_w["sha256"])
    spacing = tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0)
    volumes = []
    for a in axes:   # a session across axis a is one across axis 0 of the volume with a moved first (tests)
        order = axis_order(a)
        moved = (np.moveaxis(image, a, 0), np.moveaxis(labels, a, 0), tuple(spacing[i] for i in order))
        for k in thickness:
            img, lab, sp = moved if k == 1 else thick_slices(*moved[:2], k, moved[2])
            there = [r for r in regions if (lab == r).any()]   # a thin region may miss every kept slice
            volumes.append((img, lab, sp, there))
    total, done = 4 * sum(len(v[3]) for v in volumes), [0]   # two passes, with and without the mirror

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    def simulate(model) -> dict:
        """name -> (features, true Dice) of sessions with and without the mirrored pass, every thickness."""
        out = {}
        for name, tta in (("tta", True), ("single", False)):
            parts = []
            for img, lab, sp, there in volumes:
                parts.append(session_samples(img, lab, there, weights, sp, rounds, tta, model, device, log,
                                             cancel, tick)[:2])
            out[name] = tuple(np.concatenate([p[i] for p in parts]) for i in (0, 1))
        return out

    # the head decides where sweeps end and which slice is recommended; then a first fit (pooled, when
    # pooling) decides both, since that shapes what the model sees
    first = simulate(None)
    if not all(len(y) for _, y in first.values()):
        raise ValueError("the sessions propagated no slice to learn from")
    # a first fit may leave no sample (one that ends every sweep at once)
    passes = [first, simulate(QualityModel(_fit(first, prior, share)))]
    both = {name: tuple(np.concatenate([p[name][i] for p in passes]) for i in (0, 1)) for name in ("tta", "single")}
    models = _fit(both, prior, share)
    metrics = {}
    for name, tta in (("tta", True), ("single", False)):
        x, y = both[name]
        p = QualityModel(models).predict(dict(enumerate(x)), tta)
        metrics[name] = {"slices": int(len(y)), "pearson_r_fit": pearson([(p[i], y[i]) for i in range(len(y))]),
                         "pearson_r_head": pearson(np.stack([x[:, 0], y], 1))}
        log(f"{name}: {len(y)} slices, r of the fit {metrics[name]['pearson_r_fit']:.3f} "
            f"(head alone {metrics[name]['pearson_r_head']:.3f})")
    meta = {"weights_sha256": meta_w["sha256"], "regions": [int(r) for r in regions],
            "thickness": [int(k) for k in thickness], "axes": [int(a) for a in axes], "rounds": rounds, "data": data_note, "metrics": metrics,
            "seconds": round(time.time() - t0, 1), "date": time.strftime("%Y-%m-%d")}
    if prior is not None:
        meta.update(pooled_with=str(pool), share=share)
    return QualityModel(models, meta), both


def train_quality(image, labels, regions, weights="default", out=None, spacing=None, rounds=6, device="cpu",
                  data_note="", log=print, thickness=(1,), pool=None, share=None,
                  axes=(0,)) -> tuple[QualityModel, Path]:
    """fit_quality, then save the model (default: beside the weights, where sessions load it) and its
    samples beside the model."""
    if out is not None:   # checked before minutes of sessions, and never over another file
        out = Path(out)
        if out.suffix != ".json":
            raise ValueError(f"a quality model is written as a .json file (its samples beside it as .npz); "
                             f"got {out.name}")
        if out.exists():
            try:
                QualityModel.load(out)
            except ValueError:
                raise ValueError(f"{out} exists and is not a quality model; it is not written over") from None
    model, samples = fit_quality(image, labels, regions, weights, spacing, rounds, device, data_note, log,
                                 thickness, pool, share, axes=axes)
    path = model.save(out or sidecar(resolve_memnet_weights(weights)))   # fit_quality loaded the network
    save_samples(samples_path(path), samples, model.meta["weights_sha256"])
    log(f"saved {path} and its samples")
    return model, path
