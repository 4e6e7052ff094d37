"""The quality model: features against hand-computed values, the logistic fit against a known law,
the file's checks, its use by the session, and `halo-seg train-quality` end to end."""
import json
import math

import numpy as np
import pytest
import torch

from halo_seg import InteractiveError, InteractiveSegmenter
from halo_seg.cli import main as cli_main
from halo_seg.interactive.memnet import MemSegNet
from halo_seg.interactive.model_io import save_memnet
from halo_seg.interactive.propagation import Propagation
from halo_seg.interactive.quality import FEATURES, SINGLE, QualityModel, fit_logistic, load_for, slice_features, sidecar
from halo_seg.interactive.roi import ROI, mask_bbox


def _prop(probs: dict, q: float = 0.5) -> Propagation:
    return Propagation(ROI(0, 0, 8), {z: torch.tensor(p, dtype=torch.float32) for z, p in probs.items()},
                       {z: q for z in probs})


def test_features_match_hand_computed_values():
    sq = np.zeros((8, 8), np.float32)
    sq[2:6, 2:6] = 0.9                       # 16 px
    shifted = np.roll(sq, 2, axis=1)         # overlaps sq on 8 px
    ann = {5: np.zeros((8, 8), bool)}
    ann[5][1:5, 1:5] = True                  # 16 px, the only annotated slice
    pred = np.zeros((10, 8, 8), bool)
    pred[5] = ann[5]
    pred[6], pred[7] = sq > 0.5, sq > 0.5
    plain = _prop({6: sq, 7: sq, 8: np.zeros((8, 8))}, q=0.8)
    mirrored = _prop({6: shifted, 7: sq}, q=0.6)
    f = slice_features([plain, mirrored], pred, ann)
    assert sorted(f) == [6, 7, 8]            # the annotated slice has none
    x = dict(zip(FEATURES, f[6]))
    assert x["q"] == pytest.approx(0.7)
    assert x["agree"] == pytest.approx(2 * 8 / 32) and x["one_pass"] == 0
    assert x["logdist"] == pytest.approx(math.log(2)) and x["outside"] == 1
    assert x["dist_ext"] == pytest.approx(1.0)   # one slice of extent
    assert x["empty"] == 0 and x["area_near"] == pytest.approx(0.0)
    y = dict(zip(FEATURES, f[7]))
    assert y["agree"] == 1 and y["conf"] == pytest.approx(0.9)
    assert y["smooth"] == pytest.approx(8 / 25)   # |16 - (16 + 0) / 2| / (16 + 8 + 1)
    z = dict(zip(FEATURES, f[8]))            # reached by the plain pass only, predicted empty
    assert z["one_pass"] == 1 and z["agree"] == 0 and z["empty"] == 1
    assert z["out_logdist"] == pytest.approx(math.log(4))
    single = slice_features([plain], pred, ann)
    assert single[8][FEATURES.index("one_pass")] == 0


def test_logistic_fit_recovers_a_known_law():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    y = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 2.0 * x[:, 1] + 0.3)))
    m = fit_logistic(x, y, FEATURES[:3], l2=0)
    w = np.array(m["w"]) / np.array(m["std"])
    assert w == pytest.approx([1.5, -2.0, 0.0], abs=0.05)
    model = QualityModel({"tta": m, "single": m})
    test = rng.normal(size=(5, 12))
    want = 1 / (1 + np.exp(-(1.5 * test[:, 0] - 2.0 * test[:, 1] + 0.3)))
    got = model.predict(dict(enumerate(test)), tta=True)
    assert [got[i] for i in range(5)] == pytest.approx(want, abs=0.02)
    extreme = model.predict({0: np.r_[-1e4, np.zeros(11)], 1: np.r_[1e4, np.zeros(11)]}, tta=True)
    assert extreme[0] == pytest.approx(0.0) and extreme[1] == pytest.approx(1.0)   # no overflow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    return save_memnet(MemSegNet(size=32, width=4), tmp_path_factory.mktemp("w") / "net.safetensors")


