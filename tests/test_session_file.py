"""Interactive sessions saved to a file and opened again: the same state, on the same image only."""
import json

import numpy as np
import pytest
import torch

from halo_seg import InteractiveError, InteractiveSegmenter
from halo_seg.interactive.memnet import MemSegNet
from halo_seg.interactive.model_io import default_memnet_installed, save_memnet
from halo_seg.interactive.roi import mask_bbox

needs_default = pytest.mark.skipif(not default_memnet_installed(), reason="no shipped interactive weights")


def _worked_session(image, truth, axis):
    """Box, propagation, a box on the recommended slice, a painted slice, a scribble and a click not
    yet used: every kind of state a session holds."""
    seg = InteractiveSegmenter(image, device="cpu", axis=axis, spacing=(1.0, 1.0, 2.0))
    t = np.moveaxis(truth, axis, 0)
    z = int(t.sum((1, 2)).argmax())
    seg.add_box(z, *mask_bbox(t[z]))
    seg.propagate()
    r = seg.recommend_slice()
    if t[r].any():
        seg.add_box(r, *mask_bbox(t[r]))
    else:
        seg.set_slice_mask(r, t[r])
    seg.propagate()
    zs = np.flatnonzero(t.any((1, 2)))
    seg.set_slice_mask(int(zs[0]), t[zs[0]])
    seg.add_scribble(int(zs[-1]), t[zs[-1]])
    ys, xs = np.nonzero(t[z])
    seg.add_click(z, ys[0], xs[0], positive=False)
    return seg


@needs_default
@pytest.mark.parametrize("axis", [0, 1])
def test_a_saved_session_comes_back_as_it_was(phantom, tmp_path, axis):
    image, truth = phantom
    seg = _worked_session(image, truth, axis)
    path = seg.save_session(tmp_path / "object")
    assert path.name == "object.npz" and not list(tmp_path.glob("*.part"))
    back = InteractiveSegmenter.from_session(path, image, device="cpu")
    assert back.axis == axis and back.spacing == seg.spacing and back.restored_propagation
    assert back.annotated_slices == seg.annotated_slices and back.painted_slices == seg.painted_slices
    for z in seg.annotated_slices:
        assert np.array_equal(back.annotation(z), seg.annotation(z))
    assert np.array_equal(back.prediction, seg.prediction)
    assert np.array_equal(back.quality, seg.quality, equal_nan=True)
    assert back.recommend_slice() == seg.recommend_slice()
    assert back.slice_features.keys() == seg.slice_features.keys()
    # the prompts waiting (the scribble, the click after a box) are used as they would have been
    assert np.array_equal(back.propagate(), seg.propagate())
    assert np.array_equal(back.quality, seg.quality, equal_nan=True)


@needs_default
def test_a_session_opens_only_on_its_own_image(phantom, tmp_path):
    image, truth = phantom
    seg = _worked_session(image, truth, 0)
    path = seg.save_session(tmp_path / "s.npz")
    other = image.copy()
    z = next(z for z in seg.annotated_slices if seg.annotation(z).any())
    y, x = np.argwhere(seg.annotation(z))[0]
    other[z, y, x] += 1.0                                     # one voxel under a saved mask
    with pytest.raises(InteractiveError, match=f"slice {z} of this volume differs"):
        InteractiveSegmenter.from_session(path, other, device="cpu")
    with pytest.raises(InteractiveError, match="shape"):
        InteractiveSegmenter.from_session(path, image[:-1], device="cpu")
    with pytest.raises(InteractiveError, match="axis 0, not 2"):
        InteractiveSegmenter.from_session(path, image, device="cpu", axis=2)


def test_other_weights_keep_the_masks_but_not_the_propagation(tmp_path):
    torch.manual_seed(0)
    w1 = save_memnet(MemSegNet(size=32, width=4), tmp_path / "a.safetensors")
    w2 = save_memnet(MemSegNet(size=32, width=4), tmp_path / "b.safetensors")
    vol = np.random.default_rng(0).normal(size=(6, 20, 20)).astype(np.float32)
    mask = np.zeros((20, 20), bool)
    mask[5:12, 6:14] = True
    seg = InteractiveSegmenter(vol, device="cpu", weights=w1)
    seg.set_slice_mask(3, mask)
    seg.propagate()
    path = seg.save_session(tmp_path / "s.npz")
    back = InteractiveSegmenter.from_session(path, vol, device="cpu", weights=w2)
    assert not back.restored_propagation and np.isnan(back.quality).all()
    assert back.annotated_slices == [3] and np.array_equal(back.prediction[3], mask) and back.prediction.sum() == mask.sum()
    back.propagate()                                             # recomputed with the new weights
    assert back.prediction[3].sum() == mask.sum()


