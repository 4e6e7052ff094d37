"""What the commands share: progress lines, voxel-size and channel/time-point arguments, the engine's options."""
from __future__ import annotations

import contextlib


def _progress(done, total, msg):
    print(f"  [{done}/{total}] {msg}", flush=True)


@contextlib.contextmanager
def progress_bar(desc: str, unit: str, quiet: bool):
    """A tqdm bar and the ``progress(done, total)`` the engine reports to, which moves it."""
    from tqdm import tqdm
    with tqdm(total=1, desc=desc, unit=unit, disable=quiet) as bar:
        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()
        yield progress


def _spacing_arg(text):
    if not text:
        return None
    try:
        sp = tuple(float(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        sp = ()
    if len(sp) != 3 or not all(v > 0 for v in sp):
        from ..io import VolumeError
        raise VolumeError(f"--spacing must be three positive numbers z,y,x, got {text!r}")
    return sp


def _resampled_text(r: dict) -> str:
    from ..engine.resample import spacing_text
    return (f"the network ran at the voxel size it was trained at: {spacing_text(r['from_spacing'], unit=r.get('unit'))} "
            f"resampled to {spacing_text(r['spacing'], unit=r.get('unit'))} ({' x '.join(map(str, r['shape']))} "
            f"voxels) and its probabilities back (--resample off runs it on the voxels as they are)")


def _print_memory(res) -> None:
    from ..engine.memory import MIB, fmt_bytes
    peaks = [r.get("cuda_peak_mb", r.get("peak_mb")) for r in res.ranks if r.get("peak_mb") is not None]
    if res.memory is not None and peaks:
        print(f"peak memory of the largest rank: {fmt_bytes(max(peaks) * MIB)} "
              f"(estimated beforehand: {fmt_bytes(res.memory.per_rank)})")


def _choice_args(p, whose: str, several: bool = False, series: bool = False) -> None:
    p.add_argument("--channel", default=None, help=f"the channel {whose} to use, by index or by name, "
                                                   "when it has several (a fluorescence stack)" + (
                       "; several, separated by commas (T1,T2), for a network of several input channels" if several
                       else ""))
    if series:   # segment: every time point of a time-lapse, each into OUT.zarr/tNNNN (engine/series.py)
        p.add_argument("--timepoint", default=None, metavar="T", help=f"the time point {whose} to use, when it has "
                       "several; all, a range A-B or several (0-9,20): each time point segmented in turn, into a "
                       "group of its own in the output (OUTPUT.zarr/t0000, ...; read whole as one (T, Z, Y, X) "
                       "label volume)")
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


def _object_args(o, classes_note: str = "", min_note: str = "", split_help: str = "") -> None:
    """How objects are found as connected components (instances, track): their classes, the
    smallest kept, connectivity and the watershed split of touching ones."""
    o.add_argument("--classes", type=int, nargs="*", default=None,
                   help="label values whose components become objects, each class apart (default: every "
                        "value > 0 as one foreground)" + classes_note)
    o.add_argument("--min-voxels", type=int, default=0, help="drop objects smaller than this" + min_note)
    o.add_argument("--connectivity", type=int, default=1, choices=[1, 2, 3],
                   help="1: faces touch (default), 2: and edges, 3: and corners")
    o.add_argument("--split", type=float, nargs="?", const=0.25, default=None, metavar="DEPTH",
                   help=split_help or "split touching objects (nuclei) by the distance-transform watershed; DEPTH in "
                                      "voxels, default 0.25 (chosen on procedural touching balls, benchmarks/README.md)")
