"""Interactive 3D segmentation: prompts, slice segmenter, memory propagation, recommendation."""
