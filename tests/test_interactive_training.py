"""Training the interactive network: unrolled sweeps on its own predictions, fine-tuning."""
import numpy as np
import pytest
import torch

from halo_seg.interactive.memnet import MemSegNet
from halo_seg.interactive.model_io import load_memnet
from halo_seg.train.deform import DeformedView
from halo_seg.train.interactive_data import ExampleSampler, Source, _objects, phantom_sources
from halo_seg.train.interactive_train import rollout_loss, train_interactive


@pytest.fixture(scope="module")
def sampler():
    return ExampleSampler(phantom_sources(2), size=32, seed=3)


def test_sweeps_start_on_the_object_and_cross_its_ends(sampler):
    imgs, masks, has_second = sampler.sweep_batch(24, 5)
    assert imgs.shape == masks.shape == (24, 7, 1, 32, 32) and has_second.shape == (24,)
    assert masks.min() >= 0 and masks.max() <= 1
    assert (masks[:, 0].sum((1, 2, 3)) > 0).all()            # the annotated slice shows the object
    last = masks[:, -1].sum((1, 2, 3))
    assert (last == 0).any() and (last > 0).any()            # some sweeps run past the end, some do not


def test_contrast_inversion_makes_the_phantoms_objects_dark():
    def contrast(invert):
        smp = ExampleSampler(phantom_sources(2), size=32, seed=3, invert=invert)
        q, _, _, _, _, tgt, _ = smp.batch(48)
        inside = (q * tgt).sum((1, 2, 3)) / tgt.sum((1, 2, 3)).clamp(min=1)
        outside = (q * (1 - tgt)).sum((1, 2, 3)) / (1 - tgt).sum((1, 2, 3)).clamp(min=1)
        return (inside > outside).float().mean()
    assert contrast(0.0) > 0.9        # the phantoms' objects are brighter than their background
    assert contrast(1.0) < 0.1
    assert 0.2 < contrast(0.5) < 0.8


