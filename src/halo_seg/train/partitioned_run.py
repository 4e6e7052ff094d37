"""Running partitioned training: data every rank reads, the training loop with partitioned validation,
and the two ways ranks start (spawned here, one CPU process or GPU each, or by torchrun).

Rank 0 alone reports and writes weights; the ranks of a replica train the same patches from the
same seed, each replica its own (partitioned.replica_rng).
"""
from __future__ import annotations

import json
import os
import queue
import time
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from ..engine import normalize
from ..engine.partition import PartitionPlan
from ..engine.precision import check_precision
from ..engine.runner import _peak_growth_mb, _reset_peak, _status_mb, backend_for, exit_rank, map_large_allocations
from ..engine.spawning import main_hidden
from ..engine.unet import UNet3D
from .partitioned import Mesh, replica_rng, step_inputs, train_step

FG_SAMPLE = 2 ** 20   # foreground voxels kept per class to centre patches on (a uniform subsample)


def _sample(vox: np.ndarray, shape, rng) -> np.ndarray:
    """Up to FG_SAMPLE of the flat indices ``vox`` (a uniform subsample), as (z, y, x) rows."""
    if len(vox) > FG_SAMPLE:
        vox = vox[np.sort(rng.choice(len(vox), FG_SAMPLE, replace=False))]
    return np.stack(np.unravel_index(vox, shape), 1).astype(np.int32)


def prepare_data(image, labels, cfg: dict, region=None, val_region=None) -> dict:
    """What every rank trains from, per volume pair: the normalised image (float32), the labels
    (int16), the U-Net weight map (its distances need the whole volume, so it is computed once) and,
    per foreground class, up to FG_SAMPLE of its voxels. Deterministic, so torchrun ranks that each
    compute it agree.

    ``region``: where the labels are known (labels painted on some slices, train/sparse.py): the
    weight map is 0 elsewhere, so no voxel outside it counts in the loss, the classes' voxels come
    from it, and so do the centres of the other patches ("centres", up to FG_SAMPLE of its voxels),
    which would otherwise fall between the painted slices. ``val_region`` (by default the rest of the
    volume) is where validation on this volume measures Dice."""
    from .losses import unet_weight_map
    from .unet_train import class_voxels, everywhere
    labels = np.asarray(labels)   # read here, one pair at a time
    rng = np.random.default_rng(cfg.get("seed", 0))
    known = everywhere(labels.shape) if region is None else np.asarray(region, bool)
    fg = {k: _sample(vox, labels.shape, rng) for k, vox in class_voxels(labels, known).items()}
    weights = unet_weight_map(labels, cfg.get("w0", 10.0), cfg.get("sigma", 5.0))
    out = {**prepare_validation(image, labels, cfg), "weights": weights, "fg": fg}
    if region is not None:
        weights *= known
        out["centres"] = _sample(np.flatnonzero(known), labels.shape, rng)
        out["val_region"] = ~known if val_region is None else np.asarray(val_region, bool)
    return out


def prepare_validation(image, labels, cfg: dict) -> dict:
    """A pair as validation reads it: the normalised image (float32; (C, Z, Y, X) for a network of
    several input channels, each normalised on its own) and the labels (int16). ``image``: a list of
    its channels, or an array ((C,) Z, Y, X); lazy volumes are read here, a channel at a time."""
    from .unet_train import channel_specs, normalised
    chans = list(image) if isinstance(image, (list, tuple)) or np.ndim(image) == 4 else [image]
    specs = channel_specs(cfg["normalization"], len(chans))
    if len(chans) > 1:
        img = np.stack([normalised(np.asarray(c), s) for c, s in zip(chans, specs)]).astype(np.float32)
    else:
        img = normalised(np.asarray(chans[0]), specs[0]).astype(np.float32)
    return {"image": img, "labels": np.asarray(labels).astype(np.int16)}


PREPARED = ("image", "labels", "weights", "centres", "val_region")   # prepare_data's arrays, saved as .npy


def _save_prepared(data: dict, folder, stem: str) -> dict:
    """A prepared pair as files in ``folder`` ({key: path}), for ranks to memory-map."""
    paths = {k: f"{folder}/{stem}_{k}.npy" for k in PREPARED if k in data}
    for k, f in paths.items():
        np.save(f, data[k])
    if "fg" in data:
        paths["fg"] = f"{folder}/{stem}_fg.npz"
        np.savez(paths["fg"], **{str(k): v for k, v in data["fg"].items()})
    return paths


