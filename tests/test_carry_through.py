"""`halo-seg carry`: a time point's objects carried through a time-lapse, every object at once a time
point at a time, written as labels over time with each object's link to the one it came from."""
import json

import numpy as np
import pytest
from _cells import balls
import zarr

from halo_seg.interactive.model_io import default_memnet_installed
from halo_seg.interactive.carry_through import STATE

pytestmark = pytest.mark.skipif(not default_memnet_installed(), reason="no shipped interactive weights")

SHAPE = (16, 40, 80)


def _balls(centres, radius=5):
    return balls(SHAPE, centres, radius)


def _movie(tmp_path):
    """Four time points, two cells crawling 3 voxels a time point along x (apart from each other)."""
    truth = np.stack([_balls([(8, 12, 14 + 3 * t), (8, 28, 40 + 3 * t)]) for t in range(4)])
    rng = np.random.default_rng(0)
    image = ((truth > 0) * 1.0 + rng.normal(0, 0.2, truth.shape)).astype(np.float32)
    z = zarr.open_array(str(tmp_path / "movie.zarr"), mode="w", shape=image.shape, dtype=image.dtype)
    z[:] = image
    z.attrs["axes"] = ["t", "z", "y", "x"]
    return image, truth


def _followed(image, cell, t0, t1):
    """The reference: one cell followed alone as Next time point follows it (its record carried on)."""
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive.carry import carried_boxes, carry_record, find_again
    step = 1 if t1 > t0 else -1
    pred, record, out = cell, None, {}
    for t in range(t0 + step, t1 + step, step):
        record = carry_record(pred, t - step, record)
        seg = InteractiveSegmenter(image[t], device="cpu")
        find_again(seg, carried_boxes(record, seg.shape, step), record["area"])
        pred = out[t] = seg.propagate()
    return out


