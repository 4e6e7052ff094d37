"""Every object of a time point carried to the next in one go (halo_seg.interactive.carry_all): each
as Next time point carries one alone."""
import numpy as np
import pytest
from _cells import balls as _balls

from halo_seg.interactive.model_io import default_memnet_installed

pytestmark = pytest.mark.skipif(not default_memnet_installed(), reason="no shipped interactive weights")


def _movie():
    """Two time points, three cells moving 3 voxels along x; at time point 1 the third is gone."""
    shape = (16, 40, 96)
    rng = np.random.default_rng(0)
    at0 = _balls(shape, [(8, 12, 14), (8, 28, 40), (8, 12, 70)])
    at1 = _balls(shape, [(8, 12, 17), (8, 28, 43)])
    image = np.stack([(a > 0) * 1.0 + rng.normal(0, 0.2, shape) for a in (at0, at1)]).astype(np.float32)
    return image, at0, at1


def test_every_object_is_carried_as_next_time_point_carries_it_alone():
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import carried_boxes, carry_record, find_again
    from halo_seg.interactive.carry_all import carry_all, object_boxes
    from halo_seg.metrics import dice
    image, at0, at1 = _movie()
    labels = at0.astype(np.int32) * 10                       # ids 10, 20, 30: any ids
    told = []
    # object 20 was itself carried (its record has a step: 3 along x), the others are carried from where they are
    before = carry_record(np.roll(at0 == 2, -3, axis=2), -1, None, 0, 20)
    stepped = carry_record(at0 == 2, 0, before, 0, 20)
    assert np.allclose(stepped["step"], (0, 0, 3))
    out = carry_all(lambda: InteractiveSegmenter(image[1], device="cpu"), labels, 0, records={20: stepped},
                    progress=lambda done, total: told.append((done, total)))
    assert [c.label for c in out] == [10, 20, 30] and told == [(1, 3), (2, 3), (3, 3)]
    for c, k in zip(out, (10, 20, 30)):
        ref = InteractiveSegmenter(image[1], device="cpu")  # the reference: one object, as Next time point
        record = stepped if k == 20 else carry_record(labels == k, 0, None, 0, k)
        found = find_again(ref, carried_boxes(record, ref.shape), record["area"])
        pred = ref.propagate()
        assert c.found == found and c.was == object_boxes(labels)[k], k
        whole = np.zeros(pred.shape, bool)
        if c.box is not None:
            whole[c.box] = c.mask
        assert np.array_equal(whole, pred), k
        if pred.any():   # what a further carry takes: as Commit would record it (its step from where it was)
            want = carry_record(pred, 1, record, 0, k)
            assert {q: v for q, v in c.record.items() if q not in ("centroid", "step", "source", "contrast", "noise")} == \
                {q: v for q, v in want.items() if q not in ("centroid", "step", "source")}
            assert c.record["contrast"] == c.contrast[1]   # a further carry judges its fading from it
            assert c.record["noise"] == c.noise[1] == pytest.approx(0.2, rel=0.1)   # and in this volume's noise
            assert np.allclose(c.record["centroid"], want["centroid"]) and np.allclose(c.record["step"], want["step"])
        else:
            assert c.box is None and c.mask is None and c.record is None
    assert dice(_filled(out[0]), at1 == 1) > 0.85 and dice(_filled(out[1]), at1 == 2) > 0.85
    assert np.allclose(out[1].record["step"], out[1].record["centroid"] - stepped["centroid"])
    assert not out[0].two and not out[1].two
    assert not any(c.faded for c in out) and all(c.contrast[0] is None for c in out)   # no image: not judged


