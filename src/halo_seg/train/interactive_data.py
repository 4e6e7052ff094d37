"""Training examples for the interactive network: objects, prompts, memories, crops.

Objects come from three kinds of source (DESIGN.md section 2) so that the network learns "follow
this region", not "find the hippocampus":

* labelled anatomy - AAL regions on Colin27, **minus the structures the benchmark is measured on**;
* self-supervised pseudo-objects - SLIC supervoxels of the head CT, which has no labels;
* procedural phantoms - textured random shapes at several noise levels.

Every volume is sliced along each of its three axes, which triples the shapes seen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from ..interactive.roi import crop_stack, guidance_maps, mask_bbox, normalise, resize, roi_from_bbox
from ..interactive.simulate import depth_inside, error_regions, thick_slices
from .deform import DeformedView
from ..io.labels import label_ids

AXIS_ORDERS = ((0, 1, 2), (1, 0, 2), (2, 0, 1), (0, 2, 1), (1, 2, 0), (2, 1, 0))


@dataclass
class Source:
    name: str
    image: np.ndarray          # float32, percentile-scaled to about [0, 1]
    labels: np.ndarray         # integer label volume
    objects: list = field(default_factory=list)   # (label value, bbox z0 y0 x0 z1 y1 x1)
    orders: tuple = AXIS_ORDERS                    # slicing orders examples are drawn in


def _scale01(img: np.ndarray, mask=None) -> np.ndarray:
    vals = img[mask] if mask is not None else img
    lo, hi = np.percentile(vals[:: max(1, vals.size // 200000)], [0.5, 99.5])
    return np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-6), -0.5, 1.5).astype(np.float32)


def _objects(labels: np.ndarray, skip=(), min_voxels=150, min_extent=4) -> list:
    out = []
    for v, sl in enumerate(ndi.find_objects(labels), start=0):
        v += 1  # find_objects is 1-based on label values
        if sl is None or v in skip:
            continue
        ext = [s.stop - s.start for s in sl]
        if min(ext) < min_extent:
            continue
        if int((labels[sl] == v).sum()) < min_voxels:
            continue
        out.append((v, tuple(s.start for s in sl) + tuple(s.stop - 1 for s in sl)))
    return out


def colin27_source(data_dir: Path, held_out) -> Source:
    from ..samples import load_colin27_full
    s = load_colin27_full(data_dir)
    lab = s.labels.astype(np.int32)
    return Source("colin27_aal", _scale01(s.image, s.brain), lab, _objects(lab, skip=set(held_out)))


def ct_supervoxel_source(data_dir: Path, n_segments: int = 500, cache: Path | None = None) -> Source:
    """SLIC supervoxels of the head CT (no labels used): pseudo-objects bounded by real edges."""
    from ..samples import _read_nifti_zyx
    ct, sp = _read_nifti_zyx(Path(data_dir) / "ct_cranium" / "ct.nii.gz")
    img = np.clip((ct.astype(np.float32) + 100) / 300, -0.5, 1.5)   # brain/soft-tissue window
    if cache is not None and cache.exists():
        seg = np.load(cache)["seg"]
    else:
        from skimage.segmentation import slic
        seg = slic(img, n_segments=n_segments, compactness=0.2, channel_axis=None, spacing=sp,
                   mask=ct > -300, start_label=1).astype(np.int32)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cache, seg=seg)
    return Source("ct_supervoxels", img.astype(np.float32), seg, _objects(seg, min_voxels=400))


def mri_supervoxel_source(data_dir: Path, exclude=(), n_segments: int = 600, compactness: float = 0.1,
                          cache: Path | None = None) -> Source:
    """SLIC supervoxels of the Colin27 T1 inside the brain (no labels used for the objects): MRI
    pseudo-objects bounded by tissue edges - white matter, ventricles, deep grey matter - where the AAL
    labels cover only grey matter. Voxels within 3 mm of the AAL regions ``exclude`` (the benchmark's and
    the validation regions) are left out, so no pseudo-object shares a boundary with them."""
    from ..samples import load_colin27_full
    s = load_colin27_full(data_dir)
    img = _scale01(s.image, s.brain)
    if cache is not None and cache.exists():
        seg = np.load(cache)["seg"]
    else:
        from skimage.segmentation import slic
        mask = s.brain & ~ndi.binary_dilation(np.isin(s.labels, list(exclude)), iterations=3)
        seg = slic(img, n_segments=n_segments, compactness=compactness, channel_axis=None, spacing=s.spacing,
                   mask=mask, start_label=1).astype(np.int32)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cache, seg=seg)
    return Source("mri_supervoxels", img, seg, _objects(seg, min_voxels=400))


def user_source(image: np.ndarray, labels: np.ndarray, spacing=(1.0, 1.0, 1.0), name: str = "user",
                regions=None) -> Source:
    """The user's own labelled volume: every label value (or those in ``regions``) is an object.
    Slices thicker than 1.5 x the pixels are only sliced as acquired, so that examples look like
    the user's slices; isotropic volumes are sliced along all three axes."""
    image, labels = np.asarray(image), np.asarray(labels)
    if image.ndim != 3 or image.shape != labels.shape:
        raise ValueError(f"{name}: image {image.shape} and labels {labels.shape} must be 3D volumes of one shape")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"{name}: labels must be integers (one value per object), got {labels.dtype}")
    values = set(label_ids(labels, what=f"{name}: the labels"))
    if regions is not None:
        missing = sorted(set(regions) - values)
        if missing:
            raise ValueError(f"{name}: label values {missing} are not in the labels")
        labels = np.where(np.isin(labels, list(regions)), labels, 0)
    lab = labels.astype(np.int32)
    objects = _objects(lab, min_voxels=50, min_extent=3)
    if not objects:
        raise ValueError(f"{name}: no object of at least 50 voxels spanning 3 slices on every axis")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError(f"{name}: the image contains NaN or infinite values")
    thick = float(spacing[0]) > 1.5 * min(float(spacing[1]), float(spacing[2]))
    orders = ((0, 1, 2), (0, 2, 1)) if thick else AXIS_ORDERS
    return Source(name, _scale01(image), lab, objects, orders)


