"""Training data in the layouts medical-imaging datasets are shared in: nnU-Net v2's
(``dataset.json`` with ``channel_names``; ``imagesTr/CASE_0000.nii.gz`` one file per channel,
``labelsTr/CASE.nii.gz``) and the Medical Segmentation Decathlon's, which nnU-Net v1 used too
(``dataset.json`` with ``modality`` and a ``training`` list of image/label pairs; several
modalities in one 4D NIfTI, along its fourth dimension).

``dataset.json`` is the record of what each label value means and which channel is which, so it
is read rather than guessed from file names: class names come from it (a model trained here names
its classes, and so do its outputs), the class count too (a class absent from every case is still
a class), and a channel is chosen by its name. A dataset with several channels needs the choice:
one (``--channel T2``), several (``--channel T2,ADC``) or all (``--channel all``: nnU-Net's stack
of every modality), never a silent first one.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .volume import SUPPORTED, VolumeError, without_suffix

MSD = "Medical Segmentation Decathlon"
NNUNET = "nnU-Net v2"
_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class DatasetError(VolumeError):
    """A dataset folder that cannot be trained on as it is: the reason, and the file that says so."""


@dataclass
class Dataset:
    root: Path
    layout: str                 # NNUNET or MSD
    name: str
    cases: list[str]
    images: list[Path]          # each case's image file holding the chosen channel
    labels: list[Path]
    class_names: list[str]      # by label value: class_names[0] is the background's
    channel: int                # the chosen channel's number in dataset.json
    channel_name: str
    read_kwargs: dict = field(default_factory=dict)   # open_volume's choice within each image file
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return (f"dataset {self.name} ({self.layout}): {len(self.cases)} labelled cases, channel {self.channel} "
                f"({self.channel_name})")

    @property
    def is_ct(self) -> bool:
        """nnU-Net's rule: a channel named CT is in Hounsfield units, normalised with one window for
        every case rather than each case's own mean and spread."""
        return self.channel_name.strip().upper() == "CT"


def is_dataset(path) -> bool:
    return (Path(path) / "dataset.json").is_file()


def _load_json(root: Path) -> dict:
    path = root / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"{root} is not a dataset folder: it has no dataset.json (nnU-Net v2 or Medical "
                           "Segmentation Decathlon layout; otherwise give --image/--labels pairs)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path} is not a JSON object")
    return meta


def _class_names(labels, path: Path, by_name: bool) -> list[str]:
    """Class names by value from dataset.json's ``labels``: ``{name: value}`` in nnU-Net v2,
    ``{"value": name}`` in the Decathlon. Values must run 0, 1, ..., as both layouts require."""
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(f"{path}: 'labels' must map each label value to its name")
    pairs = {}
    for k, v in labels.items():
        name, value = (k, v) if by_name else (v, k)
        if isinstance(value, (list, tuple)):
            raise DatasetError(f"{path}: label {name!r} is a region ({value}), a union of label values that nnU-Net "
                               "trains as overlapping outputs; halo-seg trains one class per label value: list each "
                               "value's own name instead")
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: label {name!r} has the value {value!r}, not a whole number") from None
        if value in pairs:
            raise DatasetError(f"{path}: labels {pairs[value]!r} and {name!r} share the value {value}")
        pairs[value] = str(name)
    values = sorted(pairs)
    if values != list(range(len(values))):
        raise DatasetError(f"{path}: the label values are {values}; they must run 0, 1, 2, ... (0 the background)")
    if any(n.strip().lower() == "ignore" for n in pairs.values()):
        top = next(v for v, n in pairs.items() if n.strip().lower() == "ignore")
        raise DatasetError(f"{path}: label {top} is nnU-Net's 'ignore' (voxels left unlabelled), which halo-seg "
                           "train has no per-voxel form of; labels painted on whole slices train with "
                           "--labelled-slices, or give the unlabelled voxels a class")
    return [pairs[v] for v in values]


