"""`train`, `card`, `train-default`, `train-interactive` and `train-quality`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .common import _choice_args


def cmd_train_default(a) -> int:
    from ..train.default_model import train_default
    res = train_default(a.out, iterations=a.iterations, threads=a.threads)
    print(json.dumps({"best_mean_dice": res["best_mean_dice"], "out": a.out}))
    return 0


DRY_ITERATIONS = 5


def _train_dry_run(a) -> int:
    """`train --dry-run`: every check a run makes (pairs, classes, memory), then a few real iterations
    and one validation, timed, into a scratch file; the whole run's time estimated from them."""
    import copy
    import math
    import tempfile
    import time
    stamps = []
    trial = copy.copy(a)
    with tempfile.TemporaryDirectory(prefix="halo-seg-dry-") as tmp:
        trial.dry_run, trial.quiet, trial.resume, trial.report = False, True, None, False
        trial.iterations = trial.epoch = DRY_ITERATIONS
        trial.out, trial.on_step = f"{tmp}/dry.safetensors", lambda it: stamps.append((it, time.perf_counter()))
        t0 = time.perf_counter()
        cmd_train(trial)
        end = time.perf_counter()
    if len(stamps) < DRY_ITERATIONS:   # under torchrun only the lead rank sees the steps
        return 0
    first, last = stamps[0][1], stamps[-1][1]
    step = (last - first) / (len(stamps) - 1)       # the first step (warm-up) is left out
    validation = max(0.0, end - last)
    setup = max(0.0, first - t0 - step)
    total = setup + a.iterations * step + math.ceil(a.iterations / a.epoch) * validation
    plan = {"seconds_per_iteration": round(step, 3), "seconds_per_validation": round(validation, 2),
            "setup_seconds": round(setup, 1), "iterations": a.iterations, "epoch": a.epoch,
            "estimated_minutes": round(total / 60, 1), "device": a.device}
    print(f"dry run: the checks passed; an iteration took {step:.2f} s and a validation {validation:.1f} s "
          f"(setup {setup:.0f} s), so {a.iterations} iterations validated every {a.epoch} would take about "
          f"{total / 60:.0f} min here. Nothing was saved.")
    print(json.dumps({"dry_run": plan}))
    return 0


def _network_shape(a) -> tuple[int, int]:
    """(base, depth) of a `train` run: as given, else --init's, else 8 and 3."""
    if not a.init:
        if a.new_head:
            raise SystemExit("error: --new-head is for fine-tuning: give the weights to start from with --init")
        return a.base or 8, a.depth or 3
    from ..train.init_weights import read_start, shape_from
    from ..train.unet_train import TrainingError
    try:
        return shape_from(read_start(a.init), a.base, a.depth)
    except TrainingError as exc:
        raise SystemExit(f"error: {exc}")


def _train_folds(a) -> int:
    """`train --folds K`: K runs, each validated on the pairs its fold holds out; then the
    cross-validated Dice and the ensemble's segment command."""
    import copy
    from ..train.folds import fold_path, fold_split, summarise
    from ..train.unet_train import TrainingError
    if a.val_images:
        raise TrainingError("--folds validates each fold on the pairs it holds out; leave --val-image out")
    if a.resume:
        raise TrainingError("--folds starts K runs; --resume one of them (its --out is <out>.foldK.safetensors) "
                            "with its own command")
    if len(a.images) != len(a.labels):
        raise SystemExit(f"error: {len(a.images)} --image but {len(a.labels)} --labels; give them in pairs")
    splits = fold_split(len(a.images), a.folds)
    if not a.classes and not a.init:
        # every fold learns the classes of all the volumes: a class held out with its fold's volumes
        # would otherwise be missing from that fold's network (an ensemble of unequal models)
        import numpy as np
        from ..io.labels import label_ids, open_labels
        from ..train.unet_train import check_class_ids
        a = copy.copy(a)
        a.classes = check_class_ids([np.array([0] + label_ids(open_labels(p).data)) for p in a.labels],
                                    "the label volumes")
    weights = []
    for k, held in enumerate(splits):
        run = copy.copy(a)
        run.folds = None
        run.images = [p for i, p in enumerate(a.images) if i not in held]
        run.labels = [p for i, p in enumerate(a.labels) if i not in held]
        run.val_images, run.val_labels = [a.images[i] for i in held], [a.labels[i] for i in held]
        run.out = str(fold_path(a.out, k))
        print(f"fold {k + 1} of {a.folds}: validated on {', '.join(map(_case_text, run.val_images))}", flush=True)
        cmd_train(run)
        if a.dry_run:
            print(f"(the dry run tried fold 1; the {a.folds} folds take about {a.folds} times as long)")
            return 0
        weights.append(run.out)
    res = summarise(a.out, weights, [[_case_text(a.images[i]) for i in h] for h in splits])
    names = res["classes"][1:] or [f"class {c}" for c in range(1, len(res["cross_validated_dice"]) + 1)]
    print("cross-validated Dice (mean over the folds' held-out volumes): " + ", ".join(
        f"{n} {'n/a' if d is None else f'{d:.3f}'}" for n, d in zip(names, res["cross_validated_dice"])))
    print("segment with the folds as an ensemble: halo-seg segment INPUT OUTPUT.zarr "
          + " ".join(f"--weights {w}" for w in weights))
    print(f"per fold: {Path(a.out).with_suffix('.folds.json')}")
    return 0


