"""The interactive widget's working layers by name, and what tells one image apart from another of
its name (its kept session and objects are filed under it)."""
from __future__ import annotations

from pathlib import Path

POS, NEG, BOX, EXTREME = "clicks +", "clicks -", "box", "extreme points"
PREVIEW, OBJECTS, STROKES = "current object", "objects", "strokes"
PATHS = "objects paths"   # of a time-lapse: the followed objects' paths (_interactive_paths), made at the first link
NEW_CELLS = "cells no object holds"   # of a time-lapse: after All to next time point, where they are (new_cells)
IMAGE_KEY = "image identity"   # working layers' metadata: which image of that name they belong to (_identity)
WORKING = (OBJECTS, PREVIEW, BOX, EXTREME, NEG, POS, STROKES, PATHS, NEW_CELLS)   # the layers made for its image
AUTO = "auto"   # the quality field's entry for the weights' own model


def _identity(layer) -> str:
    """What tells an image apart from another of its name: the file it came from, else its shape and
    voxel size."""
    source = (layer.metadata or {}).get("source")
    return str(Path(source).resolve()) if source else \
        f"{tuple(int(n) for n in layer.level_shapes[0])} {tuple(layer.scale)}"


def _short(identity: str) -> str:
    import hashlib
    return hashlib.sha1(identity.encode()).hexdigest()[:6]
