"""The experimental switches of the interactive loop (off by default; scored by
benchmarks/interactive_variants.py) do what they claim, and the defaults leave them off."""
import numpy as np
import torch

from halo_seg import InteractiveSegmenter
from halo_seg.interactive import adapt, propagation, segmenter
from halo_seg.interactive.memnet import MemSegNet
from halo_seg.interactive.propagation import annotation_roi, network_inputs
from halo_seg.interactive.roi import mask_bbox
from halo_seg.metrics import dice
from halo_seg.samples import make_phantom

from test_interactive import needs_default


def test_experiments_are_off_by_default():
    assert adapt.ADAPT_STEPS == 0 and segmenter.EXPLORE is None
    assert propagation.BETWEEN_BLEND == 0 and propagation.BOX_MARGIN is None and propagation.EMPTY_IN_MEMORY
    assert propagation.N_PREVIOUS == 1 and propagation.ANNOTATED_REACH is None


def _memory_sizes(monkeypatch, **switches):
    """(query slice, annotated frames, recent frames) seen by the memory read of one propagation."""
    from halo_seg.interactive.roi import crop_stack
    for k, v in switches.items():
        monkeypatch.setattr(propagation, k, v)
    ph = make_phantom((24, 64, 64), n_objects=1, seed=2, noise=0.05)
    obj = ph.labels == 1
    z0 = int(obj.sum((1, 2)).argmax())
    ann = {z0: obj[z0]}
    roi = annotation_roi(ann)
    torch.manual_seed(0)
    net = MemSegNet(size=32, width=4, key_dim=8).eval()
    column = crop_stack(ph.image.astype(np.float32), roi)
    images, _, _ = network_inputs(column, ann, roi, net.size, "cpu")
    keys = net.encode_image(images)[1]
    seen, read = [], net.read

    def spy(qk, mk, mv, valid):
        for q, m, v in zip(qk, mk, valid):
            z = int(torch.argmin((keys - q).abs().flatten(1).sum(1)))
            frames = [int(torch.argmin((keys - k).abs().flatten(1).sum(1))) for k in m[v]]
            seen.append((z, frames))
        return read(qk, mk, mv, valid)

    net.read = spy
    propagation.propagate_volume(net, column, ann, roi, quality_stop=0.0)
    return z0, seen


def test_memory_holds_the_recent_slices_and_drops_far_annotations(monkeypatch):
    z0, seen = _memory_sizes(monkeypatch)
    for z, frames in seen:   # default: the annotated slice and the slice just before the query
        s = 1 if z > z0 else -1
        assert frames == [z0, z - s]
    z0, seen = _memory_sizes(monkeypatch, N_PREVIOUS=3, ANNOTATED_REACH=2)
    for z, frames in seen:
        s = 1 if z > z0 else -1
        recent = [r for r in (z - 3 * s, z - 2 * s, z - s) if (r - z0) * s >= 0]
        assert frames == ([z0] if abs(z - z0) <= 2 else []) + recent, (z, frames)


