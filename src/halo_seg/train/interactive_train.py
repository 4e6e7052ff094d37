"""`halo-seg train-interactive`: train the prompt / memory / quality network on crops.

Loss: soft Dice + binary cross-entropy on the mask, and the squared error of the quality head
against the true Dice of the thresholded prediction (DESIGN.md: "train it with the true Dice of
propagated slices"). Checkpoints are safetensors; ``resume`` continues from one.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..engine.precision import check_precision, forward
from ..engine.weights import check_output_path
from ..interactive.memnet import MemSegNet, with_prev_input
from ..interactive.model_io import load_memnet, save_memnet
from ..samples import SUBCORTICAL, VALIDATION, shared_data_dir
from .interactive_data import (ExampleSampler, colin27_source, ct_supervoxel_source, mri_supervoxel_source,
                               phantom_sources, user_source)

HELD_OUT = tuple(SUBCORTICAL)  # the benchmark's structures: never trained on
WARMUP = 0.05                  # share of a run (of its iterations, or of its minutes) spent warming up


def time_lr(lr: float, frac: float) -> float:
    """One-cycle learning rate at fraction ``frac`` of a run: linear warm-up from lr / 25 over WARMUP,
    then cosine annealing to zero (OneCycleLR's shape without its edge cases: any number of iterations)."""
    if frac < WARMUP:
        return lr / 25 + (lr - lr / 25) * frac / WARMUP
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (frac - WARMUP) / (1 - WARMUP))))


def build_sources(data_dir: Path | None, n_phantoms: int = 12, cache_dir: Path | None = None, log=print,
                  held_out=HELD_OUT, mri_supervoxels: bool = False):
    sources = phantom_sources(n_phantoms)
    if data_dir is not None:
        sources.append(colin27_source(data_dir, held_out))
        cache = (cache_dir / "ct_slic.npz") if cache_dir else None
        sources.append(ct_supervoxel_source(data_dir, cache=cache))
        if mri_supervoxels:
            tag = "-".join(map(str, sorted(held_out)))
            cache = (cache_dir / f"mri_slic_{hashlib.sha1(tag.encode()).hexdigest()[:10]}.npz") if cache_dir else None
            sources.append(mri_supervoxel_source(data_dir, held_out, cache=cache))
    for s in sources:
        log(f"source {s.name}: {len(s.objects)} objects, volume {s.image.shape}")
    return sources


class _Batches(torch.utils.data.IterableDataset):
    def __init__(self, sources, size, seed, weights, batch, sweeps, augment=None):
        self.args = (sources, size, seed, weights)
        self.batch, self.sweeps, self.augment = batch, sweeps, dict(augment or {})

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        sources, size, seed, weights = self.args
        sampler = ExampleSampler(sources, size=size, seed=seed + 1000 * (info.id if info else 0), weights=weights,
                                 **self.augment)
        n, steps = self.sweeps
        while True:
            yield sampler.batch(self.batch), (sampler.sweep_batch(n, steps) if n and steps else None)


def _batch_stream(sources, size, seed, weights, batch, workers, sweeps=(0, 0), augment=None):
    """Examples are made in worker processes so that the network never waits for them; ``augment``
    holds ExampleSampler's chances (invert, thick, elastic, corrective)."""
    loader = torch.utils.data.DataLoader(_Batches(sources, size, seed, weights, batch, sweeps, augment),
                                         batch_size=None,
                                         num_workers=workers, prefetch_factor=4 if workers else None)
    return iter(loader)


def mask_losses(logits, qual, tgt):
    """BCE + soft Dice per example, the quality head's squared error against the true Dice of the
    thresholded prediction; returns (loss, true Dice)."""
    prob = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, tgt)
    inter = (prob * tgt).sum((1, 2, 3))
    sdice = 1 - (2 * inter + 1) / (prob.sum((1, 2, 3)) + tgt.sum((1, 2, 3)) + 1)
    true_d = batch_dice(prob.detach(), tgt)
    return bce + sdice.mean() + F.mse_loss(qual, true_d), true_d


