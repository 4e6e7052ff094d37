"""`segment` (one volume, or every time point of a time-lapse), `batch` and `review`."""
from __future__ import annotations

from .common import _engine_args, _print_memory, _progress, _resampled_text, _spacing_arg


def cmd_segment(a) -> int:
    from ..engine.partition import parse_grid
    from ..engine.runner import segment
    source = a.input if len(a.input) > 1 else a.input[0]
    kwargs = dict(weights=a.weights or "default", grid=parse_grid(a.grid), device=a.device,
                  mode=a.mode, overlap=a.overlap, tile_size=a.tile, save_probabilities=a.save_probabilities,
                  resume=a.resume, timeout=a.timeout, threads=a.threads, progress=_progress, mirror=a.mirror,
                  channel=a.channel, memory_check=not a.no_memory_check,
                  precision=a.precision, resample=a.resample, spacing=_spacing_arg(a.spacing))
    choice = _time_choice(a.timepoint)
    if "timepoints" in choice:
        return _segment_series(source, a, kwargs)
    res = segment(source, a.output, **choice, **kwargs)
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
    from ..engine.series import frame_name, segment_series
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


def cmd_batch(a) -> int:
    from ..batch import segment_folder
    from ..engine.partition import parse_grid
    rows = segment_folder(a.input, a.output, export=a.export, series=a.series, weights=a.weights or "default",
                          grid=parse_grid(a.grid),
                          device=a.device, mode=a.mode, overlap=a.overlap, tile_size=a.tile,
                          save_probabilities=a.save_probabilities, timeout=a.timeout, threads=a.threads,
                          mirror=a.mirror, channel=a.channel, **_time_choice(a.timepoint),
                          memory_check=not a.no_memory_check, precision=a.precision, resample=a.resample,
                          spacing=_spacing_arg(a.spacing))
    failed = [r for r in rows if r["status"] == "failed"]
    print(f"{len(rows) - len(failed)} of {len(rows)} cases segmented into {a.output} (batch.csv lists them)"
          + (f"; failed: {', '.join(r['case'] for r in failed)}" if failed else ""))
    return 1 if failed else 0


def _time_choice(text) -> dict:
    """--timepoint as segment takes it: one time point (digits), else several (engine/series.py)."""
    if text is None or text.strip().isdigit():
        return {"timepoint": text}
    return {"timepoints": text}


def cmd_review(a) -> int:
    from ..review import expected_errors, open_uncertainty, parse_axis, review_order
    axis = parse_axis(a.axis)
    per_slice = expected_errors(open_uncertainty(a.output))[axis]
    total = per_slice.sum()
    name = "zyx"[axis]
    print(f"{a.output}: about {total:.0f} voxels expected wrong in all; slices along {name} to check first:")
    print(f"{'rank':>4} {name:>6} {'expected wrong voxels':>21} {'share':>6}")
    for k, i in enumerate(review_order(per_slice, a.top), 1):
        print(f"{k:>4} {i:>6} {per_slice[i]:>21.1f} {per_slice[i] / total:>6.1%}")
    return 0


def add_segment(sub) -> None:
    s = sub.add_parser("segment", help="automatic segmentation of a (large, lazy) volume")
    s.add_argument("input", nargs="+", metavar="INPUT",
                   help="the volume; for a network of several input channels, one file per channel in the "
                        "network's order (or one file holding them: --channel A,B or, with none, all of them)")
    s.add_argument("output", help="output .zarr group (labels, probabilities, done)")
    _engine_args(s, series=True)
    s.add_argument("--resume", action="store_true", help="skip a run whose blocks are all written")
    s.set_defaults(fn=cmd_segment)


def add_batch(sub) -> None:
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
    _engine_args(b, series=True)
    b.set_defaults(fn=cmd_batch)


def add_review(sub) -> None:
    r = sub.add_parser("review", help="the slices of a `segment` output to check first: those with the most "
                                      "voxels expected wrong (from the class probabilities)")
    r.add_argument("output", help="an output group of `segment`")
    r.add_argument("--axis", default="z", help="slices across z (axial for scans), y or x")
    r.add_argument("--top", type=int, default=10, help="how many slices to list")
    r.set_defaults(fn=cmd_review)
