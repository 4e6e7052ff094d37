"""The partitioned network must equal the whole-volume network (DESIGN.md section 5 targets)."""
import pytest

from halo_seg.engine.verify import compare_partitioned

CASES = [  # (grid, shape): 2, 3, 4 and 8 ranks, anisotropic grids, sizes that do not divide
    ((2, 1, 1), (16, 12, 12)),
    ((1, 3, 1), (9, 30, 11)),
    ((1, 2, 2), (13, 17, 19)),
    ((4, 1, 1), (21, 10, 9)),
    ((2, 2, 2), (19, 21, 23)),
]


def _same_labels(r) -> bool:
    """The labels agree, but where the whole network's two best logits tie to within the two runs'
    rounding (an untrained network has such voxels; either label is the network's)."""
    return r["labels_identical"] or r["differing_top2_gap"] <= 2 * r["logits_max_abs"]


@pytest.mark.parametrize("grid,shape", CASES, ids=[f"{'x'.join(map(str, g))}-{'x'.join(map(str, s))}"
                                                   for g, s in CASES])
def test_forward_and_backward_match_whole_volume(grid, shape):
    r = compare_partitioned(grid, shape, config=dict(in_channels=1, out_channels=3, base=4, depth=2))
    assert r["logits_max_abs"] <= 1e-4, r
    assert _same_labels(r), r
    assert r["input_grad_max_rel"] <= 1e-4, r
    assert r["weight_grad_max_rel"] <= 1e-4, r


def test_deeper_net_on_uneven_volume():
    r = compare_partitioned((2, 1, 2), (25, 14, 35), config=dict(in_channels=1, out_channels=2, base=4, depth=3))
    assert r["logits_max_abs"] <= 1e-4 and _same_labels(r), r
    assert r["weight_grad_max_rel"] <= 1e-4, r
