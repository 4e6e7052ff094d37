"""napari plugin over the halo_seg engine: readers, writers, sample data and dock widgets."""
__version__ = "0.1.0"
