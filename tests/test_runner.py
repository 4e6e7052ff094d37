import os
import time

import numpy as np
import pytest
import zarr

from halo_seg.cli import main
from halo_seg.engine.partition import PartitionError, PartitionPlan
from halo_seg.engine.runner import EngineError, segment
from halo_seg.engine.weights import WeightsError
from halo_seg.io import VolumeError


def _read(path):
    g = zarr.open_group(str(path), mode="r")
    return g["labels"][...], g["probabilities"][...], g


def test_halo_output_equals_whole_volume(tmp_path, phantom_npy, tiny_weights):
    segment(phantom_npy, tmp_path / "whole.zarr", tiny_weights, mode="whole", save_probabilities=True)
    res = segment(phantom_npy, tmp_path / "halo.zarr", tiny_weights, grid=(2, 1, 2), save_probabilities=True)
    lw, pw, _ = _read(tmp_path / "whole.zarr")
    lh, ph, g = _read(tmp_path / "halo.zarr")
    assert np.abs(ph - pw).max() <= 1e-4
    np.testing.assert_array_equal(lh, lw)
    np.testing.assert_allclose(ph.sum(0), 1.0, atol=1e-5)
    plan = PartitionPlan(lh.shape, (2, 1, 2), 4)
    assert g["labels"].chunks == plan.chunks  # each rank wrote whole chunks of its own
    assert len(res.ranks) == 4 and g["done"][...].all()


def test_tile_baseline_covers_volume_but_is_not_exact(tmp_path, phantom_npy, tiny_weights):
    segment(phantom_npy, tmp_path / "whole.zarr", tiny_weights, mode="whole", save_probabilities=True)
    segment(phantom_npy, tmp_path / "tile.zarr", tiny_weights, mode="tile", tile_size=16, overlap=0.5,
            save_probabilities=True)
    _, pw, _ = _read(tmp_path / "whole.zarr")
    _, pt, _ = _read(tmp_path / "tile.zarr")
    np.testing.assert_allclose(pt.sum(0), 1.0, atol=1e-5)
    # windows see less context than the whole network: the blended result deviates somewhere
    assert np.abs(pt - pw).max() > 1e-3


def test_reflect_padding_matches_numpy_even_beyond_the_axis_and_thin_volumes_tile(tmp_path, tiny_weights):
    """dask's reflect pad came out short when the pad exceeded the axis, so tile mode failed on any
    volume thinner than its window (64 by default)."""
    import dask.array as da
    from halo_seg.engine.runner import reflect_pad
    x = np.random.default_rng(0).normal(size=(5, 9, 1)).astype(np.float32)
    for pads in (((2, 3), (4, 4), (0, 0)), ((16, 36), (8, 1), (3, 2)), ((4, 5), (20, 0), (0, 7))):
        for arr in (x, da.from_array(x, chunks=(2, 4, 1))):
            np.testing.assert_array_equal(np.asarray(reflect_pad(arr, pads)), np.pad(x, pads, mode="reflect"))
    thin = np.random.default_rng(1).normal(size=(12, 40, 40)).astype(np.float32)
    np.save(tmp_path / "thin.npy", thin)
    segment(tmp_path / "thin.npy", tmp_path / "t.zarr", tiny_weights, mode="tile", save_probabilities=True)
    _, pt, _ = _read(tmp_path / "t.zarr")
    assert pt.shape[1:] == thin.shape
    np.testing.assert_allclose(pt.sum(0), 1.0, atol=1e-5)
    for kw, msg in (({"mode": "tile", "tile_size": 7}, "tile must be at least"), ({"threads": 0}, "threads must be")):
        with pytest.raises(EngineError, match=msg):
            segment(tmp_path / "thin.npy", tmp_path / "u.zarr", tiny_weights, **kw)


