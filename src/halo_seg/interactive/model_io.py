"""Save and load the interactive network (safetensors + configuration in the metadata; no pickles)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..engine.weights import WeightsError, read_meta, weights_dir
from .memnet import MemSegNet

DEFAULT_NAME = "memseg_default.safetensors"


def resolve_memnet_weights(spec: str | Path) -> Path:
    if str(spec) == "default":
        p = weights_dir() / DEFAULT_NAME
        if not p.exists():
            raise WeightsError(f"no default interactive weights are installed ({p} is missing); "
                               "train them with `halo-seg train-interactive` and pass weights=PATH")
        return p
    p = Path(spec)
    if not p.exists():
        raise WeightsError(f"interactive weights file not found: {p}")
    if p.suffix != ".safetensors":
        raise WeightsError(f"weights must be a .safetensors file (no pickles are loaded), got {p.name}")
    return p


def save_memnet(net: MemSegNet, path: str | Path, **meta) -> Path:
    from safetensors.torch import save_file
    path = Path(path)
    info = {"kind": "memseg", "config": net.config, **meta}
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"halo_seg": json.dumps(info)})
    return path


def load_memnet(spec: str | Path = "default", device="cpu") -> tuple[MemSegNet, dict]:
    from safetensors.torch import load_file
    path = resolve_memnet_weights(spec)
    meta = read_meta(path)
    if meta.get("kind") != "memseg":
        raise WeightsError(f"{path} holds {meta.get('kind', 'a 3D U-Net')} weights, not the interactive network")
    net = MemSegNet(**meta["config"])
    try:
        net.load_state_dict(load_file(str(path)))
    except Exception as exc:
        raise WeightsError(f"weights {path} do not fit the interactive network {meta['config']}: {exc}") from exc
    meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    meta["path"] = str(path)
    return net.to(device).eval(), meta


def default_memnet_installed() -> bool:
    return (weights_dir() / DEFAULT_NAME).exists()
