"""Train the 3D U-Net on (image, label) volumes: patches with foreground oversampling, augmentation,
Dice + border-weighted cross-entropy, validation Dice every epoch, safetensors checkpoints."""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field, asdict
from pathlib import Path

import numpy as np
import torch

from ..engine import normalize
from ..engine.precision import PrecisionError, check_precision, forward
from ..engine.runner import predict_whole
from ..engine.unet import UNet3D
from ..engine.weights import WeightsError, check_output_path, save_unet
from ..metrics import dice
from .augment import elastic_scale, intensity, random_flip_rot
from .losses import dice_ce_loss, unet_weight_map


class TrainingError(ValueError):
    pass


@dataclass
class TrainConfig:
    n_classes: int = 2
    patch: tuple = (48, 48, 48)
    iterations: int = 600
    batch: int = 2
    lr: float = 3e-3
    base: int = 8
    depth: int = 3
    epoch: int = 100            # iterations between validations
    foreground_p: float = 0.67  # fraction of patches centred on a foreground voxel
    flip_axes: tuple = (0, 1, 2)
    w0: float = 10.0
    sigma: float = 5.0
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"         # cpu, cuda or auto (a GPU when there is one)
    memory_check: bool = True   # refuse a run whose estimated peak does not fit (train_memory.py)
    checkpoint: bool = False    # activation checkpointing (UNet3D.set_checkpoint): less memory, more compute
    precision: str = "fp32"     # bf16: the step under bfloat16 autocast (engine/precision.py); validation stays fp32
    class_names: list = field(default_factory=list)
    channel_names: list = field(default_factory=list)   # a network of several input channels: their names
    # None: z-score, or with init the starting weights' own; a list: one spec per input channel
    normalization: dict | list | None = None
    init: str | None = None     # fine-tune: start from these 3D U-Net weights (train/init_weights.py)
    new_head: bool = False      # with init: start the classifier afresh even where the class count matches


def channels_of(image) -> list:
    """A case's input channels: a list or tuple of 3D volumes (one per channel), or one volume."""
    return list(image) if isinstance(image, (list, tuple)) else [image]


def check_channel_counts(images, what: str = "volume") -> int:
    """The number of input channels every case has (the first case's), else a TrainingError."""
    counts = [len(channels_of(im)) for im in images]
    odd = [i for i, n in enumerate(counts) if n != counts[0]]
    if odd:
        raise TrainingError(f"{what} 0 has {counts[0]} input channel(s) and {what} {odd[0]} has {counts[odd[0]]}; "
                            "every case needs the same channels, in the same order")
    return counts[0] if counts else 1


def channel_specs(normalization, n: int) -> list[dict]:
    """Each input channel's normalisation: one spec for all, or a list of one per channel."""
    try:
        return normalize.specs_of({"normalization": normalization or {"kind": "zscore"}}, n)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None


def check_pair_shapes(image, labels, name: str = "volume", multiple: int = 8) -> None:
    """What a pair's shapes and types say is wrong, before any voxel is read (lazy volumes too)."""
    if len(image.shape) != 3:
        raise TrainingError(f"{name}: image must be 3D (Z, Y, X), got shape {tuple(image.shape)}")
    if tuple(image.shape) != tuple(labels.shape):
        raise TrainingError(f"{name}: image shape {tuple(image.shape)} and label shape {tuple(labels.shape)} differ")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise TrainingError(f"{name}: labels must be integers, got {labels.dtype}")
    if any(s < multiple for s in image.shape):
        raise TrainingError(f"{name}: volume {tuple(image.shape)} is too small (need >= {multiple} voxels per axis, "
                            "2**depth)")


def check_pair_values(image: np.ndarray, labels: np.ndarray, n_classes: int, name: str = "volume") -> None:
    """What a pair's voxels say is wrong: NaN in the image, no foreground, ids outside the classes."""
    if np.issubdtype(image.dtype, np.inexact) and not np.isfinite(image).all():
        raise TrainingError(f"{name}: the image holds {int((~np.isfinite(image)).sum())} NaN or infinite voxels; "
                            "fill them first (e.g. with the background intensity)")
    if labels.max() == 0:
        raise TrainingError(f"{name}: labels are empty (no foreground voxel)")
    if labels.max() >= n_classes or labels.min() < 0:
        raise TrainingError(f"{name}: labels span {labels.min()}..{labels.max()} but n_classes = {n_classes}")


