"""Test-time adaptation: fine-tune the decoder on the session's own annotated slices.

The network never saw the user's structure; its annotated slices are the only truth about it.
Before a propagation a copy of the network learns, for a few steps, to reproduce each annotated
slice from the other annotated slices in memory (from a shifted copy of itself when it is the
only one), as in one-shot video object segmentation (OSVOS). Only the decoder changes, so keys
and image features stay those the memory was trained with; the session's own network is never
modified.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from .memnet import MemSegNet
from .propagation import N_ANNOTATED, network_inputs
from .roi import ROI

# Off by default: on the validation regions it hurt or was neutral at twice the round time
# (benchmarks/interactive_variants.py)
ADAPT_STEPS = 0       # gradient steps per propagation (0: off)
ADAPT_LR = 1e-4
SHIFT = 3             # crop pixels: the jitter of a slice used as its own memory
SELF_MEMORY = True    # a lone annotated slice is its own (shifted) memory; teaches copying
DECODER = ("dec4", "dec2", "dec1", "logit")


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.roll(x, (dy, dx), (-2, -1))


def adapt_decoder(net: MemSegNet, column: np.ndarray, annotations: dict[int, np.ndarray], roi: ROI,
                  device="cpu", steps: int = None, lr: float = None, seed: int = 0) -> MemSegNet:
    """A copy of ``net`` with its decoder fine-tuned on the annotated slices (``net`` untouched)."""
    steps = ADAPT_STEPS if steps is None else steps
    lr = ADAPT_LR if lr is None else lr
    nonempty = [z for z, m in annotations.items() if m.any()]
    if steps <= 0 or not nonempty or (not SELF_MEMORY and len(annotations) < 2):
        return net
    images, ann_masks, _ = network_inputs(column, annotations, roi, net.size, device)
    ann = sorted(annotations)
    tuned = copy.deepcopy(net)
    tuned.eval()   # keep normalisation statistics as trained
    params = [p for n, p in tuned.named_parameters() if n.split(".")[0] in DECODER]
    for p in tuned.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    S = net.size
    t = N_ANNOTATED + 1
    for _ in range(steps):
        q, mi, mm, valid, tgt = [], [], [], [], []
        for z in ann:
            others = sorted((a for a in ann if a != z), key=lambda a: (abs(a - z), a))[:N_ANNOTATED]
            flip = bool(torch.randint(2, (1,), generator=g))
            dy, dx = (int(v) for v in torch.randint(-SHIFT, SHIFT + 1, (2,), generator=g))
            img, msk = images[z:z + 1], ann_masks[z]
            ent_i = [images[a:a + 1] for a in others] + ([_shift(img, dy, dx)] if SELF_MEMORY else [])
            ent_m = [ann_masks[a] for a in others] + ([_shift(msk, dy, dx)] if SELF_MEMORY else [])
            if flip:
                img, msk = img.flip(-1), msk.flip(-1)
                ent_i, ent_m = [e.flip(-1) for e in ent_i], [e.flip(-1) for e in ent_m]
            pad = t - len(ent_i)
            q.append(img)
            tgt.append(msk)
            mi.append(torch.cat(ent_i + [img.new_zeros(pad, 1, S, S)]))
            mm.append(torch.cat(ent_m + [img.new_zeros(pad, 1, S, S)]))
            valid.append(torch.tensor([True] * len(ent_i) + [False] * pad, device=img.device))
        q, tgt = torch.cat(q), torch.cat(tgt)
        logits, _ = tuned(q, q.new_zeros(len(q), 3, S, S), torch.stack(mi), torch.stack(mm), torch.stack(valid))
        prob = torch.sigmoid(logits)
        inter = (prob * tgt).sum((1, 2, 3))
        dice = 1 - (2 * inter + 1) / (prob.sum((1, 2, 3)) + tgt.sum((1, 2, 3)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, tgt) + dice.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in tuned.parameters():
        p.requires_grad_(False)
    return tuned
