"""Where the widgets keep what they make for the user: learned quality models, kept interactive
sessions and trained U-Net weights, under one user data directory."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def user_dir() -> Path:
    """$HALO_SEG_USER_DIR, else the user's data directory (platformdirs, which napari itself uses)."""
    root = os.environ.get("HALO_SEG_USER_DIR")
    if not root:
        import platformdirs
        root = platformdirs.user_data_dir("napari-halo-seg")
    return Path(root)


def file_stem(name: str) -> str:
    """A layer name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "image"


def learned_dir() -> Path:
    """Where "Learn from objects" saves its quality models."""
    return user_dir() / "quality"


def last_session_path(image_name: str, identity: str = "") -> Path:
    """Where each propagation saves the session of an image's current object. ``identity`` (the
    file the image came from, or its shape) tells apart images of one name ("scan", "image", a
    DICOM series number): another patient's "scan" must not write over this one's kept session."""
    tag = "." + hashlib.sha1(identity.encode()).hexdigest()[:8] if identity else ""
    return user_dir() / "sessions" / f"{file_stem(image_name)}{tag}.last.npz"


def models_dir() -> Path:
    """Where "Train a model" saves its weights."""
    return user_dir() / "models"