def test_resume_skips_finished_run_and_redoes_missing_blocks(tmp_path, phantom_npy, tiny_weights):
    out = tmp_path / "o.zarr"
    segment(phantom_npy, out, tiny_weights, grid=(2, 1, 1))
    ref = zarr.open_group(str(out))["labels"][...]
    assert segment(phantom_npy, out, tiny_weights, grid=(2, 1, 1), resume=True).skipped
    g = zarr.open_group(str(out), mode="a")
    g["labels"][:16] = 0          # as if rank 0 crashed before writing
    g["done"][0, 0, 0] = 0
    r = segment(phantom_npy, out, tiny_weights, grid=(2, 1, 1), resume=True)
    assert not r.skipped
    np.testing.assert_array_equal(zarr.open_group(str(out))["labels"][...], ref)
    with pytest.raises(VolumeError, match="different job"):
        segment(phantom_npy, out, tiny_weights, grid=(1, 2, 1), resume=True)


def test_dead_rank_fails_fast_with_its_number(tmp_path, phantom_npy, tiny_weights):
    t = time.monotonic()
    with pytest.raises(EngineError, match="rank 1 of 2 died"):
        segment(phantom_npy, tmp_path / "o.zarr", tiny_weights, grid=(2, 1, 1), timeout=60,
                _fault={"rank": 1, "kind": "exit"})
    assert time.monotonic() - t < 60


def test_hung_rank_times_out(tmp_path, phantom_npy, tiny_weights):
    t = time.monotonic()
    with pytest.raises(EngineError, match="rank"):
        segment(phantom_npy, tmp_path / "o.zarr", tiny_weights, grid=(2, 1, 1), timeout=5,
                _fault={"rank": 1, "kind": "hang"})
    assert time.monotonic() - t < 60


@pytest.mark.parametrize("how", [dict(grid=(2, 1, 1)), dict(mode="whole"), dict(mode="tile")])
def test_nan_voxels_are_refused_not_segmented_as_background(tmp_path, phantom_npy, tiny_weights, how):
    """A NaN voxel made every normalised voxel NaN and the output all background, silently; in halo
    mode the message now comes from the rank without its traceback."""
    vol = np.load(phantom_npy)
    vol[3, 4, 5] = np.nan
    np.save(tmp_path / "nan.npy", vol)
    with pytest.raises(VolumeError, match="NaN or infinite") as err:
        segment(tmp_path / "nan.npy", tmp_path / "o.zarr", tiny_weights, **how)
    assert "Traceback" not in str(err.value)


def test_bad_inputs(tmp_path, phantom_npy, tiny_weights):
    with pytest.raises(PartitionError, match="larger than the volume"):
        segment(phantom_npy, tmp_path / "o.zarr", tiny_weights, grid=(16, 1, 1))
    np.save(tmp_path / "flat.npy", np.zeros((8, 8), np.float32))
    with pytest.raises(VolumeError, match="3D"):
        segment(tmp_path / "flat.npy", tmp_path / "o.zarr", tiny_weights)
    with pytest.raises(WeightsError, match="not found"):
        segment(phantom_npy, tmp_path / "o.zarr", tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="corrupt"):
        segment(phantom_npy, tmp_path / "o.zarr", tmp_path / "bad.safetensors")
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(WeightsError, match="safetensors"):
        segment(phantom_npy, tmp_path / "o.zarr", tmp_path / "w.pt")
    with pytest.raises(EngineError, match="mode"):
        segment(phantom_npy, tmp_path / "o.zarr", tiny_weights, mode="magic")
    segment(phantom_npy, tmp_path / "first.zarr", tiny_weights, grid=(1, 1, 1))
    with pytest.raises(VolumeError, match="first.zarr holds labels .* not an image to segment"):
        segment(tmp_path / "first.zarr", tmp_path / "again.zarr", tiny_weights)   # its labels taken as a scan
    for name in ("labels.nii.gz", "labels.tif"):   # made a zarr folder of that name, which nothing opens
        with pytest.raises(VolumeError, match=f"segment writes a zarr group .*export OUT.zarr {name}"):
            segment(phantom_npy, tmp_path / name, tiny_weights)
        assert not (tmp_path / name).exists()


