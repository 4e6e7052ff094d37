"""Label comparison against independent computations: Dice from metrics.dice, surface distances by
brute force over surface voxels found by scikit-image's find_boundaries."""
import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage.segmentation import find_boundaries

from halo_seg import evaluate
from halo_seg.cli import main
from halo_seg.evaluate import compare_labels
from halo_seg.io import VolumeError
from halo_seg.metrics import dice

SPACING = (2.0, 0.7, 0.5)


def _pair():
    zz, yy, xx = np.indices((20, 50, 60))
    def ball(c, r):
        return sum(((g - cc) * s) ** 2 for g, cc, s in zip((zz, yy, xx), c, SPACING)) <= r * r
    truth = np.zeros(zz.shape, np.uint8)
    pred = np.zeros(zz.shape, np.uint8)
    truth[ball((10, 20, 20), 8.0)] = 1
    pred[ball((10, 22, 21), 7.0)] = 1            # shifted and smaller
    truth[ball((8, 35, 45), 5.0)] = 4
    pred[ball((8, 35, 45), 5.0) & (xx < 47)] = 4  # cut on one side
    pred[2:4, 2:5, 50:55] = 9                     # a label the reference lacks
    return pred, truth


def _brute(a, b):
    def pts(m):
        pad = np.pad(m, 1)
        return np.argwhere(find_boundaries(pad, mode="inner", connectivity=1) & pad) * np.asarray(SPACING)
    pa, pb = pts(a), pts(b)
    d_ab, d_ba = cKDTree(pb).query(pa)[0], cKDTree(pa).query(pb)[0]
    return max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)), max(d_ab.max(), d_ba.max()), \
        (d_ab.mean() + d_ba.mean()) / 2


@pytest.mark.parametrize("slab", [1 << 23, 50 * 60 * 3])
def test_compare_labels_against_independent_computations(monkeypatch, slab):
    monkeypatch.setattr(evaluate, "SLAB_VOXELS", slab)
    pred, truth = _pair()
    t = compare_labels(pred, truth, SPACING)
    assert t["label"].tolist() == [1, 4, 9]
    for i, k in enumerate((1, 4)):
        a, b = pred == k, truth == k
        assert t["dice"][i] == pytest.approx(dice(a, b))
        assert t["jaccard"][i] == pytest.approx((a & b).sum() / (a | b).sum())
        assert t["volume_difference"][i] == pytest.approx((a.sum() - b.sum()) / b.sum())
        hd95, hd, assd = _brute(a, b)
        assert (t["hd95"][i], t["hausdorff"][i], t["assd"][i]) == pytest.approx((hd95, hd, assd), rel=1e-9)
    assert t["dice"][2] == 0 and np.isnan(t["hd95"][2]) and np.isnan(t["volume_difference"][2])
    only = compare_labels(pred, truth, SPACING, labels=[4, 5], distances=False)
    assert only["label"].tolist() == [4, 5] and only["dice"][1] == 1.0 and "hd95" not in only


def test_refusals_and_cli(tmp_path, capsys):
    pred, truth = _pair()
    with pytest.raises(VolumeError, match="one voxel grid"):
        compare_labels(pred[:-1], truth)
    with pytest.raises(VolumeError, match="not labels"):
        compare_labels(pred.astype(np.float32), truth)
    np.save(tmp_path / "p.npy", pred)
    np.save(tmp_path / "t.npy", truth)
    assert main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "t.npy"), "--csv", str(tmp_path / "e.csv")]) == 0
    out = capsys.readouterr().out
    assert f"{dice(pred == 1, truth == 1):.3f}" in out and "mean Dice" in out
    assert (tmp_path / "e.csv").read_text().splitlines()[0].startswith("label,dice,jaccard")
    np.save(tmp_path / "s.npy", truth[:, :-1])
    assert main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "s.npy")]) == 2
    assert "one voxel grid" in capsys.readouterr().err
    # a reference stored as float64 with whole values is labels; with fractions it is refused
    np.save(tmp_path / "tf.npy", truth.astype(np.float64))
    assert main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "tf.npy"), "--csv", str(tmp_path / "f.csv")]) == 0
    assert (tmp_path / "f.csv").read_text() == (tmp_path / "e.csv").read_text()
    np.save(tmp_path / "th.npy", truth * 0.5)
    assert main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "th.npy")]) == 2
    assert "th.npy holds float64 values that are not labels (e.g. 0.5)" in capsys.readouterr().err
    # a label asked for and in neither volume scores 1 by convention, and is said to be in neither
    assert main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "t.npy"), "--labels", "1", "77"]) == 0
    out = capsys.readouterr().out
    assert "note: label 77 is in neither volume" in out and "label 1 " not in out.split("note:")[1]