def rollout_loss(net, images, masks, has_second, precision: str = "fp32"):
    """Unroll a sweep as ``propagate_volume`` does: memory = the annotated slice(s) + the previous
    slice with the network's **own** thresholded prediction (the first step's previous slice is the
    annotated one). Training on its own predictions, not on perturbed truth, teaches the network to
    recover from its errors and the quality head to judge real sweeps.

    images, masks (B, steps + 2, 1, S, S) from ``ExampleSampler.sweep_batch``; returns the mean
    loss and the (B, steps) true Dice and quality predictions.
    """
    b, n = images.shape[:2]
    guid = images.new_zeros(b, 3, *images.shape[-2:])
    valid = torch.stack([torch.ones_like(has_second), has_second, torch.ones_like(has_second)], 1)
    prev_i, prev_m = images[:, 0], masks[:, 0]
    losses, dices, quals = [], [], []
    for k in range(2, n):
        mi = torch.stack([images[:, 0], images[:, 1], prev_i], 1)
        mm = torch.stack([masks[:, 0], masks[:, 1], prev_m], 1)
        logits, qual = forward(net, precision, images[:, k], guid, mi, mm, valid, prev_m)
        loss, true_d = mask_losses(logits, qual, masks[:, k])
        losses.append(loss)
        dices.append(true_d)
        quals.append(qual.detach())
        prev_i, prev_m = images[:, k], (logits.detach() > 0).float()
    return torch.stack(losses).mean(), torch.stack(dices, 1), torch.stack(quals, 1)


def train_step(net, opt, one_step, sweep, dev, precision: str = "fp32"):
    """One optimisation step on a batch of one-step examples and (if any) unrolled sweeps: forward
    (under ``precision``'s autocast), losses, backward, gradient clipping, AdamW. Returns the loss,
    the one-step examples' true Dice and predicted quality, and the sweeps' (None without sweeps)."""
    q, g, mi, mm, mv, tgt, prev = (x.to(dev, non_blocking=True) for x in one_step)
    logits, qual = forward(net, precision, q, g, mi, mm, mv, prev)
    loss, true_d = mask_losses(logits, qual, tgt)
    sd = sq = None
    if sweep is not None:
        sloss, sd, sq = rollout_loss(net, *(x.to(dev, non_blocking=True) for x in sweep), precision=precision)
        loss = loss + sloss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    opt.step()
    return loss.detach(), true_d, qual.detach(), sd, sq


