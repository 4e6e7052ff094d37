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
    monkeypatch.setattr(segmenter, "EXPLORE", 0.25)
    first = seg.recommend_slice()
    assert first in (z - 2, z + 2)                   # a jump of max(2, 0.25 x extent) past an end
    # the user says the object is absent there: the next try on that side is halfway back
    seg.set_slice_mask(first, np.zeros(truth.shape[1:], bool))
    seg.propagate()
    s = first - z
    assert seg.recommend_slice() in (z + s // 2, z - s)


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