def _case_text(item) -> str:
    """A training case as named to the user: its image's path, or its channels' (io/channels.Channel)."""
    return " + ".join(c.name for c in item) if isinstance(item, list) else str(item)


def _case_channels(item, a) -> list:
    """A training case's input channels, opened: a --dataset case's list of channels, or an --image
    path with its --channel (several: comma-separated) and --timepoint."""
    from ..io.channels import channel_list, open_channels
    return open_channels(item if isinstance(item, list) else channel_list(item, a.channel, a.timepoint))


def _channel_names(vols) -> list:
    """The names of a case's channels where it has several: the file's names, else "channel N" (or
    "volume T" of a 4D file)."""
    from ..io.channels import chosen_text
    if len(vols) == 1:
        return []
    return [str(v.meta.get("channel_name") or chosen_text(v) or f"input {k}") for k, v in enumerate(vols)]


def _dataset_run(a):
    """`train --dataset DIR`: the arguments with the dataset's cases as --image/--labels pairs, its
    class names and count, and its channel chosen (by name or number)."""
    import copy
    from ..io.dataset_folder import case_channels, read_channels
    if a.images or a.labels:
        raise SystemExit("error: --dataset gives the image/label pairs; leave out --image and --labels")
    if a.timepoint is not None:
        raise SystemExit("error: --dataset chooses a channel by --channel; --timepoint is not for it")
    dss = read_channels(a.dataset, a.channel)
    ds = dss[0]
    for note in ds.notes:
        print(f"note: {note}")
    if a.classes is not None and a.classes != len(ds.class_names):
        raise SystemExit(f"error: --classes {a.classes}, but {ds.root / 'dataset.json'} names "
                         f"{len(ds.class_names)} classes ({', '.join(ds.class_names)})")
    if a.class_names:
        raise SystemExit(f"error: {ds.root / 'dataset.json'} names the classes; leave out --class-names")
    run = copy.copy(a)
    run.dataset, run.labels = None, [str(p) for p in ds.labels]
    # several channels: each case a list of its channels (io/channels.Channel), stacked as the network's input
    run.images = [str(p) for p in ds.images] if len(dss) == 1 else case_channels(dss)
    run.channel_names = [d.channel_name for d in dss] if len(dss) > 1 else []
    run.classes, run.class_names = len(ds.class_names), list(ds.class_names)
    run.channel, run.timepoint = ds.read_kwargs.get("channel"), ds.read_kwargs.get("timepoint")
    if len(dss) > 1:
        run.channel = run.timepoint = None
    specs = []
    for d in dss:
        if d.is_ct and a.normalization is None and not a.init:   # one window for every scan (and fold), as nnU-Net
            from ..io.dataset_folder import foreground_window
            lo, hi = foreground_window(d)
            specs.append({"kind": "window", "window": [lo, hi]})
            print(f"note: CT: normalised by the window {lo:g} to {hi:g} HU (the 0.5th and 99.5th percentiles inside the "
                  f"dataset's labels, as nnU-Net takes them); --normalization overrides it")
        else:
            specs.append(None)
    if any(specs):   # a CT channel windowed, the others z-scored (nnU-Net's per-channel schemes)
        run.normalization = ["window:{!r},{!r}".format(*sp["window"]) if sp else "zscore" for sp in specs]
    channels = ", ".join(f"{d.channel} ({d.channel_name})" for d in dss)
    run.dataset_info = {"dataset": str(ds.root), "layout": ds.layout,
                        ("channel" if len(dss) == 1 else "channels"): channels, "cases": len(ds.cases)}
    print(f"{ds.summary if len(dss) == 1 else f'dataset {ds.name} ({ds.layout}): {len(ds.cases)} labelled cases, channels {channels}'}"
          f", classes {', '.join(f'{k} {n}' for k, n in enumerate(ds.class_names))}")
    return run