def batch_dice(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example Dice of hard masks; 1 when both are empty."""
    p = (prob > 0.5).float().flatten(1)
    t = (target > 0.5).float().flatten(1)
    den = p.sum(1) + t.sum(1)
    return torch.where(den > 0, 2 * (p * t).sum(1) / den.clamp(min=1), torch.ones_like(den))


def train_interactive(out: str | Path, iterations: int = 4000, batch: int = 24, lr: float = 2e-3,
                      size: int = 64, width: int = 16, data_dir: Path | None = None, seed: int = 0,
                      resume: str | Path | None = None, threads: int | None = None, log=print,
                      progress=None, workers: int = 1, device: str = "cpu", shared: bool = True,
                      n_phantoms: int = 12, sweeps: int = 8, sweep_steps: int = 6,
                      init: str | Path | None = None, mri_supervoxels: bool = False,
                      hold_out_validation: bool = False, minutes: float | None = None, invert: float = 0.0,
                      thick: float = 0.0, elastic: float = 0.0, corrective: float = 0.0, user_volumes=(),
                      user_share: float = 0.5, prev_input: bool = False, precision: str = "fp32") -> dict:
    """Train (or, with ``resume``, continue; with ``init``, fine-tune from other weights on a fresh
    schedule) the interactive network. Each iteration takes ``batch`` one-step examples and
    ``sweeps`` sweeps of ``sweep_steps`` slices unrolled on the network's own predictions.

    ``mri_supervoxels`` adds SLIC pseudo-objects of the T1; ``hold_out_validation`` also keeps the
    validation regions (``samples.VALIDATION``) out, so that they judge the result fairly; ``minutes``
    caps the run's length: the learning rate follows the clock (time_lr) and the run ends on time;
    ``invert`` is the chance that an example's contrast is inverted, ``thick`` that its volume is
    resliced into slices 2 to 5 times thicker, ``elastic`` that its view is deformed smoothly in-plane
    (deform.DeformedView; all three in ExampleSampler); ``corrective`` that a correction example is
    corrective clicks on the errors of a mask held in memory. ``user_volumes``: the user's own
    labelled volumes, ``(image, labels, spacing, regions or None)`` each, drawn for ``user_share`` of
    the examples (the built-in sources keep the rest, so that a fine-tune does not forget them).
    ``prev_input``: the decoder also takes the nearest memory slice's mask (memnet.with_prev_input;
    from ``init`` its weights for it start at zero). ``precision`` "bf16": the forward passes under
    bfloat16 autocast (engine/precision.py); the losses, the weights and the optimizer stay fp32."""
    precision = check_precision(precision)
    if resume and init:
        raise ValueError("give either resume (continue a run) or init (start from weights), not both")
    # before any data is built: these failed deep in torch, or (0 iterations) saved an untrained network
    for name, value, least in (("iterations", iterations, 1), ("batch", batch, 1), ("width", width, 1),
                               ("size", size, 16), ("sweeps", sweeps, 0), ("sweep steps", sweep_steps, 1)):
        if int(value) < least or int(value) != value:
            raise ValueError(f"{name} must be a whole number >= {least}, got {value}")
    if not (math.isfinite(lr) and lr >= 0):   # 0: the weights kept (tests)
        raise ValueError(f"the learning rate must be a number >= 0, got {lr}")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    check_output_path(out)   # a WeightsError (a ValueError) before hours of training, not after
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data_dir = (data_dir if data_dir is not None else shared_data_dir()) if shared else None
    held_out = HELD_OUT + (tuple(VALIDATION) if hold_out_validation else ())
    sources = build_sources(data_dir, n_phantoms, cache_dir=Path.home() / ".cache" / "halo_seg", log=log,
                            held_out=held_out, mri_supervoxels=mri_supervoxels)
    # real anatomy and supervoxels matter more than phantoms; weight by source kind, not object count
    n_ph = sum(s.name.startswith("phantom") for s in sources)
    n_real = len(sources) - n_ph
    w = [(0.25 if n_real else 1.0) / max(1, n_ph) if s.name.startswith("phantom") else 0.75 / max(1, n_real)
         for s in sources]
    if user_volumes:
        if not 0 < user_share <= 1:
            raise ValueError(f"user_share must be in (0, 1], got {user_share}")
        users = [user_source(img, lab, sp, f"user{i}", regions) for i, (img, lab, sp, regions) in enumerate(user_volumes)]
        for s in users:
            log(f"source {s.name}: {len(s.objects)} objects, volume {s.image.shape}")
        w = [x * (1 - user_share) / sum(w) for x in w] + [user_share / len(users)] * len(users)
        sources = sources + users
    batches = _batch_stream(sources, size, seed, w, batch, workers, (sweeps, sweep_steps),
                            dict(invert=invert, thick=thick, elastic=elastic, corrective=corrective))
    start = 0
    if resume or init:
        net, meta = load_memnet(resume or init)
        start = int(meta.get("iterations", 0)) if resume else 0
        net.train()
        if prev_input:   # the new input starts with zero weights: the fine-tune starts from init's outputs
            net = with_prev_input(net)
    else:
        net = MemSegNet(size=size, width=width, prev_input=prev_input)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True   # fixed input shapes: pick the fastest kernels once
    net = net.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    if minutes and resume:
        raise ValueError("a run capped in minutes cannot be resumed: its schedule follows the clock")
    hist, t0 = [], time.time()
    fresh = {"loss": 0.0, "dice": 0.0, "qerr": 0.0, "sweep_dice": 0.0, "sweep_qerr": 0.0, "n": 0}
    run = dict(fresh)
    out = Path(out)

    def record(done, run):
        n = run["n"]
        rec = {"iteration": done, "loss": run["loss"] / n, "crop_dice": run["dice"] / n,
               "quality_mae": run["qerr"] / n}
        if sweeps and sweep_steps:
            rec.update(sweep_dice=run["sweep_dice"] / n, sweep_quality_mae=run["sweep_qerr"] / n)
        rec = {k: round(v, 4) for k, v in rec.items()}
        rec["seconds"] = round(time.time() - t0, 1)
        hist.append(rec)
        log(json.dumps(rec))
        save_memnet(net, out, iterations=done, seed=seed, batch=batch, lr=lr, sweeps=sweeps,
                    sweep_steps=sweep_steps, init=str(init) if init else "", minutes=minutes or 0, invert=invert,
                    thick=thick, elastic=elastic, corrective=corrective, prev_input=prev_input, precision=precision,
                    sources=[s.name for s in sources], held_out_aal=list(held_out))

    it = start
    while it < iterations:
        # one-cycle schedule over the iterations or, for a run capped in minutes, over the clock; a
        # resumed run continues where it stopped
        frac = (time.time() - t0) / (60 * minutes) if minutes else it / iterations
        if frac >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = time_lr(lr, frac)
        one_step, sweep = next(batches)
        loss, true_d, qual, sd, sq = train_step(net, opt, one_step, sweep, dev, precision)
        run["qerr"] += float((qual - true_d).abs().mean())
        if sd is not None:
            run["sweep_dice"] += float(sd.mean())
            run["sweep_qerr"] += float((sq - sd).abs().mean())
        run["loss"] += float(loss)
        run["dice"] += float(true_d.mean())
        run["n"] += 1
        if progress is not None:
            progress(it + 1, iterations)
        it += 1
        if it % 100 == 0 or it == iterations:
            record(it, run)
            run = dict(fresh)
    if run["n"]:
        record(it, run)   # a run capped in minutes ends between two records
    return {"history": hist, "path": str(out)}
