"""bf16 autocast in the engine: close to fp32 on the shipped model, halo close to whole, statistics in fp32."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr

from halo_seg.engine import normalize
from halo_seg.engine.memory import network_bytes_per_voxel
from halo_seg.engine.runner import EngineError, predict_whole, segment
from halo_seg.engine.verify import compare_partitioned
from halo_seg.engine.weights import load_unet
from halo_seg.io.volume import VolumeError
from halo_seg.metrics import dice
from halo_seg.samples import load_colin27_sample
from halo_seg.train.unet_train import normalised


@pytest.fixture(scope="module")
def sample():
    return load_colin27_sample()


def _normalised(img, meta):
    return normalised(img, normalize.spec_of(meta))   # as the trainers and segment normalise


def test_bf16_whole_volume_is_close_to_fp32_on_the_shipped_model(sample):
    net, meta = load_unet("default")
    x = _normalised(sample.image, meta)
    p32 = predict_whole(net, x, "cpu")
    p16 = predict_whole(net, x, "cpu", precision="bf16")
    assert p16.dtype == np.float32   # probabilities are fp32 whatever ran inside
    diff = np.abs(p16 - p32).max()
    assert 1e-4 < diff < 0.5         # bf16 really ran, and stayed near fp32
    l32, l16 = p32.argmax(0), p16.argmax(0)
    assert (l16 == l32).mean() > 0.999
    brain, deep = sample.brain, sample.labels > 0
    for k, truth in ((1, brain | deep), (2, deep)):
        assert abs(dice(l16 >= k, truth) - dice(l32 >= k, truth)) < 0.005


def test_bf16_halo_run_is_close_to_the_whole_run_and_resumes_only_as_bf16(sample, tmp_path):
    img = sample.image
    whole = segment(img, tmp_path / "w.zarr", mode="whole", precision="bf16", threads=2)
    halo = segment(img, tmp_path / "h.zarr", grid=(2, 1, 1), precision="bf16", threads=1)
    lw = np.asarray(zarr.open_group(whole.output, mode="r")["labels"])
    lh = np.asarray(zarr.open_group(halo.output, mode="r")["labels"])
    assert (lw == lh).mean() > 0.999
    sig = zarr.open_group(halo.output, mode="r").attrs["halo_seg"]["signature"]
    assert sig["precision"] == "bf16"
    # an fp32 run never finishes a bf16 output's blocks, nor the reverse
    with pytest.raises(VolumeError, match="different job"):
        segment(img, tmp_path / "h.zarr", grid=(2, 1, 1), precision="fp32", resume=True)
    # its estimate holds the activations in bf16: less than the fp32 run's
    fp32_plan = segment(img, tmp_path / "f.zarr", mode="whole", threads=2)
    assert whole.memory.per_rank < fp32_plan.memory.per_rank


def test_unknown_precision_is_refused_before_anything_runs(tmp_path, sample):
    with pytest.raises(EngineError, match="unknown precision 'fp16'.*bf16"):
        segment(sample.image, tmp_path / "o.zarr", precision="fp16")
    assert not (tmp_path / "o.zarr").exists()


def test_bf16_counts_half_the_activation_bytes():
    config = dict(in_channels=1, out_channels=3, base=8, depth=3, max_channels=256)
    full, half = network_bytes_per_voxel(config), network_bytes_per_voxel(config, (), "bf16")
    assert 0.4 * full < half < 0.6 * full


@pytest.mark.parametrize("grid", [(2, 1, 1), (1, 2, 2)])
def test_partitioned_bf16_forward_and_backward_follow_the_whole_network(grid):
    r = compare_partitioned(grid, (16, 20, 24), precision="bf16")
    assert r["labels_identical"]
    assert r["logits_max_abs"] <= 0.02 * r["logits_scale"]
    # gradients through bf16 convolutions: a few percent at the worst element, as the whole network's own rounding
    assert r["input_grad_max_rel"] < 0.1 and r["weight_grad_max_rel"] < 0.1


@pytest.fixture
def one_rank_group():
    import torch.distributed as dist
    from halo_seg.engine.runner import _free_port
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_distributed_norm_takes_bf16_statistics_in_fp32(one_rank_group):
    """Activations far from zero (mean 100.3, std 1): a mean summed in bf16 is off by about 0.2
    standard deviations; taken in fp32 it matches torch's own instance norm of the bf16 input."""
    from halo_seg.engine.halo import HaloContext, distributed_instance_norm
    from halo_seg.engine.partition import PartitionPlan
    g = torch.Generator().manual_seed(0)
    x = (100.3 + torch.randn(1, 3, 16, 16, 16, generator=g)).bfloat16().requires_grad_(True)
    w, b = torch.rand(3, generator=g) + 0.5, torch.randn(3, generator=g)
    hctx = HaloContext(PartitionPlan((16, 16, 16), (1, 1, 1), 1), 0)
    y = distributed_instance_norm(x, w, b, 1e-5, hctx)
    ref = F.instance_norm(x.detach().float(), weight=w, bias=b, eps=1e-5)
    assert y.dtype == torch.bfloat16
    assert (y.float() - ref).abs().max() < 0.05   # bf16 rounding of values of a few units
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy.bfloat16())
    xr = x.detach().float().requires_grad_(True)
    F.instance_norm(xr, weight=w, bias=b, eps=1e-5).backward(gy.bfloat16().float())
    assert x.grad.dtype == torch.bfloat16
    rel = (x.grad.float() - xr.grad).abs().max() / xr.grad.abs().max()
    assert rel < 0.05