def test_an_object_whose_cell_is_gone_has_faded_and_is_not_placed():
    """The third cell is gone at time point 1: what its box finds there is noise (an 800-voxel
    object the network is fairly sure of), its contrast a few hundredths of the 1 it had: faded, and
    place_all leaves it out; the two cells there keep theirs. Each contrast is the median inside
    less the median of the shell 2 to 3 voxels around, computed here by hand."""
    from scipy import ndimage as ndi

    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry_all import carry_all, place_all
    image, at0, at1 = _movie()
    out = carry_all(lambda: InteractiveSegmenter(image[1], device="cpu"), at0.astype(np.int32), 0, image=image[0])

    def by_hand(volume, mask):
        shell = ndi.binary_dilation(mask, iterations=3) & ~ndi.binary_dilation(mask, iterations=1)
        return np.median(volume[mask]) - np.median(volume[shell])
    for c, k in zip(out, (1, 2, 3)):
        assert c.contrast[0] == pytest.approx(by_hand(image[0], at0 == k))
        assert c.contrast[1] == pytest.approx(by_hand(image[1], _filled(c)))
    assert [c.faded for c in out] == [False, False, True]
    assert out[2].mask.sum() > 100 and not (_filled(out[2]) & (at1 > 0)).any()   # noise, found where no cell is
    assert 0.8 < out[0].contrast[1] / out[0].contrast[0] < 1.2 and out[2].contrast[1] < 0.2 * out[2].contrast[0]
    here = np.zeros(at0.shape, np.uint32)
    placed, gone, covered, dim = place_all(out, here, 4)
    assert [p.carried.label for p in placed] == [1, 2] and dim == [3] and gone == covered == []
    assert set(np.unique(here)) == {0, 4, 5}
    # carried on, an object's contrast comes from its record, not from the image (not given now)
    records = {p.id: {**p.carried.record, "label": p.id} for p in placed}
    on = carry_all(lambda: InteractiveSegmenter(image[1], device="cpu"), here.astype(np.int32), 1, records)
    assert [c.contrast[0] for c in on] == [out[0].contrast[1], out[1].contrast[1]]
    assert [c.noise[0] for c in on] == [out[0].noise[1], out[1].noise[1]]


