"""Networks of several input channels (io/channels.py; nnU-Net stacks a case's modalities): the engine
stacks the channels, each normalised on its own, in every mode, exactly as an unpartitioned network
would; training learns from all of them; a dataset's channels are trained on and segmented together;
every way the channels can disagree with the network or each other is refused."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
import zarr
from scipy import ndimage as ndi

from halo_seg.engine.runner import segment
from halo_seg.engine.unet import UNet3D
from halo_seg.engine.weights import WeightsError, read_meta, save_unet
from halo_seg.io import VolumeError

SHAPE = (24, 20, 28)


def _two(tmp_path):
    rng = np.random.default_rng(0)
    a = ndi.gaussian_filter(rng.normal(50, 20, SHAPE), 1).astype(np.float32)
    b = ndi.gaussian_filter(rng.normal(30, 40, SHAPE), 1).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    return a, b


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """A one-channel network, and a two-channel one equal to it on its first channel (the second
    channel's first-layer weights are zero): an independent reference for every mode."""
    d = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    one = UNet3D(1, 3, base=4, depth=2)
    two = UNet3D(2, 3, base=4, depth=2)
    state = one.state_dict()
    for k, v in two.state_dict().items():
        if v.shape == state[k].shape:
            v.copy_(state[k])
        else:   # the stem's first convolution: (out, in, 3, 3, 3)
            v.zero_()
            v[:, :1] = state[k]
    save_unet(one, d / "one.safetensors")
    save_unet(two, d / "two.safetensors", channels=["T1", "T2"])
    torch.manual_seed(1)
    mixed = UNet3D(2, 3, base=4, depth=2)
    save_unet(mixed, d / "mixed.safetensors", channels=["CT", "PET"],
              normalization=[{"kind": "zscore"}, {"kind": "window", "window": [0.0, 100.0]}])
    return d


def _probs(out):
    return zarr.open_group(str(out), mode="r")["probabilities"][:]


@pytest.mark.parametrize("mode, grid", [("whole", (1, 1, 1)), ("halo", (2, 1, 1)), ("halo", (2, 2, 1)),
                                        ("tile", (1, 1, 1))])
def test_a_second_channel_the_network_ignores_changes_nothing(tmp_path, nets, mode, grid):
    _two(tmp_path)
    kw = dict(mode=mode, grid=grid, tile_size=16, save_probabilities=True)
    segment(tmp_path / "a.npy", tmp_path / "one.zarr", weights=nets / "one.safetensors", **kw)
    segment([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "two.zarr", weights=nets / "two.safetensors", **kw)
    np.testing.assert_allclose(_probs(tmp_path / "two.zarr"), _probs(tmp_path / "one.zarr"), atol=2e-6)


def test_each_channel_normalised_as_its_weights_say_and_halo_equals_whole(tmp_path, nets):
    a, b = _two(tmp_path)
    from halo_seg.engine.weights import load_unet
    net, _ = load_unet(nets / "mixed.safetensors")
    # by hand: channel 0 z-scored over the volume, channel 1 clipped to 0..100 and scaled to -1..1
    x = np.stack([(a - a.mean()) / a.std(), (np.clip(b, 0, 100) - 50) / 50]).astype(np.float32)
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy(x)[None]), 1)[0].numpy()
    for mode, grid in (("whole", (1, 1, 1)), ("halo", (2, 1, 2))):
        out = tmp_path / f"{mode}.zarr"
        segment([tmp_path / "a.npy", tmp_path / "b.npy"], out, weights=nets / "mixed.safetensors", mode=mode, grid=grid,
                save_probabilities=True)
        np.testing.assert_allclose(_probs(out), ref, atol=1e-5)
    # the channels swapped are another input
    segment([tmp_path / "b.npy", tmp_path / "a.npy"], tmp_path / "swap.zarr", weights=nets / "mixed.safetensors",
            mode="whole", save_probabilities=True)
    assert np.abs(_probs(tmp_path / "swap.zarr") - ref).max() > 0.01