def phantom_sources(n: int, seed: int = 1000) -> list[Source]:
    from ..samples import make_phantom
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ph = make_phantom((48, 112, 112), n_objects=int(rng.integers(4, 9)), seed=seed + i,
                          noise=float(rng.uniform(0.03, 0.25)))
        lab = ph.labels.astype(np.int32)
        out.append(Source(f"phantom{i}", _scale01(ph.image), lab, _objects(lab)))
    return out


# -- perturbations that imitate a propagated (imperfect) mask --------------------------------------
def _perturb(mask: np.ndarray, rng, neighbour: np.ndarray | None) -> np.ndarray:
    k = rng.integers(0, 6)
    if k == 0 or not mask.any():
        return mask
    if k == 1:
        return ndi.binary_dilation(mask, iterations=int(rng.integers(1, 3)))
    if k == 2:
        return ndi.binary_erosion(mask, iterations=int(rng.integers(1, 3)))
    if k == 3:
        return np.roll(mask, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), (0, 1))
    if k == 4 and neighbour is not None:
        return neighbour
    noise = ndi.gaussian_filter(rng.normal(size=mask.shape), 3) * 4
    d = ndi.distance_transform_edt(mask) - ndi.distance_transform_edt(~mask)
    return d + noise > 0


def _corrupt(mask: np.ndarray, rng, neighbour: np.ndarray | None) -> np.ndarray:
    """A mask with errors large enough for a user to click on (on top of a _perturb): a part cut
    off at the outline, a leak out of it, or both, each a disc of 10 to 45 % of the object's size."""
    out = _perturb(mask, rng, neighbour)
    ys, xs = np.nonzero(mask)
    edge_y, edge_x = np.nonzero(mask & ~ndi.binary_erosion(mask))
    if not len(edge_y):
        return out
    size = max(np.ptp(ys), np.ptp(xs)) + 1
    yy, xx = np.ogrid[:mask.shape[0], :mask.shape[1]]
    kind = rng.integers(0, 3)
    if kind in (0, 2):   # a part missed
        i, r = rng.integers(len(edge_y)), rng.uniform(0.15, 0.45) * size
        out = out & ~((yy - edge_y[i]) ** 2 + (xx - edge_x[i]) ** 2 <= r * r)
    if kind in (1, 2):   # a leak into the surroundings, centred just outside the outline
        i, r = rng.integers(len(edge_y)), rng.uniform(0.1, 0.35) * size
        d = np.array([edge_y[i] - ys.mean(), edge_x[i] - xs.mean()])
        cy, cx = np.array([edge_y[i], edge_x[i]]) + 0.6 * r * d / (np.linalg.norm(d) + 1e-6)
        out = out | ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
    return out


