"""The engine's memory estimate: counted against hand-computed sizes and the ranks' measured peaks;
a run that cannot fit is refused before anything is written; tile mode streams bands."""
import threading

import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from halo_seg.cli import main
from halo_seg.engine import memory, runner
from halo_seg.engine.memory import MIB, MemoryCheck, network_bytes_per_voxel
from halo_seg.engine.mirror import mirrored_softmax
from halo_seg.engine.output import done_map
from halo_seg.engine.partition import PartitionPlan
from halo_seg.engine.runner import Cancelled, EngineError, gaussian_weight, predict_tiles, segment, tile_starts
from halo_seg.engine.weights import load_unet


def test_counter_sees_what_operations_allocate_and_free():
    conv = torch.nn.Conv3d(1, 4, 3, padding=1)
    x = torch.zeros(1, 1, 10, 10, 10)
    out_bytes = 4 * 1000 * 4   # 4 channels of 10^3 float32
    c = memory._LiveBytes()
    with torch.no_grad(), c.mode:
        y = conv(x)
        z = y * 2          # a second tensor of the same size while y lives
        del y
        z.relu_()          # in place: nothing new
        v = z[:, :2]       # a view: nothing new
    assert c.peak == 2 * out_bytes
    assert c.live == out_bytes
    del z, v


def test_network_count_grows_with_the_block_and_mirroring_adds_one_map(tiny_weights):
    net, _ = load_unet(tiny_weights)
    per_voxel = network_bytes_per_voxel(net.config)
    for n in (16, 24):
        assert memory._counted_peak(net, n, ()) == pytest.approx(per_voxel * n ** 3, rel=0.02)
    # while a mirrored view runs, the sum of the views before it (one probability map) is held
    assert network_bytes_per_voxel(net.config, (2,)) == per_voxel + 4 * net.config["out_channels"]


def test_estimate_covers_the_ranks_measured_peak(tmp_path):
    vol = np.random.default_rng(0).normal(100, 20, (96, 128, 128)).astype(np.float32)
    res = segment(vol, tmp_path / "o.zarr", grid=(2, 1, 1), threads=1)
    measured = max(r["peak_mb"] for r in res.ranks) * MIB
    # never below what a rank took (a run let through must fit), and not far above it
    assert measured <= res.memory.per_rank <= 1.5 * measured
    assert res.memory.sharing == 2 and res.memory.where == "RAM"


def test_estimate_covers_thin_blocks_too(tmp_path):
    """Blocks 8 slices thick, where each convolution's copy of its input with the halos weighs most:
    before `exchanges` counted them a rank here took 1.02 times the estimate (8 x 1024 x 1024
    blocks: 1.1; tests/test_conv.py covers the other thin-block fault, PyTorch's im2col kernel)."""
    vol = np.random.default_rng(0).normal(100, 20, (16, 512, 384)).astype(np.float32)
    res = segment(vol, tmp_path / "o.zarr", grid=(2, 1, 1), threads=1)
    measured = max(r["peak_mb"] for r in res.ranks) * MIB
    assert measured <= res.memory.per_rank <= 1.6 * measured


def test_run_that_cannot_fit_is_refused_before_anything_is_written(tmp_path, phantom_npy, tiny_weights,
                                                                     monkeypatch):
    probe = segment(phantom_npy, tmp_path / "probe.zarr", tiny_weights, grid=(2, 1, 1)).memory
    have = int(probe.needed / memory.USABLE * 0.8)
    monkeypatch.setattr(memory, "host_available", lambda: have)
    out = tmp_path / "o.zarr"
    with pytest.raises(EngineError, match="not enough memory") as exc:
        segment(phantom_npy, out, tiny_weights, grid=(2, 1, 1))
    msg = str(exc.value)
    assert "2x1x1 grid" in msg and "2 ranks that share it" in msg and memory.fmt_bytes(have) in msg
    assert "--no-memory-check" in msg and "memory_check=False" in msg
    assert not out.exists()
    # the refusal names a grid whose ranks, each with this much memory, would fit
    assert "ranks) needs about" in msg
    # asked to run anyway, it runs (the estimate is conservative)
    res = segment(phantom_npy, out, tiny_weights, grid=(2, 1, 1), memory_check=False)
    assert done_map(out).all() and not res.memory.fits


def test_refusal_offers_tile_mode_when_its_band_fits(tmp_path, monkeypatch):
    vol = np.zeros((64, 256, 256), np.uint16)
    net, _ = load_unet("default")
    plan = PartitionPlan(vol.shape, (2, 1, 1), net.multiple)

    class Vol:
        shape, data = vol.shape, vol
    tile = runner._per_rank_bytes(Vol, net, plan, "tile", (None, 0.5), ())
    halo = runner._per_rank_bytes(Vol, net, plan, "halo", (None, 0.5), ())
    assert tile < halo
    monkeypatch.setattr(memory, "host_available", lambda: int(tile / memory.USABLE) + MIB)
    with pytest.raises(EngineError) as exc:
        segment(vol, tmp_path / "o.zarr", grid=(2, 1, 1))
    assert f"--mode tile needs about {memory.fmt_bytes(tile)}" in str(exc.value)


