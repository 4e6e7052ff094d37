"""The training widget on a time-lapse: an image layer (T, Z, Y, X) and a Labels layer of its shape
(the objects of the interactive widget, a corrected automatic result). Each time point holding a
label is a training volume; the last of them (the held-out share, at least one) are held out whole
to measure Dice and choose the weights, as separate scans would be; time points with no label are
not used (nothing says what is there). Labels painted on some slices of the time points labelled
count on those slices only."""
from __future__ import annotations

import numpy as np


def timepoints_text(ts) -> str:
    return f"time point{'s' if len(ts) > 1 else ''} {', '.join(map(str, ts))}"


def prepare_series(image, labels, hold_out: float, patch: int, iterations: int, precision: str = "fp32",
                   init: str | None = None, sparse: bool = False, one_class: bool = False) -> dict:
    """The training run of a time-lapse: images, labels, train_regions (None: whole), config,
    val_images, val_labels, held_regions (None: whole), train and held (time points), note (a
    warning or None); raises ValueError naming what is wrong. ``sparse``: the labels are painted on
    some slices (along z) of the time points labelled; the rest of those time points is unknown, not
    background, so training and the held-out Dice use the painted slices only (halo_seg.train.sparse)."""
    from halo_seg.train.sparse import gaps_note, labelled_slices, slab
    from ._train_widget import DEPTH, training_config
    if tuple(labels.shape) != tuple(image.shape):
        raise ValueError(f"the labels are {tuple(labels.shape)}, the time-lapse {tuple(image.shape)}: one Labels "
                         "layer of its shape, with the objects of the time points labelled")
    held_labels = {}   # each time point read once, and kept where it holds a label (it is trained on)
    for t in range(labels.shape[0]):
        lab = np.asarray(labels[t])
        if lab.any():
            held_labels[t] = lab
    ts = sorted(held_labels)
    if len(ts) < 2:
        raise ValueError(f"the labels are on {len(ts)} time point{'' if len(ts) == 1 else 's'}: label two or more "
                         "(the last are held out to measure Dice), or split the time-lapse and train on that one")
    n = min(len(ts) - 1, max(1, int(round(len(ts) * hold_out))))
    train, held = ts[:-n], ts[-n:]
    painted = {t: labelled_slices(held_labels[t], 0) for t in ts} if sparse else None
    note = None
    if not sparse:   # the first time point that looks painted every few slices, named
        note = next((x for x in (gaps_note(held_labels[t], 0, f"the labels at time point {t}",
                                           "tick 'labels painted on some slices only'") for t in ts) if x), None)

    def pairs(which):
        out = []
        for t in which:
            lab = held_labels[t]
            if lab.min() < 0:
                raise ValueError(f"the labels at time point {t} are negative somewhere; each value is a class")
            out.append((np.asarray(image[t], np.float32), (lab > 0 if one_class else lab).astype(np.int64)))
        return out
    tr, va = pairs(train), pairs(held)
    cfg = training_config([lab for _, lab in tr + va], image.shape[1:], patch, iterations, precision, init,
                          one_class, DEPTH)
    def slabs(which):   # the painted slices of each time point
        return [slab(held_labels[t].shape, 0, painted[t]) for t in which] if sparse else None
    return {"images": [im for im, _ in tr], "labels": [lab for _, lab in tr], "train_regions": slabs(train),
            "config": cfg, "val_images": [im for im, _ in va], "val_labels": [lab for _, lab in va],
            "held_regions": slabs(held), "train": train, "held": held,
            "painted": {t: [int(z) for z in zs] for t, zs in painted.items()} if sparse else None, "note": note}