def _corrective_clicks(cur: np.ndarray, truth: np.ndarray, rng, n: int):
    """Up to n clicks a user makes on the errors of ``cur``: one per error region, the largest first,
    deep inside it (positive on a miss, negative on a leak). At inference the earlier clicks of a
    slice have mostly been answered already, so a click is sometimes placed where ``cur`` is right."""
    pos, neg = [], []
    for size, region, positive in error_regions(cur, truth)[:n]:
        if size < 4 and (pos or neg):
            break
        if rng.random() < 0.25:   # an answered click: inside the object, or outside it, where cur agrees
            region = (truth & cur) if positive else (~truth & ~cur & ndi.binary_dilation(truth, iterations=6))
            if not region.any():
                continue
        depth = depth_inside(region)
        cand = np.argwhere(depth >= max(1.0, (0.5 if rng.random() < 0.5 else 1.0) * depth.max()))
        y, x = cand[rng.integers(len(cand))]
        (pos if positive else neg).append((int(y), int(x)))
    return pos, neg


def _jitter_box(b, rng, amount=2):
    j = rng.integers(-amount, amount + 1, 4)
    return (b[0] + j[0], b[1] + j[1], b[2] + j[2], b[3] + j[3])


def _extreme_points(mask: np.ndarray, rng):
    ys, xs = np.nonzero(mask)
    pts = []
    for arr, pick in ((ys, ys.min()), (ys, ys.max()), (xs, xs.min()), (xs, xs.max())):
        idx = np.flatnonzero(arr == pick)
        i = idx[rng.integers(len(idx))]
        pts.append((int(ys[i]) + int(rng.integers(-1, 2)), int(xs[i]) + int(rng.integers(-1, 2))))
    return pts


def _clicks(mask: np.ndarray, rng):
    dist = ndi.distance_transform_edt(mask)
    inner = np.argwhere(dist >= max(1.0, 0.4 * dist.max()))
    pos = [tuple(inner[rng.integers(len(inner))]) for _ in range(int(rng.integers(1, 4)))]
    ring = np.argwhere(ndi.binary_dilation(mask, iterations=6) & ~ndi.binary_dilation(mask, iterations=1))
    neg = [tuple(ring[rng.integers(len(ring))]) for _ in range(int(rng.integers(0, 3)))] if len(ring) else []
    return pos, neg