def test_adaptation_fits_the_annotated_slices_and_touches_only_a_copy_of_the_decoder():
    ph = make_phantom((24, 64, 64), n_objects=2, seed=5, noise=0.05)
    obj = ph.labels == 1
    zs = np.flatnonzero(obj.any((1, 2)))
    ann = {int(zs[1]): obj[zs[1]], int(zs[-2]): obj[zs[-2]]}
    torch.manual_seed(0)
    net = MemSegNet(size=32, width=8).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    roi = annotation_roi(ann)
    from halo_seg.interactive.roi import crop_stack
    column = crop_stack(ph.image.astype(np.float32), roi)
    images, masks, _ = network_inputs(column, ann, roi, net.size, "cpu")

    def fit(n):   # Dice of each annotated slice predicted from the other one in memory
        out = []
        with torch.no_grad():
            for z, other in zip(ann, reversed(list(ann))):
                lg, _ = n(images[z:z + 1], images.new_zeros(1, 3, 32, 32), images[other:other + 1][None],
                          masks[other][None], torch.ones(1, 1, dtype=torch.bool))
                out.append(dice(lg[0, 0].numpy() > 0, masks[z][0, 0].numpy() > 0.5))
        return np.mean(out)

    tuned = adapt.adapt_decoder(net, column, ann, roi, steps=60, lr=3e-3)
    assert tuned is not net
    assert fit(tuned) > fit(net) + 0.2
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k          # the session's network is untouched
    changed = {k.split(".")[0] for k, v in tuned.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= set(adapt.DECODER)
    assert adapt.adapt_decoder(net, column, ann, roi, steps=0) is net


@needs_default
def test_exploration_recommends_past_an_end_where_the_sweep_was_cut(phantom, monkeypatch):
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    seg = InteractiveSegmenter(image, device="cpu", tta=False, quality_stop=1.0)  # every sweep cut at once
    seg.add_box(z, *mask_bbox(truth[z]))
    seg.propagate()
    assert set(seg._s.open_ends) == {-1, 1}
    assert seg.cut_ends == [z - 1, z + 1]            # the mask is slice z alone; both sweeps were cut
    monkeypatch.setattr(segmenter, "EXPLORE", 0.25)
    first = seg.recommend_slice()
    assert first in (z - 2, z + 2)                   # a jump of max(2, 0.25 x extent) past an end
    # the user says the object is absent there: the next try on that side is halfway back
    seg.set_slice_mask(first, np.zeros(truth.shape[1:], bool))
    seg.propagate()
    s = first - z
    assert seg.recommend_slice() in (z + s // 2, z - s)
    seg.reset()
    assert seg.cut_ends == []


@needs_default
def test_quality_patience_drops_the_distrusted_run_when_it_ends_a_sweep(phantom, monkeypatch):
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    monkeypatch.setattr(propagation, "QUALITY_PATIENCE", 2)
    seg = InteractiveSegmenter(image, device="cpu", tta=False, quality_model=None)   # the head judges
    with torch.no_grad():
        seg.net.quality[-1].bias.fill_(-20.0)     # every slice distrusted
    seg.add_box(z, *mask_bbox(truth[z]))
    assert np.flatnonzero(seg.propagate().any((1, 2))).tolist() == [z]
    assert set(seg._s.open_ends) == {-1, 1}


def test_between_prior_interpolates_shape_and_boxes(monkeypatch):
    from halo_seg.interactive.baseline import interpolate_masks
    yy, xx = np.mgrid[:32, :32]
    ann = {0: (yy - 10) ** 2 + (xx - 10) ** 2 <= 16, 4: (yy - 20) ** 2 + (xx - 22) ** 2 <= 49}
    prob = {z: torch.full((32, 32), 0.9) for z in range(1, 4)}    # a leak everywhere
    masks = {z: torch.from_numpy(m) for z, m in ann.items()}
    ref = interpolate_masks(ann, (5, 32, 32))                      # "fill between slices"
    monkeypatch.setattr(propagation, "BETWEEN_BLEND", 1.0)
    out = propagation._between_prior(prob, masks)
    for z in range(1, 4):
        assert dice(out[z].numpy() > 0.5, ref[z]) > 0.95
    monkeypatch.setattr(propagation, "BETWEEN_BLEND", 0.0)
    monkeypatch.setattr(propagation, "BOX_MARGIN", 0.0)
    out = propagation._between_prior(prob, masks)
    kept = out[2].numpy() > 0.5      # halfway: the box between (6, 6, 14, 14) and (13, 15, 27, 29)
    ys, xs = np.nonzero(kept)
    assert (ys.min(), xs.min(), ys.max(), xs.max()) == (10, 11, 20, 21)
    monkeypatch.setattr(propagation, "BOX_MARGIN", None)
    assert propagation._between_prior(prob, masks) is prob