def test_gpu_ranks_draw_on_their_gpus(monkeypatch, phantom_npy, tiny_weights):
    free = {0: 8 * 2 ** 30, 1: 6 * 2 ** 30}
    monkeypatch.setattr(runner, "_device_for", lambda device, local_rank=0: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d: (free[d.index], 80 * 2 ** 30))
    from halo_seg.io.volume import open_volume
    vol = open_volume(phantom_npy)
    net, _ = load_unet(tiny_weights)
    plan = PartitionPlan(vol.shape, (2, 2, 1), net.multiple)
    # a parent that spawns GPU ranks does not ask (that would hold a CUDA context); 4 ranks on 2 GPUs
    chk = runner.plan_memory(vol, net, plan, "halo", (None, 0.5), (), "cuda", ask_gpu=False)
    assert (chk.sharing, chk.available, chk.where, chk.fits) == (2, None, "GPU memory", True)
    # each rank checks its own GPU before it reads its block
    job = dict(memory_check=True, per_rank=3 * 2 ** 30, sharing=2, tile_size=None, overlap=0.5, mirror=(), precision="fp32")
    runner._check_rank_gpu(job, torch.device("cuda", 0), vol, net, plan)          # 6 of 8 GiB free: fits
    with pytest.raises(EngineError, match="GPU 1: not enough memory.*2 ranks that share it"):
        runner._check_rank_gpu(job, torch.device("cuda", 1), vol, net, plan)      # 6 GiB > 0.9 x 6 GiB
    runner._check_rank_gpu(dict(job, memory_check=False), torch.device("cuda", 1), vol, net, plan)
    # under torchrun the process is the rank: it asks its own GPU
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(runner, "_device_for", lambda device, local_rank=0: torch.device("cuda", local_rank))
    chk = runner.plan_memory(vol, net, plan, "halo", (None, 0.5), (), "cuda", distributed_env=True)
    assert (chk.sharing, chk.available) == (1, 6 * 2 ** 30)


def test_unknown_memory_is_not_refused():
    assert MemoryCheck(10 ** 15, 1, None, "RAM").fits
    assert not MemoryCheck(10, 2, 20, "RAM").fits and MemoryCheck(9, 2, 20, "RAM").fits


def _tiles_reference(net, x, t, overlap):
    """The blend computed over the whole padded volume at once (what tile mode did before bands)."""
    m = t // 4
    pads = [(m, m + max(0, t - (s + 2 * m))) for s in x.shape]
    src = np.pad(x, pads, mode="reflect")
    step = max(1, int(round(t * (1 - overlap))))
    w = gaussian_weight((t, t, t))
    acc = np.zeros((net.config["out_channels"],) + src.shape, np.float32)
    wsum = np.zeros(src.shape, np.float32)
    with torch.inference_mode():
        for z in tile_starts(src.shape[0], t, step):
            for y in tile_starts(src.shape[1], t, step):
                for xx in tile_starts(src.shape[2], t, step):
                    sl = (slice(z, z + t), slice(y, y + t), slice(xx, xx + t))
                    p = mirrored_softmax(net, torch.from_numpy(src[sl].copy())[None, None], ())[0].numpy()
                    acc[(slice(None),) + sl] += p * w
                    wsum[sl] += w
    crop = tuple(slice(m, m + s) for s in x.shape)
    return acc[(slice(None),) + crop] / wsum[crop]


@pytest.mark.parametrize("tile,overlap", [(16, 0.5), (8, 0.25), (32, 0.5)])
def test_tile_bands_equal_the_whole_blend(tiny_weights, tile, overlap):
    net, _ = load_unet(tiny_weights)
    x = np.random.default_rng(1).normal(size=(37, 21, 26)).astype(np.float32)
    got = predict_tiles(net, da.from_array(x, chunks=8), lambda a: a, torch.device("cpu"), tile=tile,
                        overlap=overlap)
    np.testing.assert_array_equal(got, _tiles_reference(net, x, tile, overlap))


