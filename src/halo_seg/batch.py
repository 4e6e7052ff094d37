"""Segment every volume of a folder (a cohort of scans, a plate of stacks) with the automatic engine.

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

from .io.volume import SUPPORTED, VolumeError


def case_name(path: Path) -> str:
    name = path.name.rstrip("/")
    for suffix in sorted(SUPPORTED, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return name


def find_cases(folder) -> list[Path]:
    """The volumes in ``folder``, by name: files and zarr folders of a readable format, and folders
    holding one DICOM series each. Raises VolumeError when there are none or two share a name."""
    from .io.dicom import looks_like_series
    folder = Path(folder)
    if not folder.is_dir():
        raise VolumeError(f"{folder} is not a folder of volumes")
    cases = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        zarr_dir = p.is_dir() and any((p / f).exists() for f in ("zarr.json", ".zgroup", ".zarray"))
        if p.name.lower().endswith(SUPPORTED) or zarr_dir or (p.is_dir() and looks_like_series(p)):
            cases.append(p)
    if not cases:
        raise VolumeError(f"{folder} holds no volume ({', '.join(SUPPORTED)}, zarr, or a folder per DICOM series)")
    names = [case_name(p) for p in cases]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise VolumeError(f"{folder}: several volumes are named {', '.join(twice)}; their outputs would collide")
    return cases


def segment_folder(folder, out_dir, export: str | None = None, log: Callable[[str], None] = print,
                   **segment_kwargs) -> list[dict]:
    """Segment each case of ``folder`` into ``out_dir``; ``export``: a suffix (".nii.gz", ".dcm")
    for a copy of each case's labels placed on its scan. Returns one row per case (also written to
    ``out_dir/batch.csv``): case, input, status (done, already done, failed), seconds, output,
    export, error."""
    from .engine.runner import segment
    from .io.export import export_labels
    cases = find_cases(folder)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if export and not export.startswith("."):
        export = "." + export
    rows = []
    for i, case in enumerate(cases, 1):
        name = case_name(case)
        out = out_dir / f"{name}.zarr"
        row = {"case": name, "input": str(case), "status": "failed", "seconds": 0.0, "output": str(out),
               "export": "", "error": ""}
        t0 = time.perf_counter()
        try:
            res = segment(case, out, resume=True, **segment_kwargs)
            row["status"] = "already done" if res.skipped else "done"
            if export:
                target = out_dir / f"{name}{export}"
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