def _small_session(weights, shape=(10, 64, 80)):
    """A session correcting a prior, one painted slice, propagated: every whole-volume mask saved."""
    vol = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    prior = np.zeros(shape, bool)
    prior[3:7, 20:30, 30:45] = True
    seg = InteractiveSegmenter(vol, device="cpu", weights=weights)
    seg.start_from(prior)
    fix = prior[4].copy()
    fix[20:24] = False
    seg.set_slice_mask(4, fix)
    seg.propagate()
    return vol, seg


def _rewritten(path, out, version, dense: bool):
    """The file as an older halo-seg wrote it: whole-volume masks whole, another version number."""
    from halo_seg.interactive.slice_masks import SliceMasks
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    head = json.loads(str(arrays.pop("header")))
    head["version"] = version
    for name in ("prediction", "prior"):
        if dense and f"{name}_box" in arrays:
            box = tuple(slice(int(a), int(b)) for a, b in arrays.pop(f"{name}_box"))
            arrays[name] = SliceMasks.from_region(head["volume_shape"], box, arrays.pop(f"{name}_region")).dense()
    np.savez_compressed(out, header=np.array(json.dumps(head)), **arrays)
    return out


def test_a_saved_file_holds_the_objects_box_and_earlier_versions_still_open(random_weights, tmp_path):
    vol, seg = _small_session(random_weights)
    path = seg.save_session(tmp_path / "s.npz")
    with np.load(path) as f:
        head = json.loads(str(f["header"]))
        assert head["version"] == 3 and "prediction" not in f.files and "prior" not in f.files
        box = f["prediction_box"]
        assert f["prediction_region"].shape == tuple(box[:, 1] - box[:, 0])
        assert f["prediction_region"].size < vol.size // 4 and f["prior_region"].shape == (4, 10, 15)
    for version in (2, 3):   # a version 2 file held the masks whole
        old = _rewritten(path, tmp_path / f"v{version}.npz", version, dense=version == 2)
        back = InteractiveSegmenter.from_session(old, vol, device="cpu", weights=random_weights)
        assert back.restored_propagation and np.array_equal(back.prediction, seg.prediction)
        assert np.array_equal(back.prior, seg.prior)
    bad = tmp_path / "bad.npz"
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["prior_box"] = np.array([[0, 99], [0, 5], [0, 5]])
    np.savez(bad, **arrays)
    with pytest.raises(InteractiveError, match="does not fit the volume"):
        InteractiveSegmenter.from_session(bad, vol, device="cpu", weights=random_weights)


