"""The Cell Tracking Challenge's own evaluation of a tracking against its ground truth, by
py-ctcmetrics, the challenge's Python implementation of it: its biological measures (CT, the
complete tracks; TF, track fractions; BC(i), divisions found within i frames; CCA, the cell
cycle lengths' agreement), which are not written again here, and its TRA, DET and LNK, which
tracking.score computes itself from the same AOGM operations (and the tests check equal). An
optional dependency (``pip install "napari-halo-seg[ctc]"``).

A `track` output is written out as a result folder first (track_output.write_ctc), in a
temporary folder. SEG is not asked of it: tracking.seg_score scores a 3D frame's annotated planes
each apart, where py-ctcmetrics stacks a frame's planes into one volume.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from ..io.volume import VolumeError

MEASURES = ["Valid", "TRA", "DET", "LNK", "CT", "TF", "BC", "CCA"]
SHOWN = ("TRA", "DET", "LNK", "CT", "TF", "BC(0)", "BC(2)", "CCA")
INSTALL = 'pip install "napari-halo-seg[ctc]" (py-ctcmetrics)'


def available() -> bool:
    from importlib.util import find_spec
    return find_spec("ctc_metrics") is not None


def gt_root(reference) -> Path | None:
    """The NN_GT folder of a ground truth given as it or as its TRA folder, else None."""
    reference = Path(reference)
    for root in (reference, reference.parent):
        if (root / "TRA" / "man_track.txt").is_file():
            return root
    return None


def ctc_measures(tracking, reference) -> dict:
    """The challenge's measures of ``tracking`` (a `track` output or a result folder) against the
    ground truth ``reference`` (its NN_GT or TRA folder): a dict of the measures (floats) and the
    AOGM's operation counts; ``Valid`` 0 where the challenge's tools refuse the result."""
    try:
        from ctc_metrics.scripts.evaluate import evaluate_sequence
    except ImportError:
        raise VolumeError(f"the challenge's own measures need py-ctcmetrics: {INSTALL}") from None
    root = gt_root(reference)
    if root is None:
        raise VolumeError(f"{reference} is not a Cell Tracking Challenge ground truth (TRA/man_track.txt)")
    tracking = Path(tracking)
    work = None
    try:
        if tracking.suffix.lower() == ".zarr":
            from ..io.track_output import write_ctc
            work = Path(tempfile.mkdtemp(prefix="halo-seg-ctc-"))
            tracking = write_ctc(tracking, work / "01_RES")
        with contextlib.redirect_stdout(io.StringIO()):   # it prints its progress and results
            results = evaluate_sequence(str(tracking), str(root), metrics=list(MEASURES), threads=1)
    except (AssertionError, ValueError, IndexError) as exc:
        raise VolumeError(f"the challenge's evaluation (py-ctcmetrics) refused {tracking} against {root}: "
                          f"{exc}") from None
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    import numbers
    return {k: (None if v is None else float(v)) for k, v in results.items()
            if v is None or isinstance(v, numbers.Number)}


def format_measures(m: dict) -> str:
    if not m.get("Valid"):
        return "the challenge's tools find the result invalid (its masks and lineage disagree)"
    return "the challenge's evaluation (py-ctcmetrics): " + ", ".join(
        f"{k} {m[k]:.3f}" for k in SHOWN if m.get(k) is not None)