def test_tile_run_is_done_only_when_its_last_band_is_written(tmp_path, phantom_npy, tiny_weights):
    out, stop = tmp_path / "o.zarr", threading.Event()

    def progress(k, total, msg):
        if k == total // 2:
            stop.set()
    with pytest.raises(Cancelled):
        segment(phantom_npy, out, tiny_weights, mode="tile", tile_size=8, progress=progress, cancel=stop)
    assert not done_map(out).any()
    written = zarr.open_group(str(out))["labels"]
    ref = segment(phantom_npy, tmp_path / "ref.zarr", tiny_weights, mode="tile", tile_size=8)
    assert ref.ranks and done_map(tmp_path / "ref.zarr").all()
    # the bands finished before the cancel are already in place
    full = zarr.open_group(str(tmp_path / "ref.zarr"))["labels"][...]
    np.testing.assert_array_equal(written[:4], full[:4])
    assert segment(phantom_npy, out, tiny_weights, mode="tile", tile_size=8, resume=True).ranks
    np.testing.assert_array_equal(zarr.open_group(str(out))["labels"][...], full)


def test_cli_reports_estimate_and_can_skip_the_check(tmp_path, phantom_npy, tiny_weights, monkeypatch, capsys):
    assert main(["segment", str(phantom_npy), str(tmp_path / "a.zarr"), "--weights", str(tiny_weights)]) == 0
    assert "estimated beforehand" in capsys.readouterr().out
    monkeypatch.setattr(memory, "host_available", lambda: MIB)
    assert main(["segment", str(phantom_npy), str(tmp_path / "b.zarr"), "--weights", str(tiny_weights)]) == 2
    assert "not enough memory" in capsys.readouterr().err
    assert main(["segment", str(phantom_npy), str(tmp_path / "c.zarr"), "--weights", str(tiny_weights),
                 "--no-memory-check"]) == 0


def test_info_tells_what_segmenting_would_need(tmp_path, phantom_npy, tiny_weights, capsys):
    import json
    res = segment(phantom_npy, tmp_path / "o.zarr", tiny_weights, grid=(2, 1, 1))
    assert main(["info", str(phantom_npy), "--weights", str(tiny_weights)]) == 0
    needs = json.loads(capsys.readouterr().out)["segment_memory"]
    assert needs["halo 2x1x1, per rank"] == memory.fmt_bytes(res.memory.per_rank)
    assert set(needs) == {"weights", "halo 2x1x1, per rank", "whole", "tile 64", "RAM available"}
    # planning a bf16 run: the estimate its run makes
    bf = segment(phantom_npy, tmp_path / "b.zarr", tiny_weights, grid=(2, 1, 1), precision="bf16")
    assert main(["info", str(phantom_npy), "--weights", str(tiny_weights), "--precision", "bf16"]) == 0
    needs16 = json.loads(capsys.readouterr().out)["segment_memory"]
    assert needs16["precision"] == "bf16" and needs16["halo 2x1x1, per rank"] == memory.fmt_bytes(bf.memory.per_rank)
    assert bf.memory.per_rank < res.memory.per_rank
    # a volume too small for the default grid is described all the same
    np.save(tmp_path / "thin.npy", np.zeros((3, 40, 40), np.float32))
    assert main(["info", str(tmp_path / "thin.npy"), "--weights", str(tiny_weights)]) == 0
    assert json.loads(capsys.readouterr().out)["segment_memory"].startswith("not estimated")


def test_count_falls_back_where_the_dispatch_mode_is_missing(monkeypatch):
    config = dict(in_channels=1, out_channels=2, base=12, depth=2, max_channels=256)
    counted = network_bytes_per_voxel(config)

    def broken(*args):
        raise ImportError("no TorchDispatchMode in this PyTorch")
    monkeypatch.setattr(memory, "_counted_peak", broken)
    memory._counted_per_voxel.cache_clear()
    try:
        assert network_bytes_per_voxel(config) == 21.0 * 12
        assert abs(21.0 * 12 - counted) <= 0.1 * counted   # the fallback is what the count gives
    finally:
        memory._counted_per_voxel.cache_clear()


def test_ranks_spawned_here_count_their_own_processes(phantom_npy, tiny_weights, monkeypatch):
    from halo_seg.io.volume import open_volume
    vol = open_volume(phantom_npy)
    net, _ = load_unet(tiny_weights)
    plan = PartitionPlan(vol.shape, (2, 1, 1), net.multiple)
    spawned = runner.plan_memory(vol, net, plan, "halo", (None, 0.5), (), "cpu")
    assert spawned.process == memory.PROCESS_BYTES
    assert spawned.needed == 2 * (spawned.per_rank + memory.PROCESS_BYTES)
    assert "for its own process" in spawned.describe()
    # the calling process (whole, tile) and torchrun's processes already exist: nothing to add
    assert runner.plan_memory(vol, net, plan, "whole", (None, 0.5), (), "cpu").process == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert runner.plan_memory(vol, net, plan, "halo", (None, 0.5), (), "cpu", distributed_env=True).process == 0