def cmd_train(a) -> int:
    if getattr(a, "dataset", None):
        a = _dataset_run(a)
    if not a.images:
        raise SystemExit("error: give the training data: --image/--labels pairs or --dataset DIR")
    if getattr(a, "folds", None):
        if getattr(a, "labelled_slices", None):
            raise SystemExit("error: --folds validates on whole held-out pairs; --labelled-slices is not for it")
        return _train_folds(a)
    if getattr(a, "dry_run", False):
        return _train_dry_run(a)
    from ..engine import normalize
    from ..engine.partition import parse_grid
    from ..io.labels import open_labels
    from ..train.model_card import write_card
    from ..train.unet_train import TrainConfig, TrainingError, train_unet
    import numpy as np
    from tqdm import tqdm
    if len(a.images) != len(a.labels):
        raise SystemExit(f"error: {len(a.images)} --image but {len(a.labels)} --labels; give them in pairs")
    try:
        # None: zscore, or --init's; one for every channel, or one per channel
        texts = [a.normalization] if isinstance(a.normalization, str) else list(a.normalization or [])
        specs = [normalize.parse(t) for t in texts]
        spec = specs[0] if len(specs) == 1 else specs or None
        grid = parse_grid(a.grid)
        if not isinstance(grid, tuple):
            raise ValueError("--grid auto is for segment; give the training grid as PZ,PY,PX")
    except ValueError as exc:
        raise SystemExit(f"error: {exc}")
    if len(a.val_images) != len(a.val_labels):
        raise SystemExit(f"error: {len(a.val_images)} --val-image but {len(a.val_labels)} --val-labels; give them "
                         f"in pairs")
    base, depth = _network_shape(a)   # before any volume is read: a bad --init fails at once
    from ..engine.resample import training_spacing
    cases = [_case_channels(p, a) for p in a.images]
    opened = [c[0] for c in cases]
    scale = training_spacing(opened, log=lambda m: print("note: " + m))   # recorded: segment resamples to it
    data = {"images": [_case_text(p) for p in a.images], "labels": list(a.labels),
            "validation": [_case_text(p) for p in a.val_images],
            **(getattr(a, "dataset_info", None) or {})}   # for the card
    from dataclasses import replace
    from ..io.geometry import on_grid
    lab_vols = [open_labels(p) for p in a.labels]
    val_cases = [_case_channels(p, a) for p in a.val_images]
    val_vols = [c[0] for c in val_cases]
    val_labs = [open_labels(p) for p in a.val_labels]
    for names, ims, lbs in ((zip(a.images, a.labels), opened, lab_vols), (zip(a.val_images, a.val_labels), val_vols, val_labs)):
        for k, ((pi, pl), im, lb) in enumerate(zip(names, ims, lbs)):
            # before any voxel is read: a pair of two scans is refused; labels saved cropped to their
            # objects (3D Slicer's .seg.nrrd) are put on their scan's grid
            lbs[k] = replace(lb, data=on_grid(lb, im, str(pl), _case_text(pi),
                                              "the network would learn each voxel's label from another voxel"))
    channel_names = list(getattr(a, "channel_names", None) or _channel_names(cases[0]))
    # the images lazy: the trainer reads each as it prepares it (a copy as read beside each normalised
    # one took 2 to 4 bytes a voxel); the labels as read (checked, then made as narrow as they can be,
    # by the trainer: int64 copies took 8 bytes a voxel)
    imgs = [[v.data for v in c] if len(c) > 1 else c[0].data for c in cases]
    from ..engine.runner import torchrun_env
    torchrun = torchrun_env() and int(os.environ["WORLD_SIZE"]) > 1
    split_run = int(np.prod(grid)) > 1 or a.replicas > 1 or torchrun
    # --on-disk, and partitioned training (which prepares a pair at a time, for its ranks to share from
    # disk): the labels lazy too, read a volume at a time (the dataset need not fit in RAM)
    read = (lambda v: v.data) if a.on_disk or split_run else (lambda v: np.asarray(v.data))
    labs = [read(v) for v in lab_vols]
    val = dict(val_images=[[v.data for v in c] if len(c) > 1 else c[0].data for c in val_cases],
               val_labels=[read(v) for v in val_labs])
    from ..train.unet_train import check_class_ids
    # fine-tuning (--init): classes missing here may be the starting weights' own, kept
    n = a.classes or (max(int(l.max()) for l in labs) + 1 if a.init else
                      check_class_ids(labs, "the label volumes" if len(labs) > 1 else str(a.labels[0])))
    names = list(a.class_names or [])
    if names and len(names) not in (n, n - 1):
        raise SystemExit(f"error: {len(names)} --class-names for {n} classes (0 background to {n - 1}); name the "
                         f"{n - 1} classes after the background, or all {n}")
    if len(names) == n - 1:
        names = ["background"] + names
    bar = tqdm(total=a.iterations, desc="training", unit="it", disable=a.quiet)

    def progress(i, total):
        bar.n = i
        bar.refresh()
        if getattr(a, "on_step", None):   # --dry-run times the steps
            a.on_step(i)
    if a.replicas < 1:
        raise SystemExit(f"error: --replicas must be 1 or more, got {a.replicas}")
    regions = {}
    from ..train.sparse import AXES, gaps_note, labelled_slices, slab
    sparse_axis = AXES[a.labelled_slices] if getattr(a, "labelled_slices", None) else None
    scored = []   # per held-out volume: its painted slices, or None (whole)
    for lb, p in zip(val["val_labels"], a.val_labels):
        lb = np.asarray(lb)
        note = gaps_note(lb, 0 if sparse_axis is None else sparse_axis, str(p), None)
        if note and sparse_axis is not None:
            # painted every few slices as the training labels are: scored on those slices, the rest unknown
            zs = labelled_slices(lb, sparse_axis)
            scored.append(slab(lb.shape, sparse_axis, zs))
            print(f"{p}: scored on its {len(zs)} labelled slices across {a.labelled_slices} (it looks painted "
                  "every few slices; the others are not known)")
            continue
        scored.append(None)   # scored whole: an unpainted slice is taken as background
        if note:
            print(f"note: {note}; a held-out volume is scored whole, so every object found on "
                  "those slices would count as a false positive (and choose the weights): label held-out volumes "
                  "whole, or train with --labelled-slices (its held-out volumes painted so are then scored on "
                  "their labelled slices)")
    if not getattr(a, "labelled_slices", None):
        for lb, p in zip(labs, a.labels):
            note = gaps_note(np.asarray(lb), 0, str(p), "--labelled-slices z")
            if note:
                print(f"note: {note}")
    else:
        from ..train.sparse import SparseLabelsError, sparse_regions
        try:
            parts = [sparse_regions(np.asarray(lb), AXES[a.labelled_slices], 0.0 if val["val_images"] else 0.2, str(p))
                     for lb, p in zip(labs, a.labels)]
        except SparseLabelsError as exc:
            raise SystemExit(f"error: {exc}")
        regions = {"train_regions": [t for t, _, _ in parts]}
        if not val["val_images"]:
            regions["val_regions"] = [v for _, v, _ in parts]
        for (t, _, held), p in zip(parts, a.labels):
            print(f"{p}: {len(labelled_slices(t, AXES[a.labelled_slices]))} labelled slices across "
                  f"{a.labelled_slices} trained on"
                  + (f", {len(held)} held out ({', '.join(map(str, held))})" if len(held) else ""))
    if any(r is not None for r in scored):
        regions["held_regions"] = scored
    if split_run:
        from ..train import partitioned_run as partitioned
        # the volumes as opened: each pair is read when it is prepared, the ranks' blocks cut from the
        # prepared files (in --on-disk's folder, else the system's temporary one)
        val["scratch"] = a.on_disk
        cfg = dict(n_classes=n, patch=list(a.patch), iterations=a.iterations, batch=a.batch, lr=a.lr, base=base,
                   depth=depth, seed=0, epoch=a.epoch, device=a.device, threads=a.threads, resume=a.resume,
                   replicas=a.replicas, normalization=spec, memory_check=not a.no_memory_check,
                   checkpoint=a.checkpoint, augment=a.full_augmentation, precision=a.precision,
                   command=" ".join(sys.argv), data=data, init=a.init, new_head=a.new_head, class_names=names,
                   channel_names=channel_names,
                   **scale)
        try:
            if torchrun:
                lead = int(os.environ["RANK"]) == 0
                if not lead:
                    bar.close()
                res = partitioned.train_partitioned_torchrun(imgs, labs, cfg, grid, a.out,
                                                             log=tqdm.write if lead else (lambda *_: None),
                                                             progress=progress if lead else None, **val, **regions)
            else:
                res = partitioned.train_partitioned(imgs, labs, cfg, grid, a.out, log=tqdm.write,
                                                    progress=progress, **val, **regions)
        except (TrainingError, ValueError) as exc:
            raise SystemExit(f"error: {exc}")
        bar.close()
        if res is not None and getattr(a, "report", True):
            best = res["best"]
            if best is not None:
                print(f"model card: {write_card(res['out'])}")
            print(json.dumps({"out": res["out"], "grid": list(grid), "replicas": a.replicas,
                              "final_loss": res["history"][-1]["loss"] if res["history"] else None,
                              "best_val_dice": best and best["val_dice"], "best_iteration": best and best["iteration"]}))
        return 0
    cfg = TrainConfig(n_classes=n, patch=tuple(a.patch), iterations=a.iterations, batch=a.batch,
                      lr=a.lr, base=base, depth=depth, epoch=a.epoch, threads=a.threads,
                      normalization=spec, device=a.device, memory_check=not a.no_memory_check,
                      checkpoint=a.checkpoint, precision=a.precision, init=a.init, new_head=a.new_head,
                      class_names=names, channel_names=channel_names)
    try:
        res = train_unet(imgs, labs, cfg, a.out, tensorboard_dir=a.tensorboard, log=tqdm.write,
                         meta={"command": " ".join(sys.argv), "data": data, **scale}, resume=a.resume, progress=progress,
                         on_disk=a.on_disk, **val, **regions)
    except TrainingError as exc:
        raise SystemExit(f"error: {exc}")
    bar.close()
    if not getattr(a, "report", True):   # a dry run's trial: nothing to report
        return 0
    if res["best"] is not None:
        print(f"model card: {write_card(a.out)}")
    print(json.dumps({"best_mean_dice": res["best_mean_dice"], "out": a.out}))
    return 0