def test_thick_slice_views_average_runs_of_slices_and_keep_the_middle_label():
    # a cube of ones on [20, 40) along every axis of a 60^3 volume: whichever axis is sliced, a
    # run of k slices [k z, k z + k) holds the fraction of the run inside the cube in its image
    lab = np.zeros((60, 60, 60), np.int32)
    lab[20:40, 20:40, 20:40] = 1
    src = Source("cube", lab.astype(np.float32), lab, _objects(lab))
    seen = set()
    for thick, draws in ((0.0, 5), (1.0, 40)):
        smp = ExampleSampler([src], size=32, seed=1, thick=thick)
        for _ in range(draws):
            imgv, gt, zs, nz, _ = smp._view()
            k = 60 // nz
            assert (k == 1) == (thick == 0.0) and nz == 60 // k
            seen.add(k)
            for z in range(nz):
                inside = len(set(range(k * z, k * z + k)) & set(range(20, 40))) / k
                assert imgv[z][imgv[z] > 0].max(initial=0.0) == pytest.approx(inside)
                assert gt(z).any() == (20 <= k * z + k // 2 < 40)
            assert list(zs) == [z for z in range(nz) if gt(z).any()]
    assert seen == {1, 2, 3, 4, 5}


def test_elastic_views_deform_image_and_mask_alike_and_keep_the_objects_slices():
    # a tilted ellipsoid whose image is its own mask: any mismatch between the image's and the
    # mask's resampling would show as image values away from 1 inside the deformed mask
    z, y, x = np.mgrid[0:40, 0:80, 0:80]
    lab = (((z - 20) / 15.0) ** 2 + ((y - 40 - 0.3 * (z - 20)) / 20.0) ** 2 + ((x - 40) / 9.0) ** 2 <= 1)
    rng = np.random.default_rng(0)
    moved = []
    for seed in range(6):
        view = DeformedView(lab.astype(np.float32), lab, np.random.default_rng(seed), centre=(40, 40), size=40)
        for zz in range(40):
            m = view.mask(zz)
            assert m.any() == lab[zz].any()                  # the object's slices stay its slices
            if m.sum() > 20:
                img = view[zz]
                assert img[m].mean() > 0.8 and img[~m].mean() < 0.05
                assert ((img >= 0.5) == m).all()             # one map for both
        a = np.array([view.mask(zz).sum() for zz in range(40)], float)
        b = lab.reshape(40, -1).sum(1)
        assert np.all(a[b > 50] / b[b > 50] > 0.5) and np.all(a[b > 50] / b[b > 50] < 2.0)
        moved.append(np.mean([(view.mask(zz) ^ lab[zz]).sum() / max(1, lab[zz].sum()) for zz in range(10, 30)]))
        # smooth along the slices: neighbours differ much less than the deformation moves them
        step = np.mean([(view.mask(zz) ^ view.mask(zz + 1)).sum() / lab[zz].sum() for zz in range(12, 28)])
        raw_step = np.mean([(lab[zz] ^ lab[zz + 1]).sum() / lab[zz].sum() for zz in range(12, 28)])
        assert step < raw_step + 0.1
    assert np.mean(moved) > 0.1                              # it does deform
    with pytest.raises(ValueError, match="differ in shape"):
        DeformedView(np.zeros((4, 8, 8)), np.zeros((4, 8, 9), bool), rng, centre=(4, 4), size=4)


def test_elastic_examples_keep_the_phantoms_objects_bright_inside_their_targets():
    smp = ExampleSampler(phantom_sources(2), size=32, seed=3, elastic=1.0)
    q, _, mi, mm, mv, tgt, _ = smp.batch(48)
    inside = (q * tgt).sum((1, 2, 3)) / tgt.sum((1, 2, 3)).clamp(min=1)
    outside = (q * (1 - tgt)).sum((1, 2, 3)) / (1 - tgt).sum((1, 2, 3)).clamp(min=1)
    assert ((inside > outside + 0.5) | (tgt.sum((1, 2, 3)) == 0)).float().mean() > 0.9
    imgs, masks, _ = smp.sweep_batch(16, 5)
    assert imgs.shape == (16, 7, 1, 32, 32) and (masks[:, 0].sum((1, 2, 3)) > 0).all()


def test_sweeps_of_short_objects_at_the_volume_edge():
    # objects shorter than a sweep that touch the first or last slice (a bug seen in GPU training)
    rng = np.random.default_rng(0)
    img = rng.random((6, 40, 40)).astype(np.float32)
    lab = np.zeros((6, 40, 40), np.int32)
    lab[3:, 10:25, 10:25] = 1
    lab[:3, 20:35, 18:30] = 2
    src = Source("edge", img, lab, _objects(lab, min_voxels=10, min_extent=3))
    smp = ExampleSampler([src], size=32, seed=0)
    for _ in range(200):
        ex = smp.sweep_example(4)
        assert ex is None or ex[1][0].sum() > 0


def test_rollout_feeds_back_the_networks_own_predictions(sampler):
    torch.manual_seed(0)
    net = MemSegNet(size=32, width=4, key_dim=8)
    seen = []
    forward = net.forward

    def spy(q, g, mi, mm, mv, prev=None):
        assert torch.equal(prev, mm[:, 2])   # the location prior is the previous slice's own mask
        logits, qual = forward(q, g, mi, mm, mv, prev)
        seen.append((mi[:, 2].clone(), mm[:, 2].clone(), logits.detach().clone()))
        return logits, qual

    net.forward = spy
    imgs, masks, has_second = sampler.sweep_batch(6, 4)
    loss, dice, qual = rollout_loss(net, imgs, masks, has_second)
    assert len(seen) == 4 and dice.shape == qual.shape == (6, 4)
    assert torch.equal(seen[0][0], imgs[:, 0]) and torch.equal(seen[0][1], masks[:, 0])
    for k in range(1, 4):   # the previous slice, with the network's thresholded prediction, not the truth
        assert torch.equal(seen[k][0], imgs[:, 1 + k])
        assert torch.equal(seen[k][1], (seen[k - 1][2] > 0).float())
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in net.value_enc.parameters())


