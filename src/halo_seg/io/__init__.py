"""Lazy volume input and chunk-aligned label output."""
from .volume import Volume, open_volume, VolumeError
from .labels import write_labels

__all__ = ["Volume", "open_volume", "write_labels", "VolumeError"]