def test_a_time_point_taken_darker_as_a_whole_is_not_every_object_faded():
    """Time point 1 taken at 0.4 of the exposure (signal and noise alike): the two cells there keep
    their contrast in units of each volume's noise, so they have not faded (in the image's units
    they fell to 0.4 of it); the gone cell's noise has faded still."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import faded, noise_level
    from halo_seg.interactive.carry_all import carry_all
    image, at0, at1 = _movie()
    dark = 0.4 * image[1]
    out = carry_all(lambda: InteractiveSegmenter(dark, device="cpu"), at0.astype(np.int32), 0, image=image[0])
    assert [c.faded for c in out] == [False, False, True]
    for c in out:
        assert c.noise[0] == pytest.approx(0.2, rel=0.1) and c.noise[1] == pytest.approx(0.4 * noise_level(image[1]))
    assert all(faded(*c.contrast) for c in out)   # in the image's units every one would have faded


def test_noise_level_by_hand():
    """noise_level: the standard deviation of the voxel noise, whatever the image shows under it
    (a ramp, a bright ball); scaled with the image; smooth in integer data; None without noise or
    where the background is clipped to zero; a lazy volume read at 8 planes only."""
    from halo_seg.interactive.carry import noise_level
    rng = np.random.default_rng(3)
    shape = (40, 64, 64)
    smooth = _balls(shape, [(20, 32, 32)], 12) * 5.0 + np.linspace(0, 3, 64)[None, None, :]
    image = smooth + rng.normal(0, 0.3, shape)
    assert noise_level(image) == pytest.approx(0.3, rel=0.05)
    assert noise_level(0.4 * image) == pytest.approx(0.4 * noise_level(image))
    assert noise_level(image, most=5000) == pytest.approx(0.3, rel=0.1)   # rows of large planes left out
    # integer data: no jump as the noise grows past a unit (the median of the differences goes 1, 2)
    counts = [noise_level(np.round(100 + rng.normal(0, s, shape))) for s in (1.8, 2.0)]
    assert counts[0] == pytest.approx(np.hypot(1.8, 12 ** -0.5), rel=0.03) and 1.05 < counts[1] / counts[0] < 1.2
    assert noise_level(np.round(rng.normal(0, 0.3, shape))) is None   # most neighbours equal
    clipped = np.clip(smooth + rng.normal(0, 0.3, shape) - 2.5, 0, None)
    assert noise_level(clipped) is None                               # the background clipped to zero
    assert noise_level(smooth.round()) is None and noise_level(np.zeros(shape)) is None

    class Planes:   # reads counted
        def __init__(self, a):
            self.a, self.shape, self.read = a, a.shape, []

        def __getitem__(self, z):
            self.read.append(z)
            return self.a[z]
    lazy = Planes(image)
    assert noise_level(lazy) == noise_level(image)
    assert len(lazy.read) == 8 and lazy.read[0] == 0 and lazy.read[-1] == shape[0] - 1


def test_contrast_and_fading_by_hand():
    """contrast: median inside less the median of its shell (a neighbour in under half of the shell
    moves it not), negative for a dark object; faded: under half the contrast before, either sign."""
    from halo_seg.interactive.carry import contrast, faded
    image = np.full((12, 12, 12), 1.0)
    mask = np.zeros(image.shape, bool)
    mask[4:8, 4:8, 4:8] = True
    image[mask] = 5.0
    image[:, :, 10:] = 9.0                                      # a bright neighbour in a slab of the shell
    box = (slice(4, 8),) * 3
    assert contrast(image, mask[box], box) == 4.0
    assert contrast(-image, mask[box], box) == -4.0
    assert contrast(image, np.zeros((4, 4, 4), bool), box) is None
    edge = (slice(0, 12),) * 3                                  # the whole image the object: no shell
    assert contrast(image, np.ones((12, 12, 12), bool), edge) is None
    assert faded(4.0, 1.9) and not faded(4.0, 2.1) and faded(-4.0, -1.0) and faded(4.0, -1.0)
    assert not faded(None, 1.0) and not faded(4.0, None) and not faded(0.0, 1.0)
    # in units of each volume's noise: 1.9 of a noise 0.4 is 4.75 of 4.0 of a noise 1.0
    assert not faded(4.0, 1.9, noise=(1.0, 0.4)) and faded(4.0, 1.9, noise=(1.0, 1.0))
    assert faded(4.0, 1.9, noise=(1.0, None)) and faded(4.0, 1.9, noise=(None, 0.4))   # one unknown: raw


def _filled(c):
    whole = np.zeros((16, 40, 96), bool)
    whole[c.box] = c.mask
    return whole


def test_carry_all_refuses_what_it_cannot_carry_and_stops_when_cancelled():
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry_all import carry_all, object_boxes
    image, at0, _ = _movie()
    make = lambda: InteractiveSegmenter(image[1], device="cpu")   # noqa: E731
    with pytest.raises(ValueError, match="float32 values, not integer ids"):
        carry_all(make, at0.astype(np.float32), 0)
    assert carry_all(make, np.zeros_like(at0), 0) == []      # nothing to carry
    done = []                                                # Cancel pressed while the first object propagated
    with pytest.raises(InterruptedError, match="cancelled after 1 of 3 objects"):
        carry_all(make, at0, 0, cancel=lambda: bool(done), progress=lambda k, n: done.append(k))
    assert object_boxes(at0)[2] == (slice(3, 14), slice(23, 34), slice(35, 46))
    with pytest.raises(ValueError, match="slices across axis 1; the objects' records across 0"):
        carry_all(lambda: InteractiveSegmenter(image[1], device="cpu", axis=1), at0, 0)


def test_objects_are_carried_back_to_the_time_point_before():
    """direction -1 (All to previous time point): each object's boxes as Previous time point carries
    them, its step taken backward; the record it gives is at the time point before."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import carried_boxes, carry_record, find_again
    from halo_seg.interactive.carry_all import carry_all
    image, at0, at1 = _movie()
    later = carry_record(np.roll(at1 == 1, 3, axis=2), 2, None, 0, 1)   # object 1 followed back from time point 2
    record = carry_record(at1 == 1, 1, later, 0, 1)
    assert np.allclose(record["step"], (0, 0, 3))                     # its step forward, from 1 to 2
    out = carry_all(lambda: InteractiveSegmenter(image[0], device="cpu"), at1, 1, records={1: record}, direction=-1)
    ref = InteractiveSegmenter(image[0], device="cpu")
    boxes = carried_boxes(record, ref.shape, -1)
    assert boxes[1][1][1] == boxes[0][1][1] - 3                       # moved back by it
    assert out[0].found == find_again(ref, boxes, record["area"])
    whole = np.zeros(at0.shape, bool)
    whole[out[0].box] = out[0].mask
    assert np.array_equal(whole, ref.propagate()) and out[0].record["t"] == 0


