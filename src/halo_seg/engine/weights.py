"""Save and load networks as safetensors with their configuration in the file's metadata."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .unet import UNet3D


class WeightsError(ValueError):
    """Weights are missing, corrupt, or do not fit the network."""


DEFAULT_NAME = "unet3d_default.safetensors"


def weights_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "weights"


def resolve_weights(spec: str | Path, default_name: str = DEFAULT_NAME, what: str = "3D U-Net",
                    how: str = "pass --weights PATH to a .safetensors file made by `halo-seg train`") -> Path:
    if str(spec) == "default":
        p = weights_dir() / default_name
        if not p.exists():
            raise WeightsError(f"no default {what} weights are installed ({p} is missing); {how}")
        return p
    p = Path(spec)
    if not p.exists():
        raise WeightsError(f"{what} weights file not found: {p}")
    if p.suffix != ".safetensors":
        raise WeightsError(f"weights must be a .safetensors file (no pickles are loaded), got {p.name}")
    return p


def check_output_path(path: str | Path) -> Path:
    """Where weights will be written, checked before any training: a .safetensors path, and if a file
    is there, safetensors weights (`--out scan.npy` trained, wrote over the scan, then complained)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"weights are written as a .safetensors file; give --out a path ending in "
                           f".safetensors, not {path.name}")
    if path.exists():
        from safetensors import safe_open
        try:
            with safe_open(str(path), "pt"):
                pass
        except Exception:   # not safetensors: someone's other file, never written over
            raise WeightsError(f"{path} exists and is not a safetensors file; it is not written over") from None
    return path


def save_unet(net: torch.nn.Module, path: str | Path, **meta) -> Path:
    """Any network with a ``config`` dict (the U-Net, the interactive network) as safetensors."""
    from safetensors.torch import save_file
    path = check_output_path(path)
    info = {"config": net.config, **meta}
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"halo_seg": json.dumps(info)})
    return path


def read_meta(path: str | Path) -> dict:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise WeightsError(f"cannot read weights {path}: corrupt or not a safetensors file ({exc})") from exc
    if "halo_seg" not in meta:
        raise WeightsError(f"{path} has no halo_seg metadata; it was not written by halo-seg")
    return json.loads(meta["halo_seg"])


def load_net(path: Path, build, kind: str | None, what: str, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Build ``build(**config)`` from a halo-seg safetensors file whose metadata says ``kind``
    (None: the 3D U-Net, which predates the field) and load its weights; no pickle is read."""
    from safetensors.torch import load_file
    meta = read_meta(path)
    if meta.get("kind") != kind:
        raise WeightsError(f"{path} holds {meta.get('kind') or '3D U-Net'} weights, not the {what}")
    try:
        net = build(**meta["config"])
        net.load_state_dict(load_file(str(path)))
    except Exception as exc:
        raise WeightsError(f"weights {path} do not fit the {what} {meta.get('config')}: {exc}") from exc
    meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    meta["path"] = str(path)
    return net.to(device).eval(), meta


def load_unet(spec: str | Path = "default", device: str | torch.device = "cpu") -> tuple[UNet3D, dict]:
    return load_net(resolve_weights(spec), UNet3D, None, "3D U-Net", device)


def default_weights_installed(name: str = DEFAULT_NAME) -> bool:
    return (weights_dir() / name).exists()
