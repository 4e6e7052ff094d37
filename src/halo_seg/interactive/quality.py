"""Per-slice predicted Dice: the network's quality head, recalibrated with what the propagation knows.

On held-out sessions the head alone barely tracks the true slice Dice (benchmarks/interactive.py,
r 0.04 pooled): trained on crops, it cannot see how far a slice is from the nearest annotation,
whether the sweep is extrapolating past the outermost one, or whether the plain and mirrored
propagations agree. Those are the strongest signals of error (benchmarks/quality_calibration.py),
so a logistic model over them and the head's output gives the quality that ``seg.quality`` reports
and the recommendation uses; its single-pass variant also decides, inside each sweep, where the
sweep ends past the annotations (propagation.MODEL_STOP).

The model is a few numbers in JSON next to the network's weights (``<weights>.quality.json``),
fitted by ``halo-seg train-quality`` on simulated sessions; it records the network's sha256 and is
ignored, with a warning, for any other network.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from .slice_masks import slice_areas

FEATURES = ("q", "agree", "one_pass", "conf", "unc", "logdist", "dist_ext", "outside", "out_logdist",
            "area_near", "empty", "smooth", "logz", "empty_logz", "logrdist", "out_logrdist")
SINGLE = tuple(f for f in FEATURES if f not in ("agree", "one_pass"))   # without the mirrored pass


def distance_scale(spacing) -> float:
    """Slice spacing over in-plane pixel spacing: slices -> pixels for the distance features, so
    that a slice 3 mm thick counts as far as 3 slices of 1 mm (benchmarks/anisotropy.py: counted in
    slices, sweeps on thick slices ran past the object's end)."""
    return float(spacing[0]) / (0.5 * (float(spacing[1]) + float(spacing[2])))


def slice_features(passes, pred: np.ndarray, annotations: dict, zscale: float = 1.0) -> dict[int, np.ndarray]:
    """Features (in FEATURES order) of every propagated, not annotated slice.

    passes: the plain Propagation and, with test-time augmentation, the mirrored one;
    pred: the (Z, Y, X) bool result with the annotated slices in it (an array or a SliceMasks);
    annotations: z -> bool mask; zscale: ``distance_scale(spacing)``.
    """
    nonempty = sorted(z for z, m in annotations.items() if m.any())
    lo, hi = nonempty[0], nonempty[-1]
    areas = slice_areas(pred).astype(float)
    out = {}
    for z in sorted(set().union(*(p.prob for p in passes)) - set(annotations)):
        probs = [p.prob[z].float().cpu().numpy() for p in passes if z in p.prob]
        quals = [p.quality[z] for p in passes if z in p.quality]
        if len(passes) == 2 and len(probs) == 2:
            a, b = probs[0] > 0.5, probs[1] > 0.5
            s = a.sum() + b.sum()
            agree, one = (1.0 if s == 0 else 2.0 * (a & b).sum() / s), 0.0
        else:
            agree, one = 0.0, float(len(passes) == 2)   # the other pass stopped before this slice
        near = min(nonempty, key=lambda a: (abs(a - z), a))
        nb = ((areas[z - 1] if z else 0.0) + (areas[z + 1] if z + 1 < len(areas) else 0.0)) / 2
        out[z] = feature_vector(float(np.mean(quals)), agree, one, np.mean(probs, 0), abs(z - near), hi - lo + 1,
                                z < lo or z > hi, areas[z], float(annotations[near].sum()), nb, zscale=zscale)
    return out


def feature_vector(q, agree, one_pass, prob, dist, extent, outside, area, near_area, neighbour_area,
                   empty_area: float = 2.0, zscale: float = 1.0, near_area_px: float | None = None) -> np.ndarray:
    """One slice's features in FEATURES order. prob: its foreground probabilities; dist: slices to
    the nearest annotated slice showing the object; extent: slices from the first to the last of
    those; areas in pixels of one resolution (ratios only are used); zscale: ``distance_scale``,
    which turns slices into pixels and, for thick slices, changes what an empty prediction means
    (an object ends abruptly there, so past its end an empty slice is more often right);
    near_area_px: the nearest annotation's area in the volume's pixels (default ``near_area``),
    whose equivalent radius makes the distance relative to the object's size: a compact object
    ends about one radius from its largest section, whether it is a nucleus or a thalamus."""
    dist, extent = dist * zscale, extent * zscale
    radius = math.sqrt(max(near_area if near_area_px is None else near_area_px, 1.0) / math.pi)
    logr = math.log1p(dist / radius)
    logz = math.log(zscale)
    empty = float(area < empty_area)
    fg = prob > 0.5
    conf = float(prob[fg].mean()) if fg.any() else 0.0
    unc = min(float(((prob > 0.2) & (prob < 0.8)).sum()) / max(float(fg.sum()), 1.0), 3.0)
    outside = float(outside)
    return np.array([q, agree, one_pass, conf, unc, math.log1p(dist), dist / extent, outside,
                     outside * math.log1p(dist), math.log((area + 1) / (near_area + 1)), empty,
                     abs(area - neighbour_area) / (area + neighbour_area + 1), logz, empty * logz,
                     logr, outside * logr])


class QualityModel:
    """Logistic model: predicted Dice = sigmoid(w . (x - mean) / std + b), one per pass count."""

    def __init__(self, models: dict, meta: dict | None = None):
        self.models = models   # "tta" / "single" -> {features, mean, std, w, b}
        self.meta = meta or {}

    def predict(self, feats: dict[int, np.ndarray], tta: bool) -> dict[int, float]:
        m = self.models["tta" if tta else "single"]
        idx = [FEATURES.index(f) for f in m["features"]]
        mean, std, w = (np.asarray(m[k], float) for k in ("mean", "std", "w"))
        # the logistic as 0.5 (1 + tanh(t / 2)): the same value, and no overflow for any logit
        return {z: float(0.5 * (1.0 + math.tanh((((x[idx] - mean) / std) @ w + m["b"]) / 2)))
                for z, x in feats.items()}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"kind": "halo-seg quality model", "models": self.models, **self.meta}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "QualityModel":
        try:
            d = json.loads(Path(path).read_text())
            models = d.pop("models")
            for name in ("tta", "single"):
                m = models[name]
                n = len(m["features"])
                if not set(m["features"]) <= set(FEATURES) or any(len(m[k]) != n for k in ("mean", "std", "w")):
                    raise ValueError(f"model {name!r} does not match the features")
                float(m["b"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"quality model {path} is missing or corrupt: {exc}") from exc
        return cls(models, d)


def sidecar(weights_path: str | Path) -> Path:
    p = Path(weights_path)
    return p.with_name(p.stem + ".quality.json")


def samples_path(model_path: str | Path) -> Path:
    """Where a quality model's fitting data lies: ``<name>.quality.npz`` beside ``<name>.quality.json``."""
    return Path(model_path).with_suffix(".npz")


def sample_path_for(weights_meta: dict) -> Path:
    """The samples the weights' own quality model (sidecar) was fitted on."""
    return samples_path(sidecar(weights_meta["path"]))


def save_samples(path: str | Path, samples: dict, weights_sha256: str) -> Path:
    """The (features, true Dice) a model was fitted on, so that a later fit can pool them with new objects."""
    arrays = {f"{name}_{part}": np.asarray(v, np.float32) for name, xy in samples.items()
              for part, v in zip("xy", xy)}
    np.savez_compressed(path, features=np.array(FEATURES), weights_sha256=np.array(weights_sha256), **arrays)
    return Path(path)


def load_samples(path: str | Path, weights_sha256: str) -> dict:
    """name -> (features, true Dice) saved by save_samples, checked against the network and the features."""
    try:
        with np.load(path, allow_pickle=False) as d:
            feats, sha = tuple(d["features"].tolist()), str(d["weights_sha256"])
            samples = {name: (d[f"{name}_x"].astype(float), d[f"{name}_y"].astype(float)) for name in ("tta", "single")}
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"quality samples {path} are missing or corrupt: {exc}") from exc
    if feats != FEATURES:
        raise ValueError(f"quality samples {path} hold other features ({len(feats)}) than this version's ({len(FEATURES)})")
    if sha != weights_sha256:
        raise ValueError(f"quality samples {path} were made with other weights (sha256 {sha}): they cannot be "
                         "pooled with sessions of these")
    return samples


def load_for(weights_meta: dict) -> QualityModel | None:
    """The quality model fitted for these weights, or None (the head's raw output is used then)."""
    path = sidecar(weights_meta["path"])
    if not path.exists():
        return None
    model = QualityModel.load(path)
    if model.meta.get("weights_sha256") != weights_meta.get("sha256"):
        warnings.warn(f"{path} was fitted for other weights (sha256 {model.meta.get('weights_sha256')}, these are "
                      f"{weights_meta.get('sha256')}); predicted quality falls back to the network's head. "
                      "Refit it with `halo-seg train-quality`.", stacklevel=3)
        return None
    return model


def fit_logistic(x: np.ndarray, y: np.ndarray, features, l2: float = 1e-3, weight: np.ndarray | None = None) -> dict:
    """Fit the logistic model to true slice Dice (a fraction, so binary cross-entropy on soft targets);
    ``weight``: one per sample (mean 1), for pooling data sets of very different sizes."""
    import torch
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor((x - mean) / std, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    wt = torch.ones_like(yt) if weight is None else torch.tensor(weight, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt, weight=wt) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return {"features": list(features), "mean": mean.tolist(), "std": std.tolist(),
            "w": w.detach().tolist(), "b": float(b.detach())}
