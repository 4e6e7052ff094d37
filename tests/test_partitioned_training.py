"""Partitioned training: one step over a rank grid updates the weights as the whole-patch step does."""
import numpy as np
import pytest

from halo_seg.train.partitioned import compare_training_step, train_partitioned


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