def _load_prepared(paths: dict) -> dict:
    vol = {k: np.load(paths[k], mmap_mode="r") for k in PREPARED if k in paths}
    if "fg" in paths:
        vol["fg"] = {int(k): v for k, v in np.load(paths["fg"]).items()}
    return vol


def _prepare_into(folder, images, labels, val_images, val_labels, cfg, train_regions=None, val_regions=None,
                  mine=lambda j: True, held_regions=None) -> tuple[dict, dict]:
    """Prepare the training pairs and the held-out validation pairs that ``mine(j)`` picks (j counts
    the training pairs, then the validation ones) into ``folder``, one pair in memory at a time:
    ({pair: paths}, {validation pair: paths}). ``held_regions``: where each validation pair is scored
    (its painted slices), else whole."""
    from .unet_train import channels_of, check_pair_values
    train, val = {}, {}
    for i, (image, lab) in enumerate(zip(images, labels)):
        if mine(i):
            # read once, its voxels checked as the unpartitioned trainer checks them, then prepared
            lab = np.asarray(lab)
            image = [np.asarray(c) for c in channels_of(image)]
            for c in image:
                check_pair_values(c, lab, cfg["n_classes"], "volume" if len(images) == 1 else f"volume {i}")
            data = prepare_data(image, lab, cfg, *_regions(train_regions, val_regions, i))
            train[i] = _save_prepared(data, folder, str(i))
            del data
    for i, (image, lab) in enumerate(zip(val_images, val_labels)):
        if mine(len(images) + i):
            lab = np.asarray(lab)
            image = [np.asarray(c) for c in channels_of(image)]
            for c in image:
                check_pair_values(c, lab, cfg["n_classes"], f"validation volume {i}")
            data = prepare_validation(image, lab, cfg)
            if held_regions is not None and held_regions[i] is not None:
                data["val_region"] = np.asarray(held_regions[i], bool)
            val[i] = _save_prepared(data, folder, f"val{i}")
    return train, val


def _shared_prepared(images, labels, val_images, val_labels, cfg, train_regions, val_regions, rank: int,
                     world: int, scratch=None, held_regions=None):
    """torchrun's ranks on one machine share the prepared pairs: its ranks prepare a share each
    into one folder (in ``scratch``, else the system's temporary folder) and every rank memory-maps
    them all, where each rank held every prepared pair in its own memory (10 bytes a voxel per rank:
    80 a voxel on a machine of 8 GPUs). Machines are told apart by host name and a folder each of its
    ranks can see; ranks that cannot see their machine's folder prepare their own. Returns (pairs,
    validation pairs, the folder this rank made and removes when training ends or None, and how
    many ranks share this rank's folder)."""
    import shutil
    import socket
    import tempfile

    import torch.distributed as dist
    # preparing a large dataset may take longer than a collective may wait; only this exchange waits so
    exchange = dist.new_group(backend="gloo", timeout=timedelta(days=1))

    def gathered(obj):
        out = [None] * world
        dist.all_gather_object(out, obj, group=exchange)
        return out
    hosts = gathered(socket.gethostname())
    peers = [r for r in range(world) if hosts[r] == hosts[rank]]
    own = tempfile.mkdtemp(prefix="halo-seg-train-", dir=scratch) if rank == peers[0] else None
    folder = gathered(own)[peers[0]]
    seen = gathered(os.path.isdir(folder))
    if not all(seen[r] for r in peers):   # one host name, several file systems (containers): each its own
        peers = [rank]
        folder = own = own or tempfile.mkdtemp(prefix="halo-seg-train-", dir=scratch)
    k, n = peers.index(rank), len(peers)
    try:
        mine = _prepare_into(folder, images, labels, val_images, val_labels, cfg, train_regions, val_regions,
                             lambda j: j % n == k, held_regions)
        shares = gathered(mine)
    except BaseException:
        if own:
            shutil.rmtree(own, ignore_errors=True)
        raise
    train, val = {}, {}
    for r in peers:
        train.update(shares[r][0])
        val.update(shares[r][1])
    vols = [_load_prepared(train[i]) for i in range(len(images))]
    val_vols = [_load_prepared(val[i]) for i in range(len(val_images))]
    return vols, val_vols, own, n


