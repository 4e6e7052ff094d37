import numpy as np
import pytest
import torch

from halo_seg.interactive.baseline import fill_between_curve, flow_propagate, interpolate_masks, signed_distance
from halo_seg.metrics import dice, dice_per_slice
from halo_seg.samples import load_colin27_sample, make_phantom
from halo_seg.train.losses import dice_ce_loss, soft_dice_loss, unet_weight_map


def test_dice_hand_computed():
    a = np.zeros((1, 4, 4), bool); a[0, :2, :2] = True          # 4 voxels
    b = np.zeros((1, 4, 4), bool); b[0, :2, :3] = True          # 6 voxels, 4 shared
    assert dice(a, b) == pytest.approx(2 * 4 / 10)
    assert dice(np.zeros(3), np.zeros(3)) == 1.0
    np.testing.assert_allclose(dice_per_slice(a, b), [0.8])
    with pytest.raises(ValueError, match="shapes"):
        dice(a, b[0])


def test_colin27_sample_is_brain_with_structures():
    s = load_colin27_sample()
    assert s.spacing == (2.0, 2.0, 2.0)
    # deep grey matter lies inside the brain mask and is brighter than CSF-free background
    assert s.brain[s.labels > 0].mean() > 0.99
    assert s.image[s.brain].mean() > 3 * s.image[~s.brain].mean()


