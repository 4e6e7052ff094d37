"""The shipped default 3D U-Net: brain and deep grey matter on the 2 mm Colin27 sample.

Classes: 0 background, 1 brain (ch2bet), 2 deep grey matter (the 12 AAL subcortical structures
merged). Trained on the left hemisphere (x < midline) and validated on the right one, whose voxels
it never sees (x flips of left-hemisphere patches teach the mirrored shapes, not the right data).
"""
from __future__ import annotations

import numpy as np

from ..samples import load_colin27_sample
from .unet_train import TrainConfig, train_unet

CLASSES = ["background", "brain", "deep_grey"]


def default_targets():
    s = load_colin27_sample()
    lab = s.brain.astype(np.uint8)
    lab[s.labels > 0] = 2
    return s.image, lab


def hemisphere_regions(shape):
    tr = np.zeros(shape, bool)
    tr[..., : shape[2] // 2] = True
    return tr, ~tr


def train_default(out, iterations: int = 600, log=print, threads=None):
    img, lab = default_targets()
    tr, va = hemisphere_regions(img.shape)
    cfg = TrainConfig(n_classes=3, patch=(48, 48, 40), iterations=iterations, batch=2, base=8, depth=3,
                      flip_axes=(0, 1, 2), class_names=CLASSES, threads=threads)
    return train_unet([img], [lab], cfg, out, train_regions=[tr], val_regions=[va], log=log,
                      meta={"data": "sample_data/colin27_2mm (left hemisphere train, right validate)",
                            "command": f"halo-seg train-default --iterations {iterations}",
                            "spacing": list(load_colin27_sample().spacing), "unit": "mm"})
