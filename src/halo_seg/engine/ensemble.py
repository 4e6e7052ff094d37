"""Several 3D U-Nets as one: the class probabilities averaged over the members (nnU-Net's ensemble of
cross-validation folds; models trained with other seeds or data).

The members run one after another on the same (block of the) volume, so the halo engine, the
mirroring and the memory estimate treat the ensemble as one network: its forward returns
log(mean softmax), whose softmax is the mean of the members' probabilities, and every member is
exact on a block, so the ensemble is too. They must agree on what makes averaging meaningful: the
classes, the input normalisation and the voxel size they were trained at; and on their depth,
which sets the volume's padding (their widths may differ).
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn as nn

from .weights import WeightsError, load_unet


class Ensemble(nn.Module):
    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)
        from . import memory
        # for the memory estimate: the members run one at a time, so the peak is the largest member's
        self.config = dict(max((m.config for m in members), key=memory.network_bytes_per_voxel))

    @property
    def multiple(self) -> int:
        return max(m.multiple for m in self.members)

    def set_partition(self, hctx) -> "Ensemble":
        for m in self.members:
            m.set_partition(hctx)
        return self

    def forward(self, x):
        acc = None
        for m in self.members:
            p = torch.softmax(m(x).float(), 1)
            acc = p if acc is None else acc.add_(p)
        return torch.log(acc / len(self.members))


def weight_specs(weights) -> list:
    """The weights named: one path or "default", or a list of them (an ensemble)."""
    specs = [weights] if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__") else list(weights)
    if not specs:
        raise WeightsError("no weights given")
    return [str(s) for s in specs]


def _flip_axes(meta: dict):
    return ((meta.get("training") or {}).get("config") or {}).get("flip_axes")


def _same(metas, what: str, get, names) -> None:
    values = [get(m) for m in metas]
    if any(v != values[0] for v in values[1:]):
        raise WeightsError(f"the ensemble's members differ in {what}: " + "; ".join(
            f"{n}: {v}" for n, v in zip(names, values)) + " (average only models of the same task)")


def ensemble_meta(metas: list[dict]) -> dict:
    """The members' common metadata (the first's, checked against the others), with a SHA-256 of
    the set (order does not change a mean) and the flips every member was trained with."""
    from .resample import model_spacing, target_spacing
    names = [m["path"] for m in metas]
    _same(metas, "class count", lambda m: m["config"]["out_channels"], names)
    # a volume is padded to a multiple of 2**depth, and the padding enters the instance norms: one
    # depth, so that every member sees the volume as it would alone and the mean is theirs
    _same(metas, "depth", lambda m: m["config"]["depth"], names)
    _same(metas, "class names", lambda m: m.get("classes") or None, names)
    _same(metas, "input channels", lambda m: (m["config"].get("in_channels", 1), m.get("channels") or None), names)
    _same(metas, "input normalisation", lambda m: m.get("normalization") or {"kind": "zscore"}, names)
    spacings = [model_spacing(m) for m in metas]
    if any((sp is None) != (spacings[0][0] is None) or unit != spacings[0][1] or (sp is not None and target_spacing(
            sp, unit, *spacings[0], "auto") is not None) for sp, unit in spacings):
        raise WeightsError("the ensemble's members were trained at different voxel sizes: " + "; ".join(
            f"{n}: {sp or 'not recorded'}{f' {u}' if u else ''}" for n, (sp, u) in zip(names, spacings))
            + " (segment would resample the volume differently for each)")
    meta = {**metas[0], "training": dict(metas[0].get("training") or {})}
    flips = [_flip_axes(m) for m in metas]
    common = None if any(f is None for f in flips) else sorted(set.intersection(*(set(f) for f in flips)))
    meta["training"]["config"] = {**(meta["training"].get("config") or {}), "flip_axes": common}
    meta["sha256"] = hashlib.sha256("".join(sorted(m["sha256"] for m in metas)).encode()).hexdigest()[:16]
    meta["path"] = " + ".join(names)
    meta["members"] = [{"path": m["path"], "sha256": m["sha256"]} for m in metas]
    return meta


def input_channels(weights="default") -> int:
    """How many input channels the network of ``weights`` (or the first of an ensemble's members,
    which load_model checks agree) takes, from the file's metadata alone."""
    from .weights import read_meta, resolve_weights
    return int(read_meta(resolve_weights(weight_specs(weights)[0]))["config"].get("in_channels", 1))


def load_model(weights="default", device: str | torch.device = "cpu"):
    """(network, metadata) of one set of weights, or of several as an Ensemble."""
    specs = weight_specs(weights)
    if len(specs) == 1:
        return load_unet(specs[0], device)
    loaded = [load_unet(s, device) for s in specs]
    meta = ensemble_meta([m for _, m in loaded])
    return Ensemble([n for n, _ in loaded]).to(device).eval(), meta