def test_an_existing_path_is_replaced_only_if_segment_wrote_it(tmp_path, phantom_npy, tiny_weights):
    """Any store with a zarr.json was removed to make way for the output: the user's labels, the
    input image itself (`segment scan.zarr scan.zarr`)."""
    src = zarr.open(str(tmp_path / "scan.zarr"), mode="w", shape=np.load(phantom_npy).shape, dtype=np.float32)
    src[:] = np.load(phantom_npy)
    mine = zarr.open(str(tmp_path / "mine.zarr"), mode="w", shape=(4, 4, 4), dtype=np.uint8)
    mine[:] = 7
    for inp, out in ((tmp_path / "scan.zarr", tmp_path / "scan.zarr"), (phantom_npy, tmp_path / "mine.zarr")):
        with pytest.raises(VolumeError, match="exists and is not an output of halo-seg segment"):
            segment(inp, out, tiny_weights)
    np.testing.assert_array_equal(src[...], np.load(phantom_npy))
    assert (mine[...] == 7).all()
    segment(phantom_npy, tmp_path / "o.zarr", tiny_weights)
    zarr.open_group(str(tmp_path / "o.zarr"), mode="a")["labels"][0, 0, 0] = 99
    segment(phantom_npy, tmp_path / "o.zarr", tiny_weights)   # an earlier output: run again
    assert zarr.open_group(str(tmp_path / "o.zarr"))["labels"][0, 0, 0] != 99


def test_cli_segment_and_errors(tmp_path, phantom_npy, tiny_weights, capsys):
    assert main(["segment", str(phantom_npy), str(tmp_path / "c.zarr"), "--weights", str(tiny_weights),
                 "--grid", "2,1,1"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert zarr.open_group(str(tmp_path / "c.zarr"))["done"][...].all()
    assert main(["segment", str(tmp_path / "missing.zarr"), str(tmp_path / "d.zarr"),
                 "--weights", str(tiny_weights)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["info", str(phantom_npy)]) == 0


@pytest.mark.parametrize("grid", ["1,2,1", "auto"])   # auto: the 2 ranks torchrun started
def test_torchrun_ranks_equal_whole_volume(tmp_path, phantom_npy, tiny_weights, grid):
    import os
    import subprocess
    import sys
    from halo_seg.engine.runner import _free_port
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()),
           "-m", "halo_seg.cli", "segment", str(phantom_npy), str(tmp_path / "t.zarr"),
           "--weights", str(tiny_weights), "--grid", grid]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "grid 1x2x1" in r.stdout   # auto too: of 2 ranks' grids, 1x2x1 gives this volume the most cubic blocks
    assert zarr.open_group(str(tmp_path / "t.zarr"))["done"].size == 2
    segment(phantom_npy, tmp_path / "w.zarr", tiny_weights, mode="whole")
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "t.zarr"))["labels"][...],
                                  zarr.open_group(str(tmp_path / "w.zarr"))["labels"][...])


def test_demo_main_job(tmp_path, capsys):
    """README's main job: default model on 2 ranks equals the whole volume; Dice printed per step."""
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "labels identical: True" in out
    brain = float(out.split("Dice      brain:")[1].split()[0])
    assert brain > 0.85  # the shipped model finds the brain (card: 0.91 on the held-out hemisphere)
    assert len([l for l in out.splitlines() if l.strip().startswith("round ")]) == 6
    # the slices it says to check first hold far more errors than an average slice (91 slices)
    import re
    review = next(l for l in out.splitlines() if l.startswith("slices to check first"))
    wrong = [int(w) for w in re.findall(r", (\d+) wrong\)", review)]
    lab = zarr.open_group(str(tmp_path / "labels_halo.zarr"), mode="r")["labels"][...]
    from halo_seg.samples import load_colin27_sample
    s = load_colin27_sample()
    truth = s.brain.astype(np.uint8)
    truth[s.labels > 0] = 2
    per_slice = (lab != truth).sum((1, 2))
    assert len(wrong) == 3 and min(wrong) > 2 * per_slice.mean()
    # correcting the mirrored atlas label: better than the atlas, and not worse than painting alone
    atlas = float(out.split("mirrored left-right\n(Dice ")[1].split(")")[0])
    fixed = [l for l in out.splitlines() if "painted slices only:" in l]
    edited, hand = (float(fixed[-1].split(k)[1].split()[0]) for k in ("Dice", "only:"))
    assert len(fixed) == 3 and edited > atlas + 0.03 and edited >= hand - 0.01, fixed


