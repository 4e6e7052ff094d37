"""Partitioned training: one step over a rank grid updates the weights as the whole-patch step does."""
from pathlib import Path

import numpy as np
import pytest

from halo_seg.train.partitioned import compare_training_step
from halo_seg.train.partitioned_run import train_partitioned


@pytest.mark.parametrize("grid, shape, replicas, checkpoint", [
    ((2, 1, 1), (16, 12, 12), 1, False), ((1, 2, 2), (12, 20, 18), 1, False), ((2, 1, 1), (16, 12, 12), 2, False),
    ((1, 1, 1), (16, 12, 12), 3, False), ((1, 2, 2), (12, 20, 18), 1, True)])
def test_partitioned_step_equals_whole_step(grid, shape, replicas, checkpoint):
    """Replicas: data-parallel copies of the grid, each on its own patch; the reference averages the
    whole network's gradients over those patches. Checkpointing: the ranks run each stage's forward
    again in the backward pass, halo exchanges included, and the step stays the same."""
    r = compare_training_step(grid, shape, replicas=replicas, checkpoint=checkpoint)
    assert r["ranks_agree"], "ranks drifted apart"
    assert r["update_scale"] > 1e-6
    assert r["update_max_rel_diff"] <= 1e-4, r
    assert all(abs(l - r["loss_whole"]) <= 1e-9 * max(1, abs(r["loss_whole"])) for l in r["loss_partitioned"]), r
    assert len(set(r["replica_losses"])) == replicas   # each replica trained on a patch of its own


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
        train_partitioned(np.zeros((16, 16, 16)), np.zeros((16, 16, 8), np.int64), cfg, (2, 1, 1), tmp_path / "x.safetensors")
    with pytest.raises(TrainingError, match="empty"):
        train_partitioned(np.zeros((16, 16, 16)), np.zeros((16, 16, 16), np.int64), cfg, (2, 1, 1), tmp_path / "x.safetensors")
    ok = (np.zeros((16, 16, 16)), (np.arange(16 ** 3).reshape(16, 16, 16) % 2).astype(np.int64))
    with pytest.raises(TrainingError, match="replicas must be a positive integer, got 0"):
        train_partitioned(*ok, {**cfg, "replicas": 0}, (2, 1, 1), tmp_path / "x.safetensors")
    with pytest.raises(TrainingError, match="batch must hold at least 1 patch, got 0"):   # a rank's traceback before
        train_partitioned(*ok, {**cfg, "batch": 0}, (2, 1, 1), tmp_path / "x.safetensors")
    with pytest.raises(TrainingError, match="give --out a path ending in .safetensors, not x.npy"):
        train_partitioned(*ok, cfg, (2, 1, 1), tmp_path / "x.npy")   # before any rank starts


@pytest.fixture(scope="module")
def phantom_pair():
    from halo_seg.samples import make_phantom
    ph = make_phantom((32, 32, 32), n_objects=3, seed=11, noise=0.05)
    return ph.image, (ph.labels > 0).astype(np.int64)