def cmd_card(a) -> int:
    from ..train.model_card import write_card
    print(f"wrote {write_card(a.weights, a.out)}")
    return 0


def _read_pair(image_path, labels_path, a, choice: dict | None = None):
    """(image, labels, spacing) of an image (its --channel and --timepoint, or ``choice``) and its
    label volume, read whole; they must match in shape."""
    import numpy as np
    from ..io import open_volume
    from ..io.labels import open_labels
    from ..train.unet_train import TrainingError
    choice = {"channel": a.channel, "timepoint": a.timepoint} if choice is None else choice
    from ..io import VolumeError
    from ..io.geometry import on_grid
    img, lab = open_volume(image_path, **choice), open_labels(labels_path)
    try:   # labels saved cropped to their objects: on the image's grid
        labels = on_grid(lab, img, str(labels_path), str(image_path), "each voxel's label would come from another voxel")
    except VolumeError as exc:
        if img.shape == lab.shape:
            raise
        raise TrainingError(f"{image_path} {img.shape} and {labels_path} {lab.shape} differ in shape: {exc}") from None
    return np.asarray(img.data), np.asarray(labels), img.spacing


def _user_volumes(a):
    """(image, labels, spacing, regions) for each --image/--labels pair of train-interactive, or each
    labelled case of its --dataset (the channel chosen by --channel)."""
    from ..train.unet_train import TrainingError
    images, labels, choice = a.images or [], a.labels or [], None
    if getattr(a, "dataset", None):
        from ..io.dataset_folder import read_dataset
        if images or labels or a.timepoint is not None:
            raise TrainingError("--dataset gives the image/label pairs and --channel its channel; leave out --image, "
                                "--labels and --timepoint")
        from ..io.channels import parse_channel_choice
        if isinstance(parse_channel_choice(a.channel), list) or str(a.channel).strip().lower() == "all":
            raise TrainingError(f"--channel {a.channel}: the interactive network takes one channel, the one the user "
                                "clicks on; choose it by name or number")
        ds = read_dataset(a.dataset, a.channel)
        images, labels, choice = ds.images, ds.labels, {"channel": None, "timepoint": None, **ds.read_kwargs}
        print(f"{ds.summary}; each label value an object")
    if len(images) != len(labels):
        raise TrainingError(f"{len(images)} --image but {len(labels)} --labels; give them in pairs")
    return [(*_read_pair(ip, lp, a, choice), a.regions) for ip, lp in zip(images, labels)]


