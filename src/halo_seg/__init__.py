"""halo_seg: GUI-free engine for interactive and halo-partitioned automatic 3D segmentation."""
from .io import Volume, VolumeError, open_volume, write_labels

__version__ = "0.1.0"
__all__ = ["InteractiveSegmenter", "InteractiveError", "Volume", "VolumeError", "open_volume", "write_labels", "__version__"]


def __getattr__(name):
    # torch is imported only when the interactive API is used: readers and the CLI stay quick to start
    if name in ("InteractiveSegmenter", "InteractiveError"):
        from .interactive import segmenter
        return getattr(segmenter, name)
    raise AttributeError(f"module 'halo_seg' has no attribute {name!r}")
