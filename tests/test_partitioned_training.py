"""Partitioned training: one step over a rank grid updates the weights as the whole-patch step does."""
import numpy as np
import pytest

from halo_seg.train.partitioned import compare_training_step
from halo_seg.train.partitioned_run import train_partitioned


@pytest.mark.parametrize("grid, shape", [((2, 1, 1), (16, 12, 12)), ((1, 2, 2), (12, 20, 18))])
def test_partitioned_step_equals_whole_step(grid, shape):
    r = compare_training_step(grid, shape)
    assert r["ranks_agree"], "ranks drifted apart"
    assert r["update_scale"] > 1e-6
    assert r["update_max_rel_diff"] <= 1e-4, r
    assert all(abs(l - r["loss_whole"]) <= 1e-9 * max(1, abs(r["loss_whole"])) for l in r["loss_partitioned"]), r


def test_train_partitioned_writes_loadable_weights(tmp_path):
    from halo_seg.engine.weights import load_unet
    from halo_seg.samples import make_phantom
    ph = make_phantom((24, 32, 32), n_objects=2, seed=3)
    lab = (ph.labels > 0).astype(np.int64)
    cfg = dict(n_classes=2, patch=[16, 24, 24], iterations=3, lr=1e-3, base=4, depth=2, seed=0, epoch=1)
    seen = []
    res = train_partitioned(ph.image, lab, cfg, (2, 1, 1), tmp_path / "p.safetensors",
                            progress=lambda i, n: seen.append((i, n)))
    assert seen[-1] == (3, 3) and len(res["history"]) == 3
    net, meta = load_unet(tmp_path / "p.safetensors")
    assert meta["training"]["partitioned"] and meta["training"]["grid"] == [2, 1, 1]


def test_train_partitioned_refuses_bad_pairs(tmp_path):
    from halo_seg.train.unet_train import TrainingError
    cfg = dict(n_classes=2, patch=[16, 16, 16], iterations=1, lr=1e-3, base=4, depth=2, seed=0)
    with pytest.raises(TrainingError, match="differ"):
        train_partitioned(np.zeros((16, 16, 16)), np.zeros((16, 16, 8), np.int64), cfg, (2, 1, 1), tmp_path / "x")
    with pytest.raises(TrainingError, match="empty"):
        train_partitioned(np.zeros((16, 16, 16)), np.zeros((16, 16, 16), np.int64), cfg, (2, 1, 1), tmp_path / "x")


@pytest.fixture(scope="module")
def phantom_pair():
    from halo_seg.samples import make_phantom
    ph = make_phantom((32, 32, 32), n_objects=3, seed=11, noise=0.05)
    return ph.image, (ph.labels > 0).astype(np.int64)


def _whole_dice(weights, img, lab):
    from halo_seg.engine import normalize
    from halo_seg.engine.runner import predict_whole
    from halo_seg.engine.weights import load_unet
    from halo_seg.metrics import dice
    net, meta = load_unet(weights)
    spec = normalize.resolve(meta["normalization"], img)
    m, s = normalize.mean_std(normalize.moments(img, spec), spec)
    return dice(predict_whole(net, normalize.apply(img, m, s, spec), "cpu").argmax(0) == 1, lab == 1), meta


