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
from halo_seg.interactive.model_io import default_memnet_installed, save_memnet
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
    with pytest.raises(InteractiveError, match="other weights"):   # named explicitly: an error, not a warning
        InteractiveSegmenter(np.zeros((4, 16, 16), np.float32), device="cpu", weights=weights, quality_model=path)
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
    from halo_seg.interactive.model_io import load_memnet
    image, truth = phantom
    z = int(truth.sum((1, 2)).argmax())
    model = _model(load_memnet(weights, "cpu")[1]["sha256"])
    out = {}
    for name in ("head", "model"):
        seg = InteractiveSegmenter(image, device="cpu", weights=weights, tta=True, quality_stop=0,
                                   quality_model=None if name == "head" else model)
        seg.set_slice_mask(z, truth[z])
        seg.propagate()
        out[name] = seg
    feats = out["model"].slice_features
    assert feats and z not in feats
    want = model.predict(feats, True)
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


def test_weighted_fit_equals_repeating_samples():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3))
    y = np.clip(1 / (1 + np.exp(-(x[:, 0] - x[:, 1]))) + rng.normal(0, 0.1, 300), 0, 1)
    reps = rng.integers(1, 4, size=300)
    a = fit_logistic(x, y, FEATURES[:3], l2=0, weight=reps / reps.mean())
    b = fit_logistic(np.repeat(x, reps, 0), np.repeat(y, reps), FEATURES[:3], l2=0)
    test = dict(enumerate(rng.normal(size=(20, 3))))
    pa = QualityModel({"tta": a, "single": a}).predict(test, True)
    pb = QualityModel({"tta": b, "single": b}).predict(test, True)
    assert [pa[i] for i in range(20)] == pytest.approx([pb[i] for i in range(20)], abs=1e-4)
    plain = QualityModel({"tta": (c := fit_logistic(x, y, FEATURES[:3], l2=0)), "single": c}).predict(test, True)
    assert max(abs(plain[i] - pb[i]) for i in range(20)) > 1e-3   # the weights did change the fit


def test_pooling_moves_a_model_toward_new_objects_by_their_share():
    """A prior data set following one law and a few new samples following the opposite law: the
    pooled model lies between them, the closer to the new law the larger the new samples' share."""
    from halo_seg.train.quality_fit import _fit
    rng = np.random.default_rng(3)

    def data(n, sign):
        x = rng.normal(size=(n, len(FEATURES)))
        return x, 1 / (1 + np.exp(-sign * 2 * x[:, 0]))
    prior = {name: data(2000, +1) for name in ("tta", "single")}
    new = {name: data(60, -1) for name in ("tta", "single")}
    probe = {0: np.r_[1.5, np.zeros(len(FEATURES) - 1)]}

    def at(models):
        return QualityModel(models).predict(probe, True)[0]
    p_prior, p_new = at(_fit(prior)), at(_fit(new))
    assert p_prior > 0.9 and p_new < 0.1
    shares = [at(_fit(new, prior, s)) for s in (0.1, 0.5, 0.9)]
    assert p_prior > shares[0] > shares[1] > shares[2] > p_new
    assert shares[1] == pytest.approx(0.5, abs=0.1)


def test_samples_file_round_trip_and_checks(tmp_path):
    from halo_seg.interactive.quality import load_samples, save_samples
    rng = np.random.default_rng(4)
    samples = {name: (rng.normal(size=(7, len(FEATURES))), rng.random(7)) for name in ("tta", "single")}
    path = save_samples(tmp_path / "s.npz", samples, "abc")
    back = load_samples(path, "abc")
    for name in samples:
        assert back[name][0] == pytest.approx(samples[name][0], abs=1e-6)
        assert back[name][1] == pytest.approx(samples[name][1], abs=1e-6)
    with pytest.raises(ValueError, match="other weights"):
        load_samples(path, "def")
    np.savez(tmp_path / "f.npz", features=np.array(FEATURES[:-1]), weights_sha256=np.array("abc"),
             **{f"{n}_{p}": np.zeros((1, 1)) for n in ("tta", "single") for p in "xy"})
    with pytest.raises(ValueError, match="other features"):
        load_samples(tmp_path / "f.npz", "abc")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="missing or corrupt"):
        load_samples(tmp_path / "bad.npz", "abc")
    with pytest.raises(ValueError, match="missing or corrupt"):
        load_samples(tmp_path / "none.npz", "abc")