def test_rollout_in_bf16_follows_fp32(sampler):
    torch.manual_seed(0)
    net = MemSegNet(size=32, width=4, key_dim=8)
    imgs, masks, has_second = sampler.sweep_batch(6, 4)
    ref, _, _ = rollout_loss(net, imgs, masks, has_second)
    loss, dice, qual = rollout_loss(net, imgs, masks, has_second, precision="bf16")
    assert loss.dtype == torch.float32 and qual.dtype == torch.float32   # losses are taken in fp32
    assert loss.item() != ref.item() and loss.item() == pytest.approx(ref.item(), rel=0.05)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_init_fine_tunes_on_a_fresh_schedule(tmp_path):
    first, tuned = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    quiet = dict(batch=4, shared=False, n_phantoms=2, workers=0, log=lambda *a: None, size=32, width=4,
                 sweeps=2, sweep_steps=3)
    res = train_interactive(first, iterations=2, **quiet)
    assert "sweep_dice" in res["history"][-1]
    train_interactive(tuned, iterations=3, lr=0.0, init=first, **quiet)   # lr 0: the weights must be kept
    (a, _), (b, meta) = load_memnet(first), load_memnet(tuned)
    assert meta["iterations"] == 3 and meta["init"] == str(first)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="not both"):
        train_interactive(tuned, iterations=1, init=first, resume=first, **quiet)
    # refused before any data is built (they failed deep in torch, or saved an untrained network)
    for kw, msg in (({"iterations": 0}, "iterations must be"), ({"batch": 0}, "batch must be"),
                    ({"width": 0}, "width must be"), ({"lr": -1.0}, "learning rate"), ({"minutes": 0}, "minutes")):
        with pytest.raises(ValueError, match=msg):
            train_interactive(tmp_path / "c.safetensors", **{"iterations": 1, **quiet, **kw})
    assert not (tmp_path / "c.safetensors").exists()
    (tmp_path / "scan.npy").write_bytes(b"the user's data")   # was trained on, then written over
    with pytest.raises(ValueError, match="give --out a path ending in .safetensors"):
        train_interactive(tmp_path / "scan.npy", iterations=1, **quiet)
    assert (tmp_path / "scan.npy").read_bytes() == b"the user's data"


def test_learning_rate_follows_one_cycle_for_any_length_and_resumes(tmp_path, monkeypatch):
    # 20 iterations once crashed torch's OneCycleLR (its warm-up was a single step)
    from halo_seg.train.interactive_train import time_lr
    seen = []
    step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    quiet = dict(batch=2, shared=False, n_phantoms=1, workers=0, log=lambda *a: None, size=32, width=4, sweeps=0,
                 lr=1e-3)
    path = tmp_path / "a.safetensors"
    train_interactive(path, iterations=20, **quiet)
    assert seen == pytest.approx([time_lr(1e-3, i / 20) for i in range(20)])
    seen.clear()
    from halo_seg.interactive.model_io import save_memnet
    net, _ = load_memnet(path)
    save_memnet(net, path, iterations=12)          # as if the run had stopped at iteration 12
    train_interactive(path, iterations=20, resume=path, **quiet)
    assert seen == pytest.approx([time_lr(1e-3, i / 20) for i in range(12, 20)])


def test_cli_trains_and_fine_tunes(tmp_path, capsys):
    from halo_seg.cli import main
    first, tuned = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    common = ["--iterations", "1", "--batch", "2", "--sweeps", "1", "--sweep-steps", "2", "--workers", "0",
              "--size", "32"]
    assert main(["train-interactive", "--out", str(first), "--width", "4", *common]) == 0
    assert main(["train-interactive", "--out", str(tuned), "--init", str(first), "--corrective", "0.5",
                 "--precision", "bf16", *common]) == 0
    meta = load_memnet(tuned)[1]
    assert meta["config"]["width"] == 4 and meta["init"] == str(first)   # the architecture comes from --init
    assert meta["sweeps"] == 1 and meta["sweep_steps"] == 2 and meta["corrective"] == 0.5
    assert meta["precision"] == "bf16" and load_memnet(first)[1]["precision"] == "fp32"


def test_time_lr_warms_up_then_anneals_to_zero():
    from halo_seg.train.interactive_train import WARMUP, time_lr
    assert time_lr(1.0, 0.0) == pytest.approx(1 / 25)
    assert time_lr(1.0, WARMUP / 2) == pytest.approx((1 / 25 + 1) / 2)
    assert time_lr(1.0, WARMUP) == pytest.approx(1.0)
    assert time_lr(1.0, (1 + WARMUP) / 2) == pytest.approx(0.5)       # cosine half-way
    assert time_lr(1.0, 1.0) == pytest.approx(0.0, abs=1e-12) and time_lr(1.0, 2.0) == pytest.approx(0.0, abs=1e-12)
    fracs = np.linspace(WARMUP, 1, 50)
    assert all(a >= b for a, b in zip([time_lr(1, f) for f in fracs], [time_lr(1, f) for f in fracs[1:]]))