def test_partitioned_training_learns_and_validates_like_the_whole_network(phantom_pair, tmp_path):
    """Validation runs the network partitioned over the whole volume; its Dice must be the one the saved
    weights give unpartitioned, and the grid must not change what is learnt (one rank vs two)."""
    img, lab = phantom_pair
    cfg = dict(n_classes=2, patch=[32, 32, 32], iterations=30, lr=3e-3, base=4, depth=2, epoch=10, batch=2)
    res = {g: train_partitioned(img, lab, cfg, g, tmp_path / f"{''.join(map(str, g))}.safetensors",
                                log=lambda *a: None) for g in [(1, 1, 1), (2, 1, 1)]}
    two = res[(2, 1, 1)]
    assert [h["iteration"] for h in two["history"]] == [10, 20, 30]
    whole, meta = _whole_dice(tmp_path / "211.safetensors", img, lab)
    assert meta["training"]["iteration"] == two["best"]["iteration"]
    assert meta["training"]["best_val_dice"][0] == pytest.approx(whole, abs=1e-6)
    assert whole > 0.6   # a random network scores about the foreground fraction (0.1)
    # the same patches and steps: fp32 sums in another order, nothing else
    for a, b in zip(res[(1, 1, 1)]["history"], two["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
        assert a["val_dice"][0] == pytest.approx(b["val_dice"][0], abs=0.01)


def test_torchrun_training_equals_spawned_ranks(phantom_pair, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from safetensors.torch import load_file
    from halo_seg.engine.runner import _free_port
    img, lab = phantom_pair
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab.npy", lab.astype(np.uint8))
    args = ["--patch", "32", "32", "32", "--iterations", "6", "--epoch", "3", "--base", "4", "--depth", "2",
            "--batch", "1", "--lr", "3e-3", "--threads", "1", "--device", "cpu"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "halo_seg.cli", "train", "--image", str(tmp_path / "img.npy"), "--labels", str(tmp_path / "lab.npy"),
           "--out", str(tmp_path / "t.safetensors"), "--grid", "2,1,1", "--quiet", *args]
    r = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len([line for line in r.stdout.splitlines() if line.startswith("{")]) == 1   # rank 0 alone reports
    assert json.loads(r.stdout.strip().splitlines()[-1])["grid"] == [2, 1, 1]
    cfg = dict(n_classes=2, patch=[32, 32, 32], iterations=6, epoch=3, base=4, depth=2, batch=1, lr=3e-3,
               threads=1, seed=0)
    train_partitioned(img, lab.astype(np.int64), cfg, (2, 1, 1), tmp_path / "s.safetensors", log=lambda *a: None)
    a, b = load_file(str(tmp_path / "t.safetensors")), load_file(str(tmp_path / "s.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    bad = [c if c != "2,1,1" else "1,2,2" for c in cmd]
    r = subprocess.run(bad, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "torchrun started 2 ranks but the grid (1, 2, 2) needs 4" in r.stderr


def test_partitioned_training_cancels_everywhere_and_resumes(phantom_pair, tmp_path):
    from halo_seg.engine.weights import load_unet
    img, lab = phantom_pair
    cfg = dict(n_classes=2, patch=[16, 32, 32], iterations=40, lr=3e-3, base=4, depth=2, epoch=2)
    seen = []
    res = train_partitioned(img, lab, cfg, (2, 1, 1), tmp_path / "c.safetensors", log=lambda *a: None,
                            progress=lambda i, n: seen.append(i), cancel=lambda: len(seen) >= 5)
    assert res["cancelled_at"] is not None and 5 <= res["cancelled_at"] < 40
    kept = load_unet(tmp_path / "c.safetensors")[1]["training"]["iteration"]
    assert kept <= res["cancelled_at"] and kept % 2 == 0
    seen.clear()
    res = train_partitioned(img, lab, {**cfg, "iterations": 12, "resume": str(tmp_path / "c.safetensors")}, (2, 1, 1),
                            tmp_path / "r.safetensors", log=lambda *a: None, progress=lambda i, n: seen.append(i))
    assert seen == list(range(kept + 1, 13)) and res["cancelled_at"] is None
    with pytest.raises(Exception, match="cannot resume"):
        train_partitioned(img, lab, {**cfg, "base": 8, "resume": str(tmp_path / "c.safetensors")}, (2, 1, 1),
                          tmp_path / "x.safetensors", log=lambda *a: None)


def test_patches_are_centred_on_foreground_when_asked():
    from halo_seg.train.partitioned import _patch_origin
    rng = np.random.default_rng(0)
    fg = {1: np.array([[50, 3, 90]], np.int32)}
    for _ in range(50):
        o = _patch_origin((100, 100, 100), (16, 16, 16), rng, fg, 1.0)
        assert all(a <= c < a + 16 for a, c in zip(o, fg[1][0]))
    uniform = [_patch_origin((100, 100, 100), (16, 16, 16), rng) for _ in range(50)]
    assert any(not all(a <= c < a + 16 for a, c in zip(o, fg[1][0])) for o in uniform)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal where no GPU is")
def test_cuda_training_without_a_gpu_is_refused(phantom_pair, tmp_path):
    from halo_seg.train.unet_train import TrainConfig, TrainingError, train_unet
    img, lab = phantom_pair
    with pytest.raises(TrainingError, match="cuda was asked for but no CUDA device"):
        train_unet([img], [lab], TrainConfig(patch=(16, 16, 16), iterations=1, base=4, depth=2, device="cuda"),
                   tmp_path / "x.safetensors", log=lambda *a: None)
    cfg = dict(n_classes=2, patch=[16, 16, 16], iterations=1, lr=1e-3, base=4, depth=2, device="cuda")
    with pytest.raises(TrainingError, match="cuda was asked for but no CUDA device"):
        train_partitioned(img, lab, cfg, (2, 1, 1), tmp_path / "x.safetensors", log=lambda *a: None)
    assert not (tmp_path / "x.safetensors").exists()