def cmd_train_interactive(a) -> int:
    from pathlib import Path
    from ..train.interactive_train import train_interactive
    from ..train.unet_train import TrainingError
    users = _user_volumes(a)
    try:
        res = train_interactive(a.out, iterations=a.iterations, batch=a.batch, lr=a.lr, size=a.size,
                                width=a.width, data_dir=Path(a.data) if a.data else None, seed=a.seed,
                                resume=a.resume, threads=a.threads, workers=a.workers, device=a.device,
                                sweeps=a.sweeps, sweep_steps=a.sweep_steps, init=a.init,
                                mri_supervoxels=a.mri_supervoxels, hold_out_validation=a.hold_out_validation,
                                minutes=a.minutes, invert=a.invert, thick=a.thick,
                                elastic=a.elastic, corrective=a.corrective, user_volumes=users, prev_input=a.prev_input,
                                user_share=a.user_share, precision=a.precision)
    except ValueError as exc:   # a user volume without objects, label values not in it, a bad share
        raise TrainingError(str(exc)) from exc
    print(json.dumps({"out": res["path"], "last": res["history"][-1] if res["history"] else None}))
    return 0


def cmd_train_quality(a) -> int:
    from ..io.labels import label_ids
    from ..train.quality_fit import train_quality
    from ..train.unet_train import TrainingError
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    if a.share is not None and a.pool is None:
        raise TrainingError("--share weighs the new sessions against the pooled samples: give --pool as well")
    if a.image:
        if not a.labels:
            raise FileNotFoundError("--image needs --labels (the label volume of the same shape)")
        if a.weights == "default" and not a.out:
            raise TrainingError("give --out for a quality model fitted on your own volume: the shipped one, "
                                "which every session of the default weights loads, is not overwritten")
        image, labels, spacing = _read_pair(a.image, a.labels, a)
        regions = a.regions or label_ids(labels)
        note = f"{a.image} with {a.labels}"
    else:
        from ..samples import QUALITY_FIT, load_colin27_full
        s = load_colin27_full(Path(a.data) if a.data else None)
        image, labels, spacing = s.image, s.labels, s.spacing
        regions = a.regions or list(QUALITY_FIT)
        note = "Colin27 T1, 1 mm, AAL regions (samples.QUALITY_FIT unless --regions)"
    try:
        _, path = train_quality(image, labels, regions, weights=a.weights, out=a.out, spacing=spacing,
                                rounds=a.rounds, device=a.device, data_note=note, thickness=a.thickness,
                                pool=a.pool, share=a.share, axes=tuple(a.axes))
    except ValueError as exc:   # InteractiveError included: a region missing, a bad weights file
        raise TrainingError(str(exc)) from exc
    print(json.dumps({"out": str(path)}))
    return 0


