"""Ensembles (`segment --weights A --weights B`, engine/ensemble.py): the class probabilities are the
mean of the members' (checked against each member run alone), exact in halo mode and mirrored, and
members of different tasks are refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from halo_seg.cli import main
from halo_seg.engine.ensemble import Ensemble, load_model
from halo_seg.engine.runner import EngineError, segment
from halo_seg.engine.unet import UNet3D
from halo_seg.engine.weights import WeightsError, save_unet
from halo_seg.io import VolumeError

FLIPS = {"config": {"flip_axes": [0, 1, 2]}}


def _save(path, seed, depth=2, base=4, classes=3, **meta):
    torch.manual_seed(seed)
    save_unet(UNet3D(1, classes, base=base, depth=depth), path, classes=["bg", "a", "b"][:classes],
              **{"training": FLIPS, **meta})
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    d = tmp_path_factory.mktemp("ens")
    return [_save(d / "a.safetensors", 1), _save(d / "b.safetensors", 2, base=6)]   # widths may differ


def _probs(path):
    return zarr.open_group(str(path), mode="r")["probabilities"][...]


def test_the_ensemble_is_the_mean_of_its_members_in_every_mode(tmp_path, phantom_npy, members):
    alone = [_probs(segment(phantom_npy, tmp_path / f"m{i}.zarr", m, mode="whole", save_probabilities=True).output)
             for i, m in enumerate(members)]
    mean = np.mean(alone, 0)
    assert np.abs(alone[0] - alone[1]).max() > 0.05          # the members disagree: the mean is not either
    whole = _probs(segment(phantom_npy, tmp_path / "w.zarr", members, mode="whole", save_probabilities=True).output)
    np.testing.assert_allclose(whole, mean, atol=1e-5)
    res = segment(phantom_npy, tmp_path / "h.zarr", members, grid=(2, 1, 2), save_probabilities=True)
    g = zarr.open_group(str(res.output), mode="r")
    assert np.abs(g["probabilities"][...] - whole).max() <= 1e-4   # halo-exact, as one network
    np.testing.assert_array_equal(g["labels"][...], np.argmax(whole, 0))
    # mirrored: each member's mirrored mean, averaged
    mirrored = [_probs(segment(phantom_npy, tmp_path / f"mm{i}.zarr", m, mode="whole", mirror="yx",
                               save_probabilities=True).output) for i, m in enumerate(members)]
    both = _probs(segment(phantom_npy, tmp_path / "hm.zarr", members, grid=(2, 1, 1), mirror="yx",
                          save_probabilities=True).output)
    assert np.abs(both - np.mean(mirrored, 0)).max() <= 1e-4


def test_an_ensemble_output_is_not_resumed_by_another_job(tmp_path, phantom_npy, members):
    segment(phantom_npy, tmp_path / "e.zarr", members, grid=(2, 1, 1))
    assert segment(phantom_npy, tmp_path / "e.zarr", members[::-1], grid=(2, 1, 1), resume=True).skipped   # a mean
    with pytest.raises(VolumeError, match="written by a different job"):
        segment(phantom_npy, tmp_path / "e.zarr", members[:1], grid=(2, 1, 1), resume=True)


def test_members_of_different_tasks_are_refused(tmp_path, phantom_npy, members):
    cases = [(_save(tmp_path / "c.safetensors", 3, classes=2), "class count"),
             (_save(tmp_path / "n.safetensors", 3, normalization={"kind": "window", "window": [0, 1]}),
              "input normalisation"),
             (_save(tmp_path / "d.safetensors", 3, depth=3), "depth"),
             (_save(tmp_path / "s.safetensors", 3, training={**FLIPS, "spacing": [1.0, 1.0, 1.0], "unit": "mm"}),
              "different voxel sizes")]
    for other, what in cases:
        with pytest.raises(WeightsError, match=what):
            segment(phantom_npy, tmp_path / "x.zarr", [members[0], other])
        assert not (tmp_path / "x.zarr").exists()
    with pytest.raises(WeightsError, match="not found"):
        segment(phantom_npy, tmp_path / "x.zarr", [members[0], tmp_path / "missing.safetensors"])
    with pytest.raises(WeightsError, match="no weights given"):
        segment(phantom_npy, tmp_path / "x.zarr", [])


def test_mirroring_an_ensemble_needs_flips_every_member_was_trained_with(tmp_path, phantom_npy, members):
    yx = _save(tmp_path / "yx.safetensors", 4, training={"config": {"flip_axes": [1, 2]}})
    with pytest.raises(EngineError, match="trained with flips along yx only"):
        segment(phantom_npy, tmp_path / "x.zarr", [members[0], yx], mirror="zyx")


def test_the_memory_estimate_is_the_largest_members(members):
    from halo_seg.engine import memory
    net, meta = load_model(members)
    assert isinstance(net, Ensemble) and net.multiple == 4 and meta["members"][1]["path"].endswith("b.safetensors")
    assert net.config == load_model(members[1])[0].config
    assert memory.network_bytes_per_voxel(net.config) > memory.network_bytes_per_voxel(load_model(members[0])[0].config)


def test_cli_segment_with_several_weights(tmp_path, phantom_npy, members, capsys):
    out = tmp_path / "cli.zarr"
    assert main(["segment", str(phantom_npy), str(out), "--weights", str(members[0]), "--weights", str(members[1]),
                 "--grid", "2,1,1", "--save-probabilities"]) == 0
    ref = _probs(segment(phantom_npy, tmp_path / "ref.zarr", members, mode="whole", save_probabilities=True).output)
    assert np.abs(_probs(out) - ref).max() <= 1e-4
    assert main(["info", str(phantom_npy), "--weights", str(members[0]), "--weights", str(members[1])]) == 0
    assert f"{members[0]}, {members[1]}" in capsys.readouterr().out


def test_an_ensemble_runs_at_its_members_voxel_size(tmp_path, phantom_npy):
    """Members trained at 2 mm on a 1 mm volume: the ensemble resamples as each member would, and
    its probabilities on the volume's grid are the members' mean."""
    sp = {"training": {**FLIPS, "spacing": [2.0, 2.0, 2.0], "unit": "mm"}}
    members = [_save(tmp_path / f"{i}.safetensors", 10 + i, **sp) for i in range(2)]
    run = dict(mode="whole", save_probabilities=True, spacing=(1.0, 1.0, 1.0))
    alone = [_probs(segment(phantom_npy, tmp_path / f"a{i}.zarr", m, **run).output) for i, m in enumerate(members)]
    res = segment(phantom_npy, tmp_path / "e.zarr", members, **run)
    assert res.resampled and res.resampled["shape"] == [14, 17, 15]   # 27 x 34 x 30 at 1 mm, about 2 mm
    assert np.abs(_probs(res.output) - np.mean(alone, 0)).max() <= 1e-4
