"""Save and load the interactive network (safetensors + configuration in the metadata; no pickles)."""
from __future__ import annotations

from pathlib import Path

from ..engine.weights import default_weights_installed, load_net, resolve_weights, save_unet
from .memnet import MemSegNet

DEFAULT_NAME = "memseg_default.safetensors"


def resolve_memnet_weights(spec: str | Path) -> Path:
    return resolve_weights(spec, DEFAULT_NAME, "interactive network",
                           "train them with `halo-seg train-interactive` and pass weights=PATH")


def save_memnet(net: MemSegNet, path: str | Path, **meta) -> Path:
    return save_unet(net, path, kind="memseg", **meta)


def load_memnet(spec: str | Path = "default", device="cpu") -> tuple[MemSegNet, dict]:
    return load_net(resolve_memnet_weights(spec), MemSegNet, "memseg", "interactive network", device)


def default_memnet_installed() -> bool:
    return default_weights_installed(DEFAULT_NAME)