def test_bad_session_files_are_refused(tmp_path):
    vol = np.zeros((4, 8, 8), np.float32)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    np.savez(tmp_path / "future.npz", header=np.array(json.dumps({"format": "halo-seg interactive session",
                                                                      "version": 99})))
    np.save(tmp_path / "image.npy", vol)   # the image given for the session: a TypeError traceback before
    for path, msg in ((tmp_path / "missing.npz", "no session file"), (junk, "not a readable"),
                      (tmp_path / "plain.npz", "not a readable"), (tmp_path / "future.npz", "version 99"),
                      (tmp_path / "image.npy", "holds one array, not the archive a session is")):
        with pytest.raises(InteractiveError, match=msg):
            InteractiveSegmenter.from_session(path, vol, device="cpu", weights="default")
    # saving: a folder at the path (written beside it before) or a place that cannot be written
    seg = InteractiveSegmenter(vol, device="cpu", weights="default")
    for path, msg in ((tmp_path, "is a folder; give the session a file name"),
                      (junk / "s.npz", f"cannot write the session to {junk / 's.npz'}")):
        with pytest.raises(InteractiveError, match=msg):
            seg.save_session(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.npz", "image.npy", "junk.npz", "plain.npz"]


@needs_default
def test_the_command_line_writes_a_saved_session_onto_its_scan(tmp_path, capsys, boxed_session):
    """`halo-seg session SCAN SESSION OUT`: the object as saved, placed where the scan lies; with
    other weights it is propagated again; an existing output or another image is refused."""
    import nibabel as nib
    from halo_seg.cli import main
    from halo_seg.io import open_volume
    from halo_seg.io.geometry import KEY
    from halo_seg.samples import make_phantom
    ph = make_phantom((24, 48, 40), n_objects=2, seed=5)
    aff = np.diag([0.8, 0.9, 2.0, 1.0])
    aff[:3, 3] = [-30.0, 12.0, 40.0]
    img = nib.Nifti1Image(ph.image.transpose(2, 1, 0), aff)
    img.set_sform(aff, code="scanner")
    scan = tmp_path / "scan.nii.gz"
    nib.save(img, scan)
    vol = open_volume(scan)
    seg, session = boxed_session(vol, ph.labels == 1)
    out = tmp_path / "object.nii.gz"
    assert main(["session", str(scan), str(session), str(out), "--label", "3"]) == 0
    assert "as saved" in capsys.readouterr().out
    back = open_volume(out)
    got = np.asarray(back.data)
    assert np.array_equal(got == 3, seg.prediction) and set(np.unique(got)) <= {0, 3}
    np.testing.assert_allclose(back.meta[KEY]["sform"], vol.meta[KEY]["sform"])
    # for 3D Slicer: a segment of that name (the name went only to DICOM)
    assert main(["session", str(scan), str(session), str(tmp_path / "o.seg.nrrd"), "--label", "3",
                 "--name", "lesion"]) == 0
    named = open_volume(tmp_path / "o.seg.nrrd")
    assert named.meta["segment_names"] == {3: "lesion"} and np.array_equal(np.asarray(named.data), got)
    assert main(["session", str(scan), str(session), str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    before = scan.read_bytes()
    assert main(["session", str(scan), str(session), str(scan), "--overwrite"]) == 2
    assert "is the image; write to a new path" in capsys.readouterr().err and scan.read_bytes() == before
    torch.manual_seed(1)
    other = save_memnet(MemSegNet(size=32, width=4), tmp_path / "other.safetensors")
    assert main(["session", str(scan), str(session), str(tmp_path / "again.nii.gz"), "--weights", str(other)]) == 0
    assert "propagated again" in capsys.readouterr().out
    np.save(tmp_path / "other.npy", np.asarray(vol.data) + 1)
    assert main(["session", str(tmp_path / "other.npy"), str(session), str(tmp_path / "x.nii.gz")]) == 2
    assert "belongs to another image" in capsys.readouterr().err


@needs_default
def test_a_time_lapse_session_kept_by_napari_writes_out_at_its_time_point(tmp_path, capsys, boxed_session):
    """napari keeps a time-lapse's session per time point (IMAGE.HASH.t0002.last.npz): `halo-seg
    session` takes the time point from that name where none is given (before: refused, "choose one
    with timepoint="); one given that is not the session's is refused as another image."""
    import tifffile
    from halo_seg.cli import main
    from halo_seg.io import open_volume
    from halo_seg.samples import make_phantom
    ph = make_phantom((24, 48, 40), n_objects=2, seed=5)
    movie = np.stack([np.roll(ph.image, 3 * t, axis=2) for t in range(3)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "movie.tif", movie, imagej=True, metadata={"axes": "TZYX"})
    seg, session = boxed_session(open_volume(tmp_path / "movie.tif", timepoint=2),
                                 np.roll(ph.labels, 6, axis=2) == 1)
    kept = session.rename(tmp_path / "movie.0a1b2c3d.t0002.last.npz")
    out = tmp_path / "cell.nii.gz"
    assert main(["session", str(tmp_path / "movie.tif"), str(kept), str(out)]) == 0
    assert "time point 2 (the session's name says so)" in capsys.readouterr().out
    assert np.array_equal(np.asarray(open_volume(out).data) == 1, seg.prediction)
    assert main(["session", str(tmp_path / "movie.tif"), str(kept), str(tmp_path / "c0.nii.gz"), "--timepoint", "0"]) == 2
    assert "belongs to another image" in capsys.readouterr().err