class ExampleSampler:
    """Draws batches of (query, guidance, memory, target) crops."""

    def __init__(self, sources: list[Source], size: int = 64, seed: int = 0, weights=None, invert: float = 0.0,
                 thick: float = 0.0, elastic: float = 0.0, corrective: float = 0.0):
        self.sources = [s for s in sources if s.objects]
        self.size = size
        self.invert = invert   # chance that an example's contrast is inverted
        self.thick = thick     # chance that an example's volume is resliced into 2 to 5 times thicker slices
        self.elastic = elastic  # chance that an example's view is deformed (deform.DeformedView)
        self.corrective = corrective  # chance that a correction example is clicks on a mask's errors
        self.rng = np.random.default_rng(seed)
        w = np.asarray(weights if weights is not None else [1.0] * len(self.sources), float)
        self.p = w / w.sum()

    def _view(self):
        """A random object seen along a random axis: (image, mask) volumes in that slicing order,
        the slices that show it, and a sampler of large sections."""
        rng = self.rng
        src = self.sources[rng.choice(len(self.sources), p=self.p)]
        val, bb = src.objects[rng.integers(len(src.objects))]
        order = src.orders[rng.integers(len(src.orders))]
        # work in a sub-volume: the whole slicing axis, the object's in-plane box plus room for any ROI
        region = []
        for ax in range(3):
            a0, a1, n = bb[ax], bb[3 + ax], src.labels.shape[ax]
            if ax == order[0]:
                region.append(slice(0, n))
            else:
                pad = max(bb[3 + order[1]] - bb[order[1]], bb[3 + order[2]] - bb[order[2]]) + 8
                region.append(slice(max(0, a0 - pad), min(n, a1 + 1 + pad)))
        region = tuple(region)
        lo, hi = bb[order[0]], bb[3 + order[0]]
        nz = src.image.shape[order[0]]
        labv = (src.labels[region] == val).transpose(order)
        imgv = src.image[region].transpose(order)
        if self.thick and rng.random() < self.thick:
            # clinical scans often have slices several times thicker than their pixels: average each
            # run of k slices (partial volume) and keep the label of its middle one, as the
            # benchmarks' thick-slice volumes do
            imgv, labv, _ = thick_slices(imgv, labv, int(rng.integers(2, 6)))
            nz = labv.shape[0]
            lo, hi = 0, nz - 1
        areas = labv[lo:hi + 1].reshape(hi + 1 - lo, -1).sum(1)
        if self.elastic and rng.random() < self.elastic:
            # in-plane only, so the slices that show the object (and their relative areas) stay
            ys, xs = np.nonzero(labv[lo:hi + 1].any(0))
            view = DeformedView(imgv, labv, rng, centre=((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2),
                                size=max(ys.max() - ys.min(), xs.max() - xs.min()) + 1)
            imgv, gt = view, view.mask
        else:
            gt = lambda z: labv[z]  # noqa: E731
        zs = np.flatnonzero(areas) + lo
        if len(zs) < 2:
            return None
        wts = areas[zs - lo].astype(float)
        pick_big = lambda: int(rng.choice(zs, p=wts / wts.sum()))  # noqa: E731
        return imgv, gt, zs, nz, pick_big

    def example(self):
        rng = self.rng
        view = self._view()
        if view is None:
            return None
        imgv, gt, zs, nz, pick_big = view
        mode = rng.choice(3, p=[0.25, 0.5, 0.25])   # prompt only, propagate, correct
        margin = float(rng.uniform(0.25, 0.6))
        shift = tuple(rng.uniform(-0.08, 0.08, 2))
        mem = []           # (z, mask) entries
        pos, neg, box = [], [], None
        if mode == 1:
            r = pick_big() if rng.random() < 0.5 else int(rng.choice(zs))
            s = 1 if rng.random() < 0.5 else -1
            if rng.random() < 0.35:
                # past the object's end, with a previous slice that still shows it (or shows a leak
                # onto other tissue): learn to stop instead of following whatever is there
                end = int(zs.max() if s == 1 else zs.min())
                t = end + s * int(rng.integers(1, 7))
                if not 0 <= t < nz:
                    return None
                r = int(rng.choice(zs))
                roi = roi_from_bbox(*mask_bbox(gt(r)), margin=margin, shift=shift)
                mem.append((r, gt(r)))
                prev = _perturb(gt(end), rng, None)
                if rng.random() < 0.5:
                    side = max(8, roi.side // 4)
                    prev = np.roll(prev, (int(rng.integers(-side, side + 1)), int(rng.integers(-side, side + 1))),
                                   (0, 1))
                mem.append((t - s, prev))
            else:
                d = 1 + min(int(rng.exponential(4.0)), 30)
                t = r + s * d
                if not 0 <= t < nz:
                    s, t = -s, r - s * d
                    if not 0 <= t < nz:
                        return None
                roi = roi_from_bbox(*mask_bbox(gt(r)), margin=margin, shift=shift)
                mem.append((r, gt(r)))
                if d > 1 and rng.random() < 0.8:
                    p = t - s
                    nb = gt(p - s) if 0 <= p - s < nz else None
                    mem.append((p, _perturb(gt(p), rng, nb)))
                r2 = t + s * int(rng.integers(1, 10))
                if rng.random() < 0.25 and 0 <= r2 < nz:
                    mem.append((r2, gt(r2)))
        elif mode == 2 and self.corrective and rng.random() < self.corrective:
            # clicks on the errors of a mask (the segmenter's refinement of a segmented slice): that
            # mask in memory, its nearest annotated neighbour sometimes too, the clicks as guidance
            t = pick_big() if rng.random() < 0.6 else int(rng.choice(zs))
            m = gt(t)
            cur = _corrupt(m, rng, gt(t + 1) if t + 1 < nz else None)
            pos, neg = _corrective_clicks(cur, m, rng, int(rng.integers(1, 5)))
            if not (pos or neg) or not cur.any():
                return None
            b = mask_bbox(cur)
            ys, xs = [b[0], b[2]] + [c[0] for c in pos + neg], [b[1], b[3]] + [c[1] for c in pos + neg]
            roi = roi_from_bbox(min(ys), min(xs), max(ys), max(xs), margin=margin, shift=shift)
            r = t + int(rng.choice([-1, 1])) * int(rng.integers(2, 16))
            if rng.random() < 0.5 and 0 <= r < nz:
                mem.append((r, gt(r)))
            mem.append((t, cur))
        else:
            t = pick_big() if rng.random() < 0.6 else int(rng.choice(zs))
            m = gt(t)
            kind = rng.choice(3, p=[0.55, 0.2, 0.25])
            if kind == 0:
                box = _jitter_box(mask_bbox(m), rng, 2 if rng.random() < 0.7 else 0)
                ref_box = box
            elif kind == 1:
                pos = _extreme_points(m, rng)
                ys, xs = zip(*pos)
                box = ref_box = (min(ys), min(xs), max(ys), max(xs))
            else:
                pos, neg = _clicks(m, rng)
                ref_box = mask_bbox(m)
            roi = roi_from_bbox(*ref_box, margin=margin, shift=shift)
            if mode == 2:
                r = t + int(rng.choice([-1, 1])) * int(rng.integers(2, 16))
                if 0 <= r < nz:
                    mem.append((r, gt(r)))
                if rng.random() < 0.6:
                    nb = gt(t + 1) if t + 1 < nz else None
                    mem.append((t, _perturb(m, rng, nb)))
        zlist = [t] + [z for z, _ in mem]
        imgs, masks = self._crops(imgv, zlist, [gt(t)] + [mm for _, mm in mem], roi, [1] if mem else [0])
        guid = guidance_maps(roi, self.size, pos=pos, neg=neg, box=box)
        # which memory entry lies nearest the query (the decoder's location prior, prev_input networks)
        near = min(range(len(mem)), key=lambda i: abs(mem[i][0] - t)) if mem else -1
        return imgs, torch.from_numpy(guid), masks, len(mem), near

    def _crops(self, imgv, zlist, masks, roi, ref):
        """Image and mask crops of slices ``zlist``, gamma-augmented, normalised on the crops ``ref``
        (the annotated slices, as at inference), noisy, resized to the network's size."""
        rng = self.rng
        imgs = crop_stack(np.stack([imgv[z] for z in zlist]), roi)
        masks = crop_stack(np.stack(masks).astype(np.float32), roi, 0)
        gamma = float(np.exp(rng.normal(0, 0.25)))
        imgs = np.sign(imgs) * np.abs(imgs) ** gamma
        if self.invert and rng.random() < self.invert:
            # dark objects on bright ground: the phantoms' objects are all brighter than their
            # background, and other scanners and sequences invert the T1's contrast
            imgs = -imgs
        imgs = normalise(imgs, imgs[ref]) + rng.normal(0, rng.uniform(0, 0.15), imgs.shape).astype(np.float32)
        return resize(imgs, self.size), resize(masks, self.size)

    def sweep_example(self, steps: int):
        """One propagation sweep to be unrolled with the network's own predictions (see
        ``interactive_train.rollout_loss``): an annotated slice, optionally a second annotated slice
        (ahead, as between two annotations, or behind, as beyond the outermost one), and ``steps``
        consecutive query slices moving away from the first; half of the sweeps cross the object's end."""
        rng = self.rng
        view = self._view()
        if view is None:
            return None
        imgv, gt, zs, nz, pick_big = view
        s = 1 if rng.random() < 0.5 else -1
        if rng.random() < 0.5:
            end = int(zs.max() if s == 1 else zs.min())
            r = end - s * int(rng.integers(0, steps))
            if not (0 <= r < nz and gt(r).any()):   # short objects near the volume's edge
                return None
        else:
            r = pick_big() if rng.random() < 0.5 else int(rng.choice(zs))
        if not 0 <= r + s * steps < nz:
            return None
        ann = gt(r)
        ann_mem = _perturb(ann, rng, None) if rng.random() < 0.3 else ann   # a segmented, not drawn, slice
        if not ann_mem.any():
            ann_mem = ann
        r2, u = None, rng.random()
        if u < 0.2:
            r2 = r + s * (steps + int(rng.integers(1, 8)))
        elif u < 0.35:
            r2 = r - s * int(rng.integers(2, 20))
        if r2 is not None and not (0 <= r2 < nz and gt(r2).any()):
            r2 = None
        boxes = np.array([mask_bbox(gt(z)) for z in ([r] if r2 is None else [r, r2])])
        roi = roi_from_bbox(boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max(),
                            margin=float(rng.uniform(0.3, 0.55)), shift=tuple(rng.uniform(-0.05, 0.05, 2)))
        queries = [r + s * k for k in range(1, steps + 1)]
        second = r if r2 is None else r2
        imgs, masks = self._crops(imgv, [r, second] + queries,
                                  [ann_mem, gt(second)] + [gt(z) for z in queries], roi,
                                  [0] if r2 is None else [0, 1])
        return imgs, masks, r2 is not None

    def sweep_batch(self, n: int, steps: int):
        """(images, masks) (n, steps + 2, 1, S, S): frame 0 the annotated slice, 1 the second annotated
        slice (valid where ``has_second``), 2.. the queries with their true masks."""
        out = []
        while len(out) < n:
            ex = self.sweep_example(steps)
            if ex is not None:
                out.append(ex)
        imgs = torch.stack([e[0] for e in out])
        masks = torch.stack([e[1] for e in out])
        has_second = torch.tensor([e[2] for e in out])
        imgs, masks = self._flips(imgs, masks)
        return imgs.contiguous(), masks.contiguous(), has_second

    def _flips(self, *xs):
        """In-plane flips and transposes, the same for every frame of a batch."""
        if self.rng.random() < 0.5:
            xs = tuple(x.flip(-1) for x in xs)
        if self.rng.random() < 0.5:
            xs = tuple(x.flip(-2) for x in xs)
        if self.rng.random() < 0.5:
            xs = tuple(x.transpose(-1, -2) for x in xs)
        return xs

    def batch(self, n: int, t_max: int = 3):
        S = self.size
        out = []
        while len(out) < n:
            ex = self.example()
            if ex is not None:
                out.append(ex)
        q = torch.zeros(n, 1, S, S)
        g = torch.zeros(n, 3, S, S)
        mi = torch.zeros(n, t_max, 1, S, S)
        mm = torch.zeros(n, t_max, 1, S, S)
        mv = torch.zeros(n, t_max, dtype=torch.bool)
        tgt = torch.zeros(n, 1, S, S)
        prev = torch.zeros(n, 1, S, S)
        for i, (imgs, guid, masks, k, near) in enumerate(out):
            q[i] = imgs[0]
            g[i] = guid
            tgt[i] = masks[0]
            mi[i, :k] = imgs[1:k + 1]
            mm[i, :k] = masks[1:k + 1]
            mv[i, :k] = True
            if near >= 0:
                prev[i] = masks[near + 1]
        q, g, mi, mm, tgt, prev = self._flips(q, g, mi, mm, tgt, prev)
        return (q.contiguous(), g.contiguous(), mi.contiguous(), mm.contiguous(), mv, tgt.contiguous(),
                prev.contiguous())
