"""`export`, `measure`, `instances` and `evaluate`: what is done with labels once they exist."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import LABEL_FILES, _choice_args, _object_args, _spacing_arg


def cmd_export(a) -> int:
    from ..io.export import export_labels
    print("wrote " + export_labels(a.labels, a.output, like=a.like, name=a.name, label=a.label, smooth=a.smooth))
    return 0


def cmd_measure(a) -> int:
    from ..measure import check_table_path, format_table, write_csv
    given = _spacing_arg(a.spacing)   # a typo is reported before any voxel is read
    if a.csv:
        check_table_path(Path(a.csv))
    series = _series_of(a.labels)
    if series:
        return _measure_series(a, given, series)
    n = _timepoints_in(a.labels)
    if n:
        return _measure_timelapse(a, given, n)
    table, unit = _measure_one(a, a.labels, given, a.timepoint)
    print(format_table(table, unit, most=a.most))
    if a.csv:
        print("wrote " + str(write_csv(table, a.csv)))
    return 0


def _series_of(path) -> dict | None:
    """The time points of a time series output of segment (engine/series.py), else None."""
    from ..io.series_output import TIME_SERIES
    from ..io.volume import file_contents, is_zarr_dir
    if not is_zarr_dir(path):
        return None
    return file_contents(path).meta.get(TIME_SERIES)


def _timepoints_in(path) -> int | None:
    """How many time points a labels file or folder holds along a t axis (a hyperstack of labels, a
    folder of masks such as the Cell Tracking Challenge's), else None."""
    from ..io.axes import axis_names
    from ..io.volume import file_contents
    if not isinstance(path, (str, Path)) or not Path(path).exists():
        return None
    raw = file_contents(path)
    sizes = dict(zip(axis_names(raw.data.shape, raw.meta.get("axes")), raw.data.shape))
    return int(sizes["t"]) if sizes.get("t", 1) > 1 else None


def _measure_timelapse(a, given, n: int) -> int:
    """A time-lapse's labels measured at --timepoint, or at every time point into one table with a
    timepoint column; the image, if given, at the same time point."""
    from ..io.timepoints import parse_timepoints
    from ..io.volume import file_contents
    chosen = parse_timepoints("all" if a.timepoint is None else [a.timepoint], n)
    raw = file_contents(a.labels)   # opened once: a folder of frames has a header per file to read
    return _measure_each(a, given, [(t, raw, t, t) for t in chosen])


def _measure_each(a, given, frames: list) -> int:
    """Each of ``frames`` (time point, labels, the image's time point, the labels' time point or
    None) measured and printed; one CSV of them all with a timepoint column."""
    from dataclasses import replace

    from ..io.volume import Volume, file_contents
    from ..measure import by_timepoint, format_table, write_csv
    image = file_contents(a.image) if a.image else None   # opened once, taken at each time point
    tables = []
    for t, labels, image_at, labels_at in frames:
        if isinstance(labels, Volume):   # open_volume takes its time point from a copy (it changes what it is given)
            labels = replace(labels, meta=dict(labels.meta))
        table, unit = _measure_one(a, labels, given, image_at, labels_at=labels_at,
                                   image=None if image is None else replace(image, meta=dict(image.meta)))
        print(f"time point {t}:")
        print(format_table(table, unit, most=a.most))
        tables.append((t, table))
    if a.csv:
        print("wrote " + str(write_csv(by_timepoint(tables), a.csv))
              + f" (a row per object and time point: {len(tables)} time point{'s' if len(tables) > 1 else ''})")
    return 0


def _measure_series(a, given, series: dict) -> int:
    """Every segmented time point measured (the image, given, at the same time point): a table each,
    and one CSV with a timepoint column."""
    from ..io.series_output import frame_name
    if a.timepoint is not None:
        raise SystemExit("error: the labels hold several time points and --image is read at each of them; "
                         f"for one, give its output: {a.labels}/{frame_name(int(a.timepoint))}")
    return _measure_each(a, given, [(t, str(Path(a.labels) / frame_name(t)), t if a.image else None, None)
                                    for t in series["segmented"]])


def _measure_one(a, labels, given, timepoint, labels_at: int | None = None, image=None):
    """measure's table of one label volume (with --image at ``timepoint``, or ``image``: its
    contents opened already; a time-lapse's labels at ``labels_at``, a 2D movie's frame as one
    plane), and its length unit."""
    from ..io import geometry, open_volume
    from ..io.labels import open_labels
    from ..io.volume import SEGMENT_NAMES, length_unit
    from ..measure import measure_labels, with_names
    frame = {} if labels_at is None else {"timepoint": labels_at, "planes": True}
    lab = open_labels(labels, **frame)
    img = open_volume(image if image is not None else a.image, channel=a.channel, timepoint=timepoint,
                      planes=labels_at is not None) if a.image else None
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
        from ..measure import add_shape
        table = add_shape(table, lab.data, spacing)
    return with_names(table, lab.meta.get(SEGMENT_NAMES)), unit   # "liver", not only 3


def cmd_instances(a) -> int:
    from tqdm import tqdm
    import numpy as np
    from ..instances import label_instances, split_touching
    from ..io import geometry
    from ..io import VolumeError
    from ..io.labels import open_labels
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


def cmd_evaluate(a) -> int:
    from ..evaluate import (compare_instances, compare_labels, format_comparison, format_instances, name_mismatch,
                           renumber_by_name)
    from ..io.labels import open_labels
    from ..io.volume import SEGMENT_NAMES
    from ..measure import check_table_path, write_csv
    from ..batch import is_case_folder
    if a.csv:   # before any voxel is read
        check_table_path(Path(a.csv))
    if is_case_folder(a.pred) or is_case_folder(a.truth):
        return _evaluate_folders(a)
    from ..io.geometry import on_one_grid
    pred, truth = open_labels(a.pred), open_labels(a.truth)   # truth's spacing is used
    # either saved cropped to its objects (3D Slicer's .seg.nrrd): both on the grid that holds the other
    data, truth_data, _ = on_one_grid(pred, truth, a.pred, a.truth)
    if a.instances:
        table = compare_instances(data, truth_data, thresholds=a.iou)
        print(format_instances(table))
    else:
        from ..measure import with_names
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
    from ..batch import evaluate_folders, find_cases, format_summary, is_case_folder
    from ..io import VolumeError, open_volume
    from ..measure import write_csv
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


def add_export(sub) -> None:
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


def add_measure(sub) -> None:
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
    for action in m._actions:   # labels with a t axis (a hyperstack, a folder of masks) are taken at it too
        if action.dest == "timepoint":
            action.help = ("the time point of the labels (where they have several: default every one, a table with "
                           "a timepoint column) and of --image")
    m.set_defaults(fn=cmd_measure)


def add_instances(sub) -> None:
    o = sub.add_parser("instances", help="one id per connected object (to count and measure nuclei, lesions, ...)")
    o.add_argument("labels", help=f"a label volume: {LABEL_FILES}")
    o.add_argument("output", help="output .zarr of object ids (uint8/16/32), with the input's spacing and geometry")
    _object_args(o)
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.set_defaults(fn=cmd_instances)


def add_evaluate(sub) -> None:
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