_FRAGMENT = """
import sys
import numpy as np
from halo_seg.engine.runner import map_large_allocations
if sys.argv[1] == "1" and not map_large_allocations():
    print("no-glibc"); raise SystemExit
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")) / 1024
big = np.ones(8 << 18)   # 16 MB allocated and freed: glibc's adaptive mmap threshold rises past 4 MB
del big
arrs = [np.ones(1 << 19) for _ in range(40)]   # 40 x 4 MB, the size of a small block's activations
before = rss()
del arrs[::2]
print(before - rss())
"""


def test_rank_allocations_go_back_to_the_system_when_freed():
    import subprocess
    import sys
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc to read the resident memory")
    run = [subprocess.run([sys.executable, "-c", _FRAGMENT, flag], capture_output=True, text=True, check=True)
           .stdout.strip() for flag in ("0", "1")]
    if run[1] == "no-glibc":
        pytest.skip("not glibc: the allocator is left as it is")
    plain, mapped = map(float, run)
    if plain > 40:
        pytest.skip("this C library returns freed heap memory by itself")
    assert mapped >= 0.9 * 80, run   # the 20 freed 4 MB arrays left the process


def _finish_with_payload(q, n):
    from halo_seg.engine.runner import exit_rank
    q.put(np.arange(n, dtype=np.float64))
    exit_rank(q)
    raise AssertionError("exit_rank returned")   # never reached: the process has ended


@pytest.mark.parametrize("simple", [False, True])
def test_exit_rank_delivers_what_the_rank_queued_and_exits_0(simple):
    # a rank leaves with os._exit (gloo can abort the interpreter's exit); what it put on a
    # multiprocessing.Queue is still in its feeder thread then and must be flushed first
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue() if simple else ctx.Queue()
    n = 2_000_000                                     # 16 MB: far more than one pipe write
    p = ctx.Process(target=_finish_with_payload, args=(q, n))
    p.start()
    got = q.get() if simple else q.get(timeout=60)   # queue.Empty if the payload was dropped
    p.join(60)
    assert p.exitcode == 0
    np.testing.assert_array_equal(got, np.arange(n, dtype=np.float64))