def add_card(sub) -> None:
    c = sub.add_parser("card", help="write the model card of 3D U-Net weights (train writes one beside them)")
    c.add_argument("weights", help="a .safetensors file written by halo-seg train")
    c.add_argument("--out", default=None, help="the card's path (default: the weights' path with .md)")
    c.set_defaults(fn=cmd_card)


def add_train(sub) -> None:
    t = sub.add_parser("train", help="train the 3D U-Net on image/label volume pairs")
    t.add_argument("--image", dest="images", action="append", default=[])
    t.add_argument("--labels", dest="labels", action="append", default=[])
    t.add_argument("--dataset", default=None, metavar="DIR",
                   help="a dataset folder in nnU-Net v2's or the Medical Segmentation Decathlon's layout "
                        "(dataset.json, imagesTr, labelsTr): its labelled cases, class names and channel names "
                        "(--channel by name or number); instead of --image/--labels")
    t.add_argument("--class-names", nargs="+", default=None, metavar="NAME",
                   help="the classes' names, from class 1 on (or from the background): the model and its "
                        "outputs name them (DICOM SEG, measure, napari)")
    t.add_argument("--val-image", dest="val_images", action="append", default=[],
                   help="a held-out image to validate on, whole (repeat with --val-labels; default: the "
                        "training volumes)")
    t.add_argument("--val-labels", dest="val_labels", action="append", default=[])
    t.add_argument("--labelled-slices", default=None, choices=["z", "y", "x"],
                   help="the labels are painted on some slices across this axis only: the slices without a "
                        "label are unknown, not background (without --val-image, every 5th labelled slice "
                        "is held out to choose the weights by)")
    t.add_argument("--out", required=True)
    t.add_argument("--classes", type=int, default=None,
                   help="the number of classes (0 is background): default the labels' largest id + 1, refused "
                        "where some class below it appears in no volume")
    t.add_argument("--patch", type=int, nargs=3, default=(48, 48, 48))
    t.add_argument("--iterations", type=int, default=1000)
    t.add_argument("--epoch", type=int, default=100)
    t.add_argument("--batch", type=int, default=2)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--base", type=int, default=None, help="channels of the first stage (default 8, or --init's)")
    t.add_argument("--depth", type=int, default=None, help="poolings (default 3, or --init's)")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--tensorboard", default=None, help="TensorBoard log directory")
    t.add_argument("--normalization", default=None, nargs="+", metavar="SPEC",
                   help="zscore | percentile[:lo,hi] | window:lo,hi (CT, e.g. window:-160,240); default zscore, "
                        "or --init's; for several input channels one for all, or one per channel in their order "
                        "(window:-1000,1000 zscore)")
    t.add_argument("--grid", default="1,1,1", help="split every patch over pz,py,px ranks (halo training): CPU "
                   "processes, one GPU each with --device cuda, or the ranks torchrun started")
    t.add_argument("--replicas", type=int, default=1,
                   help="data-parallel copies of the grid, each training its own --batch of patches, their "
                        "gradients averaged: replicas x pz x py x px ranks in all (several GPUs: one each)")
    t.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"],
                   help="auto: a GPU when there is one (default)")
    t.add_argument("--no-memory-check", action="store_true",
                   help="train even where the estimated peak memory per rank does not fit")
    t.add_argument("--full-augmentation", action="store_true",
                   help="--grid/--replicas runs: also scale, deform, change the contrast of and add noise to every "
                        "patch, block by block (flips and a gamma otherwise; the unpartitioned trainer always does all)")
    t.add_argument("--checkpoint-activations", dest="checkpoint", action="store_true",
                   help="activation checkpointing: each network stage keeps only its input and runs again in "
                        "the backward pass (about 0.75x a rank's training memory, about 1.3x the time)")
    t.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: each step's forward under bfloat16 autocast (the loss and the weights stay fp32): "
                        "faster and lighter on GPUs and CPUs with bfloat16; validation always runs in fp32")
    t.add_argument("--resume", default=None, help="continue from a checkpoint written by this command")
    t.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="fine-tune: start from these 3D U-Net weights ('default': the shipped model) instead of "
                        "random ones; their base, depth and normalisation are kept, their classifier too where "
                        "the class count matches")
    t.add_argument("--folds", type=int, default=None, metavar="K",
                   help="K-fold cross-validation: K models, each validated on the pairs i with i %% K == its fold "
                        "(held out of its training), written as <out>.fold0 ... .fold<K-1>.safetensors; prints the "
                        "cross-validated Dice and the segment command that ensembles them")
    t.add_argument("--new-head", action="store_true",
                   help="with --init: start the classifier afresh even where the class count matches (the same "
                        "number of other classes)")
    t.add_argument("--on-disk", default=None, metavar="DIR",
                   help="keep the prepared volumes (normalised images, labels, weight maps: about 9 bytes a voxel) "
                        "in a scratch folder inside DIR, memory-mapped, instead of in RAM: a dataset larger than the "
                        "memory; DIR on a local disk with room; removed when training ends (partitioned training always "
                        "prepares so; DIR is where)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--dry-run", action="store_true", help="check everything, time a few iterations and a "
                                                          "validation, estimate the run's time; save nothing")
    _choice_args(t, "of every --image (or of --dataset, where all stacks every one)", several=True)
    t.set_defaults(fn=cmd_train)


