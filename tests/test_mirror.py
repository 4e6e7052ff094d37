import numpy as np
import pytest
import torch
import zarr

from halo_seg.cli import main
from halo_seg.engine.mirror import MirrorError, flip_sets, flipped_kernels, mirrored_softmax, parse_mirror
from halo_seg.engine.runner import EngineError, segment
from halo_seg.engine.unet import UNet3D
from halo_seg.io import VolumeError


def _net(seed=0):
    torch.manual_seed(seed)
    net = UNet3D(1, 3, base=4, depth=2)
    with torch.no_grad():   # non-trivial norm affines, so nothing in the net is symmetric by chance
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net.eval()


def test_parse_mirror():
    assert parse_mirror("") == () and parse_mirror(None) == ()
    assert parse_mirror("zyx") == (0, 1, 2) and parse_mirror("xy") == (1, 2) and parse_mirror([2, 0]) == (0, 2)
    assert flip_sets("yx") == [(), (1,), (2,), (1, 2)]
    assert len(flip_sets("zyx")) == 8
    for bad in ("q", "zz", "z,y", [3], [1, 1]):
        with pytest.raises(MirrorError):
            parse_mirror(bad)


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 2), (0, 1, 2)])
def test_flipped_kernels_equal_the_network_on_the_flipped_volume(axes):
    net = _net()
    x = torch.randn(1, 1, 12, 16, 8)
    dims = [2 + a for a in axes]
    with torch.no_grad():
        ref = torch.flip(net(torch.flip(x, dims)), dims)
        plain = net(x)
        with flipped_kernels(net, axes):
            got = net(x)
    assert torch.abs(got - ref).max() < 1e-5
    assert torch.abs(plain - ref).max() > 1e-3   # the mirrored view is a different prediction


def test_mirrored_softmax_is_the_mean_over_flipped_views_and_restores_the_weights():
    net = _net(1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(1, 1, 8, 12, 16)
    with torch.no_grad():
        got = mirrored_softmax(net, x, "zyx")
        views = [torch.flip(torch.softmax(net(torch.flip(x, [2 + a for a in s])), 1), [2 + a for a in s])
                 for s in flip_sets("zyx")]
    assert torch.abs(got - torch.stack(views).mean(0)).max() < 1e-6
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def _probs(path):
    return zarr.open_group(str(path), mode="r")["probabilities"][...]


@pytest.fixture(scope="module")
def aligned_npy(tmp_path_factory):
    """A volume whose shape is a multiple of 2**depth: no padding, so flipping the array is the
    same as flipping the padded volume and the public API can be its own reference."""
    from halo_seg.samples import make_phantom
    ph = make_phantom((16, 24, 20), n_objects=3, seed=5)
    p = tmp_path_factory.mktemp("mirror") / "vol.npy"
    np.save(p, ph.image)
    return p


def test_segment_with_mirror_equals_averaging_runs_on_flipped_volumes(tmp_path, aligned_npy, tiny_weights):
    vol = np.load(aligned_npy)
    segment(aligned_npy, tmp_path / "m.zarr", tiny_weights, mode="whole", mirror="zyx", save_probabilities=True)
    views = []
    for k, s in enumerate(flip_sets("zyx")):
        src = tmp_path / f"f{k}.npy"
        np.save(src, np.ascontiguousarray(np.flip(vol, s)))
        segment(src, tmp_path / f"f{k}.zarr", tiny_weights, mode="whole", save_probabilities=True)
        views.append(np.flip(_probs(tmp_path / f"f{k}.zarr"), [1 + a for a in s]))
    got = _probs(tmp_path / "m.zarr")
    assert np.abs(got - np.mean(views, 0)).max() < 1e-5
    assert np.abs(got - views[0]).max() > 1e-3
    labels = zarr.open_group(str(tmp_path / "m.zarr"), mode="r")["labels"][...]
    np.testing.assert_array_equal(labels, got.argmax(0))


def test_halo_and_tile_modes_mirror_like_the_whole_volume(tmp_path, phantom_npy, tiny_weights):
    segment(phantom_npy, tmp_path / "w.zarr", tiny_weights, mode="whole", mirror="zx", save_probabilities=True)
    segment(phantom_npy, tmp_path / "w0.zarr", tiny_weights, mode="whole", save_probabilities=True)
    segment(phantom_npy, tmp_path / "h.zarr", tiny_weights, grid=(2, 1, 2), mirror="zx", save_probabilities=True)
    pw, ph = _probs(tmp_path / "w.zarr"), _probs(tmp_path / "h.zarr")
    assert np.abs(ph - pw).max() <= 1e-4     # halos need nothing extra for mirrored views
    assert np.abs(pw - _probs(tmp_path / "w0.zarr")).max() > 1e-3
    # a window of the tile baseline is its own small volume: mirrored there as in whole mode
    segment(phantom_npy, tmp_path / "t.zarr", tiny_weights, mode="tile", tile_size=40, mirror="zx",
            save_probabilities=True)
    np.testing.assert_allclose(_probs(tmp_path / "t.zarr").sum(0), 1.0, atol=1e-5)


def test_mirror_errors_and_resume(tmp_path, phantom_npy, tiny_weights, capsys):
    with pytest.raises(EngineError, match="mirror axes"):
        segment(phantom_npy, tmp_path / "bad.zarr", tiny_weights, mode="whole", mirror="zq")
    assert not (tmp_path / "bad.zarr").exists()
    out = tmp_path / "o.zarr"
    segment(phantom_npy, out, tiny_weights, mode="whole", mirror="yx")
    assert segment(phantom_npy, out, tiny_weights, mode="whole", mirror="xy", resume=True).skipped
    with pytest.raises(VolumeError, match="different job"):   # resuming must not mix mirrored and plain blocks
        segment(phantom_npy, out, tiny_weights, mode="whole", resume=True)
    assert main(["segment", str(phantom_npy), str(tmp_path / "c.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole", "--mirror", "zyx"]) == 0
    assert main(["segment", str(phantom_npy), str(tmp_path / "d.zarr"), "--weights", str(tiny_weights),
                 "--mirror", "w"]) != 0
    assert "mirror axes 'w'" in capsys.readouterr().err


def test_mirroring_only_along_axes_the_model_was_trained_flipped(tmp_path, phantom_npy):
    from halo_seg.engine.weights import save_unet
    w = tmp_path / "inplane.safetensors"
    save_unet(_net(), w, classes=["bg", "a", "b"], training={"config": {"flip_axes": [1, 2]}})
    with pytest.raises(EngineError, match="trained with flips along yx only.*mirrored along z"):
        segment(phantom_npy, tmp_path / "z.zarr", w, mode="whole", mirror="zyx")
    assert not (tmp_path / "z.zarr").exists()
    segment(phantom_npy, tmp_path / "yx.zarr", w, mode="whole", mirror="yx")
    assert (tmp_path / "yx.zarr" / "labels").is_dir()