def _validate_volume(net, vol, mesh: Mesh, rank, groups, dev, n_classes) -> torch.Tensor:
    """(overlap, predicted, true) voxel counts per class of the partitioned network on one whole
    volume, each rank of the replica running its block of it (as `halo-seg segment` does) and the
    counts summed over them: no rank holds the volume's activations."""
    import torch.distributed as dist
    image, labels, region = vol["image"], vol["labels"], vol.get("val_region")
    image = image if image.ndim == 4 else image[None]   # channels first
    plan = PartitionPlan(labels.shape, mesh.grid, net.multiple)
    local = mesh.spatial_rank(rank)
    valid, block = plan.valid_block(local), plan.block(local)
    xb = np.zeros([len(image)] + [s.stop - s.start for s in block], np.float32)
    inner = tuple(slice(0, v.stop - v.start) for v in valid)
    xb[(slice(None),) + inner] = np.asarray(image[(slice(None),) + valid])
    net.set_partition(mesh.context(plan, rank, groups))
    net.eval()
    with torch.no_grad():
        pred = net(torch.from_numpy(xb)[None].to(dev))[0].argmax(0)[inner]
    net.train()
    truth = torch.from_numpy(np.asarray(labels[valid]).astype(np.int64)).to(dev)
    inside = None if region is None else torch.from_numpy(np.ascontiguousarray(region[valid])).to(dev)
    stats = torch.zeros(3, n_classes, dtype=torch.float64, device=dev)
    for c in range(1, n_classes):
        p, t = pred == c, truth == c
        if inside is not None:   # the held-out slices of labels painted on some: elsewhere they are not known
            p, t = p & inside, t & inside
        stats[0, c], stats[1, c], stats[2, c] = (p & t).sum(), p.sum(), t.sum()
    if plan.world_size > 1:
        dist.all_reduce(stats, group=groups[mesh.replica(rank)])
    return stats


def _validate(net, vols, mesh: Mesh, rank, groups, dev, n_classes) -> list:
    """Dice per foreground class on whole volumes (the held-out ones, or else the training volumes,
    inside their validation regions where they have them), averaged over the volumes where the class
    is there or predicted (None where it is in none), as the unpartitioned trainer reports it.
    Replicas share the volumes out (replica r validates volumes r, r + R, ...)."""
    import torch.distributed as dist
    rep, local = mesh.replica(rank), mesh.spatial_rank(rank)
    counts = torch.zeros(len(vols), 3, n_classes, dtype=torch.float64, device=dev)
    for v in range(rep, len(vols), mesh.replicas):
        s = _validate_volume(net, vols[v], mesh, rank, groups, dev, n_classes)
        if local == 0:   # a replica's ranks all hold its sums; count them once
            counts[v] = s
    if mesh.world > 1:
        dist.all_reduce(counts)
    counts = counts.cpu().numpy()
    out = []
    for c in range(1, n_classes):
        seen = [2 * k[0, c] / (k[1, c] + k[2, c]) for k in counts if k[1, c] + k[2, c] > 0]
        out.append(float(np.mean(seen)) if seen else None)
    return out