def _model(sha):
    rng = np.random.default_rng(1)
    mk = lambda feats: {"features": list(feats), "mean": [0.0] * len(feats), "std": [1.0] * len(feats),
                        "w": rng.normal(size=len(feats)).tolist(), "b": 0.1}
    return QualityModel({"tta": mk(FEATURES), "single": mk(SINGLE)}, {"weights_sha256": sha})


def test_model_file_round_trip_mismatch_and_corruption(tmp_path, weights):
    seg = InteractiveSegmenter(np.zeros((4, 16, 16), np.float32), device="cpu", weights=weights)
    assert seg.quality_model is None              # nothing fitted for these weights yet
    model = _model(seg.weights_meta["sha256"])
    path = model.save(sidecar(weights))
    loaded = load_for(seg.weights_meta)
    x = {0: np.linspace(0, 1, len(FEATURES))}
    assert loaded.predict(x, True) == model.predict(x, True)
    assert loaded.predict(x, False) != loaded.predict(x, True)
    _model("0123456789abcdef").save(path)
    with pytest.warns(UserWarning, match="fitted for other weights"):
        assert load_for(seg.weights_meta) is None
    bad = tmp_path / "bad.json"
    d = json.loads(path.read_text())
    d["models"]["tta"]["w"] = d["models"]["tta"]["w"][:-1]
    bad.write_text(json.dumps(d))
    with pytest.raises(InteractiveError, match="corrupt"):
        InteractiveSegmenter(np.zeros((4, 16, 16), np.float32), device="cpu", weights=weights, quality_model=bad)
    bad.write_text("{not json")
    with pytest.raises(InteractiveError, match="corrupt"):
        InteractiveSegmenter(np.zeros((4, 16, 16), np.float32), device="cpu", weights=weights, quality_model=bad)
    path.unlink()


def test_session_quality_comes_from_the_model(phantom, weights):
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    out = {}
    for name in ("head", "model"):
        seg = InteractiveSegmenter(image, device="cpu", weights=weights, tta=True, quality_stop=0,
                                   quality_model=None if name == "head" else _model("x"))
        seg.set_slice_mask(z, truth[z])
        seg.propagate()
        out[name] = seg
    feats = out["model"].slice_features
    assert feats and z not in feats
    want = _model("x").predict(feats, True)
    q = out["model"].quality
    assert [q[k] for k in sorted(want)] == pytest.approx([want[k] for k in sorted(want)])
    assert q[z] == 1.0
    head = out["head"].quality
    assert np.array_equal(np.isfinite(head), np.isfinite(q))     # same slices, other numbers
    assert not np.allclose(head[sorted(want)], q[sorted(want)])
    # with a model the recommendation goes where the most voxels are expected wrong, with the head
    # alone to the lowest predicted Dice
    pred = out["model"].prediction
    zs = np.flatnonzero(pred.any((1, 2)))
    cand = [k for k in want if zs.min() - 1 <= k <= zs.max() + 1]
    area = pred.sum((1, 2))
    near = {k: max(area[max(k - 1, 0):k + 2]) for k in cand}
    assert out["model"].recommend_slice() == max(cand, key=lambda k: ((1 - want[k]) * near[k], -k))
    hq = out["head"].quality
    hz = np.flatnonzero(out["head"].prediction.any((1, 2)))
    hcand = [k for k in np.flatnonzero(np.isfinite(hq)) if hz.min() - 1 <= k <= hz.max() + 1 and k != z]
    assert out["head"].recommend_slice() == min(hcand, key=lambda k: (hq[k], k))