def test_the_2mm_sample_lies_where_its_1mm_scan_lies(tmp_path):
    """Each 2 mm voxel of the sample is the mean of a 2x2x2 block of the 1 mm scan: its centre lies
    at the mean world position of the block's eight voxels, in the scan's coded space (the shipped
    files said 'aligned' at origin 0, 90 to 125 mm off); labels are marked as labels. Made from a
    small stand-in for ../shared/data/colin27, placed obliquely; and the shipped files, where the
    1 mm data are here, put back on the 1 mm grid, match its atlas."""
    import nibabel as nib

    from halo_seg.io import open_volume
    from halo_seg.io.resampled import onto_grid_of
    from halo_seg.samples import SUBCORTICAL, make_colin27_sample, sample_dir, shared_data_dir
    d = tmp_path / "data" / "colin27"
    d.mkdir(parents=True)
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    aff = np.eye(4)
    aff[:3, :3] = rot * [1.0, 1.2, 0.9]
    aff[:3, 3] = [-90.0, -125.0, -71.0]
    shape = (9, 10, 11)   # (z, y, x): odd sizes end in a half block
    for name, arr in (("ch2", np.full(shape, 50, np.uint8)), ("aal", np.full(shape, 71, np.uint8)),
                      ("ch2bet", np.ones(shape, np.uint8))):
        img = nib.Nifti1Image(arr.transpose(2, 1, 0), aff)
        img.set_sform(aff, code=4)
        nib.save(img, str(d / f"{name}.nii.gz"))
    (d / "aal_labels.txt").write_text("71 Caudate_L 7001\n")
    make_colin27_sample(tmp_path / "out", tmp_path / "data")
    for name, labels in (("colin27_2mm_t1", False), ("colin27_2mm_aal12", True), ("colin27_2mm_brain", True)):
        out = nib.load(str(tmp_path / "out" / f"{name}.nii.gz"))
        assert out.shape == (6, 5, 5) and int(out.header["sform_code"]) == 4
        assert (out.header.get_intent()[0] == "label") == labels
        for i, j, k in [(0, 0, 0), (2, 3, 1), (4, 1, 3)]:   # (x, y, z) of a whole block
            block = [aff @ [2 * i + a, 2 * j + b, 2 * k + c, 1] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
            np.testing.assert_allclose(out.affine @ [i, j, k, 1], np.mean(block, axis=0), atol=1e-9)
    shared = shared_data_dir()
    if shared is None:
        return
    fine_labels = open_volume(shared / "colin27" / "aal.nii.gz")
    placed = onto_grid_of(open_volume(sample_dir() / "colin27_2mm_aal12.nii.gz"), fine_labels, labels=True)
    assert placed.placed
    fine, back = np.asarray(fine_labels.data), np.asarray(placed.data)
    dices = [dice(back == k, fine == k) for k in SUBCORTICAL]
    assert np.mean(dices) > 0.88, dices   # 0.91; 0.84 stretched over the extent, 0.0 at origin 0


def test_phantom_is_deterministic_and_labelled():
    a, b = make_phantom((16, 20, 24), seed=5), make_phantom((16, 20, 24), seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.image[a.labels > 0].mean() > a.image[a.labels == 0].mean()
    with pytest.raises(ValueError):
        make_phantom((4, 4))


def test_signed_distance_interpolation_midway_between_discs():
    yy, xx = np.mgrid[:41, :41]
    small = (yy - 20) ** 2 + (xx - 20) ** 2 <= 5 ** 2
    big = (yy - 20) ** 2 + (xx - 20) ** 2 <= 15 ** 2
    out = interpolate_masks({0: small, 10: big}, (11, 41, 41))
    r = np.sqrt(out[5].sum() / np.pi)
    assert 9 < r < 11             # the disc radius interpolates linearly: ~10 halfway
    assert not out[:0].any() and signed_distance(np.zeros((3, 3)))[0, 0] > 0


def test_fill_between_improves_with_more_slices():
    s = load_colin27_sample()
    curve = fill_between_curve(s.labels == 77, rounds=6)
    assert curve[0] < 0.3 < curve[-1]
    assert curve[-1] == max(curve)


def _moving_ellipse(nz=15, shift=1.5, seed=0):
    """A textured bright ellipse sliding `shift` pixels per slice over a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    truth = np.stack([((yy - 32) / 9.0) ** 2 + ((xx - 12 - shift * z) / 6.0) ** 2 <= 1 for z in range(nz)])
    image = 100 + 60 * truth + rng.normal(0, 6, truth.shape)
    return image.astype(np.float32), truth


def test_flow_propagation_follows_a_moving_object_a_copied_mask_does_not():
    image, truth = _moving_ellipse()
    out = flow_propagate(image, 7, truth[7])
    copied = np.repeat(truth[7:8], len(truth), 0)
    assert dice(out, truth) > 0.85
    assert dice(copied, truth) < 0.6                 # the object moves 1.5 px per slice: tracking matters
    assert dice(out[0], truth[0]) > 0.75 and dice(out[-1], truth[-1]) > 0.75   # 7 warps each way
    np.testing.assert_array_equal(out[7], truth[7])
    assert not flow_propagate(image, 7, truth[7], stop=lambda z: z in (5, 10))[[4, 11]].any()


def test_flow_propagation_rejects_bad_input():
    image, truth = _moving_ellipse(nz=4)
    with pytest.raises(ValueError, match="empty"):
        flow_propagate(image, 1, np.zeros((64, 64), bool))
    with pytest.raises(ValueError, match="Z, Y, X"):
        flow_propagate(image[0], 1, truth[1])


def test_unet_weight_map_emphasises_gaps_between_touching_objects():
    lab = np.zeros((1, 30, 40), np.uint8)
    lab[0, 5:25, 5:18] = 1
    lab[0, 5:25, 20:35] = 1          # two objects, 2-pixel gap at x = 18, 19
    w = unet_weight_map(lab, w0=10, sigma=5, class_balance=False)
    assert w[0, 15, 18] > 8          # in the gap: d1 + d2 small -> ~1 + 10 exp(-small)
    assert w[0, 15, 38] < w[0, 15, 18] / 2
    assert np.allclose(w[lab > 0], 1.0)


def test_losses_are_zero_for_perfect_prediction_and_ignore_masked_voxels():
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3, 1:3] = 1
    perfect = torch.nn.functional.one_hot(target, 2).movedim(-1, 1).float() * 40 - 20
    assert soft_dice_loss(perfect, target).item() < 1e-4
    w = torch.ones(1, 4, 4, 4)
    w[0, 0] = 0
    bad = perfect.clone()
    bad[:, :, 0] = -bad[:, :, 0]      # wrong only where the weight is 0
    assert dice_ce_loss(bad, target, w).item() == pytest.approx(dice_ce_loss(perfect, target, w).item(), abs=1e-4)


def test_pearson_of_pairs_against_hand_values():
    from halo_seg.metrics import pearson
    assert pearson([(1, 2), (2, 4), (3, 6)]) == pytest.approx(1.0)
    assert pearson([(1, 3), (2, 2), (3, 1)]) == pytest.approx(-1.0)
    # x = 0, 1, 2, 3 against y = 0, 1, 1, 0: no linear trend at all
    assert pearson([(0, 0), (1, 1), (2, 1), (3, 0)]) == pytest.approx(0.0)
    assert np.isnan(pearson([(1, 1), (2, 2)])) and np.isnan(pearson([])) and np.isnan(pearson([(1, 5)] * 4))
