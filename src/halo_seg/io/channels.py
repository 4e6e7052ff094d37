"""The input channels of a network that takes several (nnU-Net stacks a case's modalities: BraTS's
FLAIR, T1, T1-Gd and T2; a prostate's T2 and ADC).

A channel is one 3D volume: a file (or array) and the choice within it (a channel of an OME-Zarr
or OME-TIFF, a volume of a 4D NIfTI such as the Decathlon's). The channels of one case come as one
file per channel (nnU-Net's CASE_0000, CASE_0001, ...) or as several choices within one file, and
must lie on one voxel grid: the network reads the same voxel of each.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .volume import Volume, VolumeError, file_contents, open_volume


@dataclass(frozen=True)
class Channel:
    """One input channel: ``source`` (a path or array) and the 3D volume chosen in it."""
    source: Any
    channel: int | str | None = None
    timepoint: int | None = None

    def open(self, spacing=None) -> Volume:
        return open_volume(self.source, spacing=spacing, channel=self.channel, timepoint=self.timepoint)

    @property
    def name(self) -> str:
        what = str(self.source) if isinstance(self.source, (str, Path)) else "the array"
        pick = [f"channel {self.channel}"] * (self.channel is not None) + [f"volume {self.timepoint}"] * (
            self.timepoint is not None)
        return f"{what} ({', '.join(pick)})" if pick else what


def chosen_text(vol: Volume) -> str:
    """What was taken from an opened volume's file: "channel T2" (by name where the file names it,
    else its index), "volume 1" of a 4D file, both, or "" for a 3D file."""
    meta, parts = vol.meta, []
    if "channel" in meta:
        parts.append(f"channel {meta.get('channel_name', meta['channel'])}")
    if "timepoint" in meta:
        parts.append(f"volume {meta['timepoint']}")
    return " ".join(parts)


def what_channel(ch: Channel, vol: Volume) -> str:
    """One opened channel as a user knows it: its file's name and what was taken from it."""
    what = Path(ch.source).name if isinstance(ch.source, (str, Path)) else "an array"
    return f"{what} {chosen_text(vol)}".strip()


def parse_channel_choice(text):
    """--channel as given: None, one channel (an index or a name), or several separated by commas
    ("T1,T2", "0,1") for a network of several input channels."""
    if text is None or isinstance(text, (int, list, tuple)):
        return list(text) if isinstance(text, tuple) else text
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) == 1:
        return parts[0]
    if not all(parts):
        raise VolumeError(f"--channel {text!r}: name each channel, separated by commas (e.g. T1,T2 or 0,1)")
    return parts


def channel_list(sources, channel=None, timepoint=None) -> list[Channel]:
    """The channels named: several sources (one channel each, ``channel`` then chooses within every
    one of them), or one source with one or several ``channel`` choices."""
    sources = list(sources) if isinstance(sources, (list, tuple)) else [sources]
    if isinstance(timepoint, (list, tuple)):   # a Decathlon file's modalities, along its 4th dimension
        if len(sources) > 1 or channel is not None:
            raise VolumeError("several volumes of a 4D file are the channels of one file; give one file")
        return [Channel(sources[0], None, t) for t in timepoint]
    channel = parse_channel_choice(channel)
    if isinstance(channel, str) and channel.strip().lower() == "all":
        channel = None   # every channel of the file: for_network takes as many as the network has
    several = isinstance(channel, list)
    if len(sources) > 1 and several:
        raise VolumeError(f"{len(sources)} input files and {len(channel)} channels ({', '.join(map(str, channel))}): "
                          "give one file per channel, or one file and the channels within it")
    if several:
        return [Channel(sources[0], c, timepoint) for c in channel]
    return [Channel(s, channel, timepoint) for s in sources]


def _axis_sizes(source) -> dict:
    from .axes import axis_names
    raw = file_contents(source)
    return dict(zip(axis_names(raw.data.shape, raw.meta.get("axes")), raw.data.shape))


def for_network(chs: list[Channel], n: int, names=None) -> list[Channel]:
    """``chs`` checked against a network of ``n`` input channels (named ``names``, in order): one
    file without a choice, holding exactly ``n`` channels (or, as the Decathlon's 4D NIfTI does,
    ``n`` volumes), gives them all in the file's order; other counts are refused."""
    listed = f" ({', '.join(map(str, names))})" if names else ""
    if n > 1 and len(chs) == 1 and chs[0].channel is None and chs[0].timepoint is None:
        sizes = _axis_sizes(chs[0].source)
        for axis, key in (("c", "channel"), ("t", "timepoint")):
            if sizes.get(axis) == n:
                return [Channel(chs[0].source, **{key: k}) for k in range(n)]
    if len(chs) != n:
        got = f"{len(chs)} channel{'s' * (len(chs) != 1)}: " + "; ".join(c.name for c in chs)
        how = ("give one file per channel in that order (segment T1.nii.gz T2.nii.gz OUT.zarr), or a file holding "
               "them with --channel A,B,..." if n > 1 else
               "give one channel (--channel), or weights trained on these channels")
        raise VolumeError(f"the network takes {n} input channel{'s' * (n != 1)}{listed}; got {got}: {how}")
    return chs


def open_channels(chs: list[Channel], spacing=None) -> list[Volume]:
    """Each channel opened (lazily), checked to lie on the first one's voxel grid."""
    from .geometry import grid_mismatch
    vols = [c.open(spacing) for c in chs]
    for c, v in zip(chs[1:], vols[1:]):
        if v.shape != vols[0].shape:
            raise VolumeError(f"the input channels differ in shape: {chs[0].name} is {vols[0].shape}, {c.name} is "
                              f"{v.shape}; the network reads the same voxel of each, so they must share one grid "
                              "(halo-seg resample IN OUT --like FIRST)")
        found = grid_mismatch(vols[0], v, chs[0].name, c.name)
        if found:
            raise VolumeError(f"{found}: the input channels must lie on one voxel grid (halo-seg resample IN OUT "
                              "--like FIRST)")
    return vols
