"""Fine-tuning: training that starts from trained 3D U-Net weights (`train --init`) instead of random ones.

A user with a few labelled volumes gets further, sooner, from a network that already knows what
edges, tissue contrasts and shapes look like at their voxel size than from random weights
(benchmarks/finetune.py measures how much). The network's shape (base, depth) comes from the
weights; its classifier (the last 1x1x1 convolution) is kept when the class count is the same
and started afresh otherwise, or when asked (the same count of different classes). The weights
say what they were fine-tuned from, so that their card does too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine import normalize
from ..engine.resample import model_spacing, spacing_text, target_spacing
from ..engine.weights import WeightsError, load_unet
from .unet_train import TrainingError

HEAD = ("head.weight", "head.bias")   # UNet3D's classifier: the only tensors whose shape is the class count


class InitError(TrainingError):
    """The starting weights cannot start this run (missing, corrupt, another network)."""


@dataclass
class Start:
    path: str
    sha256: str
    state: dict
    config: dict
    normalization: dict | list   # a list: one spec per input channel
    meta: dict

    @property
    def n_classes(self) -> int:
        return int(self.config["out_channels"])


def read_start(spec) -> Start:
    """The weights a run starts from ("default": the shipped model), checked to load."""
    try:
        net, meta = load_unet(spec)
    except WeightsError as exc:
        raise InitError(f"--init: {exc}") from None
    return Start(meta["path"], meta["sha256"],
                 {k: v.detach().clone() for k, v in net.state_dict().items()}, dict(net.config),
                 normalize.recorded(meta.get("normalization")), meta)


def shape_from(start: Start, base: int | None, depth: int | None) -> tuple[int, int]:
    """(base, depth) of the run: the starting network's; a different one asked for is refused (its
    tensors would not fit)."""
    for name, asked in (("base", base), ("depth", depth)):
        if asked is not None and asked != start.config[name]:
            raise InitError(f"--{name} {asked} differs from the starting weights' {name} {start.config[name]} "
                            f"({Path(start.path).name}); leave --{name} out to fine-tune them")
    return int(start.config["base"]), int(start.config["depth"])


def notes(start: Start, n_classes: int, normalization: dict | None, spacing: dict, new_head: bool) -> list[str]:
    """What the user should know before the run: the classifier started afresh, another input
    normalisation, another voxel size than the network learned at."""
    out = []
    if new_head or n_classes != start.n_classes:
        why = (f"the labels have {n_classes} classes, the starting weights {start.n_classes}"
               if n_classes != start.n_classes else "--new-head")
        out.append(f"the classifier starts afresh ({why}); every other layer starts from {Path(start.path).name}")
    if normalization is not None and normalization != start.normalization:
        out.append(f"the starting weights were trained on {start.normalization} inputs; this run feeds them "
                   f"{normalization}, so their first layers must relearn the intensities (leave --normalization "
                   f"out to keep theirs)")
    model_sp, model_unit = model_spacing(start.meta)
    if spacing.get("spacing") and model_sp is not None and target_spacing(
            spacing["spacing"], spacing.get("unit"), model_sp, model_unit, "auto") is not None:
        out.append(f"the starting weights learned at {spacing_text(model_sp, unit=model_unit)} voxels, these volumes "
                   f"are {spacing_text(spacing['spacing'], unit=spacing.get('unit'))}: objects look another size to "
                   f"them (`halo-seg resample --weights {start.path}` brings the volumes to their voxel size)")
    return out


def load_into(net: torch.nn.Module, start: Start, new_head: bool = False) -> dict:
    """Copy the starting weights into ``net`` (built with the run's class count); the classifier
    keeps ``net``'s fresh initialisation where the class count differs or ``new_head``. Returns
    what the saved weights record of it."""
    if {k: v for k, v in net.config.items() if k != "out_channels"} != \
            {k: v for k, v in start.config.items() if k != "out_channels"}:
        raise InitError(f"cannot start from {start.path}: it holds {start.config}, this run builds {net.config}")
    fresh = new_head or net.config["out_channels"] != start.n_classes
    state = {k: v for k, v in start.state.items() if not (fresh and k in HEAD)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or set(missing) - set(HEAD):
        raise InitError(f"{start.path} does not fit this network: missing {missing}, unexpected {unexpected}")
    return {"weights": Path(start.path).name, "sha256": start.sha256, "head": "new" if fresh else "kept",
            "classes": start.meta.get("classes") or [], "n_classes": start.n_classes}
