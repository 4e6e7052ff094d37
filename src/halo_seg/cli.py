"""`halo-seg` command line: segment, batch, resample, card, export, measure, instances, evaluate, review,
session, demo, train, train-default, train-interactive, train-quality, info."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _progress(done, total, msg):
    print(f"  [{done}/{total}] {msg}", flush=True)


def cmd_segment(a) -> int:
    from .engine.partition import parse_grid
    from .engine.runner import segment
    source = a.input if len(a.input) > 1 else a.input[0]
    kwargs = dict(weights=a.weights or "default", grid=parse_grid(a.grid), device=a.device,
                  mode=a.mode, overlap=a.overlap, tile_size=a.tile, save_probabilities=a.save_probabilities,
                  resume=a.resume, timeout=a.timeout, threads=a.threads, progress=_progress, mirror=a.mirror,
                  channel=a.channel, memory_check=not a.no_memory_check,
                  precision=a.precision, resample=a.resample, spacing=_spacing_arg(a.spacing))
    if a.timepoint is not None and not a.timepoint.strip().isdigit():
        return _segment_series(source, a, kwargs)
    res = segment(source, a.output, timepoint=a.timepoint, **kwargs)
    if res.skipped:
        print(f"{a.output}: every block was already done; nothing to do (--resume)")
    else:
        print(f"wrote {a.output}/labels ({a.mode}, grid {'x'.join(map(str, res.grid))}) in {res.seconds:.1f}s")
        if res.inputs:
            print(f"the network's {len(res.inputs)} input channels: {'; '.join(res.inputs)}")
        if res.resampled:
            print(_resampled_text(res.resampled))
        _print_memory(res)
    return 0


def _segment_series(source, a, kwargs) -> int:
    from .engine.series import frame_name, segment_series
    if isinstance(source, list):
        raise SystemExit("error: several time points take one input file (its channels by --channel)")
    res = segment_series(source, a.output, timepoints=a.timepoint, **kwargs)
    for t, r in zip(res.timepoints, res.frames):
        what = "already done (--resume)" if r.skipped else f"{r.seconds:.1f}s"
        print(f"  time point {t}: {a.output}/{frame_name(t)} {what}")
    print(f"wrote {len(res.timepoints)} time points into {a.output} in {res.seconds:.1f}s "
          f"({len(res.skipped)} already done)" if res.skipped else
          f"wrote {len(res.timepoints)} time points into {a.output} in {res.seconds:.1f}s")
    return 0


def _spacing_arg(text):
    if not text:
        return None
    try:
        sp = tuple(float(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        sp = ()
    if len(sp) != 3 or not all(v > 0 for v in sp):
        from .io import VolumeError
        raise VolumeError(f"--spacing must be three positive numbers z,y,x, got {text!r}")
    return sp


def _resampled_text(r: dict) -> str:
    from .engine.resample import spacing_text
    return (f"the network ran at the voxel size it was trained at: {spacing_text(r['from_spacing'], unit=r.get('unit'))} "
            f"resampled to {spacing_text(r['spacing'], unit=r.get('unit'))} ({' x '.join(map(str, r['shape']))} "
            f"voxels) and its probabilities back (--resample off runs it on the voxels as they are)")


def _print_memory(res) -> None:
    from .engine.memory import MIB, fmt_bytes
    peaks = [r.get("cuda_peak_mb", r.get("peak_mb")) for r in res.ranks if r.get("peak_mb") is not None]
    if res.memory is not None and peaks:
        print(f"peak memory of the largest rank: {fmt_bytes(max(peaks) * MIB)} "
              f"(estimated beforehand: {fmt_bytes(res.memory.per_rank)})")


def cmd_batch(a) -> int:
    from .batch import segment_folder
    from .engine.partition import parse_grid
    rows = segment_folder(a.input, a.output, export=a.export, series=a.series, weights=a.weights or "default",
                          grid=parse_grid(a.grid),
                          device=a.device, mode=a.mode, overlap=a.overlap, tile_size=a.tile,
                          save_probabilities=a.save_probabilities, timeout=a.timeout, threads=a.threads,
                          mirror=a.mirror, channel=a.channel, timepoint=a.timepoint,
                          memory_check=not a.no_memory_check, precision=a.precision, resample=a.resample,
                          spacing=_spacing_arg(a.spacing))
    failed = [r for r in rows if r["status"] == "failed"]
    print(f"{len(rows) - len(failed)} of {len(rows)} cases segmented into {a.output} (batch.csv lists them)"
          + (f"; failed: {', '.join(r['case'] for r in failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_demo(a) -> int:
    """Sample volume -> engine on 2 CPU ranks (checked against the whole-volume net) -> simulated
    interactive session, Dice printed at every step."""
    import numpy as np
    import zarr
    from .engine.runner import segment
    from .engine.weights import load_unet
    from .interactive.baseline import fill_between_curve
    from .metrics import dice
    from .samples import load_colin27_sample
    s = load_colin27_sample()
    out = Path(a.out or tempfile.mkdtemp(prefix="halo-seg-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    img_path = out / "colin27_2mm.npy"
    np.save(img_path, s.image)
    net, meta = load_unet(a.weights)
    classes = meta.get("classes") or [f"class_{i}" for i in range(net.config["out_channels"])]
    print(f"sample: Colin27 T1 2 mm {s.image.shape}; model {Path(meta['path']).name} classes {classes}")
    truth = s.brain.astype(np.uint8)
    truth[s.labels > 0] = 2
    results = {}
    for mode, grid in (("halo", "2,1,1"), ("whole", "1,1,1")):
        dst = out / f"labels_{mode}.zarr"
        t = time.perf_counter()
        res = segment(str(img_path), dst, weights=a.weights, grid=grid, mode=mode, save_probabilities=True,
                      progress=_progress if mode == "halo" else None)
        g = zarr.open_group(str(dst), mode="r")
        results[mode] = (g["labels"][...], g["probabilities"][...])
        print(f"automatic ({mode}, grid {grid}): {time.perf_counter() - t:.1f}s")
        _print_memory(res)
    lab, prob = results["halo"]
    diff = float(np.abs(prob - results["whole"][1]).max())
    same = bool((lab == results["whole"][0]).all())
    print(f"halo (2 ranks) vs whole volume: max |prob diff| = {diff:.2e}, labels identical: {same}")
    print("Dice of the default model over the whole sample (its card gives the held-out hemisphere):")
    for c in range(1, len(classes)):
        print(f"  Dice {classes[c]:>10s}: {dice(lab == c, truth == c):.3f}")
    from .review import expected_errors, open_uncertainty, review_order
    per_z = expected_errors(open_uncertainty(out / "labels_halo.zarr"))[0]
    wrong = (lab != truth).sum((1, 2))
    print(f"slices to check first (halo-seg review {out / 'labels_halo.zarr'}): " + ", ".join(
        f"z={z} ({per_z[z]:.0f} voxels expected wrong, {wrong[z]} wrong)" for z in review_order(per_z, 3)))
    truth77 = s.labels == 77
    base = fill_between_curve(truth77, rounds=6)
    from .interactive.model_io import default_memnet_installed
    if default_memnet_installed():
        from .interactive.segmenter import InteractiveSegmenter
        from .interactive.simulate import run_session
        print("simulated interactive session, thalamus_L (AAL 77, never trained on): a tight box on the largest")
        print("slice, then each round one box on the slice the network recommends, then propagation;")
        print("'fill between' is the baseline with exact masks on k evenly spaced slices:")
        seg = InteractiveSegmenter(s.image, spacing=s.spacing, device="cpu")
        for r, b in zip(run_session(seg, truth77, rounds=6), base):
            print(f"  round {r['round']}: Dice {r['dice']:.3f} (slice {r['slice']}, {r['seconds']:.2f}s)"
                  f"   fill between: {b:.3f}")
        _demo_edit(s, InteractiveSegmenter(s.image, spacing=s.spacing, device="cpu"))
    else:
        print("no interactive weights installed; baseline only ('fill between slices', exact masks on k slices):")
        for k, d in enumerate(base, 1):
            print(f"  round {k}: Dice {d:.3f}")
    print(f"outputs in {out}")
    return 0 if same and diff <= 1e-4 else 1


def _demo_edit(s, seg, lab: int = 37, rounds: int = 3):
    """Correcting an atlas label (the other hemisphere's, mirrored) slice by slice, with and without
    propagating the fixes."""
    from .interactive.simulate import worst_slice
    from .metrics import dice
    from .samples import aal_twin, mirrored_twin
    twin = aal_twin(lab)
    truth, prior = s.labels == lab, mirrored_twin(s.labels, lab)
    print(f"correcting an atlas label, {s.names[lab]} (AAL {lab}): the {s.names[twin]} label mirrored left-right")
    print(f"(Dice {dice(prior, truth):.3f}); each round the slice with the most wrong voxels painted exactly, then")
    print("propagation (InteractiveSegmenter.start_from), against the painted slices alone:")
    seg.start_from(prior)
    pred, hand, done = prior, prior.copy(), []
    for r in range(1, rounds + 1):
        z = worst_slice(pred, truth, done)
        done.append(z)
        seg.set_slice_mask(z, truth[z])
        hand[z] = truth[z]
        pred = seg.propagate()
        changed = int((pred != prior).any((1, 2)).sum())
        print(f"  {r} slice{'s' if r > 1 else ''}: Dice {dice(pred, truth):.3f} ({changed} slices changed)"
              f"   painted slices only: {dice(hand, truth):.3f}")


def cmd_train_default(a) -> int:
    from .train.default_model import train_default
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
    from .train.init_weights import read_start, shape_from
    from .train.unet_train import TrainingError
    try:
        return shape_from(read_start(a.init), a.base, a.depth)
    except TrainingError as exc:
        raise SystemExit(f"error: {exc}")


def _train_folds(a) -> int:
    """`train --folds K`: K runs, each validated on the pairs its fold holds out; then the
    cross-validated Dice and the ensemble's segment command."""
    import copy
    from .train.folds import fold_path, fold_split, summarise
    from .train.unet_train import TrainingError
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
        from .io.labels import label_ids, open_labels
        from .train.unet_train import check_class_ids
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
    from .io.channels import channel_list, open_channels
    return open_channels(item if isinstance(item, list) else channel_list(item, a.channel, a.timepoint))


def _channel_names(vols) -> list:
    """The names of a case's channels where it has several: the file's names, else "channel N" (or
    "volume T" of a 4D file)."""
    from .io.channels import chosen_text
    if len(vols) == 1:
        return []
    return [str(v.meta.get("channel_name") or chosen_text(v) or f"input {k}") for k, v in enumerate(vols)]


def _dataset_run(a):
    """`train --dataset DIR`: the arguments with the dataset's cases as --image/--labels pairs, its
    class names and count, and its channel chosen (by name or number)."""
    import copy
    from .io.dataset_folder import case_channels, read_channels
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
            from .io.dataset_folder import foreground_window
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
    from .engine import normalize
    from .engine.partition import parse_grid
    from .io.labels import open_labels
    from .train.model_card import write_card
    from .train.unet_train import TrainConfig, TrainingError, train_unet
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
    from .engine.resample import training_spacing
    cases = [_case_channels(p, a) for p in a.images]
    opened = [c[0] for c in cases]
    scale = training_spacing(opened, log=lambda m: print("note: " + m))   # recorded: segment resamples to it
    data = {"images": [_case_text(p) for p in a.images], "labels": list(a.labels),
            "validation": [_case_text(p) for p in a.val_images],
            **(getattr(a, "dataset_info", None) or {})}   # for the card
    from dataclasses import replace
    from .io.geometry import on_grid
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
    from .engine.runner import torchrun_env
    torchrun = torchrun_env() and int(os.environ["WORLD_SIZE"]) > 1
    split_run = int(np.prod(grid)) > 1 or a.replicas > 1 or torchrun
    # --on-disk, and partitioned training (which prepares a pair at a time, for its ranks to share from
    # disk): the labels lazy too, read a volume at a time (the dataset need not fit in RAM)
    read = (lambda v: v.data) if a.on_disk or split_run else (lambda v: np.asarray(v.data))
    labs = [read(v) for v in lab_vols]
    val = dict(val_images=[[v.data for v in c] if len(c) > 1 else c[0].data for c in val_cases],
               val_labels=[read(v) for v in val_labs])
    from .train.unet_train import check_class_ids
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
    if not getattr(a, "labelled_slices", None):
        from .train.sparse import gaps_note
        for lb, p in zip(labs, a.labels):
            note = gaps_note(np.asarray(lb), 0, str(p), "--labelled-slices z")
            if note:
                print(f"note: {note}")
    else:
        from .train.sparse import AXES, SparseLabelsError, labelled_slices, sparse_regions
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
    if split_run:
        from .train import partitioned_run as partitioned
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
    from .train.model_card import write_card
    print(f"wrote {write_card(a.weights, a.out)}")
    return 0


def _read_pair(image_path, labels_path, a, choice: dict | None = None):
    """(image, labels, spacing) of an image (its --channel and --timepoint, or ``choice``) and its
    label volume, read whole; they must match in shape."""
    import numpy as np
    from .io import open_volume
    from .io.labels import open_labels
    from .train.unet_train import TrainingError
    choice = {"channel": a.channel, "timepoint": a.timepoint} if choice is None else choice
    from .io import VolumeError
    from .io.geometry import on_grid
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
    from .train.unet_train import TrainingError
    images, labels, choice = a.images or [], a.labels or [], None
    if getattr(a, "dataset", None):
        from .io.dataset_folder import read_dataset
        if images or labels or a.timepoint is not None:
            raise TrainingError("--dataset gives the image/label pairs and --channel its channel; leave out --image, "
                                "--labels and --timepoint")
        from .io.channels import parse_channel_choice
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
    from .train.interactive_train import train_interactive
    from .train.unet_train import TrainingError
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
    from .io.labels import label_ids
    from .train.quality_fit import train_quality
    from .train.unet_train import TrainingError
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
        from .samples import QUALITY_FIT, load_colin27_full
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


def cmd_info(a) -> int:
    from .io import VolumeError, geometry, open_volume
    from .io.axes import axis_names, describe
    from .io.volume import file_contents, holds_labels
    spacing = _spacing_arg(a.spacing)   # a bad one is an error, not a choice of channel
    from .io import dataset_folder
    if dataset_folder.is_dataset(a.input):   # an nnU-Net / Decathlon dataset: what `train --dataset` would take
        print(json.dumps(dataset_folder.describe(a.input)))
        return 0
    raw = file_contents(a.input)
    held = {"axes": describe(raw.data.shape, axis_names(raw.data.shape, raw.meta.get("axes"))),
            "channels": raw.meta.get("channel_names"),
            **({"time_series": raw.meta["series"]} if raw.meta.get("series") else {})}   # segment --timepoint all
    try:
        v = open_volume(raw, spacing=spacing, channel=a.channel, timepoint=a.timepoint)
    except VolumeError as exc:   # a multi-channel or time-lapse file: say what it holds and what to choose
        several = raw.data.ndim > 3   # else what is wrong with it (a voxel size recorded as NaN)
        print(json.dumps({**held, "dtype": str(raw.data.dtype), "format": raw.meta.get("format"),
                          **({"choose": str(exc) if "time_series" in held else str(exc).split(": ", 1)[-1]} if several
                             else {"problem": str(exc)})}))
        return 0
    g = v.meta.get(geometry.KEY)
    chosen = {k: v.meta[k] for k in ("channel", "channel_name", "timepoint") if k in v.meta}
    print(json.dumps({**(held if raw.data.ndim > 3 else {}), **chosen, "shape": v.shape, "dtype": str(v.data.dtype), "spacing": v.spacing,
                      "unit": v.meta.get("unit"), "chunks": [c[0] for c in v.data.chunks], "format": v.meta.get("format"),
                      "orientation": geometry.orientation(g) if g else None,
                      # (x, y, z) of voxel 0 in the world, in "unit" (an OME-Zarr's microns: "origin")
                      "origin_mm" if v.meta.get("unit") in (None, "mm") else "origin":
                          [round(float(c), 3) for c in geometry.best_affine(g)[:3, 3]] if g else None,
                      **({} if v.spacing_known else {"spacing_known": False}),
                      # a file no reader can take a box of (a gzip NRRD with skips): each halo rank holds it all
                      **({"read": "whole, once a run"} if v.meta.get("read_whole") else {}),
                      **(_labels_about(v) if holds_labels(v) else _segment_memory(v, a.weights or "default",
                                                                                    a.precision))}))
    return 0


def _labels_about(vol) -> dict:
    """What `info` says of labels instead of the memory segmenting them would need: their names."""
    from .io.volume import SEGMENT_NAMES
    names = vol.meta.get(SEGMENT_NAMES) or {}
    return {"labels": {str(k): n for k, n in sorted(names.items())} if names else True,
            **({"overlapping_voxels": vol.meta["overlap"]} if vol.meta.get("overlap") else {})}


def _segment_memory(vol, weights, precision: str = "fp32") -> dict:
    """The voxel size the weights were trained at, whether `segment` would resample to it, and the
    memory it would need, per mode (none if the weights cannot be read or the volume is too small
    for the default grid)."""
    from .engine.partition import PartitionError
    from .engine.resample import ResampleError, model_spacing, resampled_shape, target_for
    from .engine.resampled_run import resampled_volume
    from .engine.runner import memory_needs
    from .engine.ensemble import load_model, weight_specs
    from .engine.weights import WeightsError
    try:
        _net, meta = load_model(weights)
        m_sp, m_unit = model_spacing(meta)
        about = {"model_spacing": m_sp and list(m_sp), **({"model_unit": m_unit} if m_unit else {})}
        target = target_for(vol, meta)
        if target is not None:   # what `segment --resample auto` would run the network on
            about["resampled_to"] = {"spacing": list(target), "shape": resampled_shape(vol.shape, vol.spacing, target)}
            vol = resampled_volume(vol, target)
        return {**about, "segment_memory": {"weights": ", ".join(weight_specs(weights)),
                                            **({"precision": precision} if precision != "fp32" else {}),
                                            **memory_needs(vol, weights, precision=precision)}}
    except (WeightsError, PartitionError, ResampleError) as exc:
        return {"segment_memory": f"not estimated: {exc}"}


def cmd_resample(a) -> int:
    import numpy as np
    from .engine import resample as rs
    from .engine.weights import load_unet
    from .io import open_volume
    from .io.resampled import write_resampled
    from .io.volume import holds_labels
    vol = open_volume(a.input, spacing=_spacing_arg(a.input_spacing), channel=a.channel, timepoint=a.timepoint)
    if sum(x is not None for x in (a.spacing, a.weights, a.like)) != 1:
        raise SystemExit("error: give one of --spacing, --weights or --like")
    labels = a.labels or holds_labels(vol)   # a segment output's labels too: never interpolated
    if not labels and np.issubdtype(vol.data.dtype, np.integer) and np.dtype(vol.data.dtype).itemsize == 1:
        print("note: an 8-bit volume is interpolated as an image; pass --labels if it holds labels")
    if a.like:
        from .io.resampled import write_onto
        like = open_volume(a.like)
        shape = like.shape
        out, got = write_onto(vol, like, a.output, labels, a.input, a.like)
        if got.placed:   # cropped to its objects, or placed otherwise in the same world
            print(f"wrote {out}: {a.input} on the grid of {a.like}, {' x '.join(map(str, shape))} voxels, each from "
                  f"its world position ({'labels, nearest voxel' if labels else 'trilinear'}; 0 outside {a.input})")
            return 0
        spacing = got.spacing
    else:
        if not vol.spacing_known:
            raise SystemExit(f"error: {a.input} records no voxel size; give it with --input-spacing Z,Y,X")
        if a.spacing:
            target = _spacing_arg(a.spacing)
        else:
            m_sp, m_unit = rs.model_spacing(load_unet(a.weights)[1])
            if m_sp is None:
                raise SystemExit(f"error: {a.weights} does not record the voxel size it was trained at; give --spacing")
            target = rs.target_spacing(vol.spacing, vol.meta.get("unit"), m_sp, m_unit, policy="on") or vol.spacing
        shape = rs.resampled_shape(vol.shape, vol.spacing, target)
        out, spacing = write_resampled(vol, a.output, shape, labels=labels)
    print(f"wrote {out}: {' x '.join(map(str, shape))} voxels of {rs.spacing_text(spacing, 4, vol.meta.get('unit'))} "
          f"({'labels, nearest voxel' if labels else 'trilinear'}), from {' x '.join(map(str, vol.shape))}")
    return 0


def cmd_convert(a) -> int:
    from .engine.memory import fmt_bytes
    from .io import open_volume
    from .io.convert import convert
    from .io.volume import file_contents, holds_labels
    if a.chunks < 1 or (a.levels is not None and a.levels < 0):
        raise SystemExit("error: --chunks must be at least 1 and --levels at least 0")
    spacing = _spacing_arg(a.input_spacing)
    raw = file_contents(a.input)   # opened once, whether its channels all go in or one volume of it
    vol = _all_channels(raw, spacing) if a.channel is None and a.timepoint is None else None
    if vol is None:
        vol = open_volume(raw, spacing=spacing, channel=a.channel, timepoint=a.timepoint)
    labels = a.labels or (len(vol.shape) == 3 and holds_labels(vol))
    out = convert(vol, a.output, chunks=a.chunks, levels=a.levels, labels=labels)
    import zarr
    grp = zarr.open_group(str(out), mode="r")
    shapes = [" x ".join(map(str, grp[k].shape)) for k in sorted(grp.array_keys(), key=int)]
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    print(f"wrote {out}: an OME-Zarr {'label ' if labels else ''}image of {len(shapes)} level(s) ({', '.join(shapes)}), "
          f"chunks of {a.chunks}^3, {fmt_bytes(size)} on disk")
    return 0


def _all_channels(raw, spacing):
    """A file's contents (``raw``) of several channels (and one time point) as (C, Z, Y, X), with the
    voxel size, unit and geometry the engine reads for one of them; None for any other (``raw`` left
    as it is: open_volume says why)."""
    from .io import open_volume
    from .io.axes import AxisChoiceError, arrange, axis_names
    try:
        arr, kept = arrange(raw.data, axis_names(raw.data.shape, raw.meta.get("axes")), str(raw.source))
    except AxisChoiceError:
        return None
    if kept != ["c", "z", "y", "x"]:
        return None
    vol = open_volume(raw, spacing=spacing, channel=0)
    vol.data = arr
    return vol


def cmd_export(a) -> int:
    from .io.export import export_labels
    print("wrote " + export_labels(a.labels, a.output, like=a.like, name=a.name, label=a.label, smooth=a.smooth))
    return 0


def cmd_measure(a) -> int:
    from .measure import check_table_path, format_table, write_csv
    given = _spacing_arg(a.spacing)   # a typo is reported before any voxel is read
    if a.csv:
        check_table_path(Path(a.csv))
    series = _series_of(a.labels)
    if series:
        return _measure_series(a, given, series)
    table, unit = _measure_one(a, a.labels, given, a.timepoint)
    print(format_table(table, unit, most=a.most))
    if a.csv:
        print("wrote " + str(write_csv(table, a.csv)))
    return 0


def _series_of(path) -> dict | None:
    """The time points of a time series output of segment (engine/series.py), else None."""
    from .io.volume import file_contents, is_zarr_dir
    if not is_zarr_dir(path):
        return None
    return file_contents(path).meta.get("series")


def _measure_series(a, given, series: dict) -> int:
    """Every segmented time point measured (the image, given, at the same time point): a table each,
    and one CSV with a timepoint column."""
    import numpy as np

    from .engine.series import frame_name
    from .measure import format_table, write_csv
    if a.timepoint is not None:
        raise SystemExit("error: the labels hold several time points and --image is read at each of them; "
                         f"for one, give its output: {a.labels}/{frame_name(int(a.timepoint))}")
    tables = []
    for t in series["segmented"]:
        table, unit = _measure_one(a, str(Path(a.labels) / frame_name(t)), given, t if a.image else None)
        print(f"time point {t}:")
        print(format_table(table, unit, most=a.most))
        tables.append({"timepoint": np.full(len(table["label"]), t), **table})
    if a.csv:
        cols = list(tables[0])
        whole = {k: np.concatenate([tb[k] for tb in tables]) for k in cols}
        print("wrote " + str(write_csv(whole, a.csv)) + f" (a row per object and time point: {len(tables)} time points)")
    return 0


def _measure_one(a, labels, given, timepoint):
    """measure's table of one label volume (with --image at ``timepoint``), and its length unit."""
    from .io import geometry, open_volume
    from .io.labels import open_labels
    from .io.volume import SEGMENT_NAMES, length_unit
    from .measure import measure_labels, with_names
    lab = open_labels(labels)
    img = open_volume(a.image, channel=a.channel, timepoint=timepoint) if a.image else None
    image = None
    if img is not None:   # under labels saved cropped to their objects: the scan's part there
        image = img.data if given is not None and img.shape == lab.shape else \
            geometry.on_grid(img, lab, a.image, a.labels, "the intensities would be read from other voxels", cut=True)
    # the labels' own spacing, unit and geometry where their file has them (a .npy has none), else the image's
    src = lab if (lab.meta.get("unit") or lab.meta.get(geometry.KEY) or img is None) else img
    spacing = given or src.spacing
    unit = (length_unit(a.unit) or a.unit) if a.unit else src.meta.get("unit")
    g = src.meta.get(geometry.KEY)
    if g is not None and tuple(g["shape"]) != lab.shape:
        g = None
    table = measure_labels(lab.data, spacing, image, unit=unit,
                           affine=None if g is None else geometry.best_affine(g))
    if a.shape:
        from .measure import add_shape
        table = add_shape(table, lab.data, spacing)
    return with_names(table, lab.meta.get(SEGMENT_NAMES)), unit   # "liver", not only 3


def cmd_review(a) -> int:
    from .review import expected_errors, open_uncertainty, parse_axis, review_order
    axis = parse_axis(a.axis)
    per_slice = expected_errors(open_uncertainty(a.output))[axis]
    total = per_slice.sum()
    name = "zyx"[axis]
    print(f"{a.output}: about {total:.0f} voxels expected wrong in all; slices along {name} to check first:")
    print(f"{'rank':>4} {name:>6} {'expected wrong voxels':>21} {'share':>6}")
    for k, i in enumerate(review_order(per_slice, a.top), 1):
        print(f"{k:>4} {i:>6} {per_slice[i]:>21.1f} {per_slice[i] / total:>6.1%}")
    return 0


def cmd_instances(a) -> int:
    from tqdm import tqdm
    import numpy as np
    from .instances import label_instances, split_touching
    from .io import geometry
    from .io import VolumeError
    from .io.labels import open_labels
    if Path(a.labels).resolve() == Path(a.output).resolve():
        raise VolumeError("the output must not be the input: the input is read again while the output is written")
    lab = open_labels(a.labels)
    g = lab.meta.get(geometry.KEY)
    with tqdm(total=1, desc="objects", unit="slab", disable=a.quiet) as bar:
        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()
        res = label_instances(lab.data, a.output, classes=a.classes, min_voxels=a.min_voxels,
                              connectivity=a.connectivity, spacing=lab.spacing, geometry=g,
                              unit=lab.meta.get("unit"), progress=progress,
                              dtype=None if a.split is None else np.uint32)   # room for the split's new ids
        report = {"output": str(res.path), "objects": res.objects, "per_class": res.per_class,
                  "removed_smaller_than_min_voxels": res.removed}
        if a.split is not None:
            bar.reset()
            report["objects_after_split"] = split_touching(res.path, a.split, lab.spacing, progress=progress)
    none = [str(c) for c, n in res.per_class.items() if n == 0 and c != "foreground"]
    if none:
        print(f"note: no object of class {', '.join(none)}: the labels hold none of it"
              + (f", or every one is under --min-voxels {a.min_voxels}" if a.min_voxels else ""), file=sys.stderr)
    print(json.dumps(report))
    return 0


def cmd_session(a) -> int:
    """A saved interactive session -> its object as a label volume on the scan (re-propagated with
    --weights, or with --propagate)."""
    import numpy as np
    from .interactive.segmenter import InteractiveSegmenter
    from .io import VolumeError, geometry, open_volume, write_labels
    from .measure import volume_text
    if not 1 <= a.label <= 65535:
        raise VolumeError(f"--label must be 1 to 65535, got {a.label}")
    out = Path(a.output)
    if out.exists() and not a.overwrite:
        raise VolumeError(f"{out} exists; pass --overwrite to replace it")
    for what, p in (("the image", a.image), ("the session", a.session)):   # --overwrite is for an earlier output
        if out.resolve() == Path(p).resolve():
            raise VolumeError(f"the output {out} is {what}; write to a new path")
    vol = open_volume(a.image, channel=a.channel, timepoint=a.timepoint)
    dicom_out = out.name.lower().endswith(".dcm")   # beside the series, for a PACS or a planning system
    if dicom_out and vol.meta.get("format") != "dicom":
        raise VolumeError(f"{out.name}: a DICOM SEG or RT structure set references the DICOM series the object "
                          f"was drawn on, and {a.image} is none; write .nii.gz, .nrrd or .zarr")
    seg = InteractiveSegmenter.from_session(a.session, vol.data, spacing=vol.spacing, device=a.device,
                                            weights=a.weights)
    fresh = a.propagate or not seg.restored_propagation
    t0 = time.perf_counter()
    mask = seg.propagate() if fresh else seg.prediction
    how = f"propagated again in {time.perf_counter() - t0:.1f}s" if fresh else "as saved"
    unit = vol.meta.get("unit")
    labels = mask.astype(np.uint16 if a.label > 255 else np.uint8) * a.label
    if dicom_out:
        from .io.dicom_seg import write_dicom_seg
        from .io.rtstruct import wants_rtstruct, write_rtstruct
        (write_rtstruct if wants_rtstruct(out) else write_dicom_seg)(
            labels, vol.source, out, names={a.label: a.name} if a.name else None)
    else:
        write_labels(labels, out, spacing=vol.spacing, geometry=vol.meta.get(geometry.KEY), unit=unit,
                     names={a.label: a.name} if a.name else None)
    n = int(mask.sum())
    print(f"wrote {out}: label {a.label}, {n} voxels ({volume_text(n * float(np.prod(vol.spacing)), unit)}), "
          f"{len(seg.annotated_slices)} trusted slices across axis {seg.axis}, {how}")
    return 0


def cmd_evaluate(a) -> int:
    from .evaluate import (compare_instances, compare_labels, format_comparison, format_instances, name_mismatch,
                           renumber_by_name)
    from .io.labels import open_labels
    from .io.volume import SEGMENT_NAMES
    from .measure import check_table_path, write_csv
    from .batch import is_case_folder
    if a.csv:   # before any voxel is read
        check_table_path(Path(a.csv))
    if is_case_folder(a.pred) or is_case_folder(a.truth):
        return _evaluate_folders(a)
    from .io.geometry import on_one_grid
    pred, truth = open_labels(a.pred), open_labels(a.truth)   # truth's spacing is used
    # either saved cropped to its objects (3D Slicer's .seg.nrrd): both on the grid that holds the other
    data, truth_data, _ = on_one_grid(pred, truth, a.pred, a.truth)
    if a.instances:
        table = compare_instances(data, truth_data, thresholds=a.iou)
        print(format_instances(table))
    else:
        from .measure import with_names
        names, truth_names = pred.meta.get(SEGMENT_NAMES), truth.meta.get(SEGMENT_NAMES)
        if a.by_name:   # the reference's ids, matched by the structures' names
            data, missing = renumber_by_name(data, names, truth_names)
            names = truth_names
            if missing:
                print(f"not in the reference, left out: {', '.join(missing)}")
        table = compare_labels(data, truth_data, truth.spacing, labels=a.labels, distances=not a.no_distances)
        table = with_names(table, truth_names or names)
        print(format_comparison(table, truth.meta.get("unit")))
        note = name_mismatch(names, truth_names, table["label"])
        if note:
            print(note + " (or compare --by-name)")
    if a.csv:
        print("wrote " + str(write_csv(table, a.csv)))
    return 0


def _evaluate_folders(a) -> int:
    """A folder of segmentations against a folder of references, matched by case name."""
    from .batch import evaluate_folders, find_cases, format_summary, is_case_folder
    from .io import VolumeError, open_volume
    from .measure import write_csv
    if not (is_case_folder(a.pred) and is_case_folder(a.truth)):
        raise VolumeError("compare a folder with a folder (cases matched by name), or a volume with a volume")
    if a.instances:
        raise VolumeError("--instances compares one pair of volumes; give two volumes, not folders")
    rows, summary, unmatched = evaluate_folders(a.pred, a.truth, labels=a.labels, distances=not a.no_distances)
    unit = open_volume(find_cases(a.truth)[0]).meta.get("unit")
    print(format_summary(summary, unmatched, unit))
    if a.csv and rows:
        print("wrote " + str(write_csv(rows, a.csv)) + " (a row per case and label)")
    return 1 if unmatched["failed"] else 0


def _choice_args(p, whose: str, several: bool = False, series: bool = False) -> None:
    p.add_argument("--channel", default=None, help=f"the channel {whose} to use, by index or by name, "
                                                   "when it has several (a fluorescence stack)" + (
                       "; several, separated by commas (T1,T2), for a network of several input channels" if several
                       else ""))
    if series:   # segment: every time point of a time-lapse, each into OUT.zarr/tNNNN (engine/series.py)
        p.add_argument("--timepoint", default=None, metavar="T", help=f"the time point {whose} to use, when it has "
                       "several; all, a range A-B or several (0-9,20): each time point segmented in turn, into "
                       "OUTPUT/t0000, OUTPUT/t0001, ... (the whole read as one (T, Z, Y, X) label volume)")
    else:
        p.add_argument("--timepoint", type=int, default=None, help=f"the time point {whose} to use, when it has several")


def _input_args(p) -> None:
    """The input's voxel size where its file records none, and its channel and time point."""
    p.add_argument("--input-spacing", default=None, metavar="Z,Y,X", help="the input's voxel size, where its file "
                                                                         "records none")
    _choice_args(p, "of the input")


def _engine_args(s, series: bool = False) -> None:
    """The engine's options, shared by segment and batch (``series``: segment's --timepoint takes
    several time points)."""
    s.add_argument("--weights", action="append", default=None, metavar="WEIGHTS",
                   help="3D U-Net weights (.safetensors; default: the shipped model); give it several times "
                        "for an ensemble: the class probabilities averaged over the models (nnU-Net's folds)")
    s.add_argument("--grid", default="2,1,1",
                   help="ranks along z,y,x (halo mode), e.g. 2,2,2; auto: one per GPU (cuda), 2 on CPU, or "
                        "every rank torchrun started, in blocks as close to cubes as possible")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    s.add_argument("--mode", default="halo", choices=["halo", "tile", "whole"])
    s.add_argument("--overlap", type=float, default=0.5, help="tile mode: window overlap")
    s.add_argument("--tile", type=int, default=None, help="tile mode: window edge (voxels)")
    s.add_argument("--save-probabilities", action="store_true")
    s.add_argument("--mirror", default="", metavar="AXES",
                   help="average over mirrored views along these axes, e.g. zyx (8 views) or yx (4): "
                        "test-time mirroring, that many times the work; exact in halo mode too")
    s.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: bfloat16 autocast, about twice as fast on a CPU with native bfloat16 (GPUs from "
                        "Ampere on have it too) and half the activation memory; labels differ from fp32's on a few "
                        "boundary voxels, "
                        "and halo runs equal whole runs only to bf16 rounding (default fp32: exact)")
    s.add_argument("--resample", default="auto", choices=["auto", "on", "off"],
                   help="run the network at the voxel size its weights were trained at: auto (default) when the "
                        "input's differs by more than 10 %% on an axis, resampling the input there and the "
                        "probabilities back; on: whenever they differ; off: on the voxels as they are")
    s.add_argument("--spacing", default=None, metavar="Z,Y,X",
                   help="the input's voxel size, where its file records none (a .npy) or records it wrong")
    s.add_argument("--timeout", type=float, default=1800, help="seconds before a hung rank fails the run")
    s.add_argument("--threads", type=int, default=None, help="torch threads per rank")
    s.add_argument("--no-memory-check", action="store_true",
                   help="run even where the estimated peak memory per rank exceeds what is available")
    _choice_args(s, "of the input", several=True, series=series)


# what a label argument can be: every form the readers take labels in
LABEL_FILES = ("an output group of `segment`, NIfTI, NRRD (.seg.nrrd), MetaImage, zarr, TIFF, .npy, a DICOM SEG or "
               "RT structure set")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="halo-seg", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("segment", help="automatic segmentation of a (large, lazy) volume")
    s.add_argument("input", nargs="+", metavar="INPUT",
                   help="the volume; for a network of several input channels, one file per channel in the "
                        "network's order (or one file holding them: --channel A,B or, with none, all of them)")
    s.add_argument("output", help="output .zarr group (labels, probabilities, done)")
    _engine_args(s, series=True)
    s.add_argument("--resume", action="store_true", help="skip a run whose blocks are all written")
    s.set_defaults(fn=cmd_segment)
    b = sub.add_parser("batch", help="segment every volume of a folder (resumable; one failed case does not stop "
                                     "the others)")
    b.add_argument("input", help="a folder of volumes: files, zarr folders, or a folder per DICOM series or per stack of "
                   "2D TIFF slices")
    b.add_argument("output", help="output folder: <case>.zarr for each case, and batch.csv")
    b.add_argument("--export", default=None, metavar="SUFFIX",
                   help="also write each case's labels placed on its scan, e.g. .nii.gz, or .dcm (DICOM SEG), "
                   ".rtstruct.dcm (RT structure set), or .tif (for Fiji)")
    b.add_argument("--series", default=None, metavar="REGEX",
                   help="the cases are the DICOM series anywhere below INPUT (a PACS export of a cohort: a folder "
                        "per patient, study, series) whose description matches REGEX, e.g. 't1|mprage'; each case "
                        "named by its folders, joined with _")
    _engine_args(b)
    b.set_defaults(fn=cmd_batch)
    r = sub.add_parser("resample", help="a volume on another voxel grid of the same extent (a model's voxel size, "
                                         "one spacing for training volumes, or back onto a scan's grid)")
    r.add_argument("input")
    r.add_argument("output", help=".zarr, .nii or .nii.gz; placed where the input lies (its scan geometry follows)")
    r.add_argument("--spacing", default=None, metavar="Z,Y,X", help="the new voxel size, in the input's unit")
    r.add_argument("--weights", default=None, help="the voxel size these weights were trained at ('default': the "
                                                   "shipped model's)")
    r.add_argument("--like", default=None, metavar="VOLUME",
                   help="the grid of this volume: labels computed at a model's voxel size back onto their scan's "
                        "grid (the same extent), or, where both carry a scan geometry, anything in the same world "
                        "onto it (labels saved cropped to their objects, as 3D Slicer can; 0 outside them)")
    r.add_argument("--labels", action="store_true", help="the input holds labels: nearest voxel, values kept "
                                                        "(automatic for files marked as labels and segment outputs)")
    _input_args(r)
    r.set_defaults(fn=cmd_resample)
    cv = sub.add_parser("convert", help="any volume as an OME-Zarr image: cubic chunks each torchrun rank reads "
                                         "in parallel, and a pyramid napari shows when zoomed out (voxel size, "
                                         "unit and placement kept)")
    cv.add_argument("input", help="a volume, or a file of several channels (all of them go into the image, "
                                   "unless --channel picks one)")
    cv.add_argument("output", help="a .zarr path (an OME-Zarr 0.5 image)")
    cv.add_argument("--chunks", type=int, default=64, help="the side of a chunk, in voxels (default 64)")
    cv.add_argument("--levels", type=int, default=None, help="coarser levels below the full resolution (default: "
                                                              "until the largest side is under 64 voxels)")
    cv.add_argument("--labels", action="store_true", help="the input holds labels: an OME label image, the "
                    "pyramid by nearest voxel (automatic for files marked as labels and segment outputs)")
    _input_args(cv)
    cv.set_defaults(fn=cmd_convert)
    c = sub.add_parser("card", help="write the model card of 3D U-Net weights (train writes one beside them)")
    c.add_argument("weights", help="a .safetensors file written by halo-seg train")
    c.add_argument("--out", default=None, help="the card's path (default: the weights' path with .md)")
    c.set_defaults(fn=cmd_card)
    e = sub.add_parser("export", help="write labels as NIfTI, NRRD (a 3D Slicer segmentation as .seg.nrrd), "
                       "MetaImage or zarr where the scan lies, as DICOM SEG or an RT structure set, as calibrated "
                       "TIFF for Fiji, into an OME-Zarr image, or as surface meshes")
    e.add_argument("labels", help=f"a label volume: {LABEL_FILES}")
    e.add_argument("output", help="output .nii.gz, .nii, .nrrd, .mha, .zarr, .tif (an ImageJ stack with its voxel "
                                  "size), .dcm (DICOM SEG; labels read from an RT structure set go back as one), "
                                  ".rtstruct.dcm (RT structure set: contours for a planning system), .stl / .ply / "
                                  ".obj (surface meshes in scanner mm), or the OME-Zarr image the labels belong to "
                                  "(they go into its labels/NAME)")
    e.add_argument("--name", default="halo-seg", help="the label image's name inside an OME-Zarr image")
    e.add_argument("--label", type=int, default=None, help="mesh: only this label value (default: a file per label)")
    e.add_argument("--smooth", type=int, default=0, help="mesh: Taubin smoothing iterations (volume-preserving)")
    e.add_argument("--like", default=None,
                   help="the scan the labels were computed on (NIfTI, NRRD, MetaImage or a DICOM series folder): "
                        "its affines and codes, or for .dcm the images the SEG or structure set references; default: "
                        "`segment`'s input")
    e.set_defaults(fn=cmd_export)
    m = sub.add_parser("measure", help="per object: voxels, volume (mL for scans in mm), centroid, bounding box, "
                                       "and with --image the intensity inside it")
    m.add_argument("labels", help=f"a label volume: {LABEL_FILES}")
    m.add_argument("--image", default=None, help="the image the labels belong to (intensity statistics; its "
                                                  "spacing and unit where the labels' file has none)")
    m.add_argument("--csv", default=None, help="write every object's row to this CSV file")
    m.add_argument("--spacing", default=None, help="z,y,x voxel size, overriding the files'")
    m.add_argument("--unit", default=None, help="the spacing's length unit (mm, µm, ...), overriding the files'")
    m.add_argument("--most", type=int, default=20, help="how many of the largest objects to print")
    m.add_argument("--shape", action="store_true", help="also each object's surface area and sphericity (marching "
                                                         "cubes; reads every object's bounding box again)")
    _choice_args(m, "of --image")
    m.set_defaults(fn=cmd_measure)
    o = sub.add_parser("instances", help="one id per connected object (to count and measure nuclei, lesions, ...)")
    o.add_argument("labels", help=f"a label volume: {LABEL_FILES}")
    o.add_argument("output", help="output .zarr of object ids (uint8/16/32), with the input's spacing and geometry")
    o.add_argument("--classes", type=int, nargs="*", default=None,
                   help="label values whose components become objects, each class apart (default: every "
                        "value > 0 as one foreground)")
    o.add_argument("--min-voxels", type=int, default=0, help="drop objects smaller than this")
    o.add_argument("--connectivity", type=int, default=1, choices=[1, 2, 3],
                   help="1: faces touch (default), 2: and edges, 3: and corners")
    o.add_argument("--split", type=float, nargs="?", const=0.25, default=None, metavar="DEPTH",
                   help="split touching objects (nuclei) by the distance-transform watershed; DEPTH in voxels, "
                        "default 0.25 (chosen on procedural touching balls, benchmarks/README.md)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.set_defaults(fn=cmd_instances)
    v = sub.add_parser("evaluate", help="compare labels with a reference: Dice, Jaccard, volume difference, "
                                        "HD95 and average surface distance per label")
    v.add_argument("pred", help=f"the labels to judge ({LABEL_FILES}), or a folder of them (a `batch` output), "
                                "matched to TRUTH's cases by name")
    v.add_argument("truth", help="the reference labels, on the same voxel grid; its spacing gives the distances; "
                                 "or a folder of them")
    v.add_argument("--labels", type=int, nargs="*", default=None, help="only these label values (default: all)")
    v.add_argument("--csv", default=None, help="write every label's row to this CSV file")
    v.add_argument("--no-distances", action="store_true", help="overlaps and volumes only (surface distances "
                                                                "need each label's bounding box in memory)")
    v.add_argument("--by-name", action="store_true",
                   help="match labels by their names (DICOM SEG segments, RT structures, a model's classes) "
                        "rather than their ids: two systems or observers number the same structures differently")
    v.add_argument("--instances", action="store_true",
                   help="compare as objects (nuclei, lesions; ids need not correspond): matches at IoU >= --iou, "
                        "precision, recall, F1, AP")
    v.add_argument("--iou", type=float, nargs="+", default=[0.5], help="with --instances: IoU thresholds (>= 0.5)")
    v.set_defaults(fn=cmd_evaluate)
    r = sub.add_parser("review", help="the slices of a `segment` output to check first: those with the most "
                                      "voxels expected wrong (from the class probabilities)")
    r.add_argument("output", help="an output group of `segment`")
    r.add_argument("--axis", default="z", help="slices across z (axial for scans), y or x")
    r.add_argument("--top", type=int, default=10, help="how many slices to list")
    r.set_defaults(fn=cmd_review)
    se = sub.add_parser("session", help="a saved interactive session (napari's Save session, or the copy kept "
                                         "after every propagation) as a label volume on its scan")
    se.add_argument("image", help="the image the session was made on")
    se.add_argument("session", help="the session file (.npz)")
    se.add_argument("output", help="output .nii.gz, .nii, .nrrd or .zarr (placed on the scan), .tif (for Fiji), or "
                                   "on a DICOM series .dcm (DICOM SEG) or .rtstruct.dcm (RT structure set)")
    se.add_argument("--label", type=int, default=1, help="the object's label value (default 1)")
    se.add_argument("--name", default=None, help="the object's name in a DICOM SEG, RT structure set, zarr or "
                                                 "NRRD (a 3D Slicer segment) (e.g. liver)")
    se.add_argument("--weights", default="default", help="interactive weights; other than the session's, the "
                                                         "object is propagated again with them")
    se.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    se.add_argument("--propagate", action="store_true", help="propagate again even with the session's weights")
    se.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _choice_args(se, "of the image")
    se.set_defaults(fn=cmd_session)
    d = sub.add_parser("demo", help="run the engine and a simulated interactive session on the sample")
    d.add_argument("--weights", default="default")
    d.add_argument("--out", default=None)
    d.set_defaults(fn=cmd_demo)
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
    td = sub.add_parser("train-default", help="retrain the shipped default model on the sample")
    td.add_argument("--out", default="src/halo_seg/weights/unet3d_default.safetensors")
    td.add_argument("--iterations", type=int, default=2500)
    td.add_argument("--threads", type=int, default=None)
    td.set_defaults(fn=cmd_train_default)
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
    i = sub.add_parser("info", help="shape, dtype, spacing and chunks of a volume; the memory segmenting it needs "
                       "(labels: their names)")
    i.add_argument("input")
    i.add_argument("--weights", action="append", default=None, metavar="WEIGHTS",
                   help="the 3D U-Net whose memory needs are estimated (several: an ensemble)")
    i.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="the precision segment would run in")
    i.add_argument("--spacing", default=None, metavar="Z,Y,X", help="the voxel size, where the file records none")
    _choice_args(i, "of the input")
    i.set_defaults(fn=cmd_info)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .engine.partition import PartitionError
    from .engine.runner import EngineError
    from .engine.weights import WeightsError
    from .io import VolumeError
    from .train.unet_train import TrainingError
    from .interactive.segmenter import InteractiveError
    from .engine.resample import ResampleError
    try:
        return args.fn(args)
    except (VolumeError, PartitionError, EngineError, WeightsError, TrainingError, InteractiveError,
            ResampleError, FileNotFoundError) as exc:
        print(f"halo-seg {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