def test_a_run_capped_in_minutes_stops_on_the_clock_and_saves(tmp_path):
    out = tmp_path / "m.safetensors"
    quiet = dict(batch=2, shared=False, n_phantoms=2, workers=0, log=lambda *a: None, size=32, width=4,
                 sweeps=1, sweep_steps=2)
    res = train_interactive(out, iterations=100000, minutes=0.05, **quiet)   # 3 s, far fewer iterations
    last = res["history"][-1]
    meta = load_memnet(out)[1]
    assert 0 < last["iteration"] < 100000 and meta["iterations"] == last["iteration"]
    assert 3.0 <= last["seconds"] < 30 and meta["minutes"] == 0.05
    with pytest.raises(ValueError, match="cannot be resumed"):
        train_interactive(out, iterations=10, minutes=0.05, resume=out, **quiet)


def test_mri_supervoxels_keep_away_from_the_excluded_regions(tmp_path):
    from scipy import ndimage as ndi

    from halo_seg.samples import SUBCORTICAL, load_colin27_full, shared_data_dir
    from halo_seg.train.interactive_data import mri_supervoxel_source
    data = shared_data_dir()
    if data is None:
        pytest.skip("needs ../shared/data")
    src = mri_supervoxel_source(data, exclude=SUBCORTICAL, n_segments=150, cache=tmp_path / "sv.npz")
    full = load_colin27_full(data)
    near = ndi.binary_dilation(np.isin(full.labels, list(SUBCORTICAL)), iterations=3)
    assert len(src.objects) > 50 and (tmp_path / "sv.npz").exists()
    assert not (src.labels[near] > 0).any() and not (src.labels[~full.brain] > 0).any()


def _user_volume():
    from halo_seg.samples import make_phantom
    ph = make_phantom((24, 48, 48), n_objects=4, seed=5)
    return ph.image, ph.labels.astype(np.uint16)


def test_user_volumes_become_sources_of_their_own_objects():
    from halo_seg.train.interactive_data import AXIS_ORDERS, user_source
    image, labels = _user_volume()
    values = sorted(int(v) for v in np.unique(labels) if v)
    iso = user_source(image, labels)
    assert sorted(v for v, _ in iso.objects) == values and iso.orders == AXIS_ORDERS
    thick = user_source(image, labels, spacing=(3.0, 1.0, 1.0), regions=values[:2])
    assert sorted(v for v, _ in thick.objects) == values[:2]          # the others are kept for checking
    assert all(o[0] == 0 for o in thick.orders)                      # sliced only as acquired
    smp = ExampleSampler([thick], size=32, seed=0)
    q, _, _, _, _, tgt, _ = smp.batch(16)
    assert (tgt.sum((1, 2, 3)) > 0).float().mean() > 0.25     # the rest: past an end, by design
    for bad, msg in [((image, labels[:-1]), "one shape"), ((image, labels.astype(np.float32)), "integers"),
                     ((image, np.zeros_like(labels)), "no object"),
                     ((np.where(labels > 0, np.nan, image), labels), "NaN")]:
        with pytest.raises(ValueError, match=msg):
            user_source(*bad)
    with pytest.raises(ValueError, match=r"\[99\] are not in the labels"):
        user_source(image, labels, regions=[values[0], 99])


def test_cli_fine_tunes_on_the_users_own_volume(tmp_path, capsys):
    from halo_seg.cli import main
    image, labels = _user_volume()
    np.save(tmp_path / "img.npy", image)
    np.save(tmp_path / "lab.npy", labels)
    out = tmp_path / "m.safetensors"
    common = ["--iterations", "1", "--batch", "2", "--sweeps", "1", "--sweep-steps", "2", "--workers", "0",
              "--size", "32", "--width", "4", "--out", str(out)]
    user = ["--image", str(tmp_path / "img.npy"), "--labels", str(tmp_path / "lab.npy")]
    assert main(["train-interactive", *common, *user, "--regions", "1", "2", "--user-share", "0.7"]) == 0
    assert "user0" in load_memnet(out)[1]["sources"]
    assert main(["train-interactive", *common, *user, "--regions", "99"]) == 2
    assert "[99] are not in the labels" in capsys.readouterr().err
    assert main(["train-interactive", *common, "--image", str(tmp_path / "img.npy")]) == 2
    assert "give them in pairs" in capsys.readouterr().err


