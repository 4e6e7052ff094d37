"""Training data in nnU-Net v2's and the Medical Segmentation Decathlon's layouts
(io/dataset_folder.py, `train --dataset`, `batch` on a dataset's images folder): the right files
paired, the channel chosen by name, the class names carried into the model, and every way a
dataset.json can be wrong said."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from halo_seg.engine.weights import read_meta
from halo_seg.io import VolumeError, open_volume
from halo_seg.io.dataset_folder import DatasetError, channel_cases, read_dataset
from halo_seg.samples import make_phantom

SHAPE = (24, 24, 24)


def _nifti(path, zyx, labels=False):
    img = nib.Nifti1Image(np.ascontiguousarray(np.asarray(zyx).transpose(2, 1, 0)), np.diag([1.5, 1.0, 1.0, 1.0]))
    if labels:
        img.header.set_intent("label")
    nib.save(img, str(path))


def _case(seed):
    s = make_phantom(SHAPE, n_objects=2, seed=seed)
    ct = (s.image * 1000 - 600).astype(np.int16)           # HU-like
    t2 = (1.0 - s.image).astype(np.float32)               # another contrast, so a swap would show
    return ct, t2, np.minimum(s.labels, 2).astype(np.uint8)


def _nnunet(root, cases=("la_003", "la_007", "la_010"), labels=None, test=("la_020",), **extra):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "imagesTs").mkdir()
    (root / "labelsTs").mkdir()
    made = {}
    for k, case in enumerate(cases + test):
        ct, t2, lab = _case(k)
        split = "Tr" if case in cases else "Ts"
        _nifti(root / f"images{split}" / f"{case}_0000.nii.gz", ct)
        _nifti(root / f"images{split}" / f"{case}_0001.nii.gz", t2)
        _nifti(root / f"labels{split}" / f"{case}.nii.gz", lab, labels=True)
        made[case] = (ct, t2, lab)
    (root / "imagesTr" / "._la_003_0000.nii.gz").write_bytes(b"\x00\x05\x16\x07")   # macOS metadata
    meta = {"channel_names": {"0": "CT", "1": "T2"}, "labels": labels or {"background": 0, "heart": 1, "vessel": 2},
            "numTraining": len(cases), "file_ending": ".nii.gz", **extra}
    (root / "dataset.json").write_text(json.dumps(meta))
    return made


def test_nnunet_dataset_pairs_each_case_with_the_chosen_channels_file(tmp_path):
    made = _nnunet(tmp_path / "Dataset001_Heart")
    ds = read_dataset(tmp_path / "Dataset001_Heart", "t2")            # by name, any letter case
    assert ds.cases == ["la_003", "la_007", "la_010"] and ds.channel == 1 and ds.channel_name == "T2"
    assert ds.class_names == ["background", "heart", "vessel"] and not ds.is_ct and ds.read_kwargs == {}
    for case, im, lb in zip(ds.cases, ds.images, ds.labels):
        np.testing.assert_array_equal(np.asarray(open_volume(im, **ds.read_kwargs).data), made[case][1])
        np.testing.assert_array_equal(np.asarray(open_volume(lb).data), made[case][2])
    ct = read_dataset(tmp_path / "Dataset001_Heart", "0")
    assert ct.is_ct and [p.name for p in ct.images] == ["la_003_0000.nii.gz", "la_007_0000.nii.gz", "la_010_0000.nii.gz"]
    with pytest.raises(DatasetError, match=r"2 channels: 0 \(CT\), 1 \(T2\).*--channel"):
        read_dataset(tmp_path / "Dataset001_Heart")                      # never a silent first channel
    with pytest.raises(DatasetError, match=r"--channel FLAIR: .* has the channels 0 \(CT\), 1 \(T2\)"):
        read_dataset(tmp_path / "Dataset001_Heart", "FLAIR")


@pytest.mark.parametrize("labels, says", [
    ({"background": 0, "whole tumour": [1, 2], "core": 2}, "is a region"),
    ({"background": 0, "liver": 1, "tumour": 3}, r"run 0, 1, 2"),
    ({"background": 0, "liver": 1, "ignore": 2}, "'ignore'"),
    ({"background": 0, "liver": "one"}, "not a whole number"),
])
def test_labels_halo_seg_cannot_train_as_classes_are_refused(tmp_path, labels, says):
    _nnunet(tmp_path / "d", labels=labels)
    with pytest.raises(DatasetError, match=says):
        read_dataset(tmp_path / "d", "CT")


def test_a_case_missing_a_file_or_its_labels_is_named(tmp_path):
    _nnunet(tmp_path / "d")
    (tmp_path / "d" / "imagesTr" / "la_007_0001.nii.gz").unlink()
    read_dataset(tmp_path / "d", "CT")                                  # channel 0 is whole
    with pytest.raises(DatasetError, match="missing: .*la_007_0001.nii.gz"):
        read_dataset(tmp_path / "d", "T2")
    (tmp_path / "d" / "labelsTr" / "la_010.nii.gz").unlink()
    with pytest.raises(DatasetError, match="have no labels in labelsTr: la_010"):
        read_dataset(tmp_path / "d", "CT")
    (tmp_path / "e").mkdir()
    with pytest.raises(DatasetError, match="no dataset.json"):
        read_dataset(tmp_path / "e")
    (tmp_path / "e" / "dataset.json").write_text("{broken")
    with pytest.raises(DatasetError, match="cannot be read as JSON"):
        read_dataset(tmp_path / "e")


def test_a_wrong_case_count_is_noted(tmp_path):
    _nnunet(tmp_path / "d", numTraining=5)
    assert "numTraining 5, but 3 labelled cases" in read_dataset(tmp_path / "d", "CT").notes[0]


def _msd(root, modalities=("FLAIR", "T1w")):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "imagesTs").mkdir()
    made, training = {}, []
    for k, case in enumerate(["BRATS_001", "BRATS_002", "BRATS_101"]):
        ct, t2, lab = _case(k)
        stack = np.stack([t2 * (m + 1) + m for m in range(len(modalities))])      # (C, Z, Y, X)
        img = nib.Nifti1Image(np.ascontiguousarray(stack.transpose(3, 2, 1, 0)), np.eye(4))   # (X, Y, Z, C)
        split = "Ts" if case == "BRATS_101" else "Tr"
        nib.save(img, str(root / f"images{split}" / f"{case}.nii.gz"))
        if split == "Tr":
            _nifti(root / "labelsTr" / f"{case}.nii.gz", lab, labels=True)
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        made[case] = (stack, lab)
    meta = {"name": "BRATS", "modality": {str(i): m for i, m in enumerate(modalities)},
            "labels": {"0": "background", "1": "edema", "2": "tumour"}, "numTraining": 2, "training": training,
            "test": ["./imagesTs/BRATS_101.nii.gz"]}
    (root / "dataset.json").write_text(json.dumps(meta))
    return made


def test_decathlon_dataset_reads_the_modality_from_the_4d_files(tmp_path):
    made = _msd(tmp_path / "Task01_BrainTumour")
    ds = read_dataset(tmp_path / "Task01_BrainTumour", "T1w")
    assert ds.name == "BRATS" and ds.cases == ["BRATS_001", "BRATS_002"] and ds.channel == 1
    assert ds.class_names == ["background", "edema", "tumour"]
    for case, im in zip(ds.cases, ds.images):
        np.testing.assert_allclose(np.asarray(open_volume(im, **ds.read_kwargs).data), made[case][0][1])
    with pytest.raises(DatasetError, match=r"0 \(FLAIR\), 1 \(T1w\)"):
        read_dataset(tmp_path / "Task01_BrainTumour")


def _train(*args):
    return subprocess.run([sys.executable, "-m", "halo_seg.cli", "train", *map(str, args), "--patch", "16", "16",
                           "16", "--iterations", "2", "--epoch", "2", "--base", "4", "--depth", "2", "--quiet"],
                          capture_output=True, text=True, timeout=300)


def test_train_on_a_dataset_names_its_classes_and_windows_its_ct(tmp_path):
    made = _nnunet(tmp_path / "Dataset001_Heart")
    out = tmp_path / "heart.safetensors"
    r = _train("--dataset", tmp_path / "Dataset001_Heart", "--channel", "CT", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "dataset Dataset001_Heart (nnU-Net v2): 3 labelled cases, channel 0 (CT)" in r.stdout
    meta = read_meta(out)
    assert meta["classes"] == ["background", "heart", "vessel"]
    # nnU-Net's CT window, computed here independently: every labelled voxel of the training cases
    inside = np.concatenate([ct[lab > 0].astype(np.float64) for ct, _, lab in (made[c] for c in
                                                                                ("la_003", "la_007", "la_010"))])
    assert inside.size < 3 * 10000   # so the window's sample is every labelled voxel
    np.testing.assert_allclose(meta["normalization"]["window"], np.percentile(inside, [0.5, 99.5]), rtol=1e-6)
    card = out.with_suffix(".md").read_text()
    assert f"the nnU-Net v2 dataset `{tmp_path / 'Dataset001_Heart'}`, 3 labelled cases, channel 0 (CT)" in card
    assert "la_007_0000.nii.gz" in card and "la_007_0001.nii.gz" not in card
    # the card says what the engine does to the window: its ends to -1 and 1
    from halo_seg.engine import normalize
    spec = meta["normalization"]
    lo, hi = spec["window"]
    mean, std = normalize.mean_std(np.zeros(3), spec)
    np.testing.assert_allclose(normalize.apply(np.array([lo - 50, lo, hi, hi + 50]), mean, std, spec), [-1, -1, 1, 1],
                               atol=1e-5)
    assert f"the window {lo:g}..{hi:g} (a CT window in HU), scaled to -1..1" in card

    r = _train("--dataset", tmp_path / "Dataset001_Heart", "--channel", "T2", "--out", tmp_path / "t2.safetensors")
    assert r.returncode == 0, r.stderr
    assert read_meta(tmp_path / "t2.safetensors")["normalization"] == {"kind": "zscore"}   # not a CT
    r = _train("--dataset", tmp_path / "Dataset001_Heart", "--out", tmp_path / "x.safetensors")
    assert r.returncode != 0 and "with --channel" in r.stderr
    r = _train("--dataset", tmp_path / "Dataset001_Heart", "--channel", "CT", "--classes", "5",
               "--out", tmp_path / "x.safetensors")
    assert r.returncode != 0 and "names 3 classes (background, heart, vessel)" in r.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_a_datasets_folds_share_its_ct_window_and_ensemble(tmp_path):
    # nnU-Net takes the window from the whole dataset: folds with windows of their own could not be averaged
    _nnunet(tmp_path / "d", cases=("a", "b", "c", "e"))
    r = _train("--dataset", tmp_path / "d", "--channel", "CT", "--folds", "2", "--out", tmp_path / "m.safetensors")
    assert r.returncode == 0, r.stderr
    folds = [tmp_path / f"m.fold{k}.safetensors" for k in (0, 1)]
    windows = [read_meta(f)["normalization"] for f in folds]
    assert windows[0] == windows[1] and windows[0]["kind"] == "window"
    assert "cross-validated Dice (mean over the folds' held-out volumes): heart " in r.stdout
    from halo_seg.engine.runner import segment
    segment(tmp_path / "d" / "imagesTs" / "la_020_0000.nii.gz", tmp_path / "ens.zarr", weights=[str(f) for f in folds],
            grid=(1, 1, 1), mode="whole")


def test_class_names_for_image_label_pairs(tmp_path):
    _, t2, lab = _case(0)
    np.save(tmp_path / "img.npy", t2)
    np.save(tmp_path / "lab.npy", lab)
    r = _train("--image", tmp_path / "img.npy", "--labels", tmp_path / "lab.npy", "--class-names", "liver", "spleen",
               "--out", tmp_path / "m.safetensors")
    assert r.returncode == 0, r.stderr
    assert read_meta(tmp_path / "m.safetensors")["classes"] == ["background", "liver", "spleen"]
    r = _train("--image", tmp_path / "img.npy", "--labels", tmp_path / "lab.npy", "--class-names", "liver",
               "--out", tmp_path / "n.safetensors")
    assert r.returncode != 0 and "1 --class-names for 3 classes" in r.stderr
    r = _train("--out", tmp_path / "n.safetensors")
    assert r.returncode != 0 and "--image/--labels pairs or --dataset DIR" in r.stderr


def test_batch_on_a_datasets_test_images_names_cases_as_their_labels(tmp_path):
    from halo_seg.batch import evaluate_folders, segment_folder
    root = tmp_path / "Dataset001_Heart"
    made = _nnunet(root, test=("la_020", "la_021"))
    files, choice = channel_cases(root / "imagesTs", "T2")
    assert {k: p.name for k, p in files.items()} == {"la_020": "la_020_0001.nii.gz", "la_021": "la_021_0001.nii.gz"}
    rows = segment_folder(root / "imagesTs", tmp_path / "out", log=lambda *_: None, channel="T2",
                          grid=(1, 1, 1), mode="whole")
    assert [(r["case"], r["status"]) for r in rows] == [("la_020", "done"), ("la_021", "done")]
    assert {p.name for p in (tmp_path / "out").glob("*.zarr")} == {"la_020.zarr", "la_021.zarr"}
    # the T2 file was segmented, not the CT: the same labels as segmenting that file alone
    from halo_seg.engine.runner import segment
    import zarr
    unc = {}
    for name, f in (("t2", "la_020_0001.nii.gz"), ("ct", "la_020_0000.nii.gz"), ("batch", None)):
        out = tmp_path / "out" / "la_020.zarr" if f is None else tmp_path / f"{name}.zarr"
        if f:
            segment(root / "imagesTs" / f, out, grid=(1, 1, 1), mode="whole")
        unc[name] = zarr.open_group(str(out), mode="r")["uncertainty"][:]
    np.testing.assert_array_equal(unc["batch"], unc["t2"])
    assert not np.array_equal(unc["batch"], unc["ct"])
    rows, summary, unmatched = evaluate_folders(tmp_path / "out", root / "labelsTs", distances=False,
                                                log=lambda *_: None)
    assert set(rows["case"].tolist()) == {"la_020", "la_021"} and not any(unmatched.values())
    # named as the dataset names its labels, not as the (default) model names its classes
    names = dict(zip(summary["label"].tolist(), summary["name"].tolist()))
    assert names[1] == "heart" and names[2] == "vessel"
    assert {(int(k), n) for k, n in zip(rows["label"], rows["name"]) if k in (1, 2)} == {(1, "heart"), (2, "vessel")}
    assert made["la_020"][2].max() == 2
    with pytest.raises(DatasetError, match="with --channel"):
        segment_folder(root / "imagesTs", tmp_path / "out2", log=lambda *_: None, grid=(1, 1, 1), mode="whole")
    with pytest.raises(VolumeError, match="is a dataset folder .* test images are in .*imagesTs"):
        segment_folder(root, tmp_path / "out2", log=lambda *_: None, grid=(1, 1, 1), mode="whole")


def test_batch_on_a_decathlon_test_folder_takes_the_modality(tmp_path):
    made = _msd(tmp_path / "Task01")
    files, choice = channel_cases(tmp_path / "Task01" / "imagesTs", "FLAIR")
    assert list(files) == ["BRATS_101"] and choice == {"timepoint": 0}
    np.testing.assert_allclose(np.asarray(open_volume(files["BRATS_101"], **choice).data), made["BRATS_101"][0][0])
    assert channel_cases(tmp_path / "Task01" / "imagesTr", "T1w")[1] == {"timepoint": 1}
    assert channel_cases(tmp_path / "Task01") is None                   # the dataset folder itself: not images


def test_info_describes_a_dataset_folder(tmp_path, capsys):
    from halo_seg.cli import main
    _nnunet(tmp_path / "d", test=("x", "y"))
    _msd(tmp_path / "m")
    assert main(["info", str(tmp_path / "d")]) == 0 and main(["info", str(tmp_path / "m")]) == 0
    nn, msd = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert nn["layout"] == "nnU-Net v2" and nn["labelled_cases"] == 3 and nn["test_images"] == 2
    assert nn["channels"] == {"0": "CT", "1": "T2"} and nn["classes"] == {"0": "background", "1": "heart", "2": "vessel"}
    assert msd["dataset"] == "BRATS" and msd["labelled_cases"] == 2 and msd["test_images"] == 1
    assert msd["channels"] == {"0": "FLAIR", "1": "T1w"}


def test_nnunet_explicit_case_list_is_followed(tmp_path):
    # dataset.json may list each case's files ("dataset"), named as the folders need not be
    made = _nnunet(tmp_path / "d")
    root = tmp_path / "d"
    (root / "imagesTr" / "la_007_0001.nii.gz").rename(root / "imagesTr" / "other_t2.nii.gz")
    meta = json.loads((root / "dataset.json").read_text())
    meta["dataset"] = {"la_007": {"images": ["imagesTr/la_007_0000.nii.gz", "imagesTr/other_t2.nii.gz"],
                                  "label": "labelsTr/la_007.nii.gz"},
                       "la_003": {"images": ["imagesTr/la_003_0000.nii.gz", "imagesTr/la_003_0001.nii.gz"],
                                  "label": str(root / "labelsTr" / "la_003.nii.gz")}}   # absolute paths too
    (root / "dataset.json").write_text(json.dumps(meta))
    ds = read_dataset(root, "T2")
    assert ds.cases == ["la_003", "la_007"] and ds.images[1].name == "other_t2.nii.gz"
    np.testing.assert_array_equal(np.asarray(open_volume(ds.images[1]).data), made["la_007"][1])
    meta["dataset"]["la_003"] = {"images": ["imagesTr/la_003_0000.nii.gz"], "label": "labelsTr/la_003.nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="'images' \\(one per channel\\)"):
        read_dataset(root, "T2")


def test_train_interactive_takes_a_datasets_cases(tmp_path, capsys):
    import argparse
    from halo_seg.cli import _user_volumes, main
    from halo_seg.interactive.model_io import load_memnet
    made = _nnunet(tmp_path / "d")
    a = argparse.Namespace(images=None, labels=None, dataset=str(tmp_path / "d"), channel="T2", timepoint=None,
                           regions=None)
    got = _user_volumes(a)
    assert len(got) == 3
    for (image, labels, spacing, _), case in zip(got, ("la_003", "la_007", "la_010")):
        np.testing.assert_array_equal(image, made[case][1])            # the T2 files, not the CT ones
        np.testing.assert_array_equal(labels, made[case][2])
        assert spacing == (1.0, 1.0, 1.5)
    out = tmp_path / "m.safetensors"
    common = ["--iterations", "1", "--batch", "2", "--sweeps", "1", "--sweep-steps", "2", "--workers", "0",
              "--size", "32", "--width", "4", "--out", str(out)]
    assert main(["train-interactive", *common, "--dataset", str(tmp_path / "d"), "--channel", "T2"]) == 0
    assert {"user0", "user1", "user2"} <= set(load_memnet(out)[1]["sources"])
    assert main(["train-interactive", *common, "--dataset", str(tmp_path / "d")]) == 2
    assert "with --channel" in capsys.readouterr().err
    assert main(["train-interactive", *common, "--dataset", str(tmp_path / "d"), "--channel", "all"]) == 2
    assert "the interactive network takes one channel" in capsys.readouterr().err


def test_dataset_options_that_contradict_each_other_are_refused(tmp_path, capsys):
    from halo_seg.batch import segment_folder
    from halo_seg.cli import main
    _nnunet(tmp_path / "d")
    d, out = str(tmp_path / "d"), str(tmp_path / "m.safetensors")
    for extra, says in ((["--image", "x.nii.gz", "--labels", "y.nii.gz"], "leave out --image and --labels"),
                        (["--timepoint", "0"], "--timepoint is not for it"),
                        (["--class-names", "a", "b"], "names the classes; leave out --class-names")):
        with pytest.raises(SystemExit) as exc:
            main(["train", "--dataset", d, "--channel", "CT", "--out", out, "--quiet", *extra])
        assert says in str(exc.value.code)
    assert not (tmp_path / "m.safetensors").exists()
    assert main(["train-interactive", "--dataset", d, "--channel", "CT", "--image", "x.nii.gz", "--out", out]) == 2
    assert "leave out --image, --labels and --timepoint" in capsys.readouterr().err
    _msd(tmp_path / "m")
    with pytest.raises(VolumeError, match="choose one with --channel, not --timepoint"):
        segment_folder(tmp_path / "m" / "imagesTs", tmp_path / "o", log=lambda *_: None, channel="FLAIR", timepoint=0)


def test_a_tiff_datasets_voxel_size_comes_from_nnunets_json(tmp_path):
    """nnU-Net keeps a TIFF case's voxel size in CASE.json beside its files (z, y, x): read with the
    images and labels, recorded by the model trained on them (segment resamples new stacks to it);
    nnU-Net's file wins over the TIFF's own calibration; a broken one is named."""
    import tifffile
    from halo_seg.engine.resample import model_spacing
    root = tmp_path / "Dataset002_Nuclei"
    for d in ("imagesTr", "labelsTr"):
        (root / d).mkdir(parents=True)
    spacing = {"cell_003": [2.0, 0.5, 0.5], "cell_007": [2.0, 0.5, 0.5], "cell_010": [3.0, 0.5, 0.5]}
    for k, (case, sp) in enumerate(spacing.items()):
        _, t2, lab = _case(k)
        tifffile.imwrite(root / "imagesTr" / f"{case}_0000.tif", t2)
        tifffile.imwrite(root / "labelsTr" / f"{case}.tif", lab)
        for d in ("imagesTr", "labelsTr"):
            (root / d / f"{case}.json").write_text(json.dumps({"spacing": sp}))
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "DAPI"}, "file_ending": ".tif",
                                                   "labels": {"background": 0, "nucleus": 1, "nucleolus": 2},
                                                   "numTraining": 3}))
    image = open_volume(root / "imagesTr" / "cell_010_0000.tif")
    assert image.spacing == (3.0, 0.5, 0.5) and image.spacing_known and image.meta["unit"] is None
    assert image.meta["spacing_from"] == str(root / "imagesTr" / "cell_010.json")
    assert open_volume(root / "labelsTr" / "cell_010.tif").spacing == (3.0, 0.5, 0.5)
    out = tmp_path / "nuclei.safetensors"
    r = _train("--dataset", root, "--out", out)
    assert r.returncode == 0, r.stderr
    assert model_spacing(read_meta(out)) == ((2.0, 0.5, 0.5), None)   # the median case's
    assert "differ in voxel size" in r.stdout
    # a TIFF whose own calibration says otherwise: nnU-Net trusts its file, and so does this reader
    _, t2, _ = _case(0)
    tifffile.imwrite(root / "imagesTr" / "cell_003_0000.tif", t2, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"spacing": 1.0, "unit": "um", "axes": "ZYX"})
    assert open_volume(root / "imagesTr" / "cell_003_0000.tif").spacing == (2.0, 0.5, 0.5)
    (root / "imagesTr" / "cell_003.json").unlink()
    own = open_volume(root / "imagesTr" / "cell_003_0000.tif")
    assert own.spacing == pytest.approx((1.0, 0.2, 0.2)) and own.meta["unit"] == "µm" and "spacing_from" not in own.meta
    (root / "imagesTr" / "cell_007.json").write_text(json.dumps({"spacing": [2.0, 0.5]}))
    with pytest.raises(VolumeError, match=r"cell_007.json: 'spacing' must be three positive numbers .* cell_007_0000"):
        open_volume(root / "imagesTr" / "cell_007_0000.tif")
    (root / "imagesTr" / "cell_007.json").write_text("{spacing: 2")
    with pytest.raises(VolumeError, match=r"cell_007.json \(nnU-Net's voxel size of cell_007_0000.tif\) cannot be read"):
        open_volume(root / "imagesTr" / "cell_007_0000.tif")
    (root / "imagesTr" / "cell_007.json").write_text(json.dumps({"note": "not a voxel size"}))
    assert not open_volume(root / "imagesTr" / "cell_007_0000.tif").spacing_known
