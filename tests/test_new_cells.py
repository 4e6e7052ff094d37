"""Cells no object holds at a time point (halo_seg.interactive.new_cells): found where the image is
as bright as the objects and no object is, and segmented as new objects."""
import numpy as np
import pytest
from _cells import balls

from halo_seg.interactive.model_io import default_memnet_installed

SHAPE = (20, 48, 64)


def _balls(centres, radius=5):
    return balls(SHAPE, centres, radius)


def _scene(seed=0):
    """Three cells; objects hold the first two (as carried there); the third came in."""
    cells = _balls([(10, 14, 14), (10, 34, 30), (10, 20, 50)])
    rng = np.random.default_rng(seed)
    image = ((cells > 0) * 1.0 + rng.normal(0, 0.2, SHAPE)).astype(np.float32)
    objects = np.where(cells == 3, 0, cells).astype(np.uint32) * 7   # any ids
    return image, objects, cells == 3


def test_the_cell_no_object_holds_is_found_and_nothing_else():
    from halo_seg.interactive.new_cells import new_cells
    from halo_seg.metrics import dice
    image, objects, third = _scene()
    found = new_cells(image, objects)
    assert len(found) == 1
    c = found[0]
    whole = np.zeros(SHAPE, bool)
    whole[c.box] = c.mask
    assert dice(whole, third) > 0.8 and c.voxels == whole.sum()
    assert abs(c.slice - 10) <= 1 and np.allclose(c.centre, (10, 20, 50), atol=0.5)
    y0, x0, y1, x1 = c.box2d                                  # a box prompt on its largest slice: the cell's
    assert abs(y0 - 15) <= 1 and abs(y1 - 25) <= 1 and abs(x0 - 45) <= 1 and abs(x1 - 55) <= 1
    held = objects.copy()
    held[third] = 9
    assert new_cells(image, held) == []                      # every cell held: nothing
    dark = new_cells(-image, objects)                        # dark cells on a bright ground: the same
    assert len(dark) == 1 and dark[0].box == c.box
    assert new_cells(image, np.zeros(SHAPE, np.uint32)) == []   # no objects to learn what a cell looks like from
    small = objects.copy()                                   # a cell under 0.3 of the objects' size is not one
    assert new_cells(image, small, min_share=3.0) == []
    with pytest.raises(ValueError, match=r"the objects are \(20, 48, 32\), the image \(20, 48, 64\)"):
        new_cells(image, objects[..., :32])
    # the time point before: where the third cell lay there too and no object held it (not followed), it
    # is not new; where it was not there (it came in), it is
    assert new_cells(image, objects, before=(image, objects)) == []
    empty = np.random.default_rng(1).normal(0, 0.2, SHAPE).astype(np.float32) + (objects > 0)
    came = new_cells(image, objects, before=(empty, objects))
    assert len(came) == 1 and came[0].box == c.box
    sliver = empty + (third & (np.arange(64) >= 53))          # only its edge in the field before: new still
    assert len(new_cells(image, objects, before=(sliver, objects))) == 1
    with pytest.raises(ValueError, match="the image and objects before must be of the image's shape"):
        new_cells(image, objects, before=(image[:4], objects))


def test_a_large_volume_is_looked_at_on_a_strided_grid(monkeypatch):
    """Over MAX_VOXELS the regions are found on every second voxel (here): the same cell, its box
    within the stride of the full grid's."""
    import halo_seg.interactive.new_cells as nc
    image, objects, third = _scene()
    full = nc.new_cells(image, objects)[0]
    monkeypatch.setattr(nc, "MAX_VOXELS", third.size // 8)
    coarse = nc.new_cells(image, objects)
    assert len(coarse) == 1
    assert all(abs(a.start - b.start) <= 2 and abs(a.stop - b.stop) <= 2 for a, b in zip(coarse[0].box, full.box))
    assert coarse[0].mask.shape == tuple(b.stop - b.start for b in coarse[0].box)
    assert abs(coarse[0].voxels - full.voxels) < 0.5 * full.voxels


@pytest.mark.skipif(not default_memnet_installed(), reason="no shipped interactive weights")
def test_a_new_cell_is_segmented_from_its_box_as_the_widget_would():
    """segment_new: the box on its largest slice, propagated (the reference: a session prompted so by
    hand), carried from nothing, with a record to be carried on."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.new_cells import new_cells, segment_new
    from halo_seg.metrics import dice
    image, objects, third = _scene()
    cells = new_cells(image, objects)
    out = segment_new(lambda: InteractiveSegmenter(image, device="cpu"), cells, 4)
    ref = InteractiveSegmenter(image, device="cpu")
    ref.add_box(cells[0].slice, *cells[0].box2d)
    want = ref.propagate()
    whole = np.zeros(SHAPE, bool)
    whole[out[0].box] = out[0].mask
    assert len(out) == 1 and np.array_equal(whole, want) and dice(whole, third) > 0.85
    assert out[0].label == 0 and out[0].record["t"] == 4 and out[0].record["step"] is None
    assert out[0].record["contrast"] == pytest.approx(out[0].contrast[1]) and out[0].contrast[1] > 0.8
    from halo_seg.interactive.carry import noise_level   # in the volume's noise: measured, or as given
    assert out[0].record["noise"] == out[0].noise[1] == noise_level(image)
    given = segment_new(lambda: InteractiveSegmenter(image, device="cpu"), cells, 4, noise=0.5)
    assert given[0].record["noise"] == given[0].noise[1] == 0.5 and np.array_equal(given[0].mask, out[0].mask)
    with pytest.raises(InterruptedError):
        segment_new(lambda: InteractiveSegmenter(image, device="cpu"), cells, 4, cancel=lambda: True)
    with pytest.raises(ValueError, match="the session slices across axis 1; new cells are boxed on slices across 0"):
        segment_new(lambda: InteractiveSegmenter(image, device="cpu", axis=1), cells, 4)
    assert segment_new(lambda: InteractiveSegmenter(image, device="cpu"), [], 4) == []
