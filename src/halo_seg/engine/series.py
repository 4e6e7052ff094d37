"""Segmenting every time point of a time-lapse: one `segment` output per time point, in one group.

A microscope's time-lapse (T, Z, Y, X), or (T, C, Z, Y, X) with a channel chosen, is a stack of
3D volumes the network segments one at a time. Each time point's output is an ordinary segment
group (``OUT.zarr/t0003``: labels, uncertainty, its blocks' done map), so every other command
(export, measure, instances, review, napari) takes a time point as it takes any output, and a
run that stopped resumes at the first time point not finished. The series group records the
input's number of time points and which were segmented; read as a whole (io/volume.py) it is a
(T, Z, Y, X) label volume aligned with the input's time axis, time points not segmented reading
as background.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..io.series_output import SERIES, frame_name
from ..io.timepoints import parse_timepoints, timepoint_count
from ..io.volume import VolumeError, check_zarr_output_name
from .runner import EngineError, PlannedRun, input_name, run_planned, segment, torchrun_env

# time points run on ranks started once (run_planned): starting 2 CPU ranks takes longer than a
# 48 x 96 x 96 time point's blocks (benchmarks/series.py); batches keep a stop's unstarted outputs few
BATCH = 16
ARRAY_BATCH_BYTES = 2 ** 28   # of an array's time points per start of the ranks (each rank is sent them)


@dataclass
class SeriesResult:
    output: str
    timepoints: list                              # the time points segmented, in the input's indexing
    seconds: float
    frames: list = field(default_factory=list)    # a SegmentResult per time point, in that order

    @property
    def skipped(self) -> list:
        """The time points a --resume found already done."""
        return [t for t, r in zip(self.timepoints, self.frames) if r.skipped]


def _frame_bytes(source) -> int:
    return int(np.prod(source.shape[1:])) * np.dtype(source.dtype).itemsize


def _frame_source(source, t: int):
    return (source, {"timepoint": t}) if isinstance(source, (str, Path)) else (source[t], {})


def _prepare(output: Path, source, n: int, chosen: list, resume: bool, channel) -> None:
    """The series group: a new one, the old one replaced (unless a time point was corrected by hand,
    or it is not a series output at all), or on --resume the same job's."""
    import zarr
    from .output import corrected_when
    record = {"input": input_name(source), "timepoints": n, "channel": channel}
    if output.exists():
        try:
            old = dict(zarr.open_group(str(output), mode="r").attrs).get(SERIES)
        except Exception:
            old = None
        if old is None:
            raise VolumeError(f"output {output} exists and is not a time series output of halo-seg segment; "
                              "choose a new path")
        if resume:
            if {k: old.get(k) for k in record} != record:
                raise VolumeError(f"cannot resume into {output}: it holds the time points of {old.get('input')} "
                                  f"({old.get('timepoints')}, channel {old.get('channel')}), not of this input")
        else:
            for t in old.get("segmented", []):
                when = corrected_when(output / frame_name(t))
                if when:   # the user's work on it is not the engine's to replace
                    raise VolumeError(f"output {output}: time point {t} holds corrections made in napari "
                                      f"(last {when}); choose a new path, or move it away first")
            shutil.rmtree(output)
    grp = zarr.open_group(str(output), mode="a")
    done = sorted(set(dict(grp.attrs).get(SERIES, {}).get("segmented", [])) | set(chosen)) if resume else chosen
    grp.attrs[SERIES] = {**record, "segmented": done}   # each in its group frame_name(t)


def segment_series(source, output, timepoints="all", channel=None, resume: bool = False,
                   progress: Callable[[int, int, str], None] | None = None, cancel=None, **kwargs) -> SeriesResult:
    """Segment each chosen time point of ``source`` (a path whose file has a t axis, or a 4D
    (T, Z, Y, X) array) into ``output/tNNNN`` with :func:`segment` (``kwargs``: its options).
    ``timepoints``: see :func:`parse_timepoints`. ``progress`` gets (done, total, text) over all
    the time points; ``cancel`` stops the run at once (the time points finished stay, and a
    --resume goes on from there). An error names the time point it happened at."""
    output = Path(output)
    check_zarr_output_name(output, "segment", "a zarr group of time points (labels, uncertainty each)")
    if "timepoint" in kwargs:
        raise EngineError("segment_series takes timepoints=, not timepoint=")
    n = timepoint_count(source)
    chosen = parse_timepoints(timepoints, n)
    if not torchrun_env() or int(os.environ.get("RANK", 0)) == 0:   # under torchrun rank 0 makes the group
        _prepare(output, source, n, chosen, resume, channel)
    t0 = time.perf_counter()
    frames = {}
    together = kwargs.get("mode", "halo") == "halo"
    # under torchrun every time point in one process group (runner.run_planned); an array's time
    # points go to every rank whole, so no more of them than ARRAY_BATCH_BYTES at a time
    size = len(chosen) if torchrun_env() else BATCH if isinstance(source, (str, Path)) else \
        max(1, min(BATCH, ARRAY_BATCH_BYTES // max(1, _frame_bytes(source))))
    size = size if together else 1
    for first in range(0, len(chosen), size):
        batch = chosen[first:first + size]
        planned = []
        for t in batch:
            def step(done, total, text, k=chosen.index(t), t=t):
                if progress is not None:   # the time points before, then this one's share
                    progress(k * max(total, 1) + done, len(chosen) * max(total, 1),
                             f"time point {t} ({k + 1} of {len(chosen)}): {text}")
            src, choice = _frame_source(source, t)
            try:
                r = segment(src, output / frame_name(t), channel=channel, resume=resume, progress=step,
                            cancel=cancel, _plan_only=together, **choice, **kwargs)
            except (EngineError, VolumeError) as exc:
                raise type(exc)(f"time point {t}: {exc}") from exc
            if isinstance(r, PlannedRun):
                r.job["label"] = f"time point {t}"
                planned.append((t, r))
            else:   # done already (--resume), or run at the model's voxel size (its own ranks)
                frames[t] = r
        if planned:
            def step(done, total, text, before=len(frames)):
                if progress is not None:   # total: this batch's blocks; each time point has as many
                    per = max(total // len(planned), 1)
                    progress(before * per + done, len(chosen) * per, text)
            for (t, _), r in zip(planned, run_planned([r for _, r in planned], step, cancel)):
                frames[t] = r
    return SeriesResult(str(output), chosen, time.perf_counter() - t0, [frames[t] for t in chosen])
