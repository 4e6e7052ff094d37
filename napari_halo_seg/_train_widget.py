"""Dock widget: train the automatic 3D U-Net on an image layer and a Labels layer of it (each label
value a class, 0 background; halo_seg.train.unet_train: augmentation, Dice + border-weighted
cross-entropy). The last slices of the labelled extent are held out to measure Dice honestly; the
best weights (by that Dice) go to a file that the automatic segmentation widget, or `halo-seg segment --weights`, uses.
Training runs in a worker with progress and Cancel (the best weights so far are kept); then, if
asked, the new model segments the image (the engine's tile mode) so that its errors can be seen and
labelled for another round. A time-lapse trains on its labelled time points (_train_timelapse.py)."""
from __future__ import annotations

import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from halo_seg.io.dicom_seg import SERIES_KEY
from halo_seg.io.geometry import KEY as GEOMETRY

from ._background import BackgroundWidget
from ._fields import SavedFilesBox, form_of
from ._layers import fill_layer_box, follow_layers, layer_spacing, layer_volume, on_grid_of
from ._measure import UNIT, layer_unit
from ._paths import file_stem, models_dir
from ._timelapse import same_timelapse, timelapse_data

DEPTH = 3   # the U-Net's (TrainConfig's default): patches are multiples of 2**DEPTH
RANDOM = "random weights"


