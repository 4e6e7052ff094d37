"""A folder of volumes (a cohort of scans, a plate of stacks): segment every one with the automatic
engine, and compare a folder of segmentations with a folder of reference labels, case by case.

Each case goes to ``OUT/<case>.zarr`` and, if asked, is exported beside it (NIfTI on the scan,
DICOM SEG). Runs always resume: a case whose output is complete is skipped, one that was
interrupted is finished, and one whose output came from another job (other weights, grid, mirror,
channel) is reported rather than overwritten. A case that fails is recorded with its reason and
the others go on, so one corrupt scan does not end a night's run; ``OUT/batch.csv`` lists every
case's outcome.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Callable

from .io.dataset_folder import channel_cases
from .io.volume import SEGMENT_NAMES, SUPPORTED, VolumeError, is_zarr_dir, without_suffix


def case_name(path: Path, root: Path | None = None) -> str:
    """A case's name: its file or folder name without the format's suffix; a series deeper in
    ``root`` (a PACS export's patient / study / series folders) joins the folders' names with _."""
    path = Path(path)
    parts = path.relative_to(root).parts if root is not None and path.parent != Path(root) else (path.name,)
    return without_suffix("_".join(parts).rstrip("/"))


def is_case_folder(path) -> bool:
    """Whether ``path`` is a folder of volumes rather than one volume (a zarr, a DICOM series or a
    folder of 2D TIFF slices)."""
    from .io.dicom import looks_like_series
    from .io.tiff_slices import looks_like_slices
    path = Path(path)
    return path.is_dir() and not is_zarr_dir(path) and not looks_like_series(path) and not looks_like_slices(path)


def find_cases(folder, outputs_first: bool = False, series: str | None = None) -> list[Path]:
    """The volumes in ``folder``, by name: files and zarr folders of a readable format, and folders
    holding one DICOM series or one stack of 2D TIFF slices each. With ``outputs_first`` a case's
    ``.zarr`` output is taken over its exports of the same name (a `batch --export` folder). With
    ``series`` (a regular expression) the cases are instead the DICOM series anywhere below
    ``folder`` (a PACS export of a cohort) whose description it matches, in any letter case.
    Raises VolumeError when there are none or two share a name."""
    from .io.dicom import looks_like_series
    from .io.tiff_slices import looks_like_slices
    folder = Path(folder)
    if not folder.is_dir():
        raise VolumeError(f"{folder} is not a folder of volumes")
    if series is not None:
        cases = _matching_series(folder, series)
    else:
        cases = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and (
            p.name.lower().endswith(SUPPORTED) or is_zarr_dir(p)
            or (p.is_dir() and (looks_like_series(p) or looks_like_slices(p))))]
    if not cases:
        from .io.dataset_folder import is_dataset
        if is_dataset(folder):   # a dataset's root: its volumes are in the folders below
            raise VolumeError(f"{folder} is a dataset folder (dataset.json); its test images are in "
                              f"{folder / 'imagesTs'}, its labelled ones in {folder / 'imagesTr'}")
        raise VolumeError(f"{folder} holds no volume ({', '.join(SUPPORTED)}, zarr, or a folder per DICOM series "
                          "or per stack of TIFF slices; --series finds DICOM series in folders below)")
    if outputs_first:
        zarrs = {case_name(p) for p in cases if p.name.lower().endswith(".zarr")}
        cases = [p for p in cases if p.name.lower().endswith(".zarr") or case_name(p) not in zarrs]
    names = [case_name(p, folder) for p in cases]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise VolumeError(f"{folder}: several volumes are named {', '.join(twice)}; their outputs would collide")
    return cases


def _matching_series(folder: Path, pattern: str) -> list[Path]:
    import re
    from .io.dicom import description, series_folders
    try:
        wanted = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise VolumeError(f"--series {pattern!r} is not a regular expression: {exc}") from None
    found = [(p, description(ds)) for p, ds in series_folders(folder)]
    cases = [p for p, desc in found if wanted.search(desc)]
    if not cases:
        seen = sorted({desc for _, desc in found})
        raise VolumeError(f"no DICOM series below {folder} is described as matching {pattern!r}"
                          + (f"; their descriptions: {', '.join(repr(d) for d in seen[:20])}"
                             f"{' ...' if len(seen) > 20 else ''}" if seen else "; it holds no DICOM series"))
    return cases


def _takes_several(weights) -> bool:
    """Whether the network of ``weights`` takes several input channels (a missing file: not here,
    segment names it)."""
    from .engine.ensemble import input_channels
    from .engine.weights import WeightsError
    try:
        return input_channels(weights) > 1
    except WeightsError:
        return False


def segment_folder(folder, out_dir, export: str | None = None, log: Callable[[str], None] = print,
                   series: str | None = None, **segment_kwargs) -> list[dict]:
    """Segment each case of ``folder`` into ``out_dir``; ``export``: a suffix (".nii.gz", ".dcm", ".rtstruct.dcm")
    for a copy of each case's labels placed on its scan. Returns one row per case (also written to
    ``out_dir/batch.csv``): case, input, status (done, already done, failed), seconds, output,
    export, error, resampled (the case's spacing -> the model's, where the network ran resampled).
    ``timepoints`` ("all", "0-9", ...; engine/series.py): each case a time-lapse, every chosen time
    point segmented into the case's output (a ``timepoints`` column counts them)."""
    from .engine.resample import spacing_text
    from .engine.runner import segment
    from .engine.series import segment_series
    from .io.dicom import looks_like_series
    from .io.export import export_labels
    every = segment_kwargs.pop("timepoints", None)   # several time points of each case: a series each
    if every is not None and export:
        raise VolumeError("--export writes one volume per case; a time-lapse's time points are each an output of "
                          "their own: export one with `halo-seg export CASE.zarr/t0000 OUT.nii.gz`")
    channel = segment_kwargs.get("channel")
    if channel is None and not series and _takes_several(segment_kwargs.get("weights", "default")):
        channel = "all"   # a dataset's images folder: each case's channels, as the model was trained on them
    picked = None if series else channel_cases(folder, channel)
    if picked is None:
        cases = find_cases(folder, series=series)
        names = [case_name(case, Path(folder)) for case in cases]
    else:   # a dataset's images folder: each case's file of the channel, named as its labels are
        files, choice = picked
        if not files:
            raise VolumeError(f"{folder} holds no image of the chosen channel")
        if choice and segment_kwargs.get("timepoint") is not None:
            raise VolumeError(f"{folder}'s images hold the dataset's modalities along their 4th dimension; choose one "
                              "with --channel, not --timepoint")
        cases, names = list(files.values()), list(files)   # a list of files where the network takes several channels
        segment_kwargs = {**segment_kwargs, "channel": None, **choice}
    out_dir = Path(out_dir)
    if out_dir.resolve() == Path(folder).resolve():   # the outputs would become cases of the next run
        raise VolumeError(f"the output folder must not be the input folder {folder}")
    if export and not export.startswith("."):
        export = "." + export
    if export:   # a suffix export cannot write is refused before any case is segmented
        from .io.mesh import MESH_SUFFIXES
        from .io.rtstruct import RT_SUFFIX
        from .io.volume import ITK_WRITE, NIFTI_SUFFIXES
        # .zarr: the output itself
        known = NIFTI_SUFFIXES + ITK_WRITE + (".tif", ".tiff", ".dcm", RT_SUFFIX) + MESH_SUFFIXES
        if export.lower() not in known:
            raise VolumeError(f"--export {export}: use one of {', '.join(known)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (case, name) in enumerate(zip(cases, names), 1):
        out = out_dir / f"{name}.zarr"
        first = case[0] if isinstance(case, list) else case
        row = {"case": name, "input": " + ".join(map(str, case)) if isinstance(case, list) else str(case), "status": "failed", "seconds": 0.0, "output": str(out),
               "export": "", "error": "", "resampled": "", **({"timepoints": 0} if every is not None else {})}
        t0 = time.perf_counter()
        try:
            if every is not None:   # each time point of each time-lapse, into the case's series (engine/series.py)
                res = segment_series(case, out, timepoints=every, resume=True, **segment_kwargs)
                row["status"] = "already done" if len(res.skipped) == len(res.timepoints) else "done"
                row["timepoints"] = len(res.timepoints)
            else:
                res = segment(case, out, resume=True, **segment_kwargs)
                row["status"] = "already done" if res.skipped else "done"
            if every is None and res.resampled:   # cases of a cohort differ in voxel size: say which ran at the model's
                row["resampled"] = " -> ".join(spacing_text(res.resampled[k], sep="x") for k in ("from_spacing", "spacing"))
            if export:
                target = out_dir / f"{name}{export}"
                if export.lower().endswith(".dcm") and not looks_like_series(Path(first)):
                    raise VolumeError(f"{Path(first).name} is not a DICOM series, which a DICOM SEG or structure set "
                                      "references; the labels are in the .zarr (--export .nii.gz places them on "
                                      "the scan)")
                if not (res.skipped and target.exists()):
                    export_labels(out, target)
                row["export"] = str(target)
        except Exception as exc:   # recorded, and the next case goes on
            row["error"] = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        log(f"[{i}/{len(cases)}] {name}: {row['status']} in {row['seconds']:.1f}s"
            + (f" ({row['error']})" if row["error"] else ""))
    with open(out_dir / "batch.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def evaluate_folders(pred_dir, truth_dir, labels=None, distances: bool = True,
                     log: Callable[[str], None] = print) -> tuple[dict, dict, dict]:
    """Compare each case of ``pred_dir`` (outputs of `batch`, or any label volumes) with the case of
    the same name in ``truth_dir`` (evaluate.compare_labels, the reference's spacing). Returns
    (rows: one per case and label, with ``case``; summary: one per label over the cases, Dice mean,
    s.d. and median, mean HD95 and ASSD; unmatched: {"no prediction": [...], "no reference": [...],
    "failed": {case: reason}}). Cases on different grids are reported as failed, not compared."""
    from .evaluate import compare_labels
    from .io.geometry import on_one_grid
    from .io.labels import open_labels
    preds = {case_name(p): p for p in find_cases(pred_dir, outputs_first=True)}
    truths = {case_name(p): p for p in find_cases(truth_dir)}
    both = sorted(set(preds) & set(truths))
    unmatched = {"no prediction": sorted(set(truths) - set(preds)),
                 "no reference": sorted(set(preds) - set(truths)), "failed": {}}
    if not both:
        raise VolumeError(f"no case of {pred_dir} has a reference of the same name in {truth_dir}")
    rows: dict[str, list] = {}
    named = {"truth": {}, "pred": {}}   # the names the files give their labels (SEG, a model's classes)
    for i, case in enumerate(both, 1):
        try:
            truth, pred = open_labels(truths[case]), open_labels(preds[case])
            named["truth"].update(truth.meta.get(SEGMENT_NAMES) or {})
            named["pred"].update(pred.meta.get(SEGMENT_NAMES) or {})
            # either saved cropped to its objects: both on the grid that holds the other
            pd, td, _ = on_one_grid(pred, truth, str(preds[case]), str(truths[case]))
            table = compare_labels(pd, td, truth.spacing, labels=labels, distances=distances)
        except (VolumeError, ValueError) as exc:
            unmatched["failed"][case] = str(exc)
            log(f"[{i}/{len(both)}] {case}: failed ({exc})")
            continue
        rows.setdefault("case", []).extend([case] * len(table["label"]))
        for col, values in table.items():
            rows.setdefault(col, []).extend(values.tolist())
        log(f"[{i}/{len(both)}] {case}: mean Dice {table['dice'].mean():.3f} over {len(table['label'])} labels"
            if len(table["label"]) else f"[{i}/{len(both)}] {case}: no labels in either volume")
    import numpy as np
    from .io.dataset_folder import class_names_of, is_dataset
    from .measure import with_names
    # the reference's names, else its dataset's (a dataset's labelsTs), else the predictions'
    names = named["truth"] or (class_names_of(Path(truth_dir).parent) if is_dataset(Path(truth_dir).parent)
                               else {}) or named["pred"]
    rows = with_names({c: np.asarray(v) for c, v in rows.items()}, names) if rows else rows
    summary: dict[str, list] = {c: [] for c in ("label", "cases", "dice_mean", "dice_sd", "dice_median")}
    if distances:
        summary.update(hd95_mean=[], assd_mean=[])
    for k in sorted(set(rows.get("label", np.zeros(0, int)).tolist())):
        sel = rows["label"] == k
        d = rows["dice"][sel].astype(float)
        summary["label"].append(k)
        summary["cases"].append(int(sel.sum()))
        summary["dice_mean"].append(float(d.mean()))
        summary["dice_sd"].append(float(d.std(ddof=1)) if len(d) > 1 else float("nan"))
        summary["dice_median"].append(float(np.median(d)))
        if distances:
            for col in ("hd95", "assd"):
                v = rows[col][sel].astype(float)
                summary[f"{col}_mean"].append(float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"))
    return rows, with_names({c: np.asarray(v) for c, v in summary.items()}, names), unmatched


def format_summary(summary: dict, unmatched: dict, unit: str | None) -> str:
    from .evaluate import distance_cells
    dist = "hd95_mean" in summary
    header, cells = distance_cells(unit)
    wide = max([4] + [len(v) for v in summary["name"]]) if "name" in summary else 0
    lines = [f"{'label':>8}" + (f" {'name':<{wide}}" if wide else "") + f" {'cases':>6} {'Dice mean +- s.d.':>18} "
             f"{'median':>7}" + (header if dist else "")]
    for i in range(len(summary["label"])):
        line = (f"{int(summary['label'][i]):>8}" + (f" {summary['name'][i]:<{wide}}" if wide else "")
                + f" {int(summary['cases'][i]):>6} "
                f"{summary['dice_mean'][i]:>9.3f} +- {summary['dice_sd'][i]:<5.3f} {summary['dice_median'][i]:>7.3f}")
        if dist:
            line += cells(summary['hd95_mean'][i], summary['assd_mean'][i])
        lines.append(line)
    for what in ("no prediction", "no reference"):
        if unmatched[what]:
            lines.append(f"{what} (left out): {', '.join(unmatched[what])}")
    for case, why in unmatched["failed"].items():
        lines.append(f"failed: {case}: {why}")
    return "\n".join(lines)
