"""Training the interactive network: unrolled sweeps on its own predictions, fine-tuning."""
import numpy as np
import pytest
import torch

from halo_seg.interactive.memnet import MemSegNet
from halo_seg.interactive.model_io import load_memnet
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

    def spy(q, g, mi, mm, mv):
        logits, qual = forward(q, g, mi, mm, mv)
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


def test_cli_trains_and_fine_tunes(tmp_path, capsys):
    from halo_seg.cli import main
    first, tuned = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    common = ["--iterations", "1", "--batch", "2", "--sweeps", "1", "--sweep-steps", "2", "--workers", "0",
              "--size", "32"]
    assert main(["train-interactive", "--out", str(first), "--width", "4", *common]) == 0
    assert main(["train-interactive", "--out", str(tuned), "--init", str(first), *common]) == 0
    meta = load_memnet(tuned)[1]
    assert meta["config"]["width"] == 4 and meta["init"] == str(first)   # the architecture comes from --init
    assert meta["sweeps"] == 1 and meta["sweep_steps"] == 2
