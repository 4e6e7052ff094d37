"""Save and load the interactive network (safetensors + configuration in the metadata; no pickles)."""
from __future__ import annotations

import hashlib
from pathlib import Path


from ..engine.weights import WeightsError, read_meta, resolve_weights, save_unet, weights_dir
from .memnet import MemSegNet

DEFAULT_NAME = "memseg_default.safetensors"


def resolve_memnet_weights(spec: str | Path) -> Path:
    return resolve_weights(spec, DEFAULT_NAME, "interactive network",
                           "train them with `halo-seg train-interactive` and pass weights=PATH")


def save_memnet(net: MemSegNet, path: str | Path, **meta) -> Path:
    return save_unet(net, path, kind="memseg", **meta)


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