def test_fit_quality_saves_its_samples_pools_reports_progress_and_cancels(phantom, weights, tmp_path):
    from halo_seg.interactive.quality import load_samples, samples_path
    from halo_seg.train.quality_fit import _fit, fit_quality, train_quality
    image, truth = phantom
    labels = truth.astype(np.uint8)
    quiet = lambda *_: None  # noqa: E731
    (tmp_path / "notes.json").write_text("{}")
    for out, msg in (("q.npy", "written as a .json file"), ("notes.json", "is not a quality model")):
        with pytest.raises(ValueError, match=msg):      # before any session is simulated
            train_quality(image, labels, [1], weights=weights, out=tmp_path / out, rounds=2, log=quiet)
    assert (tmp_path / "notes.json").read_text() == "{}" and not (tmp_path / "q.npy").exists()
    model, path = train_quality(image, labels, [1], weights=weights, out=tmp_path / "q.json", rounds=2, log=quiet)
    model, path = train_quality(image, labels, [1], weights=weights, out=path, rounds=2, log=quiet)   # a refit
    sha = model.meta["weights_sha256"]
    samples = load_samples(samples_path(path), sha)
    assert len(samples["tta"][1]) == model.meta["metrics"]["tta"]["slices"]
    # the saved samples are what the model was fitted on: refitting them gives the same predictions
    refit = QualityModel(_fit(samples))
    x = dict(enumerate(samples["tta"][0]))
    want, got = model.predict(x, True), refit.predict(x, True)
    assert max(abs(want[i] - got[i]) for i in x) < 1e-3

    calls = []
    pooled, new = fit_quality(image, labels, [1], weights=weights, rounds=2, pool=samples_path(path), share=0.5,
                              log=quiet, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]   # one object: 2 passes x with and without the mirror
    assert pooled.meta["pooled_with"] == str(samples_path(path)) and pooled.meta["share"] == 0.5
    assert len(new["tta"][1]) > 0
    with pytest.raises(InterruptedError):
        fit_quality(image, labels, [1], weights=weights, rounds=2, log=quiet, cancel=lambda: True)
    torch.manual_seed(1)
    other = save_memnet(MemSegNet(size=32, width=4), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="other weights"):
        fit_quality(image, labels, [1], weights=other, rounds=2, log=quiet, pool=samples_path(path))
    with pytest.raises(ValueError, match="share"):
        fit_quality(image, labels, [1], weights=weights, rounds=2, log=quiet, pool=samples_path(path), share=0)
    with pytest.raises(ValueError, match="do not match the image"):
        fit_quality(image, labels[:, :-1], [1], weights=weights, rounds=2, log=quiet)


def test_use_quality_model_checks_it_and_makes_it_the_judge(phantom, weights):
    from halo_seg.interactive import propagation
    image, truth = phantom
    seg = InteractiveSegmenter(image, device="cpu", weights=weights, tta=False, quality_model=None)
    assert seg.stop_model is None and seg.quality_stop == propagation.QUALITY_STOP
    m = _model(seg.weights_meta["sha256"])
    seg.use_quality_model(m)
    assert seg.quality_model is m and seg.quality_stop == propagation.MODEL_STOP
    assert seg.stop_model is (m if propagation.STOP_BY_MODEL else None)
    with pytest.raises(InteractiveError, match="other weights"):
        seg.use_quality_model(_model("x"))
    with pytest.raises(InteractiveError, match="QualityModel"):
        seg.use_quality_model("q.json")
    assert seg.quality_model is m                       # unchanged by the refusals
    seg.use_quality_model(None)
    assert seg.quality_model is None and seg.quality_stop == propagation.QUALITY_STOP
    # a threshold given by the caller stays; the model reports the quality from the next propagation
    seg = InteractiveSegmenter(image, device="cpu", weights=weights, tta=False, quality_model=None, quality_stop=0)
    seg.use_quality_model(m)
    assert seg.quality_stop == 0
    z = int(truth.sum((1, 2)).argmax())
    seg.add_box(z, *mask_bbox(truth[z]))
    seg.propagate()
    want = m.predict(seg.slice_features, tta=False)
    assert want and all(seg.quality[k] == pytest.approx(v) for k, v in want.items())