def training_config(labels, shape, patch: int, iterations: int, precision: str, init: str | None,
                    one_class: bool, depth: int):
    """The TrainConfig for label volumes ``labels`` of images of ``shape`` (Z, Y, X)."""
    from halo_seg.train.unet_train import TrainConfig, check_class_ids
    base = 8
    if init:
        from halo_seg.train.init_weights import read_start
        start = read_start(init)
        base, depth = start.config["base"], start.config["depth"]
    m = 2 ** depth
    classes = 2 if one_class else \
        max(int(np.max(lab)) for lab in labels) + 1 if init else check_class_ids(labels, "the Labels layer")
    names = ["background", "object"] if one_class else ["background"] + [f"label {k}" for k in range(1, classes)]
    return TrainConfig(n_classes=classes, patch=tuple(max(m, min(patch // m * m, s // m * m)) for s in shape),
                       iterations=iterations, base=base, depth=depth, epoch=max(1, iterations // 6), device="auto",
                       precision=precision, class_names=names, init=init)


def prepare(image, labels, hold_out: float, patch: int, iterations: int, precision: str = "fp32",
            init: str | None = None, sparse: bool = False, one_class: bool = False):
    """(image, labels, config, (train, validation) regions, held-out slices) from the layers' arrays,
    read here (in the worker: a lazy volume may take a while); raises ValueError naming what is wrong.
    ``init``: weights to fine-tune (their base and depth are the network's). ``sparse``: the labels
    are painted on some slices only; slices without a label are unknown, not background
    (halo_seg.train.sparse), and labelled slices spread over the stack are held out. ``one_class``:
    every labelled voxel is one class ("object": cells or nuclei committed one by one, whose ids
    are objects, not classes)."""
    image = np.asarray(image, np.float32)
    labels = np.asarray(labels)
    if labels.min() < 0 or not labels.any():
        raise ValueError("the labels must be non-negative with at least one labelled voxel")
    if one_class:
        labels = labels > 0
    if sparse:
        from halo_seg.train.sparse import sparse_regions
        train, val, held = sparse_regions(labels, 0, hold_out, "the painted slices")
        held = [int(z) for z in held]
    else:
        zs = np.flatnonzero(labels.reshape(len(labels), -1).any(1))
        n = max(1, int(round((zs[-1] - zs[0] + 1) * hold_out)))
        held = list(range(zs[-1] + 1 - n, zs[-1] + 1))   # the end of the labelled extent: the objects are there
        if held[0] <= zs[0]:
            raise ValueError(f"the labels span {len(zs)} slice(s): too few to hold some out for measuring")
    cfg = training_config([labels], image.shape, patch, iterations, precision, init, one_class, DEPTH)
    if not sparse:
        train = np.ones(image.shape, bool)
        train[held[0]:held[-1] + 1] = False
        val = ~train
    return image, labels.astype(np.int64), cfg, (train, val), held


def slices_text(held) -> str:
    """'slices 40..47' for a run of slices, else 'slices 3, 13, 23'."""
    if len(held) > 1 and list(held) == list(range(held[0], held[-1] + 1)):
        return f"slices {held[0]}..{held[-1]}"
    return f"slice{'s' if len(held) > 1 else ''} {', '.join(map(str, held))}"


def _train(image, labels, settings, out, cancel, progress, predict: bool, record: dict | None = None):
    """In the worker: ((result, the new model's labels of the image or None, held-out slices), None)
    or (None, the exception). ``record``: kept with the weights: the image's voxel size ("spacing",
    "unit"; `segment` then runs them at it) and the layers trained on ("data", for the model card)."""
    import tempfile
    import zarr
    from halo_seg.engine.runner import segment
    from halo_seg.train.unet_train import train_unet
    try:
        if image.ndim == 4:
            return _train_series(image, labels, settings, out, cancel, progress, predict, record), None
        image, labels, cfg, regions, held = prepare(image, labels, **settings)
        from halo_seg.train.sparse import gaps_note
        note = None if settings.get("sparse") else gaps_note(labels, 0, "the labels",
                                                             "tick 'labels painted on some slices only'")
        which = "the painted slices" if settings.get("sparse") else "every slice"
        progress(0, cfg.iterations, f"training ({cfg.n_classes - 1} classes) on {which} but {slices_text(held)}, "
                                    "where Dice is measured ...")
        res = train_unet([image], [labels], cfg, out, train_regions=[regions[0]], val_regions=[regions[1]],
                         log=lambda *_: None, progress=progress, cancel=cancel.is_set,
                         meta={"trained_in": "napari",
                               "held_out": (f"painted slices {', '.join(map(str, held))} along z (only painted slices "
                                            "trained on)") if settings.get("sparse")
                               else "the end of the labelled extent along z", **(record or {})})
        if res["best"] is not None:   # what the weights are, beside them (a cancelled run's too)
            from halo_seg.train.model_card import write_card
            write_card(out)
        pred = None
        if predict and res["best"] is not None and res["cancelled_at"] is None:
            dst = Path(tempfile.mkdtemp(prefix="halo-seg-train-")) / "prediction.zarr"
            segment(image, dst, weights=out, mode="tile", device="auto", cancel=cancel, progress=progress)
            pred = zarr.open_group(str(dst), mode="r")["labels"][...]
        return (res, pred, held, note), None
    except Exception as exc:  # reported in the status line; the user's layers are untouched
        return None, exc


def _train_series(image, labels, settings, out, cancel, progress, predict: bool, record: dict | None):
    """_train's work for a time-lapse (_train_timelapse.py): (result, the new model's labels of the
    held-out time points as (T, Z, Y, X) or None, what was held out, a note or None)."""
    import tempfile
    import zarr
    from halo_seg.engine.runner import segment
    from halo_seg.train.model_card import write_card
    from halo_seg.train.unet_train import train_unet
    from ._train_timelapse import prepare_series, timepoints_text
    run = prepare_series(image, labels, **settings)
    cfg, train, held, sparse = run["config"], run["train"], run["held"], run["painted"] is not None
    where = timepoints_text(held) + ((", on its painted slices" if len(held) == 1 else ", on their painted slices")
                                     if sparse else "")
    which = f"the painted slices of {timepoints_text(train)}" if sparse else timepoints_text(train)
    progress(0, cfg.iterations, f"training ({cfg.n_classes - 1} class{'es' if cfg.n_classes > 2 else ''}) on "
                                f"{which}; Dice is measured on {where} ...")
    record = dict(record or {})
    if record.get("data"):   # which of its time points, in the model card
        record["data"] += f", {which} trained on"
    held_out = f"{timepoints_text(held)} of the time-lapse" + (
        ", on " + "; ".join(f"slices {', '.join(map(str, run['painted'][t]))} at time point {t}" for t in held)
        + " (only painted slices trained on)" if sparse else "")
    res = train_unet(run["images"], run["labels"], cfg, out, train_regions=run["train_regions"],
                     val_images=run["val_images"], val_labels=run["val_labels"], held_regions=run["held_regions"],
                     log=lambda *_: None, progress=progress, cancel=cancel.is_set,
                     meta={"trained_in": "napari", "held_out": held_out, **record})
    if res["best"] is not None:
        write_card(out)
    pred = None
    if predict and res["best"] is not None and res["cancelled_at"] is None:
        pred = np.zeros(image.shape, np.uint8)   # the held-out time points, where its errors are to be seen
        for t, im in zip(held, run["val_images"]):
            dst = Path(tempfile.mkdtemp(prefix="halo-seg-train-")) / "prediction.zarr"
            segment(im, dst, weights=out, mode="tile", device="auto", cancel=cancel, progress=progress)
            pred[t] = zarr.open_group(str(dst), mode="r")["labels"][...]
    return res, pred, where, run["note"]


class TrainWidget(BackgroundWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer, "Train")
        self.image, self.labels = QComboBox(), QComboBox()
        self.iterations = QSpinBox()
        self.iterations.setRange(10, 100_000)
        self.iterations.setValue(600)
        self.patch = QSpinBox()
        self.patch.setRange(16, 128)
        self.patch.setSingleStep(2 ** DEPTH)
        self.patch.setValue(48)
        self.hold_out = QSpinBox()
        self.hold_out.setRange(5, 50)
        self.hold_out.setValue(20)
        self.hold_out.setSuffix(" % of slices")
        self.hold_out.setToolTip("the last slices of the labelled extent along z are not trained on: the Dice "
                                 "reported, and the choice of the weights kept, come from them (of a time-lapse: "
                                 "this share of its labelled time points, the last, held out whole)")
        # fine-tuning: a model of related images learns the user's classes sooner than random weights
        # (benchmarks/finetune.py); a model trained here, to go on from it after more labelling
        self.start_from = SavedFilesBox(RANDOM, models_dir, "*.safetensors", extras=("default",))
        self.start_from.setToolTip("the weights training starts from: random, the shipped default model, a model "
                                   "trained here before (to go on after correcting its labels) or any .safetensors "
                                   "path; its classifier starts afresh when the class count differs")
        self.output = QLineEdit("")
        self.output.setPlaceholderText("weights .safetensors (default: in your user data directory)")
        self.predict = QCheckBox("then segment the image with it")
        self.predict.setChecked(True)
        self.sparse = QCheckBox("labels painted on some slices only")
        self.sparse.setToolTip("slices holding no label are unknown, not background: training uses the painted "
                               "slices only (a slice with nothing of the objects on it counts as unknown too: paint "
                               "slices that cross them), and holds some of them out, spread over the stack, to "
                               "measure Dice (of a time-lapse: the painted slices of its labelled time points, "
                               "the last of them held out)")
        self.one_class = QCheckBox("objects of one kind (cells, nuclei): one class")
        self.one_class.setToolTip("every labelled voxel is one class, 'object': objects committed one by one (the "
                                  "interactive widget's) have an id each, which would otherwise be a class each")
        self.bf16 = QCheckBox("bf16 (faster where the CPU or GPU has bfloat16)")
        self.bf16.setToolTip("each training step's forward in bfloat16 autocast; the weights, the loss and the "
                             "Dice measured stay fp32 (benchmarks/README.md, \"Training in bf16\")")
        self._lay_out(form_of(("image", self.image), ("labels", self.labels), ("iterations", self.iterations),
                              ("patch edge (voxels)", self.patch), ("held out", self.hold_out),
                              ("start from", self.start_from), ("weights", self.output), ("", self.sparse),
                              ("", self.one_class), ("", self.predict), ("", self.bf16)))
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)   # the weights' path can be copied
        follow_layers(self.viewer, self._refresh_layers)
        self._refresh_layers()
        self.last_weights = None

    def _refresh_layers(self, *_):
        fill_layer_box(self.image, self.viewer, napari.layers.Image)
        fill_layer_box(self.labels, self.viewer, napari.layers.Labels)

    def _choices(self):
        """(image layer, image, labels, output path) after the checks that read no voxel; raises
        ValueError naming what is wrong."""
        if not self.image.currentText() or not self.labels.currentText():
            raise ValueError("choose an image layer and a Labels layer of it (each label value a class)")
        layer, lab_layer = self.viewer.layers[self.image.currentText()], self.viewer.layers[self.labels.currentText()]
        if timelapse_data(layer) is not None:   # a time-lapse: its labelled time points (_train_timelapse.py)
            image, labels = same_timelapse(layer, lab_layer, "a time-lapse trains on Labels over its time points, "
                                                             "of its shape")
        else:
            image = layer_volume(layer)
            if image.ndim != 3:
                raise ValueError(f"layer {layer.name!r} {tuple(image.shape)} is not a 3D image")
            # labels saved cropped to their objects: on the image's grid
            labels = on_grid_of(lab_layer, layer, "the network would learn each voxel's label from another voxel")
        if not np.issubdtype(np.dtype(labels.dtype), np.integer):
            raise ValueError(f"the labels must be integers (each value a class), not {labels.dtype}")
        out = Path(self.output.text().strip() or
                   models_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{file_stem(layer.name)}.safetensors")
        if out.suffix != ".safetensors":
            raise ValueError(f"weights go to a .safetensors file, not {out.name}")
        out.parent.mkdir(parents=True, exist_ok=True)
        return layer, image, labels, out

    def run(self):
        if self.worker is not None:
            self.status.setText("busy: wait or press Cancel")
            return
        try:
            layer, image, labels, out = self._choices()
        except (ValueError, OSError) as exc:
            self.status.setText(f"error: {exc}")
            return
        settings = dict(hold_out=self.hold_out.value() / 100, patch=self.patch.value(),
                        iterations=self.iterations.value(), precision="bf16" if self.bf16.isChecked() else "fp32",
                        init=None if (start := self.start_from.choice()) == RANDOM else start,
                        sparse=self.sparse.isChecked(), one_class=self.one_class.isChecked())
        spacing, unit = layer_spacing(layer), layer_unit(layer)
        record = {"spacing": list(spacing), **({"unit": unit} if unit else {})} if spacing else {}
        source = (layer.metadata or {}).get("source")
        record["data"] = (f"napari layers '{layer.name}'" + (f" (`{source}`)" if source else "")
                         + f" and '{self.labels.currentText()}'")   # named in the model card
        self._start("reading the image and labels ...", _train, image, labels, settings, out, self._cancel,
                    self.progress_callback, self.predict.isChecked(), record,
                    on_done=lambda outcome: self._done(outcome, out, layer))

    def _done(self, outcome, out: Path, layer):
        done, exc = outcome
        if exc is not None:
            return self._failed(exc)
        res, pred, held, note = done
        where = held if isinstance(held, str) else slices_text(held)   # a time-lapse's: its time points
        if pred is not None:   # on the image's grid, with its scan geometry, so it saves onto the scan
            nd = pred.ndim
            self.viewer.add_labels(pred, name=f"{layer.name} ({out.stem})", scale=layer.scale[-nd:],
                                   translate=layer.translate[-nd:], opacity=0.5,
                                   metadata={k: v for k, v in (layer.metadata or {}).items()
                                             if k in (GEOMETRY, SERIES_KEY, UNIT)})
        best = res["best"]
        stopped = f"cancelled after iteration {res['cancelled_at']}; " if res["cancelled_at"] is not None else ""
        if best is None:
            self.progress.setMaximum(1)
            self.status.setText(f"{stopped}no weights saved (no validation was reached)")
            return
        self.last_weights = out
        dice = ", ".join("n/a" if d is None else f"{d:.3f}" for d in best["val_dice"])
        self._succeeded(f"{stopped}weights saved to {out} (iteration {best['iteration']}); Dice per class on the "
                        f"held-out {where} (n/a: not there): {dice}; its model card is {out.with_suffix('.md').name}. Use "
                        f"them in Automatic segmentation (weights) or halo-seg segment --weights"
                        + (f". Note: {note}" if note else ""))

    def _failed(self, exc, cancelled_types=()):
        from halo_seg.engine.runner import Cancelled
        super()._failed(exc, (Cancelled, InterruptedError))