def test_one_file_holding_the_channels(tmp_path, nets):
    a, b = _two(tmp_path)
    np.save(tmp_path / "ab.npy", np.stack([a, b]))          # (C, Z, Y, X)
    kw = dict(weights=nets / "mixed.safetensors", mode="whole", save_probabilities=True)
    segment([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "files.zarr", **kw)
    segment(tmp_path / "ab.npy", tmp_path / "all.zarr", **kw)                   # every channel, in order
    segment(tmp_path / "ab.npy", tmp_path / "chosen.zarr", channel="0,1", **kw)
    segment(tmp_path / "ab.npy", tmp_path / "every.zarr", channel="all", **kw)
    segment(tmp_path / "ab.npy", tmp_path / "reversed.zarr", channel=[1, 0], **kw)
    segment([tmp_path / "b.npy", tmp_path / "a.npy"], tmp_path / "swapped.zarr", **kw)
    ref = _probs(tmp_path / "files.zarr")
    np.testing.assert_array_equal(_probs(tmp_path / "all.zarr"), ref)
    np.testing.assert_array_equal(_probs(tmp_path / "chosen.zarr"), ref)
    np.testing.assert_array_equal(_probs(tmp_path / "every.zarr"), ref)
    np.testing.assert_array_equal(_probs(tmp_path / "reversed.zarr"), _probs(tmp_path / "swapped.zarr"))
    # a Decathlon 4D NIfTI: the modalities along its 4th dimension
    nib.save(nib.Nifti1Image(np.stack([a, b], -1).transpose(2, 1, 0, 3), np.eye(4)), str(tmp_path / "case.nii.gz"))
    segment(tmp_path / "case.nii.gz", tmp_path / "nifti.zarr", **kw)
    np.testing.assert_allclose(_probs(tmp_path / "nifti.zarr"), ref, atol=1e-6)


def test_channels_that_do_not_fit_the_network_are_refused(tmp_path, nets, tiny_weights):
    a, b = _two(tmp_path)
    two = nets / "two.safetensors"
    with pytest.raises(VolumeError, match=r"takes 2 input channels \(T1, T2\); got 1 channel: .*a.npy.*one file per "
                                          r"channel"):
        segment(tmp_path / "a.npy", tmp_path / "x.zarr", weights=two, mode="whole")
    with pytest.raises(VolumeError, match="takes 2 input channels .* got 3 channels"):
        segment([tmp_path / "a.npy"] * 3, tmp_path / "x.zarr", weights=two, mode="whole")
    with pytest.raises(VolumeError, match="takes 1 input channel; got 2 channels"):
        segment([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "x.zarr", weights=tiny_weights, mode="whole")
    np.save(tmp_path / "small.npy", b[:16])
    with pytest.raises(VolumeError, match=r"differ in shape: .*a.npy is \(24, 20, 28\), .*small.npy is \(16, 20, 28\)"):
        segment([tmp_path / "a.npy", tmp_path / "small.npy"], tmp_path / "x.zarr", weights=two, mode="whole")
    nib.save(nib.Nifti1Image(a.transpose(2, 1, 0), np.diag([1.0, 1.0, 1.0, 1])), str(tmp_path / "a.nii.gz"))
    nib.save(nib.Nifti1Image(b.transpose(2, 1, 0), np.diag([1.0, 1.0, 2.0, 1])), str(tmp_path / "b.nii.gz"))
    with pytest.raises(VolumeError, match="must lie on one voxel grid"):
        segment([tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"], tmp_path / "x.zarr", weights=two, mode="whole")
    with pytest.raises(VolumeError, match="2 input files and 2 channels"):
        segment([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "x.zarr", weights=two, channel="0,1")
    assert not (tmp_path / "x.zarr").exists()
    # an ensemble of networks of other channels
    with pytest.raises(WeightsError, match="differ in input channels"):
        segment([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "x.zarr", mode="whole",
                weights=[str(two), str(nets / "mixed.safetensors")])


@pytest.mark.parametrize("mode", ["whole", "halo"])
def test_channels_resampled_to_the_networks_voxel_size(tmp_path, nets, mode):
    # trained at 2 x 1.5 x 1.5 mm: each channel resampled there, lazily, and the probabilities back; the
    # network that ignores its second channel gives the one-channel network's resampled run
    _two(tmp_path)
    from halo_seg.engine.weights import load_unet
    for name in ("one", "two"):
        net, meta = load_unet(nets / f"{name}.safetensors")
        save_unet(net, tmp_path / f"{name}.safetensors", **({"channels": meta["channels"]} if "channels" in meta else {}),
                  training={"spacing": [2.0, 1.5, 1.5]})
    kw = dict(mode=mode, grid=(2, 1, 1), spacing=(1.0, 1.0, 1.0), save_probabilities=True)
    one = segment(tmp_path / "a.npy", tmp_path / "one.zarr", weights=tmp_path / "one.safetensors", **kw)
    two = segment([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "two.zarr", weights=tmp_path / "two.safetensors",
                  **kw)
    assert one.resampled and two.resampled == one.resampled and two.resampled["shape"] == [12, 13, 19]
    np.testing.assert_allclose(_probs(tmp_path / "two.zarr"), _probs(tmp_path / "one.zarr"), atol=2e-6)
    # resumed: the same channels are the same job, others are another's
    assert segment([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "two.zarr",
                   weights=tmp_path / "two.safetensors", resume=True, **kw).skipped
    with pytest.raises(Exception, match="resume"):
        segment([tmp_path / "b.npy", tmp_path / "a.npy"], tmp_path / "two.zarr", weights=tmp_path / "two.safetensors",
                resume=True, **kw)


def test_the_memory_estimate_counts_each_channel():
    from halo_seg.engine import memory
    one = dict(in_channels=1, out_channels=3, base=4, depth=2)
    four = dict(one, in_channels=4)
    b1, b4 = memory.block_bytes(one, (64, 64, 64)), memory.block_bytes(four, (64, 64, 64))
    # the three more float32 input channels held beside the network, at least
    assert b4 - b1 >= 3 * 4 * 64 ** 3


def _and_case(seed, shape=(32, 32, 32)):
    """Two channels, and labels where both are bright: neither channel alone says where they are."""
    r = np.random.default_rng(seed)
    a, b = (ndi.gaussian_filter(r.normal(size=shape), 3) for _ in range(2))
    a, b = a / a.std(), b / b.std()
    return (a * 20 + 100).astype(np.float32), (b * 5 - 3).astype(np.float32), ((a > 0.3) & (b > 0.3)).astype(np.uint8)


def test_training_learns_from_every_channel(tmp_path, whole_dice):
    from halo_seg.engine.runner import predict_whole
    from halo_seg.engine.weights import load_unet
    from halo_seg.metrics import dice
    from halo_seg.train.unet_train import TrainConfig, train_unet
    cases = [_and_case(s) for s in range(4)]
    ta, tb, truth = _and_case(99)
    cfg = dict(n_classes=2, patch=(32, 32, 32), iterations=120, batch=2, base=6, depth=2, epoch=60, lr=1e-2, threads=2)
    train_unet([[a, b] for a, b, _ in cases], [lab for *_, lab in cases],
               TrainConfig(**cfg, channel_names=["A", "B"], normalization=[{"kind": "zscore"},
                                                                          {"kind": "percentile", "percentiles": [1, 99]}]),
               tmp_path / "both.safetensors", log=lambda *_: None)
    train_unet([a for a, _, _ in cases], [lab for *_, lab in cases], TrainConfig(**cfg), tmp_path / "a.safetensors",
               log=lambda *_: None)
    meta = read_meta(tmp_path / "both.safetensors")
    assert meta["config"]["in_channels"] == 2 and meta["channels"] == ["A", "B"]
    assert meta["normalization"][1] == {"kind": "percentile", "percentiles": [1, 99]}
    # scored independently: each channel normalised by hand as the weights record, the network run whole
    net, _ = load_unet(tmp_path / "both.safetensors")
    lo, hi = np.percentile(tb.astype(np.float64), [1, 99])
    x = np.stack([(ta - ta.mean()) / ta.std(), (np.clip(tb, lo, hi) - (lo + hi) / 2) / ((hi - lo) / 2)])
    both = dice(predict_whole(net, x.astype(np.float32), "cpu").argmax(0) == 1, truth == 1)
    alone, _ = whole_dice(tmp_path / "a.safetensors", ta, truth)
    assert both > 0.7 and both > alone + 0.2, (both, alone)
    # and the engine reaches the same labels from the files
    np.save(tmp_path / "ta.npy", ta)
    np.save(tmp_path / "tb.npy", tb)
    segment([tmp_path / "ta.npy", tmp_path / "tb.npy"], tmp_path / "seg.zarr", weights=tmp_path / "both.safetensors",
            grid=(2, 1, 1))
    labels = zarr.open_group(str(tmp_path / "seg.zarr"), mode="r")["labels"][:]
    assert abs(dice(labels == 1, truth == 1) - both) < 0.01


def test_channel_counts_that_differ_between_cases_are_refused(tmp_path):
    from halo_seg.train.unet_train import TrainConfig, TrainingError, train_unet
    a, b, lab = _and_case(0, (16, 16, 16))
    cfg = TrainConfig(n_classes=2, patch=(16, 16, 16), iterations=1, base=4, depth=2)
    with pytest.raises(TrainingError, match="volume 0 has 2 input channel.* volume 1 has 1"):
        train_unet([[a, b], a], [lab, lab], cfg, tmp_path / "x.safetensors", log=lambda *_: None)
    with pytest.raises(TrainingError, match="3 channel names .* for 2 input channel"):
        train_unet([[a, b]], [lab], TrainConfig(**{**cfg.__dict__, "channel_names": ["x", "y", "z"]}),
                   tmp_path / "x.safetensors", log=lambda *_: None)
    from halo_seg.train.partitioned_run import train_partitioned
    cfg = dict(n_classes=2, patch=[16, 16, 16], iterations=1, base=4, depth=2)
    with pytest.raises(TrainingError, match="volume 0 has 2 input channel.* volume 1 has 1"):
        train_partitioned([[a, b], a], [lab, lab], cfg, (2, 1, 1), tmp_path / "x.safetensors")
    with pytest.raises(TrainingError, match="validation volume 0 has 1 input channel.*the training volumes 2"):
        train_partitioned([[a, b]], [lab], cfg, (2, 1, 1), tmp_path / "x.safetensors", val_images=[a], val_labels=[lab])
    with pytest.raises(TrainingError, match="image must be 3D"):   # a 4D array is not taken for channels
        train_partitioned([np.stack([a, b])], [lab], cfg, (2, 1, 1), tmp_path / "x.safetensors")
    with pytest.raises(TrainingError, match="3 channels' normalisation for a network of 2"):
        train_partitioned([[a, b]], [lab], {**cfg, "normalization": [{"kind": "zscore"}] * 3}, (2, 1, 1),
                          tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_partitioned_training_of_several_channels_equals_the_unpartitioned_steps(tmp_path, whole_dice):
    """Two channels, every augmentation on: one rank and a 2 x 1 x 1 grid train the same patches (the
    same losses), and the validation they report is the saved weights' Dice on the whole volume."""
    from halo_seg.engine.runner import predict_whole
    from halo_seg.engine.weights import load_unet
    from halo_seg.metrics import dice
    from halo_seg.train.partitioned_run import train_partitioned
    a, b, lab = _and_case(0, (32, 32, 32))
    va, vb, vlab = _and_case(1, (32, 32, 32))
    cfg = dict(n_classes=2, patch=[32, 32, 32], iterations=12, lr=3e-3, base=4, depth=2, epoch=12, augment=True,
               channel_names=["A", "B"], normalization=[{"kind": "zscore"}, {"kind": "window", "window": [-10.0, 4.0]}])
    res = {g: train_partitioned([[a, b]], [lab], cfg, g, tmp_path / f"{''.join(map(str, g))}.safetensors",
                                log=lambda *_: None, val_images=[[va, vb]], val_labels=[vlab])
           for g in [(1, 1, 1), (2, 1, 1)]}
    for h1, h2 in zip(res[(1, 1, 1)]["history"], res[(2, 1, 1)]["history"]):
        assert h1["loss"] == pytest.approx(h2["loss"], rel=1e-3)
    meta = read_meta(tmp_path / "211.safetensors")
    assert meta["config"]["in_channels"] == 2 and meta["channels"] == ["A", "B"]
    assert meta["normalization"] == cfg["normalization"]
    net, _ = load_unet(tmp_path / "211.safetensors")
    x = np.stack([(va - va.mean()) / va.std(), (np.clip(vb, -10, 4) + 3) / 7]).astype(np.float32)
    truth = dice(predict_whole(net, x, "cpu").argmax(0) == 1, vlab == 1)
    assert res[(2, 1, 1)]["best"]["val_dice"][0] == pytest.approx(truth, abs=1e-4)


def _nifti(path, zyx, labels=False):
    img = nib.Nifti1Image(np.ascontiguousarray(np.asarray(zyx).transpose(2, 1, 0)), np.eye(4))
    if labels:
        img.header.set_intent("label")
    nib.save(img, str(path))


def _dataset(root, train=("c1", "c2", "c3"), test=("t1", "t2")):
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True)
    for k, case in enumerate(train + test):
        a, b, lab = _and_case(k, (24, 24, 24))
        split = "Tr" if case in train else "Ts"
        _nifti(root / f"images{split}" / f"{case}_0000.nii.gz", (a * 10).astype(np.int16))   # "CT"
        _nifti(root / f"images{split}" / f"{case}_0001.nii.gz", b)
        _nifti(root / f"labels{split}" / f"{case}.nii.gz", lab, labels=True)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "PET"},
                                                   "labels": {"background": 0, "lesion": 1},
                                                   "numTraining": len(train), "file_ending": ".nii.gz"}))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "halo_seg.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_a_datasets_channels_trained_and_segmented_together(tmp_path):
    from halo_seg.batch import segment_folder
    root = tmp_path / "Dataset002_Lesion"
    _dataset(root)
    out = tmp_path / "m.safetensors"
    r = _cli("train", "--dataset", root, "--channel", "all", "--out", out, "--patch", "16", "16", "16",
             "--iterations", "2", "--epoch", "2", "--base", "4", "--depth", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "3 labelled cases, channels 0 (CT), 1 (PET)" in r.stdout
    meta = read_meta(out)
    assert meta["config"]["in_channels"] == 2 and meta["channels"] == ["CT", "PET"]
    # the CT channel windowed as nnU-Net does, the other z-scored
    assert meta["normalization"][0]["kind"] == "window" and meta["normalization"][1] == {"kind": "zscore"}
    card = out.with_suffix(".md").read_text()
    assert "2 channels, stacked in this order: 0 CT, the window" in card and "1 PET, z-scored" in card
    assert "c2_0000.nii.gz (volume" not in card and "c2_0000.nii.gz + " in card and "c2_0001.nii.gz" in card
    # batch on the test images: each case's two files, as the model was trained, without --channel
    rows = segment_folder(root / "imagesTs", tmp_path / "out", weights=str(out), log=lambda *_: None,
                          grid=(1, 1, 1), mode="whole")
    assert [(r["case"], r["status"]) for r in rows] == [("t1", "done"), ("t2", "done")], rows
    assert rows[0]["input"].endswith("t1_0000.nii.gz + " + str(root / "imagesTs" / "t1_0001.nii.gz"))
    r = _cli("segment", root / "imagesTs" / "t1_0000.nii.gz", root / "imagesTs" / "t1_0001.nii.gz", tmp_path / "t1.zarr",
             "--weights", out, "--mode", "whole")
    assert r.returncode == 0, r.stderr
    assert "the network's 2 input channels: t1_0000.nii.gz; t1_0001.nii.gz" in r.stdout
    unc = [zarr.open_group(str(p), mode="r")["uncertainty"][:] for p in (tmp_path / "out" / "t1.zarr", tmp_path / "t1.zarr")]
    np.testing.assert_array_equal(*unc)
    # the test folder lacking a channel's file of a case
    (root / "imagesTs" / "t2_0001.nii.gz").unlink()
    with pytest.raises(Exception, match=r"1 case\(s\) lack a file of the channels .*: t2"):
        segment_folder(root / "imagesTs", tmp_path / "out2", weights=str(out), log=lambda *_: None)
    # partitioned over two ranks, the channels named as chosen
    r = _cli("train", "--dataset", root, "--channel", "PET,CT", "--out", tmp_path / "g.safetensors", "--grid", "2,1,1",
             "--iterations", "2", "--epoch", "2", "--base", "4", "--depth", "2", "--patch", "16", "16", "16", "--quiet")
    assert r.returncode == 0, r.stderr
    meta = read_meta(tmp_path / "g.safetensors")
    assert meta["channels"] == ["PET", "CT"] and meta["training"]["partitioned"]
    assert meta["normalization"][0] == {"kind": "zscore"} and meta["normalization"][1]["kind"] == "window"


def test_napari_segments_every_channel_of_the_layers_file_for_a_network_of_several(tmp_path, nets, tiny_weights):
    from napari_halo_seg._auto_widget import _segment_or_error
    a, b = _two(tmp_path)
    np.save(tmp_path / "ab.npy", np.stack([a, b]))
    # the reader made a layer of channel 1: the two-channel network still gets both, in the file's order
    (res, *_), exc = _segment_or_error(str(tmp_path / "ab.npy"), tmp_path / "napari.zarr", channel=1, mode="whole",
                                       weights=nets / "mixed.safetensors", grid=(1, 1, 1), save_probabilities=True)
    assert exc is None and res.inputs == ["ab.npy channel 0", "ab.npy channel 1"]   # the widget says so
    segment([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "ref.zarr", weights=nets / "mixed.safetensors",
            mode="whole", save_probabilities=True)
    np.testing.assert_array_equal(_probs(tmp_path / "napari.zarr"), _probs(tmp_path / "ref.zarr"))
    # a one-channel network segments the layer's channel, as before
    (res, *_), exc = _segment_or_error(str(tmp_path / "ab.npy"), tmp_path / "one.zarr", channel=1, mode="whole",
                                       weights=tiny_weights, grid=(1, 1, 1), save_probabilities=True)
    segment(tmp_path / "b.npy", tmp_path / "b.zarr", weights=tiny_weights, mode="whole", save_probabilities=True)
    assert exc is None and res.inputs is None
    np.testing.assert_array_equal(_probs(tmp_path / "one.zarr"), _probs(tmp_path / "b.zarr"))


def test_a_decathlon_datasets_modalities_trained_and_segmented_together(tmp_path):
    from halo_seg.batch import segment_folder
    from halo_seg.io.dataset_folder import channel_cases
    root = tmp_path / "Task09_Lesion"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    training = []
    for k, case in enumerate(["L_001", "L_002", "L_101"]):
        a, b, lab = _and_case(k, (24, 24, 24))
        split = "Ts" if case == "L_101" else "Tr"
        nib.save(nib.Nifti1Image(np.stack([a, b], -1).transpose(2, 1, 0, 3), np.eye(4)),
                 str(root / f"images{split}" / f"{case}.nii.gz"))     # (X, Y, Z, modality)
        if split == "Tr":
            _nifti(root / "labelsTr" / f"{case}.nii.gz", lab, labels=True)
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"name": "Lesion", "modality": {"0": "FLAIR", "1": "T1w"},
                                                   "labels": {"0": "background", "1": "lesion"}, "training": training}))
    out = tmp_path / "m.safetensors"
    r = _cli("train", "--dataset", root, "--channel", "all", "--out", out, "--patch", "16", "16", "16",
             "--iterations", "2", "--epoch", "2", "--base", "4", "--depth", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    meta = read_meta(out)
    assert meta["channels"] == ["FLAIR", "T1w"] and meta["config"]["in_channels"] == 2
    assert channel_cases(root / "imagesTs", "all")[1] == {"timepoint": [0, 1]}
    rows = segment_folder(root / "imagesTs", tmp_path / "out", weights=str(out), log=lambda *_: None,
                          grid=(1, 1, 1), mode="whole")
    assert [(r["case"], r["status"]) for r in rows] == [("L_101", "done")], rows
    # the same as the case's two modalities given as files of their own
    a, b, _ = _and_case(2, (24, 24, 24))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    segment([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "ref.zarr", weights=out, mode="whole")
    unc = [zarr.open_group(str(p), mode="r")["uncertainty"][:] for p in (tmp_path / "out" / "L_101.zarr",
                                                                          tmp_path / "ref.zarr")]
    np.testing.assert_allclose(*unc, atol=1e-6)


def test_image_label_pairs_of_several_channels_from_the_command_line(tmp_path):
    # --image FILE --channel A,B: the channels of each file, each normalised as --normalization says
    cases = [_and_case(k, (24, 24, 24)) for k in range(3)]
    for k, (a, b, lab) in enumerate(cases):
        np.save(tmp_path / f"im{k}.npy", np.stack([b, a]))     # stored in the other order
        np.save(tmp_path / f"lab{k}.npy", lab)
    common = ["--patch", "16", "16", "16", "--iterations", "2", "--epoch", "2", "--base", "4", "--depth", "2",
              "--quiet"]
    pairs = ["--image", tmp_path / "im0.npy", "--labels", tmp_path / "lab0.npy",
             "--image", tmp_path / "im1.npy", "--labels", tmp_path / "lab1.npy"]
    r = _cli("train", *pairs, "--val-image", tmp_path / "im2.npy", "--val-labels", tmp_path / "lab2.npy",
             "--channel", "1,0", "--normalization", "zscore", "window:-10,4", "--out", tmp_path / "m.safetensors",
             *common)
    assert r.returncode == 0, r.stderr
    meta = read_meta(tmp_path / "m.safetensors")
    assert meta["config"]["in_channels"] == 2 and meta["channels"] == ["channel 1", "channel 0"]
    assert meta["normalization"] == [{"kind": "zscore"}, {"kind": "window", "window": [-10.0, 4.0]}]
    card = (tmp_path / "m.md").read_text()
    assert "2 channels, stacked in this order: 0 channel 1, z-scored over the whole volume; 1 channel 0, the window -10..4" in card
    # one spec for both channels
    r = _cli("train", *pairs, "--channel", "1,0", "--normalization", "percentile:1,99", "--out",
             tmp_path / "p.safetensors", *common)
    assert r.returncode == 0, r.stderr
    assert read_meta(tmp_path / "p.safetensors")["normalization"] == {"kind": "percentile", "percentiles": [1.0, 99.0]}
    r = _cli("train", *pairs, "--channel", "1,0", "--normalization", "zscore", "zscore", "zscore", "--out",
             tmp_path / "x.safetensors", *common)
    assert r.returncode != 0 and "3 channels' normalisation for a network of 2" in r.stderr
    r = _cli("train", *pairs, "--out", tmp_path / "x.safetensors", *common)       # no choice: refused
    assert r.returncode != 0 and "2 channels; choose one with channel=" in r.stderr


@pytest.mark.filterwarnings("error::UserWarning")   # torch warned of the read-only memory map it was given
def test_several_channels_train_the_same_from_disk(tmp_path):
    from halo_seg.train.unet_train import TrainConfig, train_unet
    cases = [_and_case(k, (24, 24, 24)) for k in range(2)]
    cfg = TrainConfig(n_classes=2, patch=(16, 16, 16), iterations=6, base=4, depth=2, epoch=3, threads=1,
                      channel_names=["a", "b"])
    weights = []
    for name, disk in (("ram", None), ("disk", tmp_path / "scratch")):
        train_unet([[a, b] for a, b, _ in cases], [lab for *_, lab in cases], cfg, tmp_path / f"{name}.safetensors",
                   log=lambda *_: None, on_disk=disk)
        from safetensors.torch import load_file
        weights.append(load_file(str(tmp_path / f"{name}.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
    assert not (tmp_path / "scratch").exists() or not any((tmp_path / "scratch").iterdir())


def test_channel_choices_that_cannot_be_meant_are_refused(tmp_path):
    from halo_seg.io.channels import channel_list
    from halo_seg.io.dataset_folder import DatasetError, read_channels
    with pytest.raises(VolumeError, match=r"--channel 'T1,': name each channel"):
        channel_list("a.nii.gz", "T1,")
    with pytest.raises(VolumeError, match="several volumes of a 4D file are the channels of one file"):
        channel_list(["a.nii.gz", "b.nii.gz"], timepoint=[0, 1])
    root = tmp_path / "Dataset003"
    _dataset(root, train=("c1",), test=())
    with pytest.raises(DatasetError, match="--channel CT,0: a channel is named twice"):
        read_channels(root, "CT,0")
    from halo_seg.io.dataset_folder import channel_cases
    with pytest.raises(DatasetError, match="--channel pet,1: a channel is named twice"):
        channel_cases(root / "imagesTr", "pet,1")
    with pytest.raises(DatasetError, match=r"--channel MR: .* has the channels 0 \(CT\), 1 \(PET\)"):
        read_channels(root, "CT,MR")