def _train_loop(rank, world, grid, vols, cfg, out, dev, emit, stop=None, val_vols=()) -> None:
    """Every rank runs this after joining the process group; only rank 0 emits (kind, ...) messages
    and writes the weights. ``stop()`` (rank 0's) ends the run on every rank at the same iteration.
    ``vols``: prepare_data's dict per volume pair; each patch comes from one of them, drawn at random.
    ``val_vols``: held-out pairs ({"image", "labels"}) to validate on instead of ``vols``."""
    import torch.distributed as dist
    from ..engine.weights import WeightsError, load_unet, save_unet
    from .unet_train import inherited_classes, lr_schedule
    mesh = Mesh(tuple(grid), int(cfg.get("replicas", 1)))
    groups = mesh.groups()
    rep, local = mesh.replica(rank), mesh.spatial_rank(rank)
    torch.manual_seed(cfg["seed"])
    net = UNet3D(int(cfg.get("in_channels", 1)), cfg["n_classes"], base=cfg["base"], depth=cfg["depth"])
    start, init = 0, None
    if cfg.get("init"):   # checked by the caller; every rank reads the file and gets the same fresh head
        from .init_weights import load_into, read_start
        init = load_into(net, read_start(cfg["init"]), bool(cfg.get("new_head")))
    if cfg.get("resume"):
        old, old_meta = load_unet(cfg["resume"])
        if old.config != net.config:
            raise WeightsError(f"cannot resume from {cfg['resume']}: it holds {old.config}, this run builds "
                               f"{net.config}")
        net.load_state_dict(old.state_dict())
        start = int(old_meta.get("training", {}).get("iteration", 0))
    net.to(dev).set_checkpoint(bool(cfg.get("checkpoint")))
    patch, iterations, batch = tuple(cfg["patch"]), cfg["iterations"], int(cfg.get("batch", 1))
    plan = PartitionPlan(patch, grid, net.multiple)
    hctx = mesh.context(plan, rank, groups)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=1e-4)
    sched = lr_schedule(opt, cfg["lr"], iterations)
    with warnings.catch_warnings():   # stepping the schedule alone is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(min(start, iterations - 1)):
            sched.step()
    rng = replica_rng(cfg["seed"] + start, rep)   # a replica's ranks draw the same patches
    epoch, best, t0 = max(1, int(cfg.get("epoch", 100))), -1.0, time.time()
    flag = torch.zeros(1, device=dev)
    process = _status_mb("RssAnon")   # the rank's own process before it trains (and, under torchrun, the data)
    rss0 = _reset_peak()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        held = torch.cuda.memory_allocated(dev)
    for it in range(start + 1, iterations + 1):
        if world > 1 or stop is not None:
            flag.fill_(float(rank == 0 and stop is not None and stop()))
            if world > 1:
                dist.all_reduce(flag)
            if flag.item():
                if rank == 0:
                    emit("cancelled", it - 1)
                break
        net.set_partition(hctx)
        draws = []
        for _ in range(batch):
            v = vols[int(rng.integers(len(vols)))] if len(vols) > 1 else vols[0]
            draws.append(step_inputs(v["image"], v["labels"], v["weights"], patch, plan, local, rng, v["fg"],
                                     cfg.get("fg_p", 0.67), bool(cfg.get("augment", False)), v.get("centres")))
        xs, ys, ws = zip(*draws)
        loss = train_step(net, opt, torch.cat(xs).to(dev), torch.cat(ys).to(dev), torch.cat(ws).to(dev),
                          groups[rep], mesh.spatial, mesh.replicas, cfg.get("precision", "fp32"))
        sched.step()
        if rank == 0:
            emit("progress", it, loss, time.time() - t0)
        if it % epoch == 0 or it == iterations:
            val = _validate(net, list(val_vols) or vols, mesh, rank, groups, dev, cfg["n_classes"])
            scored = [d for d in val if d is not None]
            mean_d = float(np.mean(scored)) if scored else 0.0
            if rank == 0:
                emit("validation", it, val, time.time() - t0)
                if mean_d > best:
                    best = mean_d
                    save_unet(net, out, normalization=normalize.recorded(cfg["normalization"]),
                              classes=cfg.get("class_names") or inherited_classes(init),
                              **({"channels": list(cfg["channel_names"])} if cfg.get("channel_names") else {}),
                              training={"config": {k: v for k, v in cfg.items() if k != "resume"},
                                        "grid": list(grid), "replicas": mesh.replicas, "partitioned": True,
                                        "iteration": it, "best_val_dice": val, "validation_volumes": len(val_vols),
                                        "validated_on": ("held-out volume regions" if any("val_region" in v for v
                                                                                          in val_vols)
                                                         else "held-out volumes") if val_vols else
                                        "held-out regions" if "val_region" in vols[0] else "training volumes",
                                        "resumed_from": cfg.get("resume"), **({"init": init} if init else {}),
                                        **{k: cfg[k] for k in ("spacing", "unit") if cfg.get(k)}})
    # the run's peak above what the rank held before it (the largest rank's), for benchmarks/train_memory.py
    peak = torch.tensor([(torch.cuda.max_memory_allocated(dev) - held) / 2 ** 20 if dev.type == "cuda"
                         else _peak_growth_mb(rss0), process], dtype=torch.float64, device=dev)
    if world > 1:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    if rank == 0:
        emit("memory", float(peak[0]), float(peak[1]))


