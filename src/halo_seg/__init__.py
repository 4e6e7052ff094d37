"""halo_seg: GUI-free engine for interactive and halo-partitioned automatic 3D segmentation."""
from .io import Volume, VolumeError, open_volume, write_labels

__version__ = "0.1.0"
__all__ = ["Volume", "VolumeError", "open_volume", "write_labels", "__version__"]