def _channel(channels: dict, choice, path: Path, key: str) -> tuple[int, str]:
    """(number, name) of the channel ``choice`` (an index or a name, any letter case) names among
    dataset.json's ``channels``; with none given, the only one."""
    try:
        table = {int(k): str(v) for k, v in channels.items()}
    except (AttributeError, TypeError, ValueError):
        raise DatasetError(f"{path}: '{key}' must map channel numbers to names, e.g. {{\"0\": \"CT\"}}") from None
    if sorted(table) != list(range(len(table))) or not table:
        raise DatasetError(f"{path}: '{key}' must number the channels 0, 1, ..., got {sorted(table)}")
    listed = ", ".join(f"{k} ({v})" for k, v in sorted(table.items()))
    if choice is None:
        if len(table) > 1:
            raise DatasetError(f"{path.parent.name} has {len(table)} channels: {listed}; choose the network's input "
                               "with --channel: one (a number or a name), several (0,1) or all")
        return 0, table[0]
    text = str(choice).strip()
    if text.isdigit() and int(text) in table:
        return int(text), table[int(text)]
    named = [k for k, v in table.items() if v.strip().lower() == text.lower()]
    if len(named) == 1:
        return named[0], table[named[0]]
    raise DatasetError(f"--channel {choice}: {path.parent.name} has the channels {listed}")


def _volume_files(folder: Path, ending: str) -> list[Path]:
    # '._x.nii.gz' (macOS metadata, shipped in the Decathlon's archives) and other hidden files are not cases
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name.endswith(ending)) \
        if folder.is_dir() else []


def _nnunet(root: Path, meta: dict, channel) -> Dataset:
    path = root / "dataset.json"
    names = _class_names(meta.get("labels"), path, by_name=True)
    number, channel_name = _channel(meta["channel_names"], channel, path, "channel_names")
    ending = str(meta.get("file_ending", ".nii.gz"))
    if not ending.lower().endswith(SUPPORTED):
        raise DatasetError(f"{path}: file_ending {ending!r} is not a 3D volume format halo-seg reads "
                           f"({', '.join(SUPPORTED)})")
    if isinstance(meta.get("dataset"), dict):   # nnU-Net v2's explicit list, paths relative to the folder
        entries = meta["dataset"]
        cases = sorted(entries)
        try:
            images = [root / entries[c]["images"][number] for c in cases]
            labels = [root / entries[c]["label"] for c in cases]
        except (KeyError, IndexError, TypeError):
            raise DatasetError(f"{path}: each entry of 'dataset' needs 'images' (one per channel) and 'label'") from None
    else:
        labels = _volume_files(root / "labelsTr", ending)
        if not labels:
            raise DatasetError(f"{root / 'labelsTr'} holds no {ending} label files")
        cases = [p.name[:-len(ending)] for p in labels]
        images = [root / "imagesTr" / f"{c}_{number:04d}{ending}" for c in cases]
        unlabelled = sorted({m.group("case") for p in _volume_files(root / "imagesTr", ending)
                             if (m := _CHANNEL_FILE.match(p.name[:-len(ending)]))} - set(cases))
        if unlabelled:
            raise DatasetError(f"{root / 'imagesTr'}: {len(unlabelled)} case(s) have no labels in labelsTr: "
                               f"{', '.join(unlabelled[:5])}{' ...' if len(unlabelled) > 5 else ''}")
    _check_files(root, images + labels)
    notes = _count_note(meta, len(cases), path)
    return Dataset(root, NNUNET, root.name, cases, images, labels, names, number, channel_name, {}, notes)


