"""A simulated user (Mem3D's protocol, DESIGN.md): a tight box on the slice where the object is
largest, then one box per round on the chosen slice (an empty mask where the object is absent).
Mem3D also scores extreme points instead of boxes (``prompt="extreme"``); ``clicks`` lets the user
correct each prompted slice with clicks before propagating (``corrective_click``)."""
from __future__ import annotations

import time

import numpy as np
from scipy import ndimage as ndi

from ..metrics import dice, dice_per_slice
from .roi import mask_bbox
from .segmenter import InteractiveError


def thick_slices(image: np.ndarray, labels: np.ndarray, k: int, spacing=(1.0, 1.0, 1.0)):
    """(image, labels, spacing) of a thick-slice acquisition of the same object: every run of k
    slices averaged into one (its partial volume), with the label of the run's middle slice."""
    if int(k) != k or k < 1:
        raise ValueError(f"slice thickness must be a whole number of slices >= 1, got {k}")
    k = int(k)
    n = image.shape[0] // k * k
    if n == 0:
        raise ValueError(f"a volume of {image.shape[0]} slices has no run of {k}")
    img = np.asarray(image[:n], np.float32).reshape(n // k, k, *image.shape[1:]).mean(1)
    return img, np.asarray(labels[k // 2:n:k]), (float(spacing[0]) * k, float(spacing[1]), float(spacing[2]))


def tight_box(mask2d: np.ndarray):
    return mask_bbox(mask2d)


def extreme_points(mask2d: np.ndarray) -> list[tuple[int, int]]:
    """The top, bottom, left and right points of a mask (the middle one where several tie)."""
    ys, xs = np.nonzero(mask2d)
    if not len(ys):
        raise ValueError("extreme points of an empty mask")
    out = []
    for arr, other, v in ((ys, xs, ys.min()), (ys, xs, ys.max()), (xs, ys, xs.min()), (xs, ys, xs.max())):
        o = np.sort(other[arr == v])[(np.count_nonzero(arr == v) - 1) // 2]
        out.append((int(v), int(o)) if arr is ys else (int(o), int(v)))
    return out


def error_regions(pred2d: np.ndarray, truth2d: np.ndarray) -> list[tuple[int, np.ndarray, bool]]:
    """The connected regions where a mask is wrong, largest first: (pixels, region, missed), missed
    True where the object is not covered and False where the mask covers background."""
    pred2d, truth2d = np.asarray(pred2d, bool), np.asarray(truth2d, bool)
    out = []
    for err, missed in ((truth2d & ~pred2d, True), (pred2d & ~truth2d, False)):
        lab, _ = ndi.label(err)
        out += [(int(n), lab == i + 1, missed) for i, n in enumerate(np.bincount(lab.ravel())[1:])]
    return sorted(out, key=lambda r: -r[0])   # stable: a miss before a leak of the same size


def depth_inside(region: np.ndarray) -> np.ndarray:
    """Each pixel's distance to the outside of the region (the border of the slice counts as outside)."""
    return ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def corrective_click(pred2d: np.ndarray, truth2d: np.ndarray):
    """The click a careful user makes next (the standard simulated user of interactive segmentation,
    as in RITM and SAM's evaluations): at the pixel deepest inside the largest error region, positive
    on a miss, negative on a false positive. Returns (y, x, positive), or None where the mask is exact."""
    regions = error_regions(pred2d, truth2d)
    if not regions:
        return None
    _, region, positive = regions[0]
    depth = depth_inside(region)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(y), int(x), positive


def corrective_scribble(pred2d: np.ndarray, truth2d: np.ndarray):
    """The stroke a careful user draws next: along the middle (the skeleton) of the largest error
    region, positive on a miss, negative on a false positive. Returns (stroke mask, positive), or
    None where the mask is exact."""
    from skimage.morphology import skeletonize
    regions = error_regions(pred2d, truth2d)
    if not regions:
        return None
    _, region, positive = regions[0]
    stroke = skeletonize(region)
    return (stroke if stroke.any() else region), positive


def worst_slice(pred: np.ndarray, truth: np.ndarray, done=()) -> int:
    """The slice a careful user fixes next in a (Z, Y, X) result: the most wrong voxels, not in ``done``."""
    wrong = (np.asarray(pred, bool) ^ np.asarray(truth, bool)).reshape(len(truth), -1).sum(1).astype(float)
    wrong[list(done)] = -1
    return int(wrong.argmax())


def in_frame(seg, volume: np.ndarray) -> np.ndarray:
    """A volume-oriented array in the session's (slices, rows, columns) order (a view)."""
    axis = getattr(seg, "axis", 0)
    return volume if axis == 0 else np.moveaxis(volume, axis, 0)


def choose_slice(seg, truth: np.ndarray, strategy: str, rng) -> int:
    """'recommend': the segmenter's choice (never looks at truth); 'random': any unannotated slice of
    the predicted extent; 'oracle': the unannotated slice with the worst true Dice. ``truth`` is in
    the session's order (in_frame)."""
    if strategy == "recommend":
        return seg.recommend_slice()
    pred = in_frame(seg, seg.prediction)
    done = set(seg.annotated_slices)
    if strategy == "random":
        zs = np.flatnonzero(pred.reshape(len(pred), -1).any(1))
        cand = [z for z in range(max(zs.min() - 1, 0), min(zs.max() + 2, len(pred))) if z not in done]
        return int(rng.choice(cand))
    if strategy == "oracle":
        d = dice_per_slice(pred, truth)
        cand = [z for z in np.flatnonzero(pred.reshape(len(pred), -1).any(1) | truth.reshape(len(truth), -1).any(1))
                if z not in done]
        return int(min(cand, key=lambda z: d[z]))
    raise ValueError(f"unknown strategy {strategy!r}")


def _exhausted(seg, truth: np.ndarray) -> bool:
    """Every slice of the predicted and the true extent, and one on either side, is annotated."""
    pred = in_frame(seg, seg.prediction)
    zs = np.flatnonzero(pred.reshape(len(pred), -1).any(1) | truth.reshape(len(truth), -1).any(1))
    todo = set(range(max(zs.min() - 1, 0), min(zs.max() + 2, len(truth)))) - set(seg.annotated_slices)
    return not todo


PROMPTS = ("box", "extreme")


def prompt_slice(seg, z: int, truth2d: np.ndarray, prompt: str = "box", clicks: int = 0, stop: float = 0.9,
                 scribble: bool = False) -> int:
    """The user's prompt on slice z from its true mask (an empty mask where the object is absent),
    then up to ``clicks`` corrective clicks (``scribble``: strokes), each followed by segmenting the
    slice, until its Dice reaches ``stop``. Returns the clicks made; with clicks the slice is
    segmented (annotated) here, else the prompt waits for the next propagation."""
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
    if not truth2d.any():
        seg.set_slice_mask(z, np.zeros(truth2d.shape, bool))
        return 0
    if prompt == "box":
        seg.add_box(z, *tight_box(truth2d))
    else:
        seg.add_extreme_points(z, extreme_points(truth2d))
    if not clicks:
        return 0
    return sum(1 for _ in click_to_correct(seg, z, seg.segment_slice(z), truth2d, clicks, stop, scribble))


def click_to_correct(seg, z: int, mask: np.ndarray, truth2d: np.ndarray, clicks: int, stop: float = 0.9,
                     scribble: bool = False):
    """Up to ``clicks`` corrective clicks (``scribble``: strokes, corrective_scribble) on slice z, whose
    current mask is ``mask``, each followed by segmenting the slice, until its Dice reaches ``stop``;
    yields the mask after each."""
    for _ in range(clicks):
        if dice(mask, truth2d) >= stop:
            return
        c = corrective_scribble(mask, truth2d) if scribble else corrective_click(mask, truth2d)
        if c is None:
            return
        if scribble:
            seg.add_scribble(z, c[0], positive=c[1])
        else:
            seg.add_click(z, c[0], c[1], positive=c[2])
        mask = seg.segment_slice(z)
        yield mask


def run_session(seg, truth: np.ndarray, rounds: int = 6, strategy: str = "recommend", seed: int = 0, cancel=None,
                prompt: str = "box", clicks: int = 0, scribble: bool = False):
    """Returns per-round records: dice, seconds, chosen slice, clicks made, (predicted, true) slice
    Dice pairs and (quality features, true Dice) samples of the propagated slices. Each round's slice
    gets ``prompt`` and up to ``clicks`` corrective clicks (prompt_slice). When every slice of the
    object and one on either side is annotated (an object only a few slices thick) the user is done:
    the remaining rounds repeat the last Dice, with no slice, no time and no samples. ``truth`` is in
    the volume's orientation; slices are counted along the session's axis."""
    truth = in_frame(seg, np.asarray(truth, bool))
    rng = np.random.default_rng(seed)
    area = truth.reshape(len(truth), -1).sum(1)
    z = int(area.argmax())
    out = []
    for r in range(rounds):
        if r:
            try:
                z = choose_slice(seg, truth, strategy, rng)
            except (InteractiveError, ValueError):
                if not _exhausted(seg, truth):
                    raise
                out += [dict(out[-1], round=k + 1, slice=None, seconds=None, clicks=0, pairs=[], samples=[])
                        for k in range(r, rounds)]
                break
        t0 = time.perf_counter()
        made = prompt_slice(seg, z, truth[z], prompt, clicks, scribble=scribble)
        pred = in_frame(seg, seg.propagate(cancel=cancel))
        sec = time.perf_counter() - t0
        q = seg.quality
        true_sd = dice_per_slice(pred, truth)
        ann = set(seg.annotated_slices)
        idx = [i for i in np.flatnonzero(np.isfinite(q)) if i not in ann]
        feats = seg.slice_features
        out.append({"round": r + 1, "slice": z, "dice": dice(pred, truth), "seconds": sec, "clicks": made,
                    "pairs": [(float(q[i]), float(true_sd[i])) for i in idx],
                    "samples": [(feats[i], float(true_sd[i])) for i in sorted(feats)]})
    return out