def test_train_quality_command_pools_and_never_overwrites_the_shipped_model(phantom, weights, tmp_path, capsys):
    from halo_seg.io.labels import write_labels
    image, truth = phantom
    img_path, lab_path = tmp_path / "img.npy", tmp_path / "lab.zarr"
    np.save(img_path, image)
    write_labels(truth.astype(np.uint8), lab_path)
    rc = cli_main(["train-quality", "--image", str(img_path), "--labels", str(lab_path), "--rounds", "1"])
    assert rc == 2 and "give --out" in capsys.readouterr().err
    rc = cli_main(["train-quality", "--weights", str(weights), "--image", str(img_path), "--labels", str(lab_path),
                   "--out", str(tmp_path / "s.json"), "--share", "0.3"])
    assert rc == 2 and "give --pool" in capsys.readouterr().err and not (tmp_path / "s.json").exists()
    base = ["train-quality", "--weights", str(weights), "--image", str(img_path), "--labels", str(lab_path),
            "--rounds", "2", "--threads", "1"]
    assert cli_main(base + ["--out", str(tmp_path / "a.json")]) == 0
    assert (tmp_path / "a.npz").exists()                       # its samples, for a later pooled fit
    assert cli_main(base + ["--out", str(tmp_path / "b.json"), "--pool", str(tmp_path / "a.npz"),
                            "--share", "0.3"]) == 0
    d = json.loads((tmp_path / "b.json").read_text())
    assert d["pooled_with"] == str(tmp_path / "a.npz") and d["share"] == 0.3
    capsys.readouterr()
    assert cli_main(base + ["--out", str(tmp_path / "c.json"), "--pool", str(tmp_path / "none.npz")]) == 2
    assert "missing or corrupt" in capsys.readouterr().err


@pytest.mark.skipif(not default_memnet_installed(), reason="no shipped interactive weights")
def test_the_shipped_samples_are_what_the_shipped_quality_model_was_fitted_on():
    """Pooled fits ("Learn from objects", --pool) adjust the shipped model by pooling its samples:
    refitting those alone must give the shipped model back, or a pooled fit drifts from it."""
    from halo_seg.interactive.model_io import load_memnet
    from halo_seg.interactive.quality import load_samples, sample_path_for
    from halo_seg.train.quality_fit import _fit
    meta = load_memnet("default", "cpu")[1]
    shipped = load_for(meta)
    samples = load_samples(sample_path_for(meta), meta["sha256"])
    assert len(samples["tta"][1]) == shipped.meta["metrics"]["tta"]["slices"]
    refit = QualityModel(_fit(samples))
    for name, tta in (("tta", True), ("single", False)):
        x = samples[name][0]
        probe = dict(enumerate(x[:: max(1, len(x) // 500)]))
        want, got = shipped.predict(probe, tta), refit.predict(probe, tta)
        assert max(abs(want[i] - got[i]) for i in probe) < 1e-3, name


def test_fit_quality_across_another_axis_is_the_fit_on_the_moved_volume(phantom, weights):
    """axes=(1,) simulates sessions slicing across axis 1: the same samples as axis-0 sessions on the
    volume with axis 1 moved first (and its spacing with it)."""
    from halo_seg.train.quality_fit import fit_quality
    image, truth = phantom
    labels = truth.astype(np.uint8)
    quiet = lambda *_: None  # noqa: E731
    spacing = (1.0, 0.8, 1.2)
    across, s1 = fit_quality(image, labels, [1], weights=weights, rounds=2, log=quiet, spacing=spacing, axes=(1,))
    moved, s0 = fit_quality(np.moveaxis(image, 1, 0), np.moveaxis(labels, 1, 0), [1], weights=weights, rounds=2,
                            log=quiet, spacing=(0.8, 1.0, 1.2))
    assert across.meta["axes"] == [1] and moved.meta["axes"] == [0]
    for name in s0:
        np.testing.assert_allclose(s1[name][0], s0[name][0])
        np.testing.assert_allclose(s1[name][1], s0[name][1])