def test_the_part_lying_where_a_neighbour_was_is_left_to_it():
    """own_part: an object carried from 1 that took in the touching cell 2 (both lay where they lie
    now) keeps its own part, the other left to 2 (which is carried itself); a mother's two
    daughters, both where she was, are both kept."""
    from halo_seg.interactive.carry import two_cells
    from halo_seg.interactive.carry_all import own_part
    shape = (16, 40, 60)
    before = _balls(shape, [(8, 20, 24), (8, 20, 35)])          # 1 and 2, touching
    carried = before > 0                                         # object 1's carry took in both
    box = (slice(2, 15), slice(14, 27), slice(18, 42))
    parts = two_cells(carried[box])
    assert parts is not None
    where, mask, left = own_part(parts, box, before, 1)
    whole = np.zeros(shape, bool)
    whole[where] = mask
    assert left == 2 and (whole & (before == 1)).sum() > 0.9 * (before == 1).sum()
    assert (whole & (before == 2)).sum() < 0.1 * (before == 2).sum()
    assert where == tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(whole))   # tight
    mother = before.copy()                                       # both daughters where object 1 (their mother) was
    mother[mother > 0] = 1
    where, mask, left = own_part(parts, box, mother, 1)
    assert left is None and where == box and np.array_equal(mask, carried[box])


def test_carried_objects_are_placed_where_no_object_is_yet():
    """place_all: ids from the first given, in order, each on the voxels no object holds yet (one
    there already, or carried before it, keeps its own); nothing found, or found only on others',
    or faded, told apart and given no id."""
    from halo_seg.interactive.carry_all import Carried, place_all
    here = np.zeros((4, 10, 10), np.uint32)
    here[:, :3, :3] = 9                                      # an object there already
    box = (slice(0, 4), slice(0, 6), slice(0, 6))
    whole = np.ones((4, 6, 6), bool)
    carried = [Carried(1, None, box, whole, {}), Carried(2, None, None, None, None),
               Carried(3, None, box, whole, {}), Carried(4, None, (slice(0, 4), slice(5, 8), slice(5, 8)),
                                                          np.ones((4, 3, 3), bool), {}),
               Carried(5, None, (slice(0, 4), slice(8, 10), slice(8, 10)), np.ones((4, 2, 2), bool), {}, faded=True)]
    placed, gone, covered, dim = place_all(carried, here, 20)
    assert [(p.id, p.carried.label) for p in placed] == [(20, 1), (21, 4)] and gone == [2] and covered == [3]
    assert dim == [5] and not here[:, 8:, 8:].any()
    assert (here == 9).sum() == 36 and (here == 20).sum() == 4 * 36 - 36      # around object 9, not over it
    assert (here == 21).sum() == 4 * 9 - 4 and placed[1].free.sum() == 32     # the voxel column 20 took first