def _msd(root: Path, meta: dict, channel) -> Dataset:
    path = root / "dataset.json"
    names = _class_names(meta.get("labels"), path, by_name=False)
    number, channel_name = _channel(meta.get("modality") or {"0": "image"}, channel, path, "modality")
    training = meta.get("training")
    if not isinstance(training, list) or not training:
        raise DatasetError(f"{path}: 'training' must list the image/label pairs")
    try:
        images = [(root / t["image"]).resolve() for t in training]
        labels = [(root / t["label"]).resolve() for t in training]
    except (KeyError, TypeError):
        raise DatasetError(f"{path}: each entry of 'training' needs 'image' and 'label'") from None
    _check_files(root, images + labels)
    cases = [without_suffix(p.name) for p in labels]
    # several modalities lie along a 4D NIfTI's fourth dimension, which halo-seg's reader calls time
    several = len(meta.get("modality") or {}) > 1
    notes = _count_note(meta, len(cases), path)
    return Dataset(root, MSD, str(meta.get("name") or root.name), cases, images, labels, names, number,
                   channel_name, {"timepoint": number} if several else {}, notes)


def _channel_table(meta: dict) -> dict:
    return meta.get("channel_names") or meta.get("modality") or {"0": "image"}


def channel_choices(meta: dict, channel) -> list:
    """--channel as a list of the dataset's channels to stack ("all": every one, in dataset.json's
    order), or [channel] for one (None included)."""
    from .channels import parse_channel_choice
    choice = parse_channel_choice(channel)
    if isinstance(choice, str) and choice.strip().lower() == "all":
        return list(range(len(_channel_table(meta))))
    return choice if isinstance(choice, list) else [choice]


def read_channels(root, channel=None) -> list[Dataset]:
    """read_dataset for each channel ``channel`` names (one, a comma-separated list, or "all"): one
    Dataset per channel, of the same cases in the same order."""
    root = Path(root)
    datasets = [read_dataset(root, c) for c in channel_choices(_load_json(root), channel)]
    _distinct([d.channel for d in datasets], channel)
    return datasets


def _distinct(numbers: list, channel) -> None:
    """A channel named twice (by name or number alike) would feed the network one sequence twice."""
    if len(set(numbers)) < len(numbers):
        raise DatasetError(f"--channel {channel}: a channel is named twice")


def case_channels(datasets: list[Dataset]) -> list[list]:
    """Each case's input channels (io/channels.Channel), one per dataset of read_channels."""
    from .channels import Channel
    return [[Channel(ds.images[i], **{"channel": None, "timepoint": None, **ds.read_kwargs}) for ds in datasets]
            for i in range(len(datasets[0].cases))]


def _check_files(root: Path, paths) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DatasetError(f"{len(missing)} file(s) of {root.name} are missing: {', '.join(missing[:5])}"
                           f"{' ...' if len(missing) > 5 else ''}")


def _count_note(meta: dict, found: int, path: Path) -> list[str]:
    said = meta.get("numTraining")
    if isinstance(said, int) and said != found:
        return [f"{path} says numTraining {said}, but {found} labelled cases were found; training on those"]
    return []


def read_dataset(root, channel=None) -> Dataset:
    """The training cases of the dataset folder ``root`` (nnU-Net v2 or Decathlon layout), with the
    image file (and the choice within it) holding ``channel`` (a number or a name; needed when
    there are several). DatasetError names what is wrong: no dataset.json, a region or ignore
    label, a channel it lacks, a case's missing file."""
    root = Path(root)
    meta = _load_json(root)
    if "channel_names" in meta:
        return _nnunet(root, meta, channel)
    if "training" in meta or "modality" in meta:
        return _msd(root, meta, channel)
    raise DatasetError(f"{root / 'dataset.json'} has neither 'channel_names' (nnU-Net v2) nor 'training' / "
                       "'modality' (Medical Segmentation Decathlon)")


def class_names_of(root) -> dict[int, str]:
    """{value: name} of the foreground classes dataset.json in ``root`` names."""
    root = Path(root)
    meta = _load_json(root)
    names = _class_names(meta.get("labels"), root / "dataset.json", by_name="channel_names" in meta)
    return {k: n for k, n in enumerate(names) if k}