def test_partitioned_training_learns_and_validates_like_the_whole_network(phantom_pair, tmp_path, whole_dice):
    """Validation runs the network partitioned over the whole volume; its Dice must be the one the saved
    weights give unpartitioned, and the grid must not change what is learnt (one rank vs two)."""
    img, lab = phantom_pair
    cfg = dict(n_classes=2, patch=[32, 32, 32], iterations=30, lr=3e-3, base=4, depth=2, epoch=10, batch=2)
    res = {g: train_partitioned(img, lab, cfg, g, tmp_path / f"{''.join(map(str, g))}.safetensors",
                                log=lambda *a: None) for g in [(1, 1, 1), (2, 1, 1)]}
    two = res[(2, 1, 1)]
    assert [h["iteration"] for h in two["history"]] == [10, 20, 30]
    whole, meta = whole_dice(tmp_path / "211.safetensors", img, lab)
    assert meta["training"]["iteration"] == two["best"]["iteration"]
    assert meta["training"]["best_val_dice"][0] == pytest.approx(whole, abs=1e-6)
    assert whole > 0.6   # a random network scores about the foreground fraction (0.1)
    # the same patches and steps: fp32 sums in another order, nothing else
    for a, b in zip(res[(1, 1, 1)]["history"], two["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
        assert a["val_dice"][0] == pytest.approx(b["val_dice"][0], abs=0.01)


def test_replicas_over_several_volumes_learn_alike_on_any_grid_and_validate_every_volume(phantom_pair, tmp_path,
                                                                                         whole_dice):
    """Two data-parallel replicas, two volume pairs of different shapes: a replica of one rank and a
    replica of two ranks train the same patches (same losses); the validation, shared out between the
    replicas, is the saved weights' whole-volume Dice averaged over the two volumes, each normalised
    with its own percentile window as the saved weights say."""
    from halo_seg.samples import make_phantom
    img, lab = phantom_pair
    ph = make_phantom((40, 32, 24), n_objects=2, seed=5, noise=0.05)
    imgs, labs = [img, ph.image], [lab, (ph.labels > 0).astype(np.int64)]
    cfg = dict(n_classes=2, patch=[32, 32, 32], iterations=20, lr=3e-3, base=4, depth=2, epoch=10, batch=1,
               replicas=2, normalization={"kind": "percentile", "percentiles": [0.5, 99.5]})
    res = {g: train_partitioned(imgs, labs, cfg, g, tmp_path / f"{''.join(map(str, g))}.safetensors",
                                log=lambda *a: None) for g in [(1, 1, 1), (2, 1, 1)]}
    two = res[(2, 1, 1)]
    for a, b in zip(res[(1, 1, 1)]["history"], two["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    whole = [whole_dice(tmp_path / "211.safetensors", im, lb) for im, lb in zip(imgs, labs)]
    meta = whole[0][1]
    assert meta["training"]["replicas"] == 2 and meta["training"]["config"]["patch"] == [32, 32, 24]
    assert meta["normalization"] == cfg["normalization"]
    assert meta["training"]["best_val_dice"][0] == pytest.approx(np.mean([d for d, _ in whole]), abs=1e-6)
    assert abs(whole[0][0] - whole[1][0]) > 1e-3   # two volumes, two scores: both were validated


def test_torchrun_training_equals_spawned_ranks(phantom_pair, tmp_path):
    """Under torchrun: two replicas of a two-rank grid, two volume pairs given on the command line."""
    import json
    import os
    import subprocess
    import sys
    from safetensors.torch import load_file
    from halo_seg.engine.runner import _free_port
    from halo_seg.samples import make_phantom
    img, lab = phantom_pair
    ph = make_phantom((32, 40, 32), n_objects=2, seed=5, noise=0.05)
    imgs, labs = [img, ph.image], [lab, (ph.labels > 0).astype(np.int64)]
    files = []
    for i, (im, lb) in enumerate(zip(imgs, labs)):
        np.save(tmp_path / f"img{i}.npy", im)
        np.save(tmp_path / f"lab{i}.npy", lb.astype(np.uint8))
        files += ["--image", str(tmp_path / f"img{i}.npy"), "--labels", str(tmp_path / f"lab{i}.npy")]
    args = ["--patch", "32", "32", "32", "--iterations", "6", "--epoch", "3", "--base", "4", "--depth", "2",
            "--batch", "1", "--lr", "3e-3", "--threads", "1", "--device", "cpu"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "4", "--master-port", str(_free_port()),
           "-m", "halo_seg.cli", "train", *files, "--out", str(tmp_path / "t.safetensors"), "--grid", "2,1,1",
           "--replicas", "2", "--quiet", *args]
    r = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len([line for line in r.stdout.splitlines() if line.startswith("{")]) == 1   # rank 0 alone reports
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["grid"] == [2, 1, 1] and report["replicas"] == 2
    cfg = dict(n_classes=2, patch=[32, 32, 32], iterations=6, epoch=3, base=4, depth=2, batch=1, lr=3e-3,
               threads=1, seed=0, replicas=2)
    train_partitioned(imgs, labs, cfg, (2, 1, 1), tmp_path / "s.safetensors", log=lambda *a: None)
    a, b = load_file(str(tmp_path / "t.safetensors")), load_file(str(tmp_path / "s.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    i = cmd.index("--replicas")
    bad = cmd[:i] + cmd[i + 2:]
    r = subprocess.run(bad, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and ("torchrun started 4 ranks but the grid (2, 1, 1) needs 2; --replicas 2 would "
                                  "train 2 copies of the grid") in r.stderr


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


def test_more_gpu_ranks_than_gpus_are_refused(phantom_pair, tmp_path, monkeypatch):
    import torch
    from halo_seg.train.unet_train import TrainingError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    img, lab = phantom_pair
    cfg = dict(n_classes=2, patch=[16, 16, 16], iterations=1, lr=1e-3, base=4, depth=2, device="cuda", replicas=2)
    with pytest.raises(TrainingError, match=r"training on a grid 2x1x1 x 2 replicas needs 4 ranks on this machine, "
                                            r"one GPU each .* and it has 2: a smaller grid or fewer --replicas"):
        train_partitioned(img, lab, cfg, (2, 1, 1), tmp_path / "x.safetensors", log=lambda *a: None)
    assert not (tmp_path / "x.safetensors").exists()


def _share_rank(rank, init, tmp, hidden, q):
    """One of two gloo ranks on this machine preparing two pairs for _shared_prepared; ``hidden``:
    the machine's folder is invisible to rank 1 (one host name, two file systems)."""
    import os
    from datetime import timedelta
    import torch.distributed as dist
    from halo_seg.train import partitioned_run as pr
    if hidden and rank == 1:
        real = os.path.isdir
        os.path.isdir = lambda p: False if str(p).startswith(tmp) and "halo-seg-train-" in str(p) else real(p)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2, timeout=timedelta(seconds=60))
    imgs, labs = _share_data()
    made = []
    real_save = pr._save_prepared
    pr._save_prepared = lambda data, folder, stem: made.append(stem) or real_save(data, folder, stem)
    vols, val_vols, own, n = pr._shared_prepared(imgs[:2], labs[:2], imgs[2:], labs[2:],
                                                 {"normalization": {"kind": "zscore"}, "n_classes": 2}, None, None, rank,
                                                 2, tmp)
    q.put((rank, made, own, n, [v["image"].filename for v in vols + val_vols],
           [np.array(v["weights"]) for v in vols], [np.array(v["image"]) for v in val_vols]))
    dist.barrier()
    dist.destroy_process_group()


def _share_data():
    from halo_seg.samples import make_phantom
    phs = [make_phantom((16, 16, 16), n_objects=2, seed=s) for s in range(3)]
    return [p.image.astype(np.float32) for p in phs], [(p.labels > 0).astype(np.uint8) for p in phs]


@pytest.mark.parametrize("hidden", [False, True])
def test_torchrun_ranks_of_a_machine_prepare_the_pairs_once_into_one_folder(tmp_path, hidden):
    """Each rank held every prepared pair (10 bytes a voxel, per rank); now the ranks of a machine
    each prepare a share into one folder and all memory-map every pair: the same arrays the pairs
    prepared alone give. Where a rank cannot see the folder, each prepares its own."""
    import torch.multiprocessing as mp
    from halo_seg.engine.runner import _free_port
    from halo_seg.train.partitioned_run import prepare_data, prepare_validation
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    init = f"tcp://127.0.0.1:{_free_port()}"
    procs = [ctx.Process(target=_share_rank, args=(r, init, str(tmp_path), hidden, q)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict((r[0], r[1:]) for r in (q.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    imgs, labs = _share_data()
    cfg = {"normalization": {"kind": "zscore"}}
    for *_, weights, val_images in got.values():
        for w, im, lb in zip(weights, imgs, labs):
            np.testing.assert_array_equal(w, prepare_data(im, lb, cfg)["weights"])
        np.testing.assert_array_equal(val_images[0], prepare_validation(imgs[2], labs[2], cfg)["image"])
    if hidden:   # each rank its own folder, every pair prepared by each
        assert sorted(got[0][0]) == sorted(got[1][0]) == ["0", "1", "val0"] and got[0][2] == got[1][2] == 1
        assert {str(Path(f).parent) for f in got[0][3]} != {str(Path(f).parent) for f in got[1][3]}
    else:        # one folder, each pair prepared once: pairs 0 and val0 by rank 0, pair 1 by rank 1
        assert got[0][0] == ["0", "val0"] and got[1][0] == ["1"] and got[0][2] == got[1][2] == 2
        assert got[0][3] == got[1][3] and len({str(Path(f).parent) for f in got[0][3]}) == 1
        assert got[0][1] is not None and got[1][1] is None   # the first rank made the folder, and removes it
        assert str(Path(got[0][3][0]).parent.parent) == str(tmp_path)   # inside the scratch folder


def test_held_out_volumes_are_read_once_as_they_are_prepared(tmp_path):
    """Held-out validation volumes were read whole into every rank's (torchrun) or the parent's memory
    to be checked, kept there for the whole run, and read again to be prepared; now their shapes are
    checked lazily and their voxels once, as they are prepared (a bad voxel still refused by name)."""
    import dask.array as da
    from halo_seg.train.partitioned_run import train_partitioned
    from halo_seg.train.unet_train import TrainingError
    imgs, labs = _share_data()
    log = tmp_path / "reads.txt"

    class Counted:   # an array dask reads chunk by chunk, each read written down (dask copies the object)
        def __init__(self, a):
            self.a, self.shape, self.dtype, self.ndim = a, a.shape, a.dtype, a.ndim

        def __getitem__(self, key):
            if all(k.stop > k.start for k in key):   # not dask's empty probe of the type
                with open(log, "a") as f:
                    f.write(f"{key}\n")
            return self.a[key]
    val_img = da.from_array(Counted(imgs[2]), chunks=(8, 16, 16), asarray=False)
    val_lab = da.from_array(Counted(labs[2]), chunks=(8, 16, 16), asarray=False)
    cfg = dict(n_classes=2, patch=[16, 16, 16], iterations=1, lr=1e-3, base=4, depth=2)
    train_partitioned(imgs[0], labs[0], cfg, (2, 1, 1), tmp_path / "m.safetensors", log=lambda *a: None,
                      val_images=[val_img], val_labels=[val_lab])
    assert len(log.read_text().splitlines()) == 4   # two chunks of the image, two of the labels: each read once
    bad = imgs[2].copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(TrainingError, match="validation volume 0: the image holds 1 NaN"):
        train_partitioned(imgs[0], labs[0], cfg, (2, 1, 1), tmp_path / "x.safetensors", log=lambda *a: None,
                          val_images=[da.from_array(bad)], val_labels=[labs[2]])
    assert not (tmp_path / "x.safetensors").exists()
