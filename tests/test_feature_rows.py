"""A Labels layer's rows of features written several at once equal the same rows written one by one
(what a row does not say, such as a name, kept), and rows dropped at once leave the others."""
import numpy as np
import pytest

napari = pytest.importorskip("napari")


def _layer():
    from napari_halo_seg._measure import set_row
    layer = napari.layers.Labels(np.zeros((4, 8, 8), np.int32))
    for i, name in ((1, "liver"), (2, ""), (3, "spleen")):
        set_row(layer, {"index": i, "name": name, "voxels": 10 * i})
    return layer


def _table(layer):
    """The features as lists, a value missing the same whichever way napari kept it (NaN, or the text
    'nan' where a text column was written again row by row)."""
    return {k: [None if v is None or v == "nan" or v != v else v for v in vs]
            for k, vs in layer.features.to_dict("list").items()}


def test_rows_at_once_equal_rows_one_by_one():
    from napari_halo_seg._measure import drop_row, drop_rows, set_row, set_rows
    rows = [{"index": 3, "voxels": 31}, {"index": 4, "voxels": 40, "carried from": 1},
            {"index": 4, "timepoint": 2}, {"index": 1, "voxels": 11}]
    one, once = _layer(), _layer()
    for r in rows:
        set_row(one, r)
    set_rows(once, rows)
    assert _table(one) == _table(once)
    got = once.features.set_index("index")
    assert got.loc[3, "name"] == "spleen" and got.loc[3, "voxels"] == 31       # its name kept
    assert got.loc[4, "carried from"] == 1 and got.loc[4, "timepoint"] == 2    # the two rows of 4, merged
    for k in (1, 4):
        drop_row(one, k)
    drop_rows(once, [1, 4, 99])                                                # an id without a row: nothing
    assert _table(one) == _table(once)
    assert list(once.features["index"]) == [2, 3]