def describe(root) -> dict:
    """What `halo-seg info` shows of a dataset folder: its layout, channels, classes and cases (those
    of its first channel; a case lacking a file is an error here as in training)."""
    root = Path(root)
    meta = _load_json(root)
    ds = read_dataset(root, 0)
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "image"}
    tests = channel_cases(root / "imagesTs", 0)
    return {"dataset": ds.name, "layout": ds.layout, "labelled_cases": len(ds.cases),
            "channels": {int(k): str(v) for k, v in channels.items()},
            "classes": dict(enumerate(ds.class_names)),
            "test_images": len(tests[0]) if tests else len(_volume_files(root / "imagesTs", ".nii.gz")),
            "first_case": {"image": str(ds.images[0]), "labels": str(ds.labels[0])}, **({"notes": ds.notes} if ds.notes else {})}


def channel_cases(folder, channel=None) -> tuple[dict[str, Path], dict] | None:
    """An nnU-Net v2 images folder (``imagesTs``, ``imagesTr``: ``CASE_0000.nii.gz``, one file per
    channel, with the dataset's dataset.json above it) as {case: the file of ``channel``}, plus
    the choice to make within each file (none); a Decathlon images folder (one file per case,
    its modalities along the fourth dimension) as {case: file} and the modality's index. None for
    any other folder, whose files are cases as they are."""
    folder = Path(folder)
    if not is_dataset(folder.parent) or not folder.is_dir():
        return None
    meta = _load_json(folder.parent)
    choices = channel_choices(meta, channel)
    if "channel_names" in meta:
        numbers = [_channel(meta["channel_names"], c, folder.parent / "dataset.json", "channel_names")[0]
                   for c in choices]
        _distinct(numbers, channel)
        ending = str(meta.get("file_ending", ".nii.gz"))
        found: dict[str, dict] = {}
        for p in _volume_files(folder, ending):
            m = _CHANNEL_FILE.match(p.name[:-len(ending)])
            if m is None:
                return None   # not named CASE_XXXX: its files are cases as they are
            found.setdefault(m.group("case"), {})[int(m.group("channel"))] = p
        if len(numbers) == 1:
            return {c: f[numbers[0]] for c, f in found.items() if numbers[0] in f}, {}
        lacking = sorted(c for c, f in found.items() if any(n not in f for n in numbers))
        if lacking:
            raise DatasetError(f"{folder}: {len(lacking)} case(s) lack a file of the channels {choices}: "
                               f"{', '.join(lacking[:5])}{' ...' if len(lacking) > 5 else ''}")
        return {c: [f[n] for n in numbers] for c, f in found.items()}, {}
    if "modality" in meta and len(meta["modality"]) > 1 and len(choices) > 1:
        numbers = [_channel(meta["modality"], c, folder.parent / "dataset.json", "modality")[0] for c in choices]
        _distinct(numbers, channel)
        return {without_suffix(p.name): p for p in _volume_files(folder, ".nii.gz")}, {"timepoint": numbers}
    if "modality" in meta and len(meta["modality"]) > 1:
        number, _ = _channel(meta["modality"], channel, folder.parent / "dataset.json", "modality")
        return {without_suffix(p.name): p for p in _volume_files(folder, ".nii.gz")}, {"timepoint": number}
    return None


def foreground_window(ds: Dataset, per_case: int = 10000, seed: int = 0) -> tuple[float, float]:
    """nnU-Net's CT window: the 0.5th and 99.5th percentiles of the intensities inside the labels
    (any class), sampled evenly over every labelled case, a case at a time, so that every scan is
    clipped alike; from the whole dataset, as nnU-Net's fingerprint, so that the models of its
    folds share it and average as an ensemble."""
    import numpy as np
    from .labels import open_labels
    from .volume import open_volume
    rng = np.random.default_rng(seed)
    values = []
    for im, lb in zip(ds.images, ds.labels):
        inside = np.asarray(open_volume(im, **ds.read_kwargs).data)[np.asarray(open_labels(lb).data) > 0]
        if inside.size:
            values.append(rng.choice(inside, min(per_case, inside.size), replace=False).astype(np.float64))
    if not values:
        raise DatasetError(f"no case of {ds.root} holds a labelled voxel to take the CT window from")
    lo, hi = np.percentile(np.concatenate(values), [0.5, 99.5])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0