def check_class_ids(labels, what: str = "the labels") -> int:
    """The number of classes the label volumes (each value a class) make, 0..max; a TrainingError when
    some class in between appears in none of them: the network would have an output for it that
    nothing teaches (ids 3 and 300 made a 301-class network), which is most often instance ids (one
    per object) or a skipped number. Returns max + 1."""
    present = set()
    for lb in labels:
        present.update(int(v) for v in np.unique(np.asarray(lb)))
    top = max(present)
    missing = [k for k in range(1, top + 1) if k not in present]
    if missing:
        ids = sorted(present - {0})
        shown = lambda v: ", ".join(map(str, v[:6])) + (", ..." if len(v) > 6 else "")   # noqa: E731
        raise TrainingError(
            f"the ids in {what} are {shown(ids)}: each value is a class, so the network would learn classes 0 to "
            f"{top}, {len(missing)} of which ({shown(missing)}) appear nowhere in them. Number the classes 1 to "
            f"{len(ids)} (skimage.segmentation.relabel_sequential), or give the number of classes (--classes) to "
            "keep the unseen ones; ids of one object each (instances) are not classes: train on classes, then "
            "use `halo-seg instances`")
    return top + 1


def training_device(device: str, local_rank: int = 0) -> torch.device:
    """The torch device ``cpu``, ``cuda`` or ``auto`` names (``cuda``: the local rank's GPU), or a
    TrainingError saying why it cannot be had."""
    from ..engine.runner import EngineError, _device_for
    try:
        return _device_for(device, local_rank)
    except EngineError as exc:
        raise TrainingError(str(exc).replace("--device", "device")) from None


def lr_schedule(opt, lr: float, iterations: int):
    """One-cycle (warm-up over the first 10 %, then annealing), or a constant rate for runs too short
    to warm up (OneCycleLR divides by zero when the warm-up is under two steps)."""
    if iterations < 20:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=iterations, pct_start=0.1)


def class_voxels(lab, region) -> dict[int, np.ndarray]:
    """Each foreground class's voxels inside the training region, as flat (C-order) indices in the
    narrowest integer type that holds them: 4 bytes a voxel where (z, y, x) coordinates took 24, which
    on a dataset of labelled scans came to gigabytes."""
    flat = np.int32 if lab.size < 2 ** 31 else np.int64
    return {int(k): np.flatnonzero((lab == k) & region).astype(flat) for k in np.unique(lab[region]) if k > 0}


def everywhere(shape) -> np.ndarray:
    """A region that is the whole volume, as a read-only view of one value: a byte a voxel less for
    each of the training and validation regions of a fully labelled volume."""
    return np.broadcast_to(np.True_, tuple(shape))


def compact_labels(lab: np.ndarray) -> np.ndarray:
    """Checked labels (0 .. n_classes - 1) in the narrowest unsigned type: a byte a voxel where int64
    took eight; each patch becomes int64 only when it is drawn."""
    from ..io.labels import label_dtype
    return lab.astype(label_dtype(int(lab.max()) if lab.size else 0), copy=False)


def check_schedule(iterations, lr, batch=1) -> None:
    """0 iterations wrote an untrained network as if trained; a negative rate was torch's traceback,
    a batch of 0 numpy's (in every rank of a partitioned run)."""
    if int(iterations) < 1:
        raise TrainingError(f"iterations must be at least 1, got {iterations}")
    if int(batch) < 1:
        raise TrainingError(f"the batch must hold at least 1 patch, got {batch}")
    if not (np.isfinite(lr) and lr >= 0):   # 0: the weights kept (tests)
        raise TrainingError(f"the learning rate must be a number >= 0, got {lr}")