def test_the_objects_are_carried_to_the_last_time_point_linked_and_tracked(tmp_path, capsys):
    from halo_seg.cli import main
    from halo_seg.metrics import dice
    image, truth = _movie(tmp_path)
    objects = (truth[0].astype(np.uint16) * 7)                  # ids 7 and 14
    np.save(tmp_path / "objects.npy", objects)
    out = tmp_path / "carried.zarr"
    assert main(["carry", str(tmp_path / "movie.zarr"), str(tmp_path / "objects.npy"), str(out), "--device", "cpu",
                 "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    arr = zarr.open_array(str(out), mode="r")
    assert arr.shape == (4,) + SHAPE and arr.dtype == np.uint32 and arr.attrs["axes"] == ["t", "z", "y", "x"]
    assert arr.chunks == (1,) + SHAPE                              # a small time point: one chunk
    assert np.array_equal(arr[0], objects)
    links = {int(k): v for k, v in arr.attrs["carried_from"].items()}
    assert links == {15: 7, 16: 14, 17: 15, 18: 16, 19: 17, 20: 18} and summary["links"] == arr.attrs["carried_from"]
    assert [r["committed"] for r in summary["rows"]] == [2, 2, 2] and summary["timepoints"] == [0, 1, 2, 3]
    for first, cell in ((7, 1), (14, 2)):
        ref = _followed(image, truth[0] == cell, 0, 3)
        k = first
        for t in (1, 2, 3):
            k = next(new for new, old in links.items() if old == k)
            assert np.array_equal(arr[t] == k, ref[t]), (cell, t)
            assert dice(arr[t] == k, truth[t] == cell) > 0.85, (cell, t)
    # tracked keeping those links: one track a cell over the four time points
    assert main(["track", str(out), str(tmp_path / "tracks.zarr"), "--ids", "--quiet"]) == 0
    lineage = np.asarray(zarr.open_group(str(tmp_path / "tracks.zarr"))["lineage"][...]).reshape(-1, 4)
    assert sorted(lineage[:, 1:].tolist()) == [[0, 3, 0], [0, 3, 0]]


def test_carried_backward_and_what_is_refused(tmp_path):
    from halo_seg.interactive.carry_through import carry_through
    from halo_seg.io import VolumeError
    image, truth = _movie(tmp_path)
    kept = np.zeros(truth.shape, np.uint16)                      # a time-lapse's labels: time point 3's taken
    kept[3] = truth[3]
    np.save(tmp_path / "kept.npy", kept)
    run = carry_through(tmp_path / "movie.zarr", tmp_path / "kept.npy", tmp_path / "back.zarr", start=3, stop=1,
                        device="cpu")
    arr = zarr.open_array(str(tmp_path / "back.zarr"), mode="r")
    assert run.timepoints == [3, 2, 1] and not arr[0].any() and np.array_equal(arr[3], truth[3])
    ref = _followed(image, truth[3] == 1, 3, 1)
    k2 = next(new for new, old in run.links.items() if old == 1)
    k1 = next(new for new, old in run.links.items() if old == k2)
    assert np.array_equal(arr[2] == k2, ref[2]) and np.array_equal(arr[1] == k1, ref[1])
    movie, objects = tmp_path / "movie.zarr", tmp_path / "kept.npy"
    for kwargs, match in (({"start": 3, "stop": 3}, "start and stop are both time point 3"),
                          ({"start": 0, "stop": 9}, r"the stop time point 9 is outside the time-lapse \(0 to 3\)"),
                          ({"start": 0}, "hold no object at time point 0: nothing to carry")):
        with pytest.raises(VolumeError, match=match):
            carry_through(movie, objects, tmp_path / "new.zarr", device="cpu", **kwargs)
    with pytest.raises(VolumeError, match="back.zarr exists: carry writes a new labels array"):
        carry_through(movie, objects, tmp_path / "back.zarr", start=3, device="cpu")
    np.save(tmp_path / "small.npy", truth[0, :8])
    with pytest.raises(VolumeError, match=r"are \(8, 40, 80\), the image's time points \(16, 40, 80\)"):
        carry_through(movie, tmp_path / "small.npy", tmp_path / "new.zarr", device="cpu")
    np.save(tmp_path / "one.npy", image[0])
    with pytest.raises(VolumeError, match="has no time points to take one by one; carry follows objects"):
        carry_through(tmp_path / "one.npy", objects, tmp_path / "new.zarr", device="cpu")
    with pytest.raises(VolumeError, match="float32 values, not labels"):
        carry_through(movie, tmp_path / "one.npy", tmp_path / "new.zarr", device="cpu")
    assert not (tmp_path / "new.zarr").exists()                  # nothing written where it was refused


def test_a_cell_left_out_of_an_object_is_written_as_its_own_and_carried_on(tmp_path, capsys, monkeypatch):
    """A cell left out of an object that had grown over it (carry_all's keep_own, the default; here
    made by a stand-in around the real carry_all at time point 0: cell 3, which no object held) is
    written as a new object, linked to nothing, said in its row and by the CLI, and carried on
    from there like any other object (linked at the next time point)."""
    import halo_seg.interactive.carry_all as carry_all_module
    from halo_seg.cli import main
    from halo_seg.interactive.carry import carry_record
    truth = np.stack([_balls([(8, 12, 14 + 3 * t), (8, 28, 40 + 3 * t), (8, 12, 60)]) for t in range(4)])
    rng = np.random.default_rng(0)
    image = ((truth > 0) * 1.0 + rng.normal(0, 0.2, truth.shape)).astype(np.float32)
    z = zarr.open_array(str(tmp_path / "movie.zarr"), mode="w", shape=image.shape, dtype=image.dtype)
    z[:] = image
    z.attrs["axes"] = ["t", "z", "y", "x"]
    objects = np.where(truth[0] == 3, 0, truth[0]).astype(np.uint16)   # cells 1 and 2 only
    np.save(tmp_path / "objects.npy", objects)
    real = carry_all_module.carry_all
    cell = truth[1] == 3
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(cell))

    def with_left_out(make_seg, labels, t, records=None, direction=1, *args, **kwargs):
        out = real(make_seg, labels, t, records, direction, *args, **kwargs)
        if t == 0:
            assert kwargs["keep_own"] is True                       # the default, passed on
            out.append(carry_all_module.Carried(0, None, box, cell[box], carry_record(cell, 1, None, 0, 0, box=box),
                                                grown_from=1))
        return out
    monkeypatch.setattr(carry_all_module, "carry_all", with_left_out)
    assert main(["carry", str(tmp_path / "movie.zarr"), str(tmp_path / "objects.npy"), str(tmp_path / "out.zarr"),
                 "--to", "2", "--device", "cpu", "--json"]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    rows = json.loads(said[-1])["rows"]
    arr = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert rows[0]["objects"] == 2 and rows[0]["committed"] == 2 and rows[0]["left_out"] == [5]
    assert said[0] == "time point 1: 2 of 2 objects carried (a cell left out of one, its own object: 5)", said[0]
    assert np.array_equal(arr[1] == 5, cell)
    links = {int(k): v for k, v in arr.attrs["carried_from"].items()}
    assert links == {3: 1, 4: 2, 6: 3, 7: 4, 8: 5}                 # 5 from nothing; carried on as 8
    assert ((arr[2] == 8) & (truth[2] == 3)).sum() > 0.8 * (truth[2] == 3).sum()
    assert arr.attrs[STATE]["settings"]["keep_own"] is True


def test_a_cell_that_left_is_not_carried_on_noise(tmp_path, capsys):
    """Cell 2 is gone from time point 2 on (left the field): what its box finds there is noise, it
    has faded (carry.faded), and its track ends at time point 1; the CLI says so. With --keep-faded it
    is written on (and carried on through the noise)."""
    from halo_seg.cli import main
    image, truth = _movie(tmp_path)
    truth[2:][truth[2:] == 2] = 0
    rng = np.random.default_rng(1)
    image = ((truth > 0) * 1.0 + rng.normal(0, 0.2, truth.shape)).astype(np.float32)
    zarr.open_array(str(tmp_path / "movie.zarr"), mode="r+")[:] = image
    np.save(tmp_path / "objects.npy", truth[0])
    args = [str(tmp_path / "movie.zarr"), str(tmp_path / "objects.npy")]
    assert main(["carry", *args, str(tmp_path / "out.zarr"), "--device", "cpu", "--json"]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    rows = json.loads(said[-1])["rows"]
    arr = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    links = {int(k): v for k, v in arr.attrs["carried_from"].items()}
    assert links == {3: 1, 4: 2, 5: 3, 6: 5}                     # 4 (cell 2 at time point 1) carried no further
    assert [r["faded"] for r in rows] == [[], [4], []] and [r["committed"] for r in rows] == [2, 1, 1]
    assert "faded into the background (left the field or gone; not written): 4" in said[1]
    assert set(np.unique(arr[2])) == {0, 5} and set(np.unique(arr[3])) == {0, 6}
    assert main(["carry", *args, str(tmp_path / "kept.zarr"), "--device", "cpu", "--json", "--keep-faded",
                 "--no-keep-own", "--quiet"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert [r["committed"] for r in rows] == [2, 2, 2] and all(r["faded"] == [] for r in rows)
    settings = zarr.open_array(str(tmp_path / "kept.zarr"), mode="r").attrs[STATE]["settings"]
    assert settings["keep_faded"] is True and settings["keep_own"] is False   # as asked, kept for --resume


def test_a_stopped_run_resumed_equals_one_never_stopped(tmp_path, capsys):
    """A run stopped after time point 1 (cancelled while carrying to 2), resumed, writes what a run
    never stopped writes: the same labels, links and rows; carried to 2 only, then resumed to the
    last, the same again. Refused: resuming with other objects or settings, a new run over it,
    resuming what does not exist or was not written by carry; a second run while one holds it."""
    from halo_seg.cli import main
    from halo_seg.interactive.carry_through import carry_through
    from halo_seg.io import VolumeError
    image, truth = _movie(tmp_path)
    truth[2:][truth[2:] == 2] = 0                                # cell 2 leaves at 2: a track ending in it
    rng = np.random.default_rng(1)
    image = ((truth > 0) * 1.0 + rng.normal(0, 0.2, truth.shape)).astype(np.float32)
    zarr.open_array(str(tmp_path / "movie.zarr"), mode="r+")[:] = image
    movie, objects = tmp_path / "movie.zarr", tmp_path / "objects.npy"
    np.save(objects, truth[0])
    whole = carry_through(movie, objects, tmp_path / "whole.zarr", device="cpu")
    done = []
    with pytest.raises(InterruptedError):
        carry_through(movie, objects, tmp_path / "part.zarr", device="cpu", progress=lambda k, n: done.append(k),
                      cancel=lambda: len(done) >= 1)
    part = zarr.open_array(str(tmp_path / "part.zarr"), mode="r")
    assert part[1].any() and not part[2].any() and not (tmp_path / "part.zarr" / "running").exists()
    with pytest.raises(VolumeError, match="part.zarr exists: .*--resume goes on with the run that wrote it"):
        carry_through(movie, objects, tmp_path / "part.zarr", device="cpu")
    assert main(["carry", str(movie), str(objects), str(tmp_path / "part.zarr"), "--device", "cpu", "--resume",
                 "--json", "--quiet"]) == 0
    said = capsys.readouterr()
    summary = json.loads(said.out.strip().splitlines()[-1])
    assert "resumed after time point 1, the last" in said.err
    a, b = zarr.open_array(str(tmp_path / "whole.zarr"), mode="r"), zarr.open_array(str(tmp_path / "part.zarr"),
                                                                                   mode="r")
    assert np.array_equal(a[:], b[:]) and a.attrs["carried_from"] == b.attrs["carried_from"]
    assert summary["rows"] == whole.rows and summary["timepoints"] == [0, 1, 2, 3] and whole.rows[1]["faded"]
    # carried to 2 only, then on to the last
    carry_through(movie, objects, tmp_path / "two.zarr", stop=2, device="cpu")
    again = carry_through(movie, objects, tmp_path / "two.zarr", device="cpu", resume=True)
    assert again.resumed_after == 2 and again.rows == whole.rows
    assert np.array_equal(zarr.open_array(str(tmp_path / "two.zarr"), mode="r")[:], a[:])
    assert carry_through(movie, objects, tmp_path / "two.zarr", device="cpu", resume=True).timepoints[-1] == 3
    other = truth[0].copy()
    other[other == 2] = 0
    np.save(tmp_path / "other.npy", other)
    for args, kwargs, match in (
            ((tmp_path / "other.npy", tmp_path / "part.zarr"), {}, "carried from other objects at time point 0"),
            ((objects, tmp_path / "part.zarr"), {"keep_faded": True},
             "other settings \\(keep_faded: False then, True now\\)"),
            ((objects, tmp_path / "part.zarr"), {"keep_own": False},
             "other settings \\(keep_own: True then, False now\\)"),
            ((objects, tmp_path / "none.zarr"), {}, "none.zarr does not exist: nothing to resume")):
        with pytest.raises(VolumeError, match=match):
            carry_through(movie, *args, device="cpu", resume=True, **kwargs)
    # a run's state on an array of another shape (another time-lapse's run, its attrs copied)
    wrong = zarr.open_array(str(tmp_path / "wrong.zarr"), mode="w", shape=(3,) + SHAPE, dtype=np.uint32)
    wrong.attrs.update(dict(part.attrs))
    with pytest.raises(VolumeError, match=f"wrong.zarr is \\(3, {SHAPE[0]}, .*this time-lapse \\(4, .*another one"):
        carry_through(movie, objects, tmp_path / "wrong.zarr", device="cpu", resume=True)
    assert not wrong[:].any()
    zarr.open_array(str(tmp_path / "foreign.zarr"), mode="w", shape=(4,) + SHAPE, dtype=np.uint32)
    with pytest.raises(VolumeError, match="holds no carry run to resume"):
        carry_through(movie, objects, tmp_path / "foreign.zarr", device="cpu", resume=True)
    import os
    import socket
    (tmp_path / "part.zarr" / "running").write_text(f"{socket.gethostname()} {os.getppid()}")   # a live run's
    with pytest.raises(VolumeError, match="another `carry` run .* is writing"):
        carry_through(movie, objects, tmp_path / "part.zarr", device="cpu", resume=True)


def test_a_cell_that_came_in_is_added_and_carried_on(tmp_path, capsys):
    """A third cell appears at time point 2 (came into the field): with --add-new it is a new object
    there, linked to nothing, and carried on to 3; its mask there is what a box on it gives
    (segment_new); without, no object holds it."""
    from halo_seg.cli import main
    from halo_seg.metrics import dice
    image, truth = _movie(tmp_path)
    third = np.stack([_balls([(0, 0, 0), (0, 0, 0), (8, 30, 66 - 2 * t)]) == 3 for t in range(4)])
    third[:2] = False
    truth[third] = 3
    rng = np.random.default_rng(2)
    image = ((truth > 0) * 1.0 + rng.normal(0, 0.2, truth.shape)).astype(np.float32)
    zarr.open_array(str(tmp_path / "movie.zarr"), mode="r+")[:] = image
    np.save(tmp_path / "objects.npy", truth[0])
    args = [str(tmp_path / "movie.zarr"), str(tmp_path / "objects.npy")]
    assert main(["carry", *args, str(tmp_path / "new.zarr"), "--device", "cpu", "--add-new", "--json"]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    rows = json.loads(said[-1])["rows"]
    arr = zarr.open_array(str(tmp_path / "new.zarr"), mode="r")
    links = {int(k): v for k, v in arr.attrs["carried_from"].items()}
    assert [r["new"] for r in rows] == [[], [7], []]            # cells 1, 2 carried as 3, 4 then 5, 6; 7 new
    assert "new objects where no object was (cells that came in?): 7" in said[1]
    assert 7 not in links and links[10] == 7 and dice(arr[2] == 7, third[2]) > 0.8 and dice(arr[3] == 10, third[3]) > 0.8
    assert main(["carry", *args, str(tmp_path / "old.zarr"), "--device", "cpu", "--quiet"]) == 0
    old = zarr.open_array(str(tmp_path / "old.zarr"), mode="r")
    assert not old[2][third[2]].any() and np.array_equal(old[1], arr[1])