def add_train_default(sub) -> None:
    td = sub.add_parser("train-default", help="retrain the shipped default model on the sample")
    td.add_argument("--out", default="src/halo_seg/weights/unet3d_default.safetensors")
    td.add_argument("--iterations", type=int, default=2500)
    td.add_argument("--threads", type=int, default=None)
    td.set_defaults(fn=cmd_train_default)


def add_train_interactive(sub) -> None:
    ti = sub.add_parser("train-interactive", help="train the interactive prompt/memory/quality network")
    ti.add_argument("--out", default="memseg.safetensors")
    ti.add_argument("--iterations", type=int, default=4000)
    ti.add_argument("--batch", type=int, default=24)
    ti.add_argument("--lr", type=float, default=2e-3)
    ti.add_argument("--size", type=int, default=64, help="crop size the network sees")
    ti.add_argument("--width", type=int, default=16, help="network width (taken from the weights with --init or --resume)")
    ti.add_argument("--data", default=None, help="shared data folder (default: ../shared/data)")
    ti.add_argument("--seed", type=int, default=0)
    ti.add_argument("--resume", default=None, help="continue from this checkpoint")
    ti.add_argument("--init", default=None,
                    help="start from these weights ('default' = the shipped ones) on a fresh schedule")
    ti.add_argument("--sweeps", type=int, default=8,
                    help="propagation sweeps per iteration unrolled on the network's own predictions (0: none)")
    ti.add_argument("--sweep-steps", type=int, default=6, help="slices per unrolled sweep")
    ti.add_argument("--threads", type=int, default=None)
    ti.add_argument("--workers", type=int, default=1, help="processes that make training examples")
    ti.add_argument("--device", default="cpu", help="cpu or cuda")
    ti.add_argument("--mri-supervoxels", action="store_true", help="add SLIC pseudo-objects of the Colin27 T1")
    ti.add_argument("--hold-out-validation", action="store_true",
                    help="also keep the validation regions (samples.VALIDATION) out of training")
    ti.add_argument("--invert", type=float, default=0.0,
                    help="chance that a training example's contrast is inverted (dark objects on bright ground)")
    ti.add_argument("--thick", type=float, default=0.0,
                    help="chance that a training example's volume is resliced into slices 2 to 5 times thicker")
    ti.add_argument("--elastic", type=float, default=0.0,
                    help="chance that a training example's view is rotated, scaled and elastically deformed "
                         "in-plane, smoothly varying from slice to slice")
    ti.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: the forward passes under bfloat16 autocast (losses and weights fp32); faster on "
                         "GPUs and CPUs with bfloat16")
    ti.add_argument("--prev-input", action="store_true",
                    help="the decoder also takes the nearest memory slice's mask (a location prior); "
                         "with --init its weights for it start at zero")
    ti.add_argument("--corrective", type=float, default=0.0,
                    help="chance that a correction example is clicks on the errors of a mask held in memory "
                         "(how the segmenter refines a slice after its box)")
    ti.add_argument("--minutes", type=float, default=None,
                    help="cap the run's length: the learning rate follows the clock and the run ends on time")
    ti.add_argument("--image", dest="images", action="append", default=None,
                    help="your own image volume (any format open_volume reads; repeat for several)")
    ti.add_argument("--labels", dest="labels", action="append", default=None,
                    help="its label volume: every label value is an object (one --labels per --image)")
    ti.add_argument("--dataset", default=None, metavar="DIR",
                    help="the labelled cases of a dataset folder (nnU-Net v2 or Decathlon layout) as your volumes, "
                         "its channel chosen by --channel; instead of --image/--labels")
    ti.add_argument("--regions", type=int, nargs="*", default=None,
                    help="train on these label values of your volumes only (keep others for checking)")
    ti.add_argument("--user-share", type=float, default=0.5,
                    help="share of training examples drawn from your volumes; the built-in data keeps the rest")
    _choice_args(ti, "of every --image")
    ti.set_defaults(fn=cmd_train_interactive)


