"""How far a segmentation is from a reference, label by label: overlap (Dice, Jaccard), volumes,
and surface distances in physical units (HD95, average symmetric surface distance), as medical
segmentation papers report them (seed 002: Dice, never pixel accuracy).

Overlaps are counted in slabs of whole slices, so the volumes may be larger than memory. Surface
distances are computed on each label's bounding box (the union of both masks'), where both
surfaces lie, with scipy's exact Euclidean distance transform in the voxel spacing.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .io.labels import check_label_volume, read_label_slab, slabs
from .io.volume import VolumeError
from .measure import SLAB_VOXELS, bbox_slices, measure_labels


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a face neighbour outside it (the crop is padded, so borders count)."""
    return mask & ~ndi.binary_erosion(mask, ndi.generate_binary_structure(3, 1), border_value=0)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances (in spacing units) from each surface voxel of a to b's surface, and of b to a's."""
    a = np.pad(np.asarray(a, bool), 1)
    b = np.pad(np.asarray(b, bool), 1)
    sa, sb = _surface(a), _surface(b)
    to_b = ndi.distance_transform_edt(~sb, sampling=spacing)
    to_a = ndi.distance_transform_edt(~sa, sampling=spacing)
    return to_b[sa], to_a[sb]


def one_grid(pred, truth, what: str = "labels") -> tuple[int, int, int]:
    """The shape of two label volumes that lie on one voxel grid, or a VolumeError naming both."""
    shape = check_label_volume(pred, f"the predicted {what}")
    if check_label_volume(truth, f"the reference {what}") != shape:
        raise VolumeError(f"the predicted {what} have shape {shape} but the reference {tuple(truth.shape)}: "
                          "they must lie on one voxel grid (labels saved on another grid of the same scan, e.g. "
                          "cropped to their objects: halo-seg resample IN OUT --like SCAN --labels)")
    return shape


def compare_labels(pred, truth, spacing=(1.0, 1.0, 1.0), labels=None, distances: bool = True,
                   cancel=None) -> dict[str, np.ndarray]:
    """One row per label present in either volume (or per ``labels``): ``label``, ``dice``,
    ``jaccard``, ``voxels_pred``, ``voxels_truth``, ``volume_pred``, ``volume_truth`` (spacing
    units^3), ``volume_difference`` ((pred - truth) / truth), and with ``distances`` ``hd95`` (the
    larger of the two directed 95th percentiles of surface distances, as MONAI computes it),
    ``hausdorff`` (the largest) and ``assd`` (the mean of both directions' mean distances), nan
    where a label is missing from one volume. Dice of a label absent from both is 1."""
    shape = one_grid(pred, truth)
    sp = tuple(float(s) for s in spacing)
    tp, tt = measure_labels(pred, sp, cancel=cancel), measure_labels(truth, sp, cancel=cancel)
    ids = sorted(set(tp["label"].tolist()) | set(tt["label"].tolist())) if labels is None else \
        sorted({int(k) for k in labels})
    if any(k <= 0 for k in ids):
        raise VolumeError(f"labels to compare must be > 0, got {ids}")
    inter = dict.fromkeys(ids, 0)
    step, starts = slabs(shape, SLAB_VOXELS)
    for z0 in starts:
        p = read_label_slab(pred, z0, step, cancel, "the predicted labels")
        t = read_label_slab(truth, z0, step, cancel, "the reference labels")
        same = p[(p == t) & (p > 0)]
        if same.size:
            k, n = np.unique(same, return_counts=True)
            for kk, nn in zip(k.tolist(), n.tolist()):
                if kk in inter:
                    inter[kk] += nn

    def row(table, k):
        i = np.flatnonzero(table["label"] == k)
        return int(i[0]) if len(i) else None

    voxel = sp[0] * sp[1] * sp[2]
    cols = {c: [] for c in ("label", "dice", "jaccard", "voxels_pred", "voxels_truth", "volume_pred",
                            "volume_truth", "volume_difference")}
    if distances:
        cols.update(hd95=[], hausdorff=[], assd=[])
    for k in ids:
        ip, it = row(tp, k), row(tt, k)
        np_, nt = (0 if ip is None else int(tp["voxels"][ip])), (0 if it is None else int(tt["voxels"][it]))
        both = inter[k]
        cols["label"].append(k)
        cols["dice"].append(1.0 if np_ + nt == 0 else 2 * both / (np_ + nt))
        cols["jaccard"].append(1.0 if np_ + nt == 0 else both / (np_ + nt - both))
        cols["voxels_pred"].append(np_)
        cols["voxels_truth"].append(nt)
        cols["volume_pred"].append(np_ * voxel)
        cols["volume_truth"].append(nt * voxel)
        cols["volume_difference"].append((np_ - nt) / nt if nt else np.nan)
        if distances:
            if ip is None or it is None:
                cols["hd95"].append(np.nan)
                cols["hausdorff"].append(np.nan)
                cols["assd"].append(np.nan)
                continue
            box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop))   # both masks' boxes
                        for a, b in zip(bbox_slices(tp, ip), bbox_slices(tt, it)))
            if cancel is not None and cancel():
                raise InterruptedError("stopped before every label was compared")
            d_ab, d_ba = surface_distances(np.asarray(pred[box]) == k, np.asarray(truth[box]) == k, sp)
            cols["hd95"].append(max(float(np.percentile(d_ab, 95)), float(np.percentile(d_ba, 95))))
            cols["hausdorff"].append(max(float(d_ab.max()), float(d_ba.max())))
            cols["assd"].append((float(d_ab.mean()) + float(d_ba.mean())) / 2)
    return {c: np.asarray(v, np.int64 if c in ("label", "voxels_pred", "voxels_truth") else float)
            for c, v in cols.items()}


def distance_cells(unit: str | None):
    """(header, row formatter) of the HD95 and ASSD columns of a printed table, in ``unit``."""
    u = unit or "voxel units"
    w = max(10, len("HD95 " + u))
    return f" {'HD95 ' + u:>{w}} {'ASSD ' + u:>{w}}", lambda hd95, assd: f" {hd95:>{w}.2f} {assd:>{w}.2f}"


def format_comparison(table: dict[str, np.ndarray], unit: str | None) -> str:
    if not len(table["label"]):
        return "no labels in either volume"
    u = unit or "voxel units"
    dist = "hd95" in table
    header, cells = distance_cells(unit)
    wide = max([4] + [len(v) for v in table["name"]]) if "name" in table else 0
    lines = [f"{'label':>8}" + (f" {'name':<{wide}}" if wide else "")
             + f" {'Dice':>7} {'Jaccard':>8} {'vol. diff':>10}" + (header if dist else "")]
    for i in range(len(table["label"])):
        line = (f"{int(table['label'][i]):>8}" + (f" {table['name'][i]:<{wide}}" if wide else "")
                + f" {table['dice'][i]:>7.3f} {table['jaccard'][i]:>8.3f} {table['volume_difference'][i]:>+10.1%}")
        if dist:
            line += cells(table['hd95'][i], table['assd'][i])
        lines.append(line)
    lines.append(f"mean Dice {np.mean(table['dice']):.3f} over {len(table['label'])} labels"
                 + (f", mean HD95 {np.nanmean(table['hd95']):.2f} {u}" if dist and np.isfinite(table['hd95']).any()
                    else ""))
    if "voxels_pred" in table:   # asked for by --labels and in neither: a typo reads as a perfect score
        absent = [int(k) for k, a, b in zip(table["label"], table["voxels_pred"], table["voxels_truth"]) if a == b == 0]
        if absent:
            lines.append(f"note: label{'s' if len(absent) > 1 else ''} {', '.join(map(str, absent))} "
                         f"{'are' if len(absent) > 1 else 'is'} in neither volume (Dice 1 by convention)")
    return "\n".join(lines)


def _name_key(name) -> str:
    return " ".join(str(name).lower().split())


def renumber_by_name(pred, pred_names: dict | None, truth_names: dict | None):
    """``pred`` (lazily) with each label renumbered to the reference's id of the same name (letter
    case and spacing aside): two planning systems, or two observers, number the same structures
    differently. Labels without a name, or whose name the reference lacks, become background.
    Returns the renumbered labels and the names left out."""
    import dask.array as da
    if not pred_names or not truth_names:
        raise VolumeError("--by-name needs both volumes to name their labels (a DICOM SEG, an RT structure set, "
                          "a .seg.nrrd, or a segment output of a model with class names)")
    truth_id: dict[str, int] = {}
    for k, n in sorted(truth_names.items()):
        truth_id.setdefault(_name_key(n), int(k))
    lut = np.zeros(max(int(k) for k in pred_names) + 1, np.uint32)
    missing = []
    for k, n in pred_names.items():
        if _name_key(n) in truth_id:
            lut[int(k)] = truth_id[_name_key(n)]
        else:
            missing.append(str(n))

    def renumber(block):
        block = np.asarray(block)
        out = np.zeros(block.shape, np.uint32)
        known = (block > 0) & (block < len(lut))
        out[known] = lut[block[known]]
        return out
    return da.asarray(pred).map_blocks(renumber, dtype=np.uint32), missing


def name_mismatch(pred_names: dict | None, truth_names: dict | None, labels) -> str | None:
    """A warning where both volumes name their labels (a SEG's segments, a structure set's
    structures) and a compared id carries different names: labels are compared by id, and two
    systems may number the same structures differently."""
    if not pred_names or not truth_names:
        return None
    differ = [(int(k), pred_names[int(k)], truth_names[int(k)]) for k in labels
              if int(k) in pred_names and int(k) in truth_names
              and _name_key(pred_names[int(k)]) != _name_key(truth_names[int(k)])]
    if not differ:
        return None
    shown = "; ".join(f"{k}: '{p}' against '{t}'" for k, p, t in differ[:5])
    return (f"warning: labels are compared by id, and {len(differ)} id{'s' if len(differ) > 1 else ''} "
            f"name{'' if len(differ) > 1 else 's'} different structures in the two volumes ({shown}"
            f"{' ...' if len(differ) > 5 else ''}); renumber one to match the other")


def disagreement_per_slice(pred, truth, labels, cancel=None) -> dict[int, tuple[np.ndarray, ...]]:
    """For each label k: how many voxels of each slice along z, y and x are k in one volume and not
    in the other (where a reviewer finds that label's errors), counted in one pass of slabs."""
    shape = one_grid(pred, truth)
    ids = np.asarray(sorted({int(k) for k in labels}), np.int64)
    counts = [np.zeros((len(ids), n), np.int64) for n in shape]
    step, starts = slabs(shape, SLAB_VOXELS)
    for z0 in starts:
        p = read_label_slab(pred, z0, step, cancel, "the predicted labels")
        t = read_label_slab(truth, z0, step, cancel, "the reference labels")
        where = np.nonzero(p != t)
        # a voxel whose two labels differ is an error of each of them (0, the background, aside)
        for vals in (p[where].astype(np.int64), t[where].astype(np.int64)):
            row = np.searchsorted(ids, vals)
            keep = (row < len(ids)) & (ids[np.minimum(row, len(ids) - 1)] == vals)
            for axis, c in enumerate(counts):
                pos = where[axis][keep] + (z0 if axis == 0 else 0)
                n = c.shape[1]
                c += np.bincount(row[keep] * n + pos, minlength=c.size).reshape(c.shape)
    return {int(k): tuple(c[i] for c in counts) for i, k in enumerate(ids)}


def _object_overlaps(pred, truth, shape, cancel=None) -> tuple[dict, dict, dict]:
    """Each predicted and true object's voxels and the voxels of each (predicted, true) pair that
    overlap, counted in slabs."""
    sizes_p, sizes_t, inter = {}, {}, {}
    step, starts = slabs(shape, SLAB_VOXELS)
    for z0 in starts:
        p = read_label_slab(pred, z0, step, cancel, "the predicted objects").ravel()
        t = read_label_slab(truth, z0, step, cancel, "the reference objects").ravel()
        for sizes, v in ((sizes_p, p), (sizes_t, t)):
            ids, n = np.unique(v[v > 0], return_counts=True)
            for k, c in zip(ids.tolist(), n.tolist()):
                sizes[k] = sizes.get(k, 0) + c
        both = (p > 0) & (t > 0)
        if both.any():
            pairs, n = np.unique(np.stack([p[both].astype(np.int64), t[both].astype(np.int64)]), axis=1,
                                 return_counts=True)
            for a, b, c in zip(pairs[0].tolist(), pairs[1].tolist(), n.tolist()):
                inter[a, b] = inter.get((a, b), 0) + c
    return sizes_p, sizes_t, inter


def _seg_terms(sizes_p: dict, sizes_t: dict, inter: dict) -> tuple[float, int]:
    """The Cell Tracking Challenge's SEG as (the summed IoU of each true object with the predicted
    object covering more than half of it, the true objects)."""
    return (sum(c / (sizes_p[a] + sizes_t[b] - c) for (a, b), c in inter.items() if c > 0.5 * sizes_t[b]),
            len(sizes_t))


def seg_terms(pred, truth, cancel=None) -> tuple[float, int]:
    """SEG's sum and count for one pair of volumes, to be pooled over several (tracking.seg_score)."""
    return _seg_terms(*_object_overlaps(pred, truth, one_grid(pred, truth, "objects"), cancel))


def compare_instances(pred, truth, thresholds=(0.5,), cancel=None) -> dict[str, np.ndarray]:
    """Object-level comparison of two instance segmentations (one id per object; the ids need not
    correspond), as nuclei are scored (StarDist, the Data Science Bowl): a predicted and a true
    object match when their IoU reaches the threshold, one to one (IoU >= 0.5 allows at most one
    partner). One row per threshold: ``iou``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``,
    ``f1``, ``ap`` (TP / (TP + FP + FN)) and ``mean_matched_iou``; and ``seg``, the Cell Tracking
    Challenge's SEG (the same in every row): each reference object's IoU with the object covering
    more than half of it, 0 where none does, averaged over the reference objects. Overlaps are
    counted in slabs. Thresholds below 0.5 are refused: matching there is not unique."""
    shape = one_grid(pred, truth, "objects")
    thr = sorted(float(t) for t in thresholds)
    if not thr or thr[0] < 0.5 or thr[-1] > 1.0:
        raise VolumeError(f"IoU thresholds must lie in [0.5, 1] (one-to-one matching), got {list(thresholds)}")
    sizes_p, sizes_t, inter = _object_overlaps(pred, truth, shape, cancel)
    ious = np.array([c / (sizes_p[a] + sizes_t[b] - c) for (a, b), c in inter.items()], float)
    rows = {c: [] for c in ("iou", "tp", "fp", "fn", "precision", "recall", "f1", "ap", "mean_matched_iou", "seg")}
    n_pred, n_true = len(sizes_p), len(sizes_t)
    covered, _ = _seg_terms(sizes_p, sizes_t, inter)
    seg = covered / n_true if n_true else np.nan
    for th in thr:
        matched = ious[ious >= th]
        tp = int(len(matched))
        fp, fn = n_pred - tp, n_true - tp
        rows["iou"].append(th)
        rows["tp"].append(tp)
        rows["fp"].append(fp)
        rows["fn"].append(fn)
        rows["precision"].append(tp / n_pred if n_pred else 1.0)
        rows["recall"].append(tp / n_true if n_true else 1.0)
        rows["f1"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
        rows["ap"].append(tp / (tp + fp + fn) if tp + fp + fn else 1.0)
        rows["mean_matched_iou"].append(float(matched.mean()) if tp else np.nan)
        rows["seg"].append(seg)
    return {c: np.asarray(v, np.int64 if c in ("tp", "fp", "fn") else float) for c, v in rows.items()}


def format_instances(table: dict[str, np.ndarray]) -> str:
    lines = [f"{'IoU >=':>6} {'TP':>6} {'FP':>6} {'FN':>6} {'precision':>9} {'recall':>7} {'F1':>6} {'AP':>6} "
             f"{'mean IoU':>8} {'SEG':>6}"]
    for i in range(len(table["iou"])):
        lines.append(f"{table['iou'][i]:>6.2f} {table['tp'][i]:>6d} {table['fp'][i]:>6d} {table['fn'][i]:>6d} "
                     f"{table['precision'][i]:>9.3f} {table['recall'][i]:>7.3f} {table['f1'][i]:>6.3f} "
                     f"{table['ap'][i]:>6.3f} {table['mean_matched_iou'][i]:>8.3f} {table['seg'][i]:>6.3f}")
    return "\n".join(lines)