def test_partitioned_bf16_training_step_follows_the_float64_whole_step():
    from halo_seg.train.partitioned import compare_training_step
    r = compare_training_step((2, 1, 1), (16, 16, 16), precision="bf16")
    assert r["ranks_agree"]   # every rank applied the same all-reduced update
    assert r["update_max_rel_diff"] < 0.1
    assert r["loss_partitioned"][0] == pytest.approx(r["loss_whole"], rel=0.02)
    # and bf16 is not fp64: the same step in fp32 mode is exact to float64 rounding
    assert r["update_max_rel_diff"] > 1e-6


def test_bf16_training_learns_and_records_its_precision(tmp_path):
    from halo_seg.samples import make_phantom
    from halo_seg.train.unet_train import TrainConfig, TrainingError, train_unet
    ph = make_phantom((32, 32, 32), n_objects=3, seed=11, noise=0.05)
    img, lab = ph.image, (ph.labels > 0).astype(np.int64)
    cfg = TrainConfig(n_classes=2, patch=(32, 32, 32), iterations=40, batch=1, lr=3e-3, base=4, depth=2, epoch=20,
                      precision="bf16")
    train_unet([img], [lab], cfg, tmp_path / "a.safetensors", log=lambda *a: None)
    net, meta = load_unet(tmp_path / "a.safetensors")
    assert meta["training"]["config"]["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in net.parameters())   # autocast keeps fp32 master weights
    pred = predict_whole(net, _normalised(img, meta), "cpu").argmax(0)
    assert dice(pred == 1, lab == 1) > 0.6          # as test_training's fp32 run; a random net scores ~0.2
    with pytest.raises(TrainingError, match="unknown precision"):
        train_unet([img], [lab], TrainConfig(**{**cfg.__dict__, "precision": "half"}), tmp_path / "b.safetensors")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_distributed_norm_without_gradients_matches_torch(one_rank_group, dtype):
    """The inference path (global statistics, then torch's fused batch norm) on activations far from zero."""
    from halo_seg.engine.halo import HaloContext, distributed_instance_norm
    from halo_seg.engine.partition import PartitionPlan
    g = torch.Generator().manual_seed(1)
    x = (100.3 + 2 * torch.randn(1, 3, 24, 16, 16, generator=g, dtype=torch.float64)).to(dtype)
    w, b = (torch.rand(3, generator=g) + 0.5).to(dtype), torch.randn(3, generator=g).to(dtype)
    hctx = HaloContext(PartitionPlan((24, 16, 16), (1, 1, 1), 1), 0)
    with torch.inference_mode():
        y = distributed_instance_norm(x, w, b, 1e-5, hctx)
    ref = F.instance_norm(x.double(), weight=w.double(), bias=b.double(), eps=1e-5)
    assert y.dtype == dtype
    tol = {torch.bfloat16: 0.05, torch.float32: 1e-4, torch.float64: 1e-10}[dtype]
    assert (y.double() - ref).abs().max() < tol


@pytest.mark.parametrize("mode", ["whole", "tile", "halo"])
def test_every_mode_runs_in_the_precision_asked(mode, tmp_path, phantom_npy, tiny_weights):
    runs = {}
    for prec in ("fp32", "bf16"):
        out = segment(phantom_npy, tmp_path / f"{prec}.zarr", tiny_weights, mode=mode, grid=(2, 1, 1), tile_size=16,
                      precision=prec, save_probabilities=True).output
        g = zarr.open_group(out, mode="r")
        runs[prec] = np.asarray(g["probabilities"]), np.asarray(g["labels"])
    (p32, l32), (p16, l16) = runs["fp32"], runs["bf16"]
    assert 0 < np.abs(p16 - p32).max() < 0.1   # bf16 reached the network, and stayed near fp32
    assert (l16 == l32).mean() > 0.99


def test_emulated_bf16_is_warned_about_and_an_old_gpu_refused(monkeypatch, tmp_path, phantom_npy, tiny_weights):
    from halo_seg.engine import runner
    monkeypatch.setattr(runner, "native_bf16", lambda dev: False)
    import halo_seg.engine.precision as precision
    monkeypatch.setattr(precision, "native_bf16", lambda dev: False)
    with pytest.warns(RuntimeWarning, match="emulated"):
        segment(phantom_npy, tmp_path / "e.zarr", tiny_weights, mode="whole", precision="bf16")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "Tesla V100")
    with pytest.raises(EngineError, match="V100.*no native bfloat16.*--precision fp32"):
        runner._check_gpu_precision(torch.device("cuda", 0), "bf16")
    runner._check_gpu_precision(torch.device("cuda", 0), "fp32")   # fp32 runs anywhere