def test_a_cell_left_out_is_placed_after_the_others_as_its_own_object():
    """place_all and a cell left out of an object that grew over it (Carried.grown_from): written
    after every other object whatever its place in the list, where at least half of it is free;
    as the object it lies where it was (2) where that one's own carry found nothing (2 no longer
    said so), from nothing (label 0, no step) where that one was written elsewhere; not written
    where its own object holds it, and then told nowhere."""
    from halo_seg.interactive.carry_all import Carried, place_all
    box_a, box_b = (slice(0, 4), slice(0, 4), slice(0, 4)), (slice(0, 4), slice(6, 10), slice(6, 10))
    whole = np.ones((4, 4, 4), bool)
    record = {"label": 2, "step": np.array([0.0, 1.0, 1.0]), "source": {"label": 2}}
    cut = Carried(2, None, box_b, whole, record, grown_from=1)
    here = np.zeros((4, 10, 10), np.uint32)
    placed, gone, covered, dim = place_all([cut, Carried(1, None, box_a, whole, {}), Carried(2, None, None, None, None)],
                                           here, 5)
    assert [(p.id, p.carried.label) for p in placed] == [(5, 1), (6, 2)] and gone == covered == dim == []
    assert (here == 6).sum() == 64 and placed[1].carried.record["step"] is record["step"]
    here = np.zeros((4, 10, 10), np.uint32)                 # 2 carried on elsewhere: the cell a new one
    placed, gone, *_ = place_all([Carried(1, None, box_a, whole, {}), Carried(2, None, (slice(0, 4), slice(0, 4),
                                  slice(6, 10)), whole, {}), cut], here, 5)
    assert [(p.id, p.carried.label) for p in placed] == [(5, 1), (6, 2), (7, 0)] and gone == []
    assert placed[2].carried.record["step"] is None and placed[2].carried.record["label"] == 0
    assert cut.label == 2 and cut.record is record           # the carried object itself unchanged
    here = np.zeros((4, 10, 10), np.uint32)                 # 2's carry found the cell: it holds it
    half = np.zeros((4, 4, 4), bool)
    half[:, :, :3] = True                                   # (and a quarter of the cell is still free)
    placed, gone, covered, dim = place_all([cut, Carried(2, None, box_b, half, {})], here, 5)
    assert [(p.id, p.carried.label) for p in placed] == [(5, 2)] and gone == covered == dim == []
    assert (here == 5).sum() == 48 and (here[box_b] == 0).sum() == 16       # the quarter left free


def test_keep_own_gives_the_cell_left_out_its_own_object():
    """carry_all(keep_own=True): the touching cell 2 that cell 1's carry took in comes back as a
    cell left out of 1 (grown_from), carried from nothing where no object was there (label 0), its
    mask that cell, its record its own; placed, the two cells are two objects. Where object 2 was
    there and its carry found both cells too, each object keeps its own cell and the parts left
    out (each carried from the other) are not written: two objects, none doubled."""
    from halo_seg.interactive.carry_all import carry_all, place_all
    shape = (16, 40, 60)
    now = _balls(shape, [(8, 20, 24), (8, 20, 35)])
    found = now > 0
    labels = _balls(shape, [(8, 20, 22)]).astype(np.int32)
    out = carry_all(lambda: _Fixed(found.astype(np.float32), found), labels, 0, keep_own=True)
    assert len(out) == 2 and out[1].grown_from == 1 and out[1].label == 0 and not out[1].took_in
    cut = np.zeros(shape, bool)
    cut[out[1].box] = out[1].mask
    assert (cut & (now == 2)).sum() > 0.9 * (now == 2).sum() and (cut & (now == 1)).sum() < 0.1 * (now == 1).sum()
    assert out[1].record["t"] == 1 and out[1].record["step"] is None and out[1].record["bounds"] == out[1].box
    here = np.zeros(shape, np.uint32)
    placed, *_ = place_all(out, here, 1)
    assert [p.carried.label for p in placed] == [1, 0] and np.array_equal(here == 2, cut & (here != 1))
    assert len(carry_all(lambda: _Fixed(found.astype(np.float32), found), labels, 0, keep_own=False)) == 1
    labels = _balls(shape, [(8, 20, 22), (8, 20, 37)]).astype(np.int32)     # 2 was there: it finds both as well
    out = carry_all(lambda: _Fixed(found.astype(np.float32), found), labels, 0, keep_own=True)
    assert [(c.label, c.grown_from) for c in out] == [(1, None), (2, None), (2, 1), (1, 2)]
    here = np.zeros(shape, np.uint32)
    placed, gone, covered, dim = place_all(out, here, 1)
    assert [p.carried.label for p in placed] == [1, 2] and gone == covered == dim == []
    for k in (1, 2):
        assert (here == k).sum() > 0.9 * (now == k).sum() and ((here == k) & (now == 3 - k)).sum() < 0.1 * (now == k).sum()


