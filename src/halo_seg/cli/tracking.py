"""`halo-seg track`: a time-lapse's objects followed over time (halo_seg.tracking)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import _object_args, _spacing_arg, progress_bar


def cmd_track(a) -> int:
    from ..measure import check_table_path, write_csv
    from ..tracking import track_objects, write_ctc
    from ..tracking.checkpoint import STATE, PartialError, partial_dir
    from ..tracking.summary import chosen_text, fast_motion, fast_reach, format_tracks, motion_text, per_track
    from ..io.track_output import check_ctc_folder
    for path in (a.csv, a.summary):
        if path:
            check_table_path(Path(path))
    if a.ctc:
        check_ctc_folder(a.ctc)   # before the work, not after
    links = _kept_links(a.labels)
    if links and a.ids:
        print(f"keeping the {len(links)} link{'s' if len(links) != 1 else ''} of objects followed with Next time "
              f"point that {a.labels} holds", file=sys.stderr)
    elif links:
        print(f"note: {a.labels} holds {len(links)} link{'s' if len(links) != 1 else ''} of objects followed with "
              "Next time point; --ids keeps them (its objects as committed)", file=sys.stderr)
    partial = partial_dir(Path(a.output))
    if a.resume and not (partial / STATE).exists():
        print(f"no stopped tracking of {a.output} to go on from: tracking from the first time point", file=sys.stderr)
    with progress_bar("time points", "time point", a.quiet) as progress:
        try:
            res = track_objects(a.labels, a.output, timepoints=a.timepoints, channel=a.channel, objects_given=a.ids,
                                classes=a.classes, min_voxels=a.min_voxels, connectivity=a.connectivity,
                                split=a.split, min_iou=a.min_iou, division_overlap=a.division_overlap,
                                max_distance=a.max_distance, max_gap=a.max_gap, link=a.link, predict=a.predict,
                                distance_divisions=a.distance_divisions, spacing=_spacing_arg(a.spacing),
                                unit=a.unit, image=a.image,
                                image_channel=a.image_channel, progress=progress, resume=a.resume,
                                links=links if a.ids else None)
        except PartialError:   # the partial there is not this run's to go on from
            raise
        except BaseException:   # Ctrl-C too
            if (partial / STATE).exists():
                print(f"\nthe time points done are kept in {partial}: the same command with --resume goes on "
                      "from there", file=sys.stderr)
            raise
    rows = per_track(res.table, res.lineage, res.spacing)
    if not a.quiet:
        print(format_tracks(rows, res.unit, most=a.rows))
    if a.link == "auto":
        print(chosen_text(res.choices, res.unit), file=sys.stderr)
    fast = fast_motion(res.table, a.link, a.max_distance, res.shape, res.spacing)
    if fast:
        print(f"note: {motion_text(fast, res.unit)}; --link auto (by distance where they move so) or --link distance "
              f"--max-distance {fast_reach(fast):g} (about two steps) keeps such cells' tracks better", file=sys.stderr)
    if a.summary:
        print(f"wrote {write_csv(rows, a.summary)} ({len(rows['track'])} rows: a track each)", file=sys.stderr)
    if a.csv:
        print(f"wrote {write_csv(res.table, a.csv)} ({len(res.table['track'])} rows: an object at a time point each)",
              file=sys.stderr)
    if a.ctc:
        print(f"wrote {write_ctc(res.output, a.ctc)} (a Cell Tracking Challenge result: mask*.tif, res_track.txt)",
              file=sys.stderr)
    print(json.dumps({"output": str(res.output), "tracks": res.tracks, "divisions": res.divisions,
                      "timepoints": len(res.timepoints), "objects_per_timepoint": res.objects,
                      **({"links_kept": res.given_links} if links and a.ids else {}),
                      "seconds": round(res.seconds, 2)}))
    return 0


def _kept_links(path) -> dict[int, int]:
    """The links a zarr labels array keeps (the interactive widget's objects, kept on disk: their
    carried_from), or none (any other input)."""
    from ..io.volume import links_in
    if not str(path).rstrip("/").endswith(".zarr"):
        return {}
    try:
        import zarr
        return links_in(zarr.open_array(str(path), mode="r").attrs)
    except Exception:   # a group, or not zarr at all: it holds no such links
        return {}


def cmd_track_edit(a) -> int:
    from ..tracking.edit import TrackOutput
    from ..tracking.lineage_edits import describe
    out = TrackOutput(a.tracks)
    finished = out.finish_pending()
    if finished:
        print(f"finished an edit that had stopped half way: {finished}", file=sys.stderr)
    if a.join:
        done = out.edit("join", *a.join)
    elif a.cut:
        done = out.edit("cut", *a.cut)
    elif a.swap:
        done = out.edit("swap", a.swap[0], a.swap[1], t=a.swap[2])
    elif a.mother:
        done = out.edit("mother", *a.mother)
    elif a.delete is not None:
        done = out.edit("delete", a.delete)
    elif a.paint:
        from ..io.volume import VolumeError, file_contents
        painted = file_contents(a.paint).data
        if painted.ndim != 4:
            raise VolumeError(f"{a.paint} is {painted.ndim}D; the corrected labels of every time point (T, Z, Y, X) "
                              "are needed")
        done = out.paint(painted)
    elif a.undo:
        done = out.undo()
    else:
        done = None
    if a.show is not None:
        print(describe(out.rows, a.show))
    if a.history:
        edits = out.history
        print("\n".join(f"{k + 1}. {e['text']}" for k, e in enumerate(edits)) if edits else "no edits")
    if done is not None:
        print(done.text, file=sys.stderr)
        print(json.dumps({"output": str(out.path), "edit": done.text, "tracks": done.tracks,
                          "divisions": done.divisions, "edits": len(out.history)}))
    return 0


def add_track_edit(sub) -> None:
    e = sub.add_parser("track-edit", help="correct a tracking by hand: join, cut, swap, name a mother, delete, "
                                          "corrected labels written back; undo")
    e.add_argument("tracks", help="a `halo-seg track` output (.zarr), changed in place; every edit can be undone")
    op = e.add_mutually_exclusive_group()
    op.add_argument("--join", nargs=2, type=int, metavar=("A", "B"),
                    help="track B continues track A (a track broken in two; A must end before B begins). A's "
                         "daughters lose their mother (the division that ended A was a mistake), B's become A's")
    op.add_argument("--cut", nargs=2, type=int, metavar=("TRACK", "T"),
                    help="TRACK from time point T on is a new track (one cell's track going on as another's)")
    op.add_argument("--swap", nargs=3, type=int, metavar=("A", "B", "T"),
                    help="tracks A and B exchange from time point T on (their ids switched where the cells crossed; "
                         "daughters born after T follow the cell they were born from)")
    op.add_argument("--mother", nargs=2, type=int, metavar=("MOTHER", "DAUGHTER"),
                    help="MOTHER divided into DAUGHTER (a division missed: MOTHER must end before DAUGHTER begins); "
                         "MOTHER 0: DAUGHTER has no mother (a division invented)")
    op.add_argument("--delete", type=int, metavar="TRACK", help="TRACK is no cell (debris): its voxels cleared")
    op.add_argument("--paint", metavar="LABELS",
                    help="the tracking's labels corrected in another tool (T, Z, Y, X; a hyperstack TIFF, zarr, ...): "
                         "the voxels that differ written in, each track's time points and lineage following them")
    op.add_argument("--undo", action="store_true", help="take back the most recent edit")
    e.add_argument("--show", type=int, metavar="TRACK", help="print a track's time points, mother and daughters")
    e.add_argument("--history", action="store_true", help="print the edits made, oldest first")
    e.set_defaults(fn=cmd_track_edit)


def add_track(sub) -> None:
    o = sub.add_parser("track", help="follow a time-lapse's objects (cells, nuclei) over time: track ids and lineage")
    o.add_argument("labels", help="a time-lapse's labels: a `segment --timepoint all` output, or a labels file whose "
                                  "axes name t (an ImageJ hyperstack or OME-TIFF, OME-Zarr, a 4D NIfTI)")
    o.add_argument("output", help="output .zarr group: labels (T, Z, Y, X) holding each object's track id, tracks "
                                  "(napari's Tracks layer) and lineage")
    o.add_argument("--timepoint", "--timepoints", dest="timepoints", default=None, metavar="T",
                   help="the time points to track: all (default; of a segment output, those segmented), a range A-B "
                        "or several (0-9,20)")
    o.add_argument("--channel", default=None, help="the labels' channel, when the file has several")
    o.add_argument("--ids", action="store_true",
                   help="the labels already number the objects (StarDist, Cellpose, `instances`): take each id as an "
                        "object, touching ones apart, instead of finding connected components; the interactive "
                        "widget's objects kept on disk are tracked with the links made with Next time point")
    _object_args(o, classes_note="; an object continues only as one of its class", min_note=" (debris)",
                 split_help="split touching objects (nuclei) at each time point as `instances --split` does; "
                            "needed for a cell's two daughters, which touch when they are born")
    o.add_argument("--min-iou", type=float, default=0.1,
                   help="an object continues as the one it overlaps most, pairs overlapping at least this much "
                        "(intersection over union; default 0.1)")
    o.add_argument("--division-overlap", type=float, default=0.2,
                   help="a new object lying this share of its voxels in a cell that continued is its daughter "
                        "(default 0.2, chosen on procedural dividing cells, benchmarks/README.md)")
    o.add_argument("--max-distance", type=float, default=None,
                   help="pair objects no overlap paired by nearest centroid within this distance (in the voxel size's "
                        "unit): for cells that move further than their size between time points (default: off)")
    o.add_argument("--link", choices=["auto", "overlap", "distance"], default="auto",
                   help="overlap: an object continues as the one it overlaps most, and divisions are found; "
                        "distance: by nearest centroid within --max-distance alone, as point trackers do, for cells "
                        "moving further than their radius between time points (divisions then told by the "
                        "daughters' sizes and places; --no-distance-divisions); auto (default): distance, within "
                        "--max-distance or else twice the cells' median step, where the cells moved over half their "
                        "radius since the time point before, else overlap, chosen at each time point (said after "
                        "the run)")
    o.add_argument("--no-predict", dest="predict", action="store_false",
                   help="pair by distance (--max-distance, --link distance) from where each cell was, not from where "
                        "its last step predicts it (by default as much of that step as the cells keep from one step "
                        "to the next, fitted to the tracks: cells crawling on keep most of it, a random walk none)")
    o.add_argument("--no-distance-divisions", dest="distance_divisions", action="store_false",
                   help="with --max-distance or --link distance, call a division only where a daughter overlaps her "
                        "mother (by default also where, too far to overlap, a daughter and her sister are each at "
                        "most 0.8 of the mother's volume, together 0.5 to 1.5 of it, near where she was predicted)")
    o.add_argument("--max-gap", type=int, default=1,
                   help="a track continues after up to this many time points its object was missing from (default 1)")
    o.add_argument("--spacing", default=None, metavar="Z,Y,X",
                   help="the voxel size, overriding the file's (the Cell Tracking Challenge's TIFFs record none): "
                        "--split, --max-distance, volumes and speeds are in its unit")
    o.add_argument("--unit", default=None, help="the spacing's length unit (µm, ...), overriding the file's")
    o.add_argument("--image", default=None, help="the time-lapse itself: each object's intensity (mean, std, ...) in "
                                                 "the table")
    o.add_argument("--image-channel", default=None, help="the image's channel, when it has several")
    o.add_argument("--csv", default=None, help="write every object at every time point as CSV (timepoint, track, "
                                               "parent, volume, centroid, ...)")
    o.add_argument("--summary", default=None, help="write a row per track as CSV (first and last time point, parent, "
                                                   "daughters, mean volume, path length, displacement, speed)")
    o.add_argument("--ctc", default=None, metavar="FOLDER",
                   help="also write the tracking as a Cell Tracking Challenge result (mask000.tif ... and "
                        "res_track.txt), for its evaluation tools")
    o.add_argument("--resume", action="store_true",
                   help="go on from the time point after the last one a stopped run of the same command finished "
                        "(kept beside the output as .NAME.partial; the settings must be the same)")
    o.add_argument("--rows", type=int, default=20, help="tracks to print, the longest-lived first (default 20)")
    o.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    o.set_defaults(fn=cmd_track)


def cmd_track_score(a) -> int:
    from ..io.ctc_tracking import open_tracking
    from ..tracking.score import format_scores, score_tracking
    from ..tracking.ctc_measures import INSTALL, available, ctc_measures, format_measures, gt_root
    from ..tracking.seg_score import seg_folder, seg_measure
    from ..io.volume import VolumeError
    tracked, reference = open_tracking(a.tracking), open_tracking(a.reference)
    with progress_bar("time points", "time point", a.quiet) as progress:
        scores = score_tracking(tracked, reference, progress=progress)
    seg_at = Path(a.seg) if a.seg else seg_folder(a.reference)
    seg = seg_measure(tracked.labels, seg_at, tracked.tracked) if seg_at else None
    print(f"{a.tracking} ({tracked.kind}) against {a.reference} ({reference.kind}), {scores.timepoints} time points",
          file=sys.stderr)
    print(format_scores(scores), file=sys.stderr)
    official = None
    if a.ctc_measures and gt_root(a.reference) is not None and tracked.tracked is None:
        if available():
            try:
                official = ctc_measures(a.tracking, a.reference)
                print(format_measures(official), file=sys.stderr)
            except VolumeError as exc:   # the scores above stand; the note says why there are no more
                print(f"note: {exc}", file=sys.stderr)
        else:
            print(f"(CT, TF, BC and CCA, the challenge's biological measures: {INSTALL})", file=sys.stderr)
    if seg is not None:
        print(f"{'SEG':22s} {seg.seg:7.3f}  {seg.cells} cells in {seg.files} file{'s' if seg.files != 1 else ''} of "
              f"{seg.folder}", file=sys.stderr)
    counts = dict(scores.__dict__)
    result = {"tracking": str(a.tracking), "reference": str(a.reference),
              "scores": {k.replace(" ", "_"): v for k, v in scores.rates().items()}, "counts": counts}
    aogm = scores.aogm()
    result["scores"].update({k: aogm[k] for k in ("TRA", "DET", "LNK")})
    result["counts"].update({k: aogm[k] for k in ("NS", "FN", "FP", "ED", "EA", "EC", "AOGM", "AOGM_0")})
    if official is not None:
        result["challenge_evaluation"] = official
    if seg is not None:
        result["scores"]["SEG"] = seg.seg
        result["counts"].update(seg_cells=seg.cells, seg_files=seg.files)
        result["seg_folder"] = seg.folder
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


def add_track_score(sub) -> None:
    s = sub.add_parser("track-score", help="score a tracking against a reference one (a Cell Tracking Challenge "
                                           "ground truth, or a tracking corrected by hand): objects found, links, "
                                           "divisions, whole tracks; the challenge's SEG where its segmentation "
                                           "ground truth is beside")
    s.add_argument("tracking", help="a `halo-seg track` output (.zarr), or a Cell Tracking Challenge result folder "
                                    "(mask000.tif ..., res_track.txt)")
    s.add_argument("reference", help="the same kinds: a ground truth's TRA folder (man_track000.tif ..., "
                                     "man_track.txt; its markers will do), or the NN_GT folder above it")
    s.add_argument("--seg", default=None, metavar="FOLDER",
                   help="the segmentation ground truth (man_seg000.tif or man_seg_000_012.tif ...) for the challenge's "
                        "SEG of the masks; default: the SEG folder beside the reference's TRA, where there is one")
    s.add_argument("--no-ctc-measures", dest="ctc_measures", action="store_false",
                   help="skip the challenge's own evaluation (py-ctcmetrics, where installed: CT, TF, BC, CCA), which "
                        "reads every mask again")
    s.add_argument("--json", default=None, help="also write the scores to this JSON file")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_track_score)


def cmd_track_import(a) -> int:
    from ..tracking.ctc_import import import_ctc
    with progress_bar("time points", "time point", a.quiet) as progress:
        res = import_ctc(a.folder, a.output, spacing=_spacing_arg(a.spacing), unit=a.unit, progress=progress)
    print(json.dumps({"output": str(res.output), "tracks": res.tracks, "divisions": res.divisions,
                      "timepoints": len(res.timepoints), "objects_per_timepoint": res.objects,
                      "seconds": round(res.seconds, 2)}))
    return 0


def add_track_import(sub) -> None:
    i = sub.add_parser("track-import", help="make a Cell Tracking Challenge tracking (another tracker's result, a "
                                            "ground truth) a `track` output, to correct with track-edit or napari")
    i.add_argument("folder", help="mask000.tif ... with res_track.txt (a result), or man_track000.tif ... with "
                                  "man_track.txt (a ground truth's TRA folder, or the NN_GT folder above it)")
    i.add_argument("output", help="output .zarr group, as `halo-seg track` writes")
    i.add_argument("--spacing", default=None, metavar="Z,Y,X",
                   help="voxel size (default: the masks' TIFF calibration; the challenge's files often have none)")
    i.add_argument("--unit", default=None, help="the spacing's length unit (e.g. µm)")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.set_defaults(fn=cmd_track_import)


def cmd_carry(a) -> int:
    from ..interactive.carry_through import carry_through
    with progress_bar("time points", "time point", a.quiet) as progress:
        run = carry_through(a.image, a.objects, a.output, start=a.timepoint, stop=a.to, channel=a.channel,
                            spacing=_spacing_arg(a.spacing), device=a.device, weights=a.weights,
                            drop_neighbours=a.drop_neighbours, keep_faded=a.keep_faded, add_new=a.add_new,
                            resume=a.resume, keep_own=a.keep_own,
                            progress=progress)
    if run.resumed_after is not None:
        print(f"resumed after time point {run.resumed_after}, the last {run.output} held"
              + (": nothing left to carry" if run.timepoints[-1] == run.resumed_after else ""), file=sys.stderr)
    for r in run.rows:
        note = []
        if r["not_found"]:
            note.append(f"nothing found for {', '.join(map(str, r['not_found']))}")
        if r["faded"]:
            note.append(f"faded into the background (left the field or gone; not written): "
                        f"{', '.join(map(str, r['faded']))}")
        if r.get("new"):
            note.append(f"new objects where no object was (cells that came in?): {', '.join(map(str, r['new']))}")
        if r["looks_like_two"]:
            note.append(f"looks like two cells touching: {', '.join(map(str, r['looks_like_two']))}")
        if r.get("took_in"):
            note.append(f"had grown over a touching cell, left out: {', '.join(map(str, r['took_in']))}")
        if r.get("left_out"):
            note.append(f"a cell left out of one, its own object: {', '.join(map(str, r['left_out']))}")
        if not a.quiet:
            print(f"time point {r['t']}: {r['committed']} of {r['objects']} objects carried"
                  + (f" ({'; '.join(note)})" if note else ""))
    print(f"wrote {run.output}: time points {run.timepoints[0]} to {run.timepoints[-1]}, {len(run.links)} objects "
          f"carried, each linked to the one it came from (napari opens it with the links; `halo-seg track "
          f"{run.output} TRACKS.zarr --ids` makes tracks and a lineage of them)", file=sys.stderr)
    if a.json:
        print(json.dumps({"output": run.output, "timepoints": run.timepoints, "rows": run.rows,
                          "links": {str(k): v for k, v in run.links.items()}}))
    return 0


def add_carry(sub) -> None:
    c = sub.add_parser("carry", help="carry the objects of one time point of a time-lapse through the others with "
                                     "the interactive network (the widget's All to next time point to the end): "
                                     "labels over time, each object linked to the one it came from")
    c.add_argument("image", help="the time-lapse (a file whose axes name t, a folder of frames)")
    c.add_argument("objects", help="the objects to carry: a 3D labels volume of that time point, or a time-lapse's "
                                   "labels (the interactive widget's kept objects) to take it from")
    c.add_argument("output", help="the labels over time to write, a new NAME.zarr")
    c.add_argument("--timepoint", type=int, default=0, help="the time point the objects are at (default 0)")
    c.add_argument("--to", type=int, default=None, help="the last time point to carry them to (default the last; "
                                                        "before --timepoint: carried backward)")
    c.add_argument("--channel", default=None, help="the image's channel (an index or a name)")
    c.add_argument("--spacing", default=None, help="the voxel size z,y,x where the file's is wrong")
    c.add_argument("--weights", default="default", help="interactive weights")
    c.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    c.add_argument("--drop-neighbours", action="store_true",
                   help="where an object looks like two cells and one lies where another object was, leave that "
                        "part to it (benchmarks/README.md: not the default)")
    c.add_argument("--keep-own", action=argparse.BooleanOptionalAction, default=True,
                   help="where an object grew to 1.3 times its volume and looks like two cells, one lying where it "
                        "was not (a touching cell it took in), leave that cell out of it and write it as its own "
                        "object where no object holds it (the default; --no-keep-own: as before 2026-12-07, the "
                        "object keeps both; benchmarks/README.md)")
    c.add_argument("--keep-faded", action="store_true",
                   help="write objects whose contrast fell under half of what it was too (objects whose brightness "
                        "changes that much in a time point); by default such an object is taken to have left the "
                        "field and its track ends")
    c.add_argument("--add-new", action="store_true",
                   help="at each time point, segment the cells no object holds (as bright as the objects, away from "
                        "them: cells that came into the field, a daughter left out) and carry them on as new objects")
    c.add_argument("--resume", action="store_true",
                   help="OUT.zarr is a run of these objects with these options that stopped: go on after the last "
                        "time point it wrote, as if it had not stopped (or further, with a later --to)")
    c.add_argument("--json", action="store_true", help="print a JSON summary")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(fn=cmd_carry)