def _check_memory(cfg, grid, shapes, dev, log=None, **plan):
    from . import train_memory
    if cfg.get("memory_check", True):
        config = dict(in_channels=int(cfg.get("in_channels", 1)), out_channels=cfg["n_classes"], base=cfg["base"],
                      depth=cfg["depth"])
        train_memory.require(config, cfg["patch"], int(cfg.get("batch", 1)), grid, list(shapes), dev, log,
                             replicas=int(cfg.get("replicas", 1)), checkpoint=bool(cfg.get("checkpoint")),
                             precision=cfg.get("precision", "fp32"), **plan)


def _rank_device(cfg, local_rank):
    from .unet_train import training_device
    dev = training_device(cfg.get("device", "cpu"), local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev, backend_for(dev)


def _gpu_each(ranks, what, fix):
    from ..engine.runner import EngineError, require_gpu_each
    from .unet_train import TrainingError
    try:
        require_gpu_each(ranks, what, fix)
    except EngineError as exc:
        raise TrainingError(str(exc)) from None


def _worker(rank, world, grid, paths, cfg, init, out, q, stop_event=None, val_paths=()):
    import torch.distributed as dist
    torch.set_num_threads(cfg.get("threads") or max(1, (os.cpu_count() or 1) // world))
    map_large_allocations()   # freed blocks go back to the system (see runner.map_large_allocations)
    try:
        dev, backend = _rank_device(cfg, rank)
        dist.init_process_group(backend, init_method=init, rank=rank, world_size=world,
                                timeout=timedelta(seconds=600))
    except Exception as exc:
        q.put(("error", rank, f"{type(exc).__name__}: {exc}", None))
        exit_rank(q)
    try:
        vols = [_load_prepared(p) for p in paths]
        val_vols = [_load_prepared(p) for p in val_paths]
        if dev.type == "cuda":   # the parent did not ask (a CUDA context there would hold GPU 0)
            _check_memory(cfg, grid, [v["labels"].shape for v in vols + val_vols], dev)
        stop = (lambda: stop_event.is_set()) if stop_event is not None else None
        _train_loop(rank, world, grid, vols, cfg, out, dev, lambda *m: q.put(m), stop, val_vols)
        if rank == 0:
            q.put(("done", rank, None, None))
        dist.barrier()
    except Exception as exc:
        q.put(("error", rank, f"{type(exc).__name__}: {exc}", None))
        raise
    finally:
        dist.destroy_process_group()
    exit_rank(q)


def _pairs(images, labels) -> tuple[list, list]:
    """One volume pair, or lists of them."""
    if isinstance(images, (list, tuple)) != isinstance(labels, (list, tuple)):
        raise TypeError("give one image and one label volume, or a list of each")
    if not isinstance(images, (list, tuple)):
        images, labels = [images], [labels]
    return list(images), list(labels)


def _check_validated(volumes, grid, depth, held_out: bool) -> None:
    """Validation runs the network on each whole volume over the grid: each must be split by it."""
    from .unet_train import TrainingError
    for i, im in enumerate(volumes):
        try:
            PartitionPlan(im.shape[-3:], tuple(grid), 2 ** depth)
        except Exception as exc:
            raise TrainingError(f"{'validation ' if held_out else ''}volume {i}: {exc}") from None


def _check_out(out) -> None:
    from ..engine.weights import WeightsError, check_output_path
    from .unet_train import TrainingError
    try:
        check_output_path(out)
    except WeightsError as exc:
        raise TrainingError(str(exc)) from None


def _check_all(out, images, labels, cfg, grid, log, val_images, val_labels, train_regions, val_regions,
               held_regions) -> tuple:
    """Every check of a partitioned training before it starts, the same whether it spawns its ranks
    or torchrun started them: (images, labels, cfg, val_images, val_labels, train_regions,
    val_regions, held_regions), as the run takes them."""
    from .unet_train import check_validation
    _check_out(out)
    images, labels, cfg = _check_run(images, labels, cfg, grid, log)
    val_images, val_labels = check_validation(val_images, val_labels, cfg["in_channels"])
    _check_validated(val_labels or labels, grid, cfg["depth"], bool(val_images))
    train_regions, val_regions = _check_regions(train_regions, val_regions, labels, bool(val_images))
    return (images, labels, cfg, val_images, val_labels, train_regions, val_regions,
            _check_held_regions(held_regions, val_labels))


def _check_run(images, labels, cfg, grid, log=print):
    """The checked run, the pairs given back as they came (lazy volumes stay lazy until they are
    prepared, where their voxels are checked: _prepare_into), each image as the list of its channels."""
    from .unet_train import (TrainingError, channel_specs, channels_of, check_channel_counts, check_pair_shapes,
                             check_schedule, starting_weights)
    check_schedule(cfg.get("iterations", 1), cfg.get("lr", 1e-3), cfg.get("batch", 1))
    images, labels = _pairs(images, labels)
    if len(images) != len(labels) or not images:
        raise TrainingError(f"{len(images)} images but {len(labels)} label volumes; give them in pairs")
    n_in = check_channel_counts(images)
    images = [channels_of(im) for im in images]   # a 4D array as one image is refused below: say the channels
    for i, (im, lb) in enumerate(zip(images, labels)):
        for c in im:   # each channel 3D, before they are stacked
            check_pair_shapes(c, lb, "volume" if len(images) == 1 else f"volume {i}", 2 ** cfg["depth"])
    if cfg.get("channel_names") and len(cfg["channel_names"]) != n_in:
        raise TrainingError(f"{len(cfg['channel_names'])} channel names for {n_in} input channel(s)")
    channel_specs(cfg.get("normalization"), n_in)   # a list of specs of another length is refused here
    # every patch has one shape, so it fits the smallest volume along each axis, in multiples of 2**depth
    m = 2 ** cfg["depth"]
    patch = [min([p] + [lb.shape[a] - lb.shape[a] % m for lb in labels]) for a, p in enumerate(cfg["patch"])]
    try:
        PartitionPlan(tuple(patch), tuple(grid), m)
    except Exception as exc:
        raise TrainingError(f"patch {tuple(patch)}: {exc}") from None
    try:
        Mesh(tuple(grid), int(cfg.get("replicas", 1)))
        check_precision(cfg.get("precision", "fp32"))
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    start = starting_weights(cfg.get("init"), cfg.get("resume"), cfg["n_classes"], (cfg["base"], cfg["depth"]),
                             cfg.get("normalization"), cfg, bool(cfg.get("new_head")), log)
    return images, labels, {"seed": 0, "epoch": 100, "batch": 1, "device": "cpu", "memory_check": True,
                            "replicas": 1, "precision": "fp32", **cfg, "in_channels": n_in, "normalization": cfg.get("normalization") or (start.normalization if start else {"kind": "zscore"}),
                            "patch": patch}


class _Reporter:
    """Rank 0's messages, turned into the history, log lines and progress calls."""

    def __init__(self, cfg, grid, log, progress):
        self.cfg, self.log, self.progress = cfg, log, progress
        self.mesh = Mesh(tuple(grid), int(cfg.get("replicas", 1)))
        self.history, self.best, self.cancelled_at, self.last, self.peak_mb = [], None, None, {}, None
        self.process_mb = None

    def __call__(self, kind, it, value=None, sec=None):
        if kind == "progress":
            self.last = {"iteration": it, "loss": value, "seconds": round(sec, 1)}
            if self.progress:
                self.progress(it, self.cfg["iterations"])
        elif kind == "validation":
            entry = {**self.last, "val_dice": value}
            self.history.append(entry)
            scored = [d for d in value if d is not None]
            if scored and (self.best is None or np.mean(scored) > np.mean([d for d in self.best["val_dice"]
                                                                             if d is not None] or [-1])):
                self.best = entry
            self.log(f"it {it:5d}  loss {self.last['loss']:.4f}  val Dice "
                     f"{', '.join('n/a' if d is None else f'{d:.3f}' for d in value)}  ({sec:.0f}s, "
                     f"{self.mesh.describe()})")
        elif kind == "memory":
            self.peak_mb, self.process_mb = it, value
        elif kind == "cancelled":
            self.cancelled_at = it
            self.log(f"cancelled after iteration {it}")

    def result(self, out):
        Path(str(out) + ".history.json").write_text(json.dumps(self.history, indent=1))
        return {"history": self.history, "out": str(out), "best": self.best, "cancelled_at": self.cancelled_at,
                "peak_mb": self.peak_mb, "process_mb": self.process_mb}


def _regions(train_regions, val_regions, i) -> tuple:
    return (None if train_regions is None else train_regions[i], None if val_regions is None else val_regions[i])


def _check_held_regions(held_regions, val_labels):
    """Regions of the held-out pairs (one boolean volume each, of its shape, or None: whole) where
    they are scored."""
    from .unet_train import TrainingError
    if held_regions is None:
        return None
    if not val_labels:
        raise TrainingError("held_regions are where held-out volumes are scored: give val_images and val_labels")
    if len(held_regions) != len(val_labels):
        raise TrainingError(f"{len(held_regions)} validation regions for {len(val_labels)} held-out volumes")
    for i, (r, lb) in enumerate(zip(held_regions, val_labels)):
        if r is None:
            continue
        if np.shape(r) != lb.shape:
            raise TrainingError(f"validation region {i} is {np.shape(r)}, its held-out labels {lb.shape}")
        if not np.any(r):
            raise TrainingError(f"validation region {i} is empty: held-out volume {i} would not be scored")
    return list(held_regions)


def _check_regions(train_regions, val_regions, labels, held_out: bool):
    """Training regions (one boolean volume per pair, of its shape) and validation regions, which
    need training regions and are not for held-out volumes (those are validated whole)."""
    from .unet_train import TrainingError
    if train_regions is None:
        if val_regions is not None:
            raise TrainingError("validation regions are the rest of the training regions: give train_regions too")
        return None, None
    if held_out:
        val_regions = None
    for what, regions in (("training", train_regions), ("validation", val_regions)):
        if regions is None:
            continue
        if len(regions) != len(labels):
            raise TrainingError(f"{len(regions)} {what} regions for {len(labels)} volume pairs")
        for i, (r, lb) in enumerate(zip(regions, labels)):
            if np.shape(r) != lb.shape:
                raise TrainingError(f"{what} region {i} is {np.shape(r)}, its labels {lb.shape}")
    for i, r in enumerate(train_regions):
        if not np.any(r):
            raise TrainingError(f"training region {i} is empty: no voxel of volume {i} would be trained on")
    return list(train_regions), None if val_regions is None else list(val_regions)


def train_partitioned(images, labels, cfg: dict, grid, out, log=print, progress=None, cancel=None,
                      val_images=None, val_labels=None, train_regions=None, val_regions=None, scratch=None,
                      held_regions=None) -> dict:
    """Train on (image, label) volume pairs (one pair, or lists) with every patch split over ``grid``
    ranks spawned here: CPU processes (gloo) or, with ``cfg["device"]`` cuda, one GPU each (NCCL);
    ``cfg["replicas"]`` copies of the grid each train their own patches (data parallelism; ``batch``
    is per replica). The weights with the best validation Dice (the whole volumes, run partitioned:
    ``val_images``/``val_labels``, held-out pairs, or else the training volumes) are written to
    ``out``; ``cancel()`` returning True stops every rank at the same iteration, keeping the best
    weights so far. ``train_regions``: where each pair's labels are known (labels painted on some
    slices; prepare_data), validated on ``val_regions`` (by default the rest) unless held-out pairs
    are given; ``held_regions``: where each held-out pair is scored (labels painted on some slices
    of it too), else whole. The pairs (numpy or lazy) are read and prepared one at a time into files the ranks
    memory-map, in a folder inside ``scratch`` (else the system's temporary folder)."""
    import tempfile

    import torch.multiprocessing as mp

    from ..engine.runner import _free_port
    from .unet_train import training_device
    images, labels, cfg, val_images, val_labels, train_regions, val_regions, held_regions = _check_all(
        out, images, labels, cfg, grid, log, val_images, val_labels, train_regions, val_regions, held_regions)
    mesh = Mesh(tuple(grid), cfg["replicas"])
    world = mesh.world
    if training_device(cfg["device"]).type == "cpu":   # the ranks' blocks share this machine's RAM
        _check_memory(cfg, tuple(grid), [lb.shape for lb in labels + val_labels], torch.device("cpu"), log=log,
                      spawned=True)
    else:
        _gpu_each(world, f"training on a {mesh.describe()}",
                  "a smaller grid or fewer --replicas, at most " + str(torch.cuda.device_count()) + " ranks")
    with tempfile.TemporaryDirectory(prefix="halo-seg-train-", dir=scratch) as tmp:
        train, val = _prepare_into(tmp, images, labels, val_images, val_labels, cfg, train_regions, val_regions,
                                   held_regions=held_regions)
        paths, val_paths = [train[i] for i in range(len(images))], [val[i] for i in range(len(val_images))]
        ctx = mp.get_context("spawn")
        q, stop_event = ctx.Queue(), ctx.Event()
        init = f"tcp://127.0.0.1:{_free_port()}"
        procs = [ctx.Process(target=_worker, args=(r, world, tuple(grid), paths, cfg, init, str(out), q, stop_event,
                                                   val_paths)) for r in range(world)]
        with main_hidden(paths, cfg, val_paths):
            for p in procs:
                p.start()
        rep = _Reporter(cfg, grid, log, progress)
        try:
            while True:
                if cancel is not None and cancel():
                    stop_event.set()
                try:
                    msg = q.get(timeout=0.5)
                except queue.Empty:
                    dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0)]
                    if dead:
                        raise RuntimeError(f"partitioned training: rank(s) {dead} died (exit codes "
                                           f"{[procs[i].exitcode for i in dead]})")
                    if all(p.exitcode == 0 for p in procs):
                        break
                    continue
                if msg[0] == "error":
                    from .unet_train import TrainingError
                    raise TrainingError(f"partitioned training, rank {msg[1]}: {msg[2]}")
                if msg[0] == "done":
                    break
                rep(*msg)
        except BaseException:
            for p in procs:
                p.kill()
            raise
        for p in procs:
            p.join(120)
        bad = [i for i, p in enumerate(procs) if p.exitcode != 0]
        if bad:
            raise RuntimeError(f"partitioned training: ranks {bad} failed")
    return rep.result(out)


def train_partitioned_torchrun(images, labels, cfg: dict, grid, out, log=print, progress=None, val_images=None,
                               val_labels=None, train_regions=None, val_regions=None, scratch=None,
                               held_regions=None) -> dict | None:
    """The same training with this process as one of the ranks torchrun started (RANK, WORLD_SIZE,
    MASTER_ADDR; one GPU per process by LOCAL_RANK with cuda). The ranks of each machine prepare the
    volume pairs into one folder they share (_shared_prepared); rank 0 writes the weights and
    returns the result, the others return None."""
    import torch.distributed as dist
    from .unet_train import TrainingError
    images, labels, cfg, val_images, val_labels, train_regions, val_regions, held_regions = _check_all(
        out, images, labels, cfg, grid, log, val_images, val_labels, train_regions, val_regions, held_regions)
    world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    mesh = Mesh(tuple(grid), cfg["replicas"])
    if world != mesh.world:
        hint = (f"; --replicas {world // mesh.spatial} would train {world // mesh.spatial} copies of the grid"
                if world % mesh.spatial == 0 and mesh.replicas == 1 else "")
        raise TrainingError(f"torchrun started {world} ranks but the grid {tuple(grid)}"
                            f"{f' x {mesh.replicas} replicas' if mesh.replicas > 1 else ''} needs {mesh.world}{hint}")
    local = int(os.environ.get("LOCAL_RANK", rank))
    map_large_allocations()   # each pair prepared here is freed back to the system, as a spawned rank's blocks are
    torch.set_num_threads(cfg.get("threads") or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    dev, backend = _rank_device(cfg, local)
    if dev.type == "cuda":
        _gpu_each(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), "torchrun", "--nproc-per-node of at most the GPUs "
                  "each machine has")
    from .train_memory import RANK_DATA
    shapes = [tuple(lb.shape) for lb in labels + val_labels]
    # the prepared pairs are shared from disk: a rank holds the largest it may prepare (+ its regions)
    _check_memory(cfg, tuple(grid), shapes, dev, distributed_env=True,
                  data_bytes_per_voxel=RANK_DATA + (train_regions is not None or held_regions is not None), log=log,
                  data_shapes=[max(shapes, key=np.prod)])
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                            timeout=timedelta(seconds=600))
    rep, own = _Reporter(cfg, grid, log, progress), None
    try:
        vols, val_vols, own, sharing = _shared_prepared(images, labels, val_images, val_labels, cfg, train_regions,
                                                        val_regions, rank, world, scratch, held_regions)
        if rank == 0:
            log(f"{len(vols) + len(val_vols)} volume pair(s) prepared and shared from disk by the {sharing} "
                f"rank(s) of this machine" + (f" (in {scratch})" if scratch else ""))
        _train_loop(rank, world, tuple(grid), vols, cfg, out, dev, rep, val_vols=val_vols)
        dist.barrier()   # every rank done with the files before their folder goes
    finally:
        if own:
            import shutil
            shutil.rmtree(own, ignore_errors=True)
        dist.destroy_process_group()
    return rep.result(out) if rank == 0 else None