def add_train_quality(sub) -> None:
    tq = sub.add_parser("train-quality", help="fit the predicted-Dice model of an interactive network "
                        "on simulated sessions")
    tq.add_argument("--weights", default="default", help="the interactive network it is fitted for")
    tq.add_argument("--out", default=None, help="default: <weights>.quality.json, loaded with them")
    tq.add_argument("--image", default=None, help="image volume (default: Colin27 from the shared data)")
    tq.add_argument("--labels", default=None, help="label volume of the image")
    tq.add_argument("--regions", type=int, nargs="*", default=None, help="label values to simulate sessions on")
    tq.add_argument("--data", default=None, help="shared data folder (default: ../shared/data)")
    tq.add_argument("--rounds", type=int, default=6)
    tq.add_argument("--thickness", type=int, nargs="+", default=[1],
                    help="also simulate on the volume resliced into slices K times thicker (e.g. 1 3 5)")
    tq.add_argument("--pool", nargs="?", const="auto", default=None, metavar="SAMPLES",
                    help="adjust the weights' current quality model instead of replacing it: pool these sessions "
                    "with the samples it was fitted on (default: <model>.quality.npz beside it)")
    tq.add_argument("--share", type=float, default=None,
                    help="with --pool, the share of the weight the new sessions carry (default 0.25)")
    tq.add_argument("--axes", type=int, nargs="+", default=[0], choices=[0, 1, 2],
                    help="simulate sessions slicing across these axes (0 axial; 1, 2 the other planes)")
    tq.add_argument("--threads", type=int, default=None)
    tq.add_argument("--device", default="cpu")
    _choice_args(tq, "of --image")
    tq.set_defaults(fn=cmd_train_quality)