def test_train_quality_command_fits_and_the_session_loads_it(phantom, weights, tmp_path, capsys):
    from halo_seg.io.labels import write_labels
    image, truth = phantom
    img_path, lab_path = tmp_path / "img.npy", tmp_path / "lab.zarr"
    np.save(img_path, image)
    write_labels(truth.astype(np.uint8), lab_path)
    rc = cli_main(["train-quality", "--weights", str(weights), "--image", str(img_path), "--labels", str(lab_path),
                   "--rounds", "2", "--threads", "1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["out"]
    assert out == str(sidecar(weights))
    d = json.loads(open(out).read())
    assert d["regions"] == [1] and d["models"]["tta"]["features"] == list(FEATURES)
    assert d["models"]["single"]["features"] == list(SINGLE)
    assert d["metrics"]["tta"]["slices"] > 0
    seg = InteractiveSegmenter(image, device="cpu", weights=weights)
    assert seg.quality_model is not None and seg.quality_model.models == d["models"]
    sidecar(weights).unlink()
    logz = FEATURES.index("logz")
    assert d["thickness"] == [1] and d["models"]["tta"]["mean"][logz] == 0
    # sessions on the volume resliced into 2-slice-thick slices join the fit: more slices, and the
    # thickness feature now varies
    rc = cli_main(["train-quality", "--weights", str(weights), "--image", str(img_path), "--labels", str(lab_path),
                   "--rounds", "2", "--threads", "1", "--thickness", "1", "2", "--out", str(tmp_path / "q2.json")])
    assert rc == 0
    d2 = json.loads((tmp_path / "q2.json").read_text())
    assert d2["thickness"] == [1, 2] and d2["metrics"]["tta"]["slices"] > d["metrics"]["tta"]["slices"]
    assert d2["models"]["tta"]["mean"][logz] > 0
    rc = cli_main(["train-quality", "--weights", str(weights), "--image", str(img_path), "--labels", str(lab_path),
                   "--thickness", "0"])
    assert rc == 2 and "thickness" in capsys.readouterr().err
    rc = cli_main(["train-quality", "--weights", str(weights), "--image", str(img_path), "--labels", str(lab_path),
                   "--regions", "9", "--rounds", "1"])
    assert rc == 2 and "region 9" in capsys.readouterr().err
    assert not sidecar(weights).exists()
    rc = cli_main(["train-quality", "--weights", str(weights), "--image", str(img_path)])
    assert rc == 2 and "--image needs --labels" in capsys.readouterr().err
    np.save(tmp_path / "short.npy", image[:-1])
    rc = cli_main(["train-quality", "--weights", str(weights), "--image", str(tmp_path / "short.npy"),
                   "--labels", str(lab_path)])
    assert rc == 2 and "differ in shape" in capsys.readouterr().err
    assert not sidecar(weights).exists()


def test_the_quality_model_judges_where_sweeps_end(phantom, monkeypatch):
    from halo_seg.interactive import propagation
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    zs = np.flatnonzero(truth.any((1, 2)))

    def constant(b):   # a model that ignores its features: predicted Dice sigmoid(b)
        m = {"features": list(SINGLE), "mean": [0.0] * len(SINGLE), "std": [1.0] * len(SINGLE),
             "w": [0.0] * len(SINGLE), "b": b}
        return QualityModel({"tta": dict(m, features=list(FEATURES), mean=[0.0] * len(FEATURES),
                                           std=[1.0] * len(FEATURES), w=[0.0] * len(FEATURES)),
                             "single": m})

    extents = {}
    for b in (20.0, -20.0):
        seg = InteractiveSegmenter(image, device="cpu", tta=False, quality_model=constant(b))
        assert seg.quality_stop == propagation.MODEL_STOP
        seg.add_box(z, *mask_bbox(truth[z]))
        extents[b] = np.flatnonzero(seg.propagate().any((1, 2)))
    assert len(extents[20.0]) >= 0.8 * len(zs)
    assert extents[-20.0].tolist() == [z]
    # switched off, the head judges again with its own threshold, whatever the model says
    monkeypatch.setattr(propagation, "STOP_BY_MODEL", False)
    seg = InteractiveSegmenter(image, device="cpu", tta=False, quality_model=constant(-20.0))
    assert seg.stop_model is None and seg.quality_stop == propagation.QUALITY_STOP
    seg.add_box(z, *mask_bbox(truth[z]))
    assert len(np.flatnonzero(seg.propagate().any((1, 2)))) > 1


def test_distances_to_the_annotations_are_measured_in_pixels_not_slices(tmp_path):
    from halo_seg.interactive.quality import distance_scale
    assert distance_scale((3.0, 1.0, 1.0)) == 3.0 and distance_scale((1.0, 0.5, 0.5)) == 2.0
    assert distance_scale((2.0, 2.0, 2.0)) == 1.0
    torch.manual_seed(0)
    w = save_memnet(MemSegNet(), tmp_path / "w.safetensors")
    truth = np.zeros((12, 32, 32), bool)
    truth[2:10, 8:24, 8:24] = True
    image = truth.astype(np.float32) + np.random.default_rng(0).normal(0, 0.2, truth.shape).astype(np.float32)
    feats = {}
    for spacing in [(1.0, 1.0, 1.0), (3.0, 1.0, 1.0), (6.0, 2.0, 2.0)]:
        seg = InteractiveSegmenter(image, spacing=spacing, device="cpu", weights=w, tta=False)
        seg.add_box(5, 8, 8, 23, 23)
        seg.propagate()
        feats[spacing] = seg.slice_features
        area5 = float(seg.prediction[5].sum())    # the same box-segmented slice at every spacing
    iso, thick, thick2 = feats.values()
    assert iso and iso.keys() == thick.keys() == thick2.keys()
    i, j = FEATURES.index("logdist"), FEATURES.index("dist_ext")
    for z, f in iso.items():
        d = abs(z - 5)
        assert f[i] == pytest.approx(np.log1p(d)) and thick[z][i] == pytest.approx(np.log1p(3 * d))
        np.testing.assert_allclose(thick2[z], thick[z])            # only the ratio of spacings counts
        assert thick[z][j] == pytest.approx(f[j])                    # relative to the extent: unchanged
        assert f[FEATURES.index("logz")] == 0 and thick[z][FEATURES.index("logz")] == pytest.approx(np.log(3))
        e = FEATURES.index("empty")
        assert thick[z][FEATURES.index("empty_logz")] == pytest.approx(thick[z][e] * np.log(3))
        radius = np.sqrt(area5 / np.pi)              # of the annotated slice's mask, in pixels
        r = FEATURES.index("logrdist")
        assert f[r] == pytest.approx(np.log1p(d / radius)) and thick[z][r] == pytest.approx(np.log1p(3 * d / radius))
        rest = [k for k in range(len(FEATURES)) if FEATURES[k] not in ("logdist", "out_logdist", "logz", "empty_logz",
                                                                       "logrdist", "out_logrdist")]
        np.testing.assert_allclose(thick[z][rest], f[rest])


def test_sweeps_see_the_size_relative_distance_the_reported_quality_sees(phantom):
    # the stop rule judges each slice inside the sweep from crop-space areas, the reported quality
    # after it from the volume's pixels: both must give the object's radius in the same unit
    from halo_seg.interactive import quality
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    seen = {}
    model = QualityModel({name: {"features": list(f), "mean": [0.0] * len(f), "std": [1.0] * len(f),
                                 "w": [0.0] * len(f), "b": 20.0} for name, f in (("tta", FEATURES), ("single", SINGLE))})
    real_predict = model.predict

    def spy(feats, tta):
        if not tta and len(feats) == 1:    # a sweep judging one slice (the reported quality: all at once)
            seen.update(feats)
        return real_predict(feats, tta)
    model.predict = spy
    seg = InteractiveSegmenter(image, device="cpu", tta=False, quality_model=model)
    seg.add_box(z, *mask_bbox(truth[z]))
    seg.propagate()
    after = seg.slice_features
    r = quality.FEATURES.index("logrdist")
    past = [k for k in seen if k in after and k != z]
    assert len(past) >= 3
    for k in past:
        assert seen[k][r] == pytest.approx(after[k][r], rel=0.05), k