@pytest.mark.parametrize("slab", [40, 10 ** 6])
def test_disagreement_per_slice_counts_each_labels_errors(monkeypatch, slab):
    monkeypatch.setattr(evaluate, "SLAB_VOXELS", slab)   # slabs of one slice and the whole volume at once
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 4, (9, 7, 8)).astype(np.uint16)
    truth = rng.integers(0, 4, (9, 7, 8)).astype(np.uint16)
    got = evaluate.disagreement_per_slice(pred, truth, [1, 3, 7])
    assert sorted(got) == [1, 3, 7]
    for k in (1, 3, 7):
        wrong = (pred == k) != (truth == k)
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            np.testing.assert_array_equal(got[k][axis], wrong.sum(other))
    assert not any(c.any() for c in got[7])   # a label in neither volume disagrees nowhere
    with pytest.raises(VolumeError, match="shape"):
        evaluate.disagreement_per_slice(pred, truth[:4], [1])


def _f1_reference(pred, truth, thr):
    """Whole-array one-to-one matching, written independently of compare_instances (as the
    split_nuclei benchmark scores): every pair's IoU from a dense intersection table."""
    ids_p, ids_t = [k for k in np.unique(pred) if k], [k for k in np.unique(truth) if k]
    tp = sum(1 for a in ids_p for b in ids_t
             if ((pred == a) & (truth == b)).sum() / ((pred == a) | (truth == b)).sum() >= thr)
    return tp, len(ids_p) - tp, len(ids_t) - tp


@pytest.mark.parametrize("slab", [30, 10 ** 6])
def test_compare_instances_matches_objects_one_to_one(monkeypatch, slab):
    monkeypatch.setattr(evaluate, "SLAB_VOXELS", slab)
    truth = np.zeros((8, 10, 12), np.uint16)
    pred = np.zeros_like(truth)
    truth[1:4, 1:5, 1:5] = 3;  pred[1:4, 1:5, 1:5] = 70          # the same object, another id: IoU 1
    truth[1:7, 6:9, 6:9] = 5;  pred[1:7, 6:9, 6:8] = 2           # IoU 2/3
    truth[5:7, 1:3, 1:3] = 9;  pred[5:7, 1:3, 1:2] = 4           # IoU 1/2
    truth[4:8, 0:2, 9:12] = 11                                    # missed
    pred[0:2, 8:10, 0:3] = 8                                      # made up
    t = evaluate.compare_instances(pred, truth, thresholds=(0.75, 0.5, 0.6))
    assert list(t["iou"]) == [0.5, 0.6, 0.75]
    for i, thr in enumerate(t["iou"]):
        assert (t["tp"][i], t["fp"][i], t["fn"][i]) == _f1_reference(pred, truth, thr)
    assert list(t["tp"]) == [3, 2, 1]
    assert t["f1"][0] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1)) and t["ap"][0] == pytest.approx(3 / 5)
    assert t["mean_matched_iou"][0] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    # the challenge's SEG: object 9 is covered by exactly half, not more, so it counts 0 like the missed 11
    assert list(t["seg"]) == pytest.approx([(1 + 2 / 3) / 4] * 3)
    with pytest.raises(VolumeError, match=r"\[0.5, 1\]"):
        evaluate.compare_instances(pred, truth, thresholds=(0.3,))
    with pytest.raises(VolumeError, match="shape"):
        evaluate.compare_instances(pred, truth[:4])