class _Fixed:
    """A stand-in session whose segmentation is ``pred`` whatever it is prompted with (carry_all's
    plumbing tested apart from the network)."""

    axis, volume_spacing = 0, (1.0, 1.0, 1.0)

    def __init__(self, image, pred):
        self.volume, self.pred, self.shape = image, pred, pred.shape

    def try_box(self, z, box):
        y0, x0, y1, x1 = box
        m = np.zeros(self.shape[1:], bool)
        m[y0:y1 + 1, x0:x1 + 1] = self.pred[z, y0:y1 + 1, x0:x1 + 1]
        return m, 0.9

    def add_box(self, *args):
        pass

    def propagate(self, cancel=None):
        return self.pred

    def mask_box(self):
        return tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(self.pred))


def test_drop_neighbours_keeps_its_own_part_and_records_it(monkeypatch):
    """carry_all(drop_neighbours=True): where the carried object looks like two (two_cells, made here
    to split it across x at its box's middle) and one part lies where another object was (cell 1
    moved 6 voxels along x, half into where object 2 was), it keeps the other part: its mask, box
    and record are those of that part alone (the reference: carry_record of it as a whole volume)."""
    import halo_seg.interactive.carry_all as carry_all_module
    from halo_seg.interactive.carry import carry_record
    shape = (16, 40, 60)
    labels = _balls(shape, [(8, 20, 20), (8, 20, 32)]).astype(np.int32)   # apart at t
    ball = _balls(shape, [(8, 20, 26)]) > 0                              # what cell 1's carry finds at t + 1

    def halves(mask, spacing=None):
        left = np.zeros(mask.shape, bool)
        left[..., : mask.shape[-1] // 2] = True
        return mask & left, mask & ~left
    import halo_seg.interactive.carry as carry_module
    monkeypatch.setattr(carry_module, "two_cells", halves)   # where touching_parts reads it
    out = carry_all_module.carry_all(lambda: _Fixed(ball.astype(np.float32), ball), labels, 0, drop_neighbours=True)
    one = out[0]
    assert one.label == 1 and one.left == 2 and not one.two
    whole = np.zeros(shape, bool)
    whole[one.box] = one.mask
    box = carry_all_module.object_boxes(ball.astype(np.uint8))[1]
    assert np.array_equal(whole, ball & (np.arange(60) < box[2].start + (box[2].stop - box[2].start) // 2))
    assert one.box == tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(whole))
    want = carry_record(whole, 1, carry_record(labels == 1, 0, None, 0, 1), 0, 1)
    arrays = ("centroid", "step", "source", "contrast", "noise")
    assert {k: v for k, v in one.record.items() if k not in arrays} == {k: v for k, v in want.items() if k not in arrays}
    assert np.allclose(one.record["centroid"], want["centroid"]) and np.allclose(one.record["step"], want["step"])
    other = np.zeros(shape, bool)                                        # cell 2's carry found it too: the
    other[out[1].box] = out[1].mask                                      # other half, the first left to 1
    assert out[1].left == 1 and np.array_equal(other, ball & ~whole)


def test_grown_over_keeps_the_own_part_of_an_object_that_took_in_a_touching_cell():
    """carry.grown_over by hand: cell 1 (where it was: ``before``) moved 2 voxels and its object took
    in a touching cell no object held, twice its volume: its own part kept. A mother's object over
    her two daughters (no more than her volume, both where she was), an object under GREW_OVER times its volume,
    and a cell that grew a lobe where it was are not cut."""
    from halo_seg.interactive.carry import GREW_OVER, grown_over, took_in, touching_parts, two_cells
    shape = (16, 40, 60)
    before = _balls(shape, [(8, 20, 22)]) > 0
    now = _balls(shape, [(8, 20, 24), (8, 20, 35)])             # 1 moved on, and the cell it touches
    box = (slice(2, 15), slice(14, 27), slice(18, 42))
    parts = two_cells((now > 0)[box])
    assert parts is not None
    own = grown_over(parts, box, before, int(before.sum()))
    assert own is not None
    ids = before.astype(np.int32) * 4                            # as ids (4), read within its bounds
    bounds = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(before))
    assert parts[took_in(parts, box, ids, 4, bounds)] is own and took_in(parts[::-1], box, ids, 4, bounds) == \
        1 - [p is own for p in parts].index(True)
    assert took_in(parts, box, ids, 4, (slice(0, 16), slice(0, 40), slice(0, 10))) is None   # not there: not judged
    # touching_parts, what the carries ask: the same parts and own part; without where it came from, no own part
    got, k = touching_parts((now > 0)[box], box, before=ids, label=4, bounds=bounds)
    assert all(np.array_equal(g, p) for g, p in zip(got, parts)) and got[k].sum() == own.sum() and (got[k] == own).all()
    assert touching_parts((now > 0)[box], box)[1] is None and touching_parts(before[box], box, None, ids, 4, bounds) == \
        (None, None)
    kept = np.zeros(shape, bool)
    kept[box] = own
    assert (kept & (now == 1)).sum() > 0.9 * (now == 1).sum() and (kept & (now == 2)).sum() < 0.1 * (now == 2).sum()
    # the same object, had the cell been as large as both: no cut
    assert grown_over(parts, box, before, int((now > 0).sum() / GREW_OVER) + 1) is None
    # a mother's object over her daughters: both where she was, her volume
    mother = _balls(shape, [(8, 20, 29)], 8) > 0
    daughters = _balls(shape, [(8, 20, 24), (8, 20, 34)], 5)
    parts = two_cells((daughters > 0)[box])
    assert parts is not None and grown_over(parts, box, mother, int(mother.sum())) is None
    # a cell that grew, its new lobe lying mostly where it was: no cut
    assert grown_over(parts, box, (daughters > 0) | before, int(0.6 * (daughters > 0).sum())) is None


def test_keep_own_leaves_out_the_touching_cell_an_object_grew_over():
    """carry_all(keep_own=True): cell 1 moved 2 voxels and its carry (a stand-in session) found it
    with the touching cell 2 that no object holds: the object is cell 1's part alone, its box and
    record that part's, said (took_in), not "looks like two" (the default); without keep_own, both,
    said to look like two."""
    from halo_seg.interactive.carry import carry_record
    from halo_seg.interactive.carry_all import carry_all
    shape = (16, 40, 60)
    labels = _balls(shape, [(8, 20, 22)]).astype(np.int32)
    now = _balls(shape, [(8, 20, 24), (8, 20, 35)])
    found = now > 0
    out = carry_all(lambda: _Fixed(found.astype(np.float32), found), labels, 0, keep_own=False)
    assert not out[0].took_in and out[0].two and len(out) == 1
    out = carry_all(lambda: _Fixed(found.astype(np.float32), found), labels, 0)   # the default
    one = out[0]
    assert one.took_in and not one.two
    whole = np.zeros(shape, bool)
    whole[one.box] = one.mask
    assert (whole & (now == 1)).sum() > 0.9 * (now == 1).sum() and (whole & (now == 2)).sum() < 0.1 * (now == 2).sum()
    assert one.box == tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(whole))
    want = carry_record(whole, 1, carry_record(labels == 1, 0, None, 0, 1), 0, 1)
    assert np.allclose(one.record["centroid"], want["centroid"]) and one.record["area"] == want["area"]