def fitting_patch(patch, shape, multiple: int) -> list[int]:
    """The patch cut to a volume smaller than it, to a multiple of 2**depth (a 10-slice volume with
    the 48-voxel patch made 10-slice patches, which the network cannot take)."""
    return [min(p, s - s % multiple) for p, s in zip(patch, shape)]


def _sample_patch(img, lab, wmap, region, fg, patch, rng, fg_p, multiple: int = 8):
    """``img``: (C, Z, Y, X), the input channels of ``lab``'s voxels."""
    shape = lab.shape
    p = fitting_patch(patch, shape, multiple)
    if fg and rng.random() < fg_p:
        # a class first, then one of its voxels (nnU-Net): small classes are seen as often as big ones
        vox = fg[list(fg)[rng.integers(len(fg))]]
        c = np.unravel_index(int(vox[rng.integers(len(vox))]), shape)
    elif not any(region.strides) and region.size and region.flat[0]:
        # everywhere(): the same draw from every 4th voxel without listing them (22 ms a patch on a
        # 512 x 512 x 300 scan, more than a GPU's training step)
        grid = region[::4, ::4, ::4].shape
        c = np.array(np.unravel_index(int(rng.integers(int(np.prod(grid)))), grid)) * 4
    else:
        cand = np.argwhere(region[::4, ::4, ::4]) * 4
        if not len(cand):   # a region between the grid's voxels: labelled slices off it (train/sparse.py)
            cand = np.argwhere(region)
        c = cand[rng.integers(len(cand))]
    lo = [int(np.clip(ci - pi // 2, 0, s - pi)) for ci, pi, s in zip(c, p, shape)]
    sl = tuple(slice(a, a + b) for a, b in zip(lo, p))
    return img[(slice(None),) + sl], lab[sl], wmap[sl] * region[sl]


def _region_dice(pred: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """Dice inside the validation region; nan where the class is neither there nor predicted there
    (an empty match says nothing of the model, and would count as a perfect 1)."""
    p, t = pred & region, truth & region
    return dice(p, t) if (p.any() or t.any()) else float("nan")


def _check_memory(cfg: TrainConfig, shapes, dev, log, val_shapes=(), on_disk: bool = False, n_in: int = 1) -> None:
    """Refuse, before the weight maps are computed, a run whose estimated peak does not fit (the
    prepared volumes count unless they are kept on disk; each input channel beyond the first is
    another float32 volume)."""
    from . import train_memory
    config = dict(in_channels=n_in, out_channels=cfg.n_classes, base=cfg.base, depth=cfg.depth)
    patch = tuple(max(axis) for axis in zip(*(fitting_patch(cfg.patch, s, 2 ** cfg.depth) for s in shapes)))
    data = train_memory.UNPARTITIONED_DATA + 4 * (n_in - 1)
    try:
        train_memory.require(config, patch, cfg.batch, (1, 1, 1), list(shapes) + list(val_shapes), dev, log,
                             data_bytes_per_voxel=0 if on_disk else data,
                             checkpoint=cfg.checkpoint, precision=cfg.precision)
    except TrainingError as exc:
        if on_disk:
            raise
        try:   # would the run fit with its prepared volumes on disk? then say so
            train_memory.require(config, patch, cfg.batch, (1, 1, 1), list(shapes) + list(val_shapes), dev, None,
                                 data_bytes_per_voxel=0, checkpoint=cfg.checkpoint, precision=cfg.precision)
        except TrainingError:
            raise exc from None
        raise TrainingError(f"{exc}; the volumes themselves take {data} bytes a voxel: "
                            "`halo-seg train ... --on-disk DIR` (a folder on a local disk with room) keeps them "
                            "there, memory-mapped, and the run fits") from None


def validation_pairs(val_images, val_labels) -> tuple[list, list]:
    val_images, val_labels = list(val_images or []), list(val_labels or [])
    if len(val_images) != len(val_labels):
        raise TrainingError(f"{len(val_images)} validation images but {len(val_labels)} validation label volumes; "
                            f"give them in pairs")
    return val_images, val_labels


def check_validation(val_images, val_labels, n_in: int = 1) -> tuple[list, list]:
    """Held-out validation volume pairs, their shapes checked as training pairs are (``n_in`` input
    channels each), each image as the list of its channels. Lazy volumes stay lazy: their voxels are
    checked (check_pair_values) when they are read to be prepared, so that no rank holds them all."""
    val_images, val_labels = validation_pairs(val_images, val_labels)
    odd = [i for i, im in enumerate(val_images) if len(channels_of(im)) != n_in]
    if odd:
        raise TrainingError(f"validation volume {odd[0]} has {len(channels_of(val_images[odd[0]]))} input channel(s), "
                            f"the training volumes {n_in}")
    for i, (im, lb) in enumerate(zip(val_images, val_labels)):
        for c in channels_of(im):   # each channel 3D, before they are stacked
            check_pair_shapes(c, lb, f"validation volume {i}")
    return [channels_of(im) for im in val_images], val_labels


def starting_weights(init, resume, n_classes: int, shape: tuple, normalization: dict | None, spacing: dict,
                     new_head: bool, log):
    """The checked Start of a fine-tuning run (None without ``init``), its notes logged. ``shape``:
    the run's (base, depth), which must be the starting network's."""
    if not init:
        return None
    if resume:
        raise TrainingError("--resume continues a run and --init starts one from other weights; give one of them")
    from .init_weights import notes, read_start, shape_from
    start = read_start(init)
    shape_from(start, *shape)
    for line in notes(start, n_classes, normalization, spacing, new_head):
        log("note: " + line)
    return start


def inherited_classes(init: dict | None) -> list:
    """A fine-tuned network's class names: its starting weights' where it kept their classifier."""
    return list(init["classes"]) if init and init["head"] == "kept" else []


def normalised(im, spec: dict) -> np.ndarray:
    """The volume normalised as the weights will record it (a percentile spec resolved on it)."""
    vspec = normalize.resolve(spec, im)
    mean, std = normalize.mean_std(normalize.moments(im, vspec), vspec)
    return normalize.apply(im, mean, std, vspec)


def train_unet(images, labels, cfg: TrainConfig, out: str | Path, train_regions=None, val_regions=None,
               log=print, tensorboard_dir: str | None = None, meta: dict | None = None,
               resume: str | Path | None = None, progress=None, cancel=None, val_images=None,
               val_labels=None, on_disk: str | Path | None = None, held_regions=None) -> dict:
    """Train and save the best (by mean validation Dice) weights to `out`; return the history.
    ``cancel()`` returning True stops the run between iterations: the best weights saved so far stay
    (``cancelled_at`` in the result gives the iteration). ``best``: the history entry of the weights
    saved (None when no validation was reached). ``val_images``/``val_labels``: held-out volume
    pairs to validate on, whole, instead of the training volumes' validation regions;
    ``held_regions``: a boolean region of each that validation is limited to (labels painted on some
    slices: those slices; the rest is unknown, not background), or None for one scored whole. ``on_disk``: a folder where the
    prepared volumes are kept, memory-mapped, while the run lasts (train/on_disk.py)."""
    from contextlib import nullcontext
    from .on_disk import DiskStore
    with nullcontext() if on_disk is None else DiskStore(on_disk) as store:
        return _train_unet(images, labels, cfg, out, train_regions, val_regions, log, tensorboard_dir, meta,
                           resume, progress, cancel, val_images, val_labels, store, held_regions)


def _train_unet(images, labels, cfg, out, train_regions, val_regions, log, tensorboard_dir, meta, resume,
                progress, cancel, val_images, val_labels, store, held_regions=None) -> dict:
    try:
        check_precision(cfg.precision)
        check_output_path(out)
    except (PrecisionError, WeightsError) as exc:
        raise TrainingError(str(exc)) from None
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = training_device(cfg.device)
    start, init = 0, starting_weights(cfg.init, resume, cfg.n_classes, (cfg.base, cfg.depth), cfg.normalization,
                                      meta or {}, cfg.new_head, log)
    m = 2 ** cfg.depth
    check_schedule(cfg.iterations, cfg.lr, cfg.batch)
    if any(p % m or p < m for p in cfg.patch):
        raise TrainingError(f"patch {cfg.patch} must be a positive multiple of 2**depth = {m}")
    # numpy, or lazy (dask, zarr: the command line's), read a volume at a time as it is prepared, so
    # that no volume is held twice (as read and normalised)
    images, labels = list(images), list(labels)
    val_images, val_labels = validation_pairs(val_images, val_labels)
    n_in = check_channel_counts(images + val_images)
    if cfg.channel_names and len(cfg.channel_names) != n_in:
        raise TrainingError(f"{len(cfg.channel_names)} channel names ({', '.join(cfg.channel_names)}) for {n_in} input "
                            "channel(s)")
    for i, (im, lb) in enumerate(zip(images, labels)):
        for c in channels_of(im):
            check_pair_shapes(c, lb, f"volume {i}", m)
    for i, (im, lb) in enumerate(zip(val_images, val_labels)):
        for c in channels_of(im):
            check_pair_shapes(c, lb, f"validation volume {i}")
    if held_regions is not None and (len(held_regions) != len(val_labels) or any(
            r is not None and np.shape(r) != np.shape(lb) for r, lb in zip(held_regions, val_labels))):
        raise TrainingError(f"{len(held_regions)} validation regions for {len(val_labels)} held-out volumes; one of "
                            "each held-out volume's shape")
    empty = [i for i, r in enumerate(held_regions or []) if r is not None and not np.any(r)]
    if empty:
        raise TrainingError(f"validation region {empty[0]} is empty: held-out volume {empty[0]} would not be scored")
    if cfg.memory_check:
        _check_memory(cfg, [tuple(lb.shape) for lb in labels], dev, log, [tuple(lb.shape) for lb in val_labels],
                      on_disk=store is not None, n_in=n_in)
    # saved with the weights; percentile resolves per volume
    spec = normalize.recorded(cfg.normalization or (init.normalization if init else None))
    specs = channel_specs(spec, n_in)

    def prepared(im, lb, name):
        lb = np.asarray(lb)
        img = None if n_in == 1 else np.empty((n_in,) + lb.shape, np.float32)
        for k, (c, s) in enumerate(zip(channels_of(im), specs)):   # a channel at a time, read as it is normalised
            c = np.asarray(c)
            check_pair_values(c, lb, cfg.n_classes, name)
            if img is None:
                img = normalised(c, s)[None]
            else:
                img[k] = normalised(c, s)
            del c
        return img, compact_labels(lb)
    vols = []
    for i in range(len(images)):
        img_n, lb = prepared(images[i], labels[i], f"volume {i}")
        tr = everywhere(lb.shape) if train_regions is None else train_regions[i]
        va = (~tr if train_regions is not None else everywhere(lb.shape)) if val_regions is None else val_regions[i]
        vol = (img_n, lb, unet_weight_map(lb, cfg.w0, cfg.sigma), tr, va, class_voxels(lb, tr))
        vols.append(tuple(store.keep(f"volume{i}", *vol)) if store else vol)
        del img_n, lb, vol
    # what validation runs on: (normalised image, labels, region) of held-out volumes, or of the training volumes
    checks = []
    for i, (im, lb) in enumerate(zip(val_images, val_labels)):
        check = (*prepared(im, lb, f"validation volume {i}"),
                 everywhere(lb.shape) if held_regions is None or held_regions[i] is None else held_regions[i])
        checks.append(tuple(store.keep(f"validation{i}", *check)) if store else check)
    checks = checks or [(v[0], v[1], v[4]) for v in vols]
    validated_on = ("held-out volume regions" if val_images and any(r is not None for r in held_regions or []) else
                    "held-out volumes" if val_images else "held-out regions" if train_regions is not None
                    or val_regions is not None else "training volumes")
    net = UNet3D(n_in, cfg.n_classes, base=cfg.base, depth=cfg.depth)
    if init is not None:
        from .init_weights import load_into
        init = load_into(net, init, cfg.new_head)
    if resume:
        from ..engine.weights import load_unet
        old, old_meta = load_unet(resume)
        if old.config != net.config:
            raise WeightsError(f"cannot resume from {resume}: it holds {old.config}, this run builds {net.config}")
        net.load_state_dict(old.state_dict())
        start = int(old_meta.get("training", {}).get("iteration", 0))
        log(f"resuming from {resume} at iteration {start} (the optimizer state restarts)")
    net.to(dev).set_checkpoint(cfg.checkpoint)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = lr_schedule(opt, cfg.lr, cfg.iterations)
    with warnings.catch_warnings():   # stepping the schedule alone is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(min(start, cfg.iterations - 1)):
            sched.step()   # the learning-rate schedule continues where it stopped
    writer = None
    if tensorboard_dir:
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(tensorboard_dir)
        except ImportError:
            log("tensorboard is not installed; logging to the console only")
    history, best, t0, stopped, kept = [], -1.0, time.time(), None, None
    for it in range(start + 1, cfg.iterations + 1):
        if cancel is not None and cancel():
            stopped = it - 1
            log(f"cancelled after iteration {stopped}")
            break
        net.train()
        xs, ys, ws = [], [], []
        for _ in range(cfg.batch):
            img, lab, wmap, tr, _, fg = vols[rng.integers(len(vols))]
            x, y, w = _sample_patch(img, lab, wmap, tr, fg, cfg.patch, rng, cfg.foreground_p, m)
            *x, y, w = random_flip_rot([*x, y, w], rng, cfg.flip_axes, rot_axes=())
            *x, y, w = elastic_scale([*x, y.astype(np.float32), w], rng, linear=n_in)
            xs.append(np.stack([intensity(c, rng) for c in x])); ys.append(y.astype(np.int64)); ws.append(w)
        x = torch.from_numpy(np.stack(xs)).to(dev)
        y = torch.from_numpy(np.stack(ys)).to(dev)
        w = torch.from_numpy(np.stack(ws).astype(np.float32)).to(dev)
        loss = dice_ce_loss(forward(net, cfg.precision, x), y, w)   # the loss in fp32 whatever the forward's precision
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if writer:
            writer.add_scalar("loss/train", loss.item(), it)
        if progress is not None:
            progress(it, cfg.iterations)
        if it % cfg.epoch == 0 or it == cfg.iterations:
            net.eval()
            scores = []
            for img, lab, va in checks:
                pred = predict_whole(net, img, dev).argmax(0)
                scores.append([_region_dice(pred == c, lab == c, va) for c in range(1, cfg.n_classes)])
            with warnings.catch_warnings():   # a class in no validation region stays nan
                warnings.simplefilter("ignore", RuntimeWarning)
                per_class = np.nanmean(np.asarray(scores, float), 0)
                mean_d = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0
            per_class = [None if np.isnan(d) else float(d) for d in per_class]   # None: not there to score
            history.append({"iteration": it, "loss": float(loss.item()), "val_dice": per_class,
                            "seconds": round(time.time() - t0, 1)})
            log(f"it {it:5d}  loss {loss.item():.4f}  val Dice "
                f"{', '.join('n/a' if d is None else f'{d:.3f}' for d in per_class)}  ({time.time() - t0:.0f}s)")
            if writer:
                writer.add_scalar("dice/val_mean", mean_d, it)
            if mean_d > best:
                best, kept = mean_d, history[-1]
                save_unet(net, out, normalization=spec, classes=cfg.class_names or inherited_classes(init),
                          **({"channels": list(cfg.channel_names)} if cfg.channel_names else {}),
                          training={"config": {k: (list(v) if isinstance(v, tuple) else v)
                                               for k, v in asdict(cfg).items()},
                                    "best_val_dice": per_class, "iteration": it,
                                    "validation_volumes": len(val_images), "validated_on": validated_on,
                                    **({"init": init} if init else {}), **(meta or {})})
    if writer:
        writer.close()
    Path(str(out) + ".history.json").write_text(json.dumps(history, indent=1))
    return {"history": history, "best_mean_dice": best, "best": kept, "cancelled_at": stopped}