def test_auto_grid_one_rank_per_gpu_or_two_on_cpu(tmp_path, phantom_npy, tiny_weights, monkeypatch):
    import torch
    from halo_seg.engine import runner
    from halo_seg.engine.partition import factor_grid
    shape = tuple(np.load(phantom_npy).shape)
    res = segment(phantom_npy, tmp_path / "a.zarr", tiny_weights, grid="auto")
    assert res.grid == factor_grid(2, shape, 4) and len(res.ranks) == 2
    segment(phantom_npy, tmp_path / "w.zarr", tiny_weights, mode="whole")
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "a.zarr"))["labels"][...],
                                  zarr.open_group(str(tmp_path / "w.zarr"))["labels"][...])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert runner.auto_grid((256, 256, 256), 8, "cuda") == (2, 2, 2)
    assert runner.auto_grid((8, 64, 64), 8, "cuda") == (1, 4, 2)       # no room for 2 along z; y before x
    assert runner.auto_grid((8, 8, 16), 8, "cuda") == (1, 1, 2)        # only 2 blocks in all: 2 GPUs
    assert runner.auto_grid((64, 64, 64), 8, "cpu") == (2, 1, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert runner.auto_grid((64, 64, 64), 8, "cpu", distributed_env=True) == factor_grid(4, (64, 64, 64), 8)
    with pytest.raises(PartitionError, match="4 ranks torchrun started"):
        runner.auto_grid((8, 8, 16), 8, "cpu", distributed_env=True)
    with pytest.raises(SystemExit, match="auto is for segment"):
        main(["train", "--image", str(phantom_npy), "--labels", str(phantom_npy), "--out",
              str(tmp_path / "m.safetensors"), "--grid", "auto"])


def test_more_gpu_ranks_than_gpus_are_refused_before_any_process(tmp_path, phantom_npy, tiny_weights, monkeypatch):
    """NCCL cannot give two ranks one GPU: on a (pretended) one-GPU machine a 2-rank halo run on cuda
    is refused with what would run, before any rank starts or any output is made; one rank is let through
    to the next check."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(EngineError, match=r"the halo run on a 2x1x1 grid needs 2 ranks on this machine, one GPU each "
                                          r"\(NCCL cannot give two ranks one GPU\), and it has 1: --grid auto"):
        segment(phantom_npy, tmp_path / "o.zarr", weights=tiny_weights, grid=(2, 1, 1), device="cuda")
    assert not (tmp_path / "o.zarr").exists()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(EngineError, match="torchrun needs 2 ranks on this machine"):
        segment(phantom_npy, tmp_path / "o.zarr", weights=tiny_weights, grid=(2, 1, 1), device="cuda")


def test_the_output_of_a_run_that_stopped_is_not_measured_as_if_complete(tmp_path, phantom_npy, tiny_weights, capsys):
    """The blocks a stopped run never wrote read as background: measure, evaluate and export gave
    numbers for a partial result with no word of it (only review refused it)."""
    out = tmp_path / "o.zarr"
    segment(phantom_npy, out, tiny_weights, grid=(2, 1, 1))
    assert main(["measure", str(out)]) == 0
    zarr.open_group(str(out), mode="a")["done"][1, 0, 0] = 0   # as a run stopped before rank 1's block
    capsys.readouterr()
    for args in (["measure", str(out)], ["evaluate", str(out), str(out)],
                 ["export", str(out), str(tmp_path / "l.nii.gz")]):
        assert main(args) == 2
        assert "run that stopped (1 of 2 blocks written); finish it with" in capsys.readouterr().err
    assert not (tmp_path / "l.nii.gz").exists()
    from napari_halo_seg._reader import read_volume
    with pytest.warns(UserWarning, match="stopped"):
        layers = read_volume(str(out))
    assert layers[0][1]["name"] == "o labels (incomplete: 1 of 2 blocks written)" and layers[0][2] == "labels"


_UNGUARDED = """
import sys
import numpy as np
import zarr
from halo_seg.engine.runner import segment
vol = np.random.default_rng(0).normal(size=(32, 40, 24)).astype(np.float32)   # 120 KB: more than a pipe holds
segment(vol, sys.argv[1], weights=sys.argv[2], grid=(2, 1, 1), device="cpu", timeout=60)
print(int(zarr.open_group(sys.argv[1], mode="r")["labels"][:].size))
"""


def test_a_script_without_the_main_guard_runs_halo_mode(tmp_path, tiny_weights):
    """Each spawned rank re-ran an unguarded script, died starting the run again, and the parent
    waited forever writing the rank its numpy input."""
    import subprocess
    import sys
    script = tmp_path / "unguarded.py"
    script.write_text(_UNGUARDED)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "out.zarr"), str(tiny_weights)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == str(32 * 40 * 24)


class _Defined:   # stands for a class a user's script defines
    pass


def test_the_main_module_stays_visible_where_the_ranks_need_it(monkeypatch):
    import sys
    import types

    from halo_seg.engine.spawning import main_hidden, refers_to_main
    main = types.ModuleType("__main__")
    main.__file__ = "/somewhere/script.py"
    main._Defined = _Defined
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(_Defined, "__module__", "__main__")
    assert refers_to_main({"v": np.zeros(10), "w": [_Defined()]})
    assert not refers_to_main({"v": np.zeros(10), "path": "x.zarr"})
    with main_hidden({"v": np.zeros(3)}):
        assert getattr(main, "__file__", None) is None and main.__spec__ is None
    assert main.__file__ == "/somewhere/script.py"
    with main_hidden({"w": _Defined}):
        assert main.__file__ == "/somewhere/script.py"