def test_corrective_clicks_sit_on_the_errors_of_the_mask_they_correct():
    from halo_seg.train.interactive_data import _corrective_clicks, _corrupt
    rng = np.random.default_rng(0)
    truth = np.zeros((60, 60), bool)
    truth[15:45, 10:50] = True
    on_error = 0
    for _ in range(40):
        cur = _corrupt(truth, rng, None)
        assert cur.any() and (cur ^ truth).sum() >= 4          # wrong enough to click on
        pos, neg = _corrective_clicks(cur, truth, rng, 3)
        assert 1 <= len(pos) + len(neg) <= 3
        assert all(truth[c] for c in pos) and not any(truth[c] for c in neg)   # never a wrong-signed click
        on_error += sum(not cur[c] for c in pos) + sum(cur[c] for c in neg)
    assert on_error >= 60            # most clicks point at an error (a quarter are answered ones)


def test_corrective_examples_hold_the_corrected_mask_and_click_guidance():
    def clicks_on_misses(corrective):
        smp = ExampleSampler(phantom_sources(2), size=32, seed=5, corrective=corrective)
        n = 0
        for _ in range(300):
            ex = smp.example()
            if ex is None:
                continue
            imgs, guid, masks, k, _ = ex
            if guid[2].sum() > 0 or k == 0 or guid[0].max() < 0.9:   # a box, no memory, no positive click
                continue
            peak = guid[0] >= 0.9                                     # at the positive clicks
            n += bool((peak & (masks[0, 0] > 0.5) & (masks[k, 0] < 0.5)).any())   # in the object, missed
        return n
    # the existing click examples click inside the object, where the mask in memory has it too
    assert clicks_on_misses(1.0) >= 20 and clicks_on_misses(1.0) > 3 * clicks_on_misses(0.0)


def test_prev_input_starts_as_the_network_it_extends_and_trains(tmp_path):
    """A network given the nearest memory slice's mask computes exactly what it did before training
    (zero weights for the new input); the examples give that mask; a short run saves it and the
    session uses it."""
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.memnet import MemSegNet, with_prev_input
    from halo_seg.interactive.model_io import load_memnet
    from halo_seg.train.interactive_train import train_interactive
    torch.manual_seed(0)
    net = MemSegNet(size=32, width=4).eval()
    grown = with_prev_input(net).eval()
    q, g = torch.randn(3, 1, 32, 32), torch.rand(3, 3, 32, 32)
    mi, mm = torch.randn(3, 2, 1, 32, 32), (torch.rand(3, 2, 1, 32, 32) > 0.5).float()
    mv = torch.tensor([[True, True], [True, False], [False, False]])
    with torch.no_grad():
        for a, b in zip(net(q, g, mi, mm, mv), grown(q, g, mi, mm, mv, mm[:, 0])):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    smp = ExampleSampler(phantom_sources(2), size=32, seed=1)
    _, _, _, mm, mv, _, prev = smp.batch(32)
    for i in range(32):   # the mask of one of the example's memory entries, or none without memory
        assert any(torch.equal(prev[i], mm[i, j]) for j in range(int(mv[i].sum()))) if mv[i].any() \
            else not prev[i].any()
    out = train_interactive(tmp_path / "p.safetensors", iterations=3, batch=4, size=32, width=4, shared=False,
                            n_phantoms=2, sweeps=2, sweep_steps=2, workers=0, prev_input=True, log=lambda *_: None)
    trained, meta = load_memnet(out["path"])
    assert trained.prev_input and meta["config"]["prev_input"] is True
    assert trained.dec4[0][0].weight[:, -1].abs().sum() > 0      # the new input was trained
    from halo_seg.samples import make_phantom
    ph = make_phantom((12, 40, 40), n_objects=2, seed=1)
    seg = InteractiveSegmenter(ph.image, weights=out["path"], device="cpu")
    z = int(np.argmax(ph.labels.reshape(12, -1).sum(1)))
    ys, xs = np.nonzero(ph.labels[z] == ph.labels[z].max())
    seg.add_box(z, ys.min(), xs.min(), ys.max(), xs.max())
    assert seg.propagate().shape == ph.image.shape