def test_compare_instances_on_random_objects_equals_the_reference():
    from skimage.measure import label
    rng = np.random.default_rng(3)
    truth = label(rng.random((10, 24, 24)) > 0.8).astype(np.int32)
    pred = label(np.roll(truth > 0, 1, axis=2) | (rng.random(truth.shape) > 0.97)).astype(np.int32)
    t = evaluate.compare_instances(pred, truth, thresholds=(0.5, 0.7))
    for i, thr in enumerate(t["iou"]):
        assert (t["tp"][i], t["fp"][i], t["fn"][i]) == _f1_reference(pred, truth, thr)


def test_cli_evaluate_instances(tmp_path, capsys):
    truth = np.zeros((6, 8, 8), np.uint8)
    truth[1:3, 1:4, 1:4] = 1
    truth[3:5, 5:8, 5:8] = 2
    pred = np.zeros_like(truth)
    pred[1:3, 1:4, 1:4] = 7
    np.save(tmp_path / "p.npy", pred)
    np.save(tmp_path / "t.npy", truth)
    assert main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "t.npy"), "--instances", "--iou", "0.5", "0.9",
                 "--csv", str(tmp_path / "o.csv")]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "  0.50      1      0      1" in out
    rows = (tmp_path / "o.csv").read_text().splitlines()
    assert rows[0].startswith("iou,tp,fp,fn") and len(rows) == 3
    assert main(["evaluate", str(tmp_path / "p.npy"), str(tmp_path / "t.npy"), "--instances", "--iou", "0.2"]) != 0


def test_two_scans_of_one_shape_are_not_compared_voxel_by_voxel(tmp_path, capsys):
    """Labels of one shape on another voxel size, or placed elsewhere in the world, were compared
    voxel by voxel (Dice 1.0 for a mask shifted 50 mm); measure read another scan's intensities and
    train paired another scan's labels likewise."""
    import nibabel as nib
    lab = np.zeros((10, 12, 14), np.uint8)
    lab[3:7, 3:8, 3:9] = 1
    shifted = np.eye(4)
    shifted[0, 3] = 50.0
    for name, aff, codes in (("a", np.eye(4), 1), ("thick", np.diag([1.0, 1.0, 3.0, 1.0]), 1), ("moved", shifted, 1),
                             ("nowhere", shifted, 0)):
        img = nib.Nifti1Image(lab.transpose(2, 1, 0), aff)
        img.set_sform(aff, code=codes)
        img.set_qform(aff, code=codes)
        nib.save(img, tmp_path / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((14, 12, 10), np.float32), np.diag([1.0, 1.0, 3.0, 1.0])), tmp_path / "t2.nii.gz")
    p = lambda n: str(tmp_path / f"{n}.nii.gz")   # noqa: E731
    assert main(["evaluate", p("a"), p("thick")]) == 2
    assert "voxels of 1 x 1 x 1 and" in capsys.readouterr().err
    assert main(["evaluate", p("a"), p("moved")]) == 2
    assert "lie 50 mm apart in the world" in capsys.readouterr().err
    assert main(["evaluate", p("a"), p("nowhere")]) == 0   # a file with no coded space lies nowhere in particular
    assert "mean Dice 1.000" in capsys.readouterr().out
    assert main(["measure", p("a"), "--image", p("t2")]) == 2
    assert "intensities would be read from other voxels" in capsys.readouterr().err
    assert main(["train", "--image", p("t2"), "--labels", p("a"), "--out", str(tmp_path / "w.safetensors"),
                 "--iterations", "1", "--quiet"]) == 2
    assert "learn each voxel's label from another voxel" in capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()
    for cmd, out in (("train-quality", "q.quality.json"), ("train-interactive", "i.safetensors")):
        assert main([cmd, "--image", p("t2"), "--labels", p("a"), "--out", str(tmp_path / out)]) == 2
        assert "label would come from another voxel" in capsys.readouterr().err
        assert not (tmp_path / out).exists()
    (tmp_path / "pred").mkdir()
    (tmp_path / "truth").mkdir()
    (tmp_path / "a.nii.gz").rename(tmp_path / "pred" / "case.nii.gz")
    (tmp_path / "moved.nii.gz").rename(tmp_path / "truth" / "case.nii.gz")
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth")]) == 1   # batch: that case failed
    assert "apart in the world" in capsys.readouterr().out
