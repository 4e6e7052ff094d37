"""The object's column read block by block as the sweeps reach it (interactive/column.py)."""
import numpy as np
import pytest

from halo_seg import InteractiveError, InteractiveSegmenter
from halo_seg.interactive import column as columns
from halo_seg.interactive.column import ColumnReader
from halo_seg.interactive.model_io import default_memnet_installed
from halo_seg.metrics import dice

needs_default = pytest.mark.skipif(not default_memnet_installed(), reason="default interactive weights not installed")


def test_the_reader_gives_the_array_and_reads_each_block_once():
    arr = np.random.default_rng(0).random((150, 5, 5)).astype(np.float32)
    r = ColumnReader(lambda z0, z1: arr[z0:z1], 150, 5)
    assert len(r) == 150 and r.reads == [] and r.nbytes == 0
    assert np.array_equal(r[70], arr[70]) and r.reads == [(64, 128)]
    assert np.array_equal(r[60:130], arr[60:130])
    assert np.array_equal(r[-1], arr[-1]) and np.array_equal(r[130:400], arr[130:])
    assert np.array_equal(np.asarray(r), arr) and r[10:10].shape == (0, 5, 5)
    assert sorted(r.reads) == [(0, 64), (64, 128), (128, 150)] and r.nbytes == arr.nbytes
    with pytest.raises(IndexError):
        r[150]
    with pytest.raises(IndexError):
        r[::2]
    with pytest.raises(ValueError, match="expected"):
        ColumnReader(lambda z0, z1: arr[z0:z1, :4], 150, 5)[0]


class _Recording:
    """An array-like that records the slice ranges read from it."""

    def __init__(self, arr):
        self.arr, self.shape, self.dtype, self.ndim = arr, arr.shape, arr.dtype, arr.ndim
        self.reads = []

    def __getitem__(self, key):
        z = key[0]
        self.reads.append((z.start, z.stop) if isinstance(z, slice) else (z, z + 1))
        return self.arr[key]


def _tall_ball(nz=320, centre=160, radius=8, side=64):
    zz, yy, xx = np.ogrid[:nz, :side, :side]
    ball = (zz - centre) ** 2 + (yy - side // 2) ** 2 + (xx - side // 2) ** 2 < radius ** 2
    rng = np.random.default_rng(1)
    return (ball * 150 + 30 + rng.normal(0, 6, ball.shape)).astype(np.float32), ball


@needs_default
def test_a_tall_stack_is_read_only_near_the_object_and_gives_the_short_stacks_result():
    image, ball = _tall_ball()
    vol = _Recording(image)
    seg = InteractiveSegmenter(vol, device="cpu")
    box = (160, 24, 24, 40, 40)
    seg.add_box(*box)
    pred = seg.propagate()
    assert dice(pred, ball) > 0.8
    read = sorted({z for a, b in vol.reads for z in range(a, b)})
    assert read == list(range(128, 192)), (read[0], read[-1])   # the ball's block, not 320 slices
    # the same block as a stack of its own: the same encoder batches, so the same result bit for bit
    short = InteractiveSegmenter(image[128:192], device="cpu")
    short.add_box(box[0] - 128, *box[1:])
    assert np.array_equal(short.propagate(), pred[128:192]) and not pred[:128].any() and not pred[192:].any()
    np.testing.assert_array_equal(short.quality, seg.quality[128:192])
    # a correction that leaves the region of interest where it was reads nothing again, nor does a
    # "not here" slice far from where the sweeps go
    n = len(vol.reads)
    seg.set_slice_mask(180, np.zeros(ball.shape[1:], bool))
    seg.set_slice_mask(5, np.zeros(ball.shape[1:], bool))
    seg.propagate()
    assert len(vol.reads) == n


@needs_default
def test_the_block_size_changes_only_the_encoders_batches(monkeypatch):
    image, ball = _tall_ball(nz=48, centre=24, radius=10)
    out = []
    for block in (64, 5):
        monkeypatch.setattr(columns, "BLOCK", block)
        seg = InteractiveSegmenter(image, device="cpu")
        seg.add_box(24, 22, 22, 42, 42)
        out.append((seg.propagate(), seg.quality))
    (a, qa), (b, qb) = out
    assert dice(a, b) > 0.995 and dice(a, ball) > 0.8
    np.testing.assert_allclose(qa, qb, atol=1e-3)


@needs_default
def test_nan_far_from_the_object_is_not_read_and_nan_near_it_is_refused():
    import dask.array as da
    image, _ = _tall_ball(nz=200, centre=100)
    image[10, 32, 32] = np.nan        # in the column, in a block no sweep reaches
    seg = InteractiveSegmenter(da.from_array(image, chunks=(32, 64, 64)), device="cpu")
    seg.add_box(100, 24, 24, 40, 40)
    assert seg.propagate()[100].any()
    image[101, 30, 30] = np.nan
    seg = InteractiveSegmenter(da.from_array(image, chunks=(32, 64, 64)), device="cpu")
    seg.add_box(100, 24, 24, 40, 40)
    with pytest.raises(InteractiveError, match="NaN"):
        seg.propagate()
    assert seg.annotated_slices == [] and not seg.prediction.any()
