"""Every time point of a time-lapse segmented in turn (engine/series.py): each equal to segmenting
that time point alone, one output group per time point, read together as (T, Z, Y, X) labels."""
import numpy as np
import pytest
import tifffile
import zarr

from halo_seg.engine.runner import segment
from halo_seg.engine.series import parse_timepoints, segment_series
from halo_seg.io import VolumeError, open_volume
from halo_seg.io.volume import file_contents


@pytest.fixture
def movie(tmp_path):
    """A (T, Z, Y, X) time-lapse of 3 different phantoms, as an ImageJ TIFF; returns (path, frames)."""
    from halo_seg.samples import make_phantom
    frames = np.stack([make_phantom((16, 24, 20), n_objects=3, seed=s).image for s in range(3)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "movie.tif", frames, imagej=True, metadata={"axes": "TZYX"})
    return tmp_path / "movie.tif", frames


def _alone(frame, weights, out):
    segment(frame, out, weights, mode="whole")
    return zarr.open_group(str(out))["labels"][...]


def test_each_time_point_equals_segmenting_it_alone(tmp_path, movie, tiny_weights):
    path, frames = movie
    res = segment_series(path, tmp_path / "out.zarr", weights=tiny_weights, grid=(2, 1, 1))   # halo, 2 ranks
    assert res.timepoints == [0, 1, 2] and len(res.frames) == 3 and not res.skipped
    whole = file_contents(tmp_path / "out.zarr")
    assert whole.data.shape == frames.shape and whole.meta["axes"] == ["t", "z", "y", "x"] and whole.meta["labels"]
    for t in range(3):
        ref = _alone(frames[t], tiny_weights, tmp_path / f"ref{t}.zarr")
        assert ref.any()
        np.testing.assert_array_equal(np.asarray(whole.data[t]), ref)
        np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "out.zarr", timepoint=t).data), ref)
        # each time point is an ordinary output: every command takes it
        np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / f"out.zarr/t{t:04d}").data), ref)
        assert zarr.open_group(str(tmp_path / f"out.zarr/t{t:04d}")).attrs["halo_seg"]["signature"]["timepoint"] == t
    # the frames differ, so equality above is not one frame read three times
    assert not np.array_equal(np.asarray(whole.data[0]), np.asarray(whole.data[1]))


def test_chosen_time_points_and_the_others_read_as_background(tmp_path, movie, tiny_weights):
    path, frames = movie
    res = segment_series(path, tmp_path / "out.zarr", timepoints="0,2", weights=tiny_weights, mode="whole")
    assert res.timepoints == [0, 2]
    v = file_contents(tmp_path / "out.zarr")
    assert v.meta["time_series"] == {"timepoints": 3, "segmented": [0, 2]}
    assert not np.asarray(v.data[1]).any()
    with pytest.raises(VolumeError, match="time point 1 was not segmented"):   # as one volume: refused
        open_volume(tmp_path / "out.zarr", timepoint=1)
    np.testing.assert_array_equal(np.asarray(v.data[2]), _alone(frames[2], tiny_weights, tmp_path / "r.zarr"))
    # --resume with another time point adds it; a new run without it replaces the output
    segment_series(path, tmp_path / "out.zarr", timepoints="1", weights=tiny_weights, mode="whole", resume=True)
    assert file_contents(tmp_path / "out.zarr").meta["time_series"]["segmented"] == [0, 1, 2]
    segment_series(path, tmp_path / "out.zarr", timepoints="1", weights=tiny_weights, mode="whole")
    v = file_contents(tmp_path / "out.zarr")
    assert v.meta["time_series"]["segmented"] == [1] and not np.asarray(v.data[2]).any()


def test_a_4d_array_is_taken_as_time_points(tmp_path, movie, tiny_weights, monkeypatch):
    """An array (a napari layer with no file): its time points on ranks started once while they fit
    ARRAY_BATCH_BYTES, else a few at a time."""
    from halo_seg.engine import runner, series
    _, frames = movie
    starts = []
    spawn = runner._spawn_ranks
    monkeypatch.setattr(runner, "_spawn_ranks", lambda job, *a, **k: starts.append(len(job["frames"])) or
                        spawn(job, *a, **k))
    segment_series(frames, tmp_path / "out.zarr", timepoints="0-2", weights=tiny_weights, grid=(2, 1, 1))
    assert starts == [3]
    v = file_contents(tmp_path / "out.zarr")
    for t in range(3):
        np.testing.assert_array_equal(np.asarray(v.data[t]), _alone(frames[t], tiny_weights, tmp_path / f"r{t}.zarr"))
    monkeypatch.setattr(series, "ARRAY_BATCH_BYTES", 2 * frames[0].nbytes)
    segment_series(frames, tmp_path / "two.zarr", weights=tiny_weights, grid=(2, 1, 1))
    assert starts[1:] == [2, 1]
    np.testing.assert_array_equal(np.asarray(file_contents(tmp_path / "two.zarr").data), np.asarray(v.data))


def test_resume_goes_on_from_the_time_points_not_finished(tmp_path, movie, tiny_weights):
    path, frames = movie
    out = tmp_path / "out.zarr"
    segment_series(path, out, weights=tiny_weights, mode="whole")
    import shutil
    shutil.rmtree(out / "t0002")               # a run that stopped before the last time point
    v = file_contents(out)
    assert "incomplete" in v.meta and "2" in v.meta["incomplete"]
    res = segment_series(path, out, weights=tiny_weights, mode="whole", resume=True)
    assert res.skipped == [0, 1]
    assert [r.seconds for r in res.frames[:2]] == [0.0, 0.0]   # nothing run again
    assert "incomplete" not in file_contents(out).meta
    np.testing.assert_array_equal(np.asarray(file_contents(out).data[2]),
                                  _alone(frames[2], tiny_weights, tmp_path / "r.zarr"))
    # another input's time points are not resumed into it
    tifffile.imwrite(tmp_path / "other.tif", frames[:2], imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(VolumeError, match="cannot resume"):
        segment_series(tmp_path / "other.tif", out, weights=tiny_weights, mode="whole", resume=True)


def test_bad_input_is_named_and_nothing_is_lost(tmp_path, movie, tiny_weights):
    path, frames = movie
    np.save(tmp_path / "vol.npy", frames[0])
    with pytest.raises(VolumeError, match="no time points"):
        segment_series(tmp_path / "vol.npy", tmp_path / "a.zarr", weights=tiny_weights)
    with pytest.raises(VolumeError, match="out of range.*3 time points"):
        segment_series(path, tmp_path / "a.zarr", timepoints="1-3", weights=tiny_weights)
    assert not (tmp_path / "a.zarr").exists()
    # an existing output that is not a series (a 3D run's) is not replaced
    segment(frames[0], tmp_path / "b.zarr", tiny_weights, mode="whole")
    with pytest.raises(VolumeError, match="not a time series output"):
        segment_series(path, tmp_path / "b.zarr", weights=tiny_weights, mode="whole")
    assert (tmp_path / "b.zarr" / "labels").is_dir()
    # a time point corrected by hand is not overwritten by a new run
    segment_series(path, tmp_path / "c.zarr", timepoints="1", weights=tiny_weights, mode="whole")
    from halo_seg.engine.output import CORRECTED
    zarr.open_group(str(tmp_path / "c.zarr/t0001"))["labels"].attrs[CORRECTED] = "2026-12-06 10:00"
    with pytest.raises(VolumeError, match="time point 1 holds corrections"):
        segment_series(path, tmp_path / "c.zarr", weights=tiny_weights, mode="whole")
    # an error in a time point names it
    with pytest.raises(Exception, match="time point 0"):
        segment_series(path, tmp_path / "d.zarr", weights=tiny_weights, mode="tile", tile_size=2)


@pytest.mark.parametrize("spec, expected", [("all", [0, 1, 2, 3, 4]), ("3", [3]), ("0-2", [0, 1, 2]),
                                            ("4,0-1,1", [0, 1, 4]), ([2, 0], [0, 2])])
def test_time_point_choices(spec, expected):
    assert parse_timepoints(spec, 5) == expected


@pytest.mark.parametrize("spec, message", [("3-1", "ends before"), ("a-b", "give 'all'"), ("5", "out of range"),
                                           ("", "give 'all'")])
def test_time_point_choices_refused(spec, message):
    with pytest.raises(VolumeError, match=message):
        parse_timepoints(spec, 5)


def test_command_line_segments_every_time_point(tmp_path, movie, tiny_weights, capsys):
    from halo_seg.cli import main
    path, frames = movie
    assert main(["segment", str(path), str(tmp_path / "out.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole", "--timepoint", "all"]) == 0
    text = capsys.readouterr().out
    assert "wrote 3 time points" in text and "t0002" in text
    assert main(["segment", str(path), str(tmp_path / "out.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole", "--timepoint", "all", "--resume"]) == 0
    assert "3 already done" in capsys.readouterr().out
    # one time point (digits) is still a single 3D run
    assert main(["segment", str(path), str(tmp_path / "one.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole", "--timepoint", "1"]) == 0
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "one.zarr"))["labels"][...],
                                  np.asarray(file_contents(tmp_path / "out.zarr").data[1]))


def test_napari_reader_opens_the_series_as_one_labels_layer(tmp_path, movie, tiny_weights):
    pytest.importorskip("napari")
    from napari_halo_seg._reader import read_volume
    path, frames = movie
    segment_series(path, tmp_path / "out.zarr", timepoints="0-1", weights=tiny_weights, mode="whole")
    (labels, lk, ltype), (doubt, dk, dtype_) = read_volume(str(tmp_path / "out.zarr"))
    assert ltype == "labels" and dtype_ == "image" and not dk["visible"]
    assert labels.shape == frames.shape and isinstance(labels, np.ndarray)   # in memory: the brush paints it
    assert lk["scale"][0] == 1.0 and len(lk["scale"]) == 4
    np.testing.assert_array_equal(labels, np.asarray(file_contents(tmp_path / "out.zarr").data))
    assert doubt.shape == frames.shape and not np.asarray(doubt[2]).any()


def test_measure_takes_every_time_point_and_other_commands_ask_for_one(tmp_path, movie, tiny_weights, capsys):
    import csv
    from halo_seg.cli import main
    from halo_seg.measure import measure_labels
    path, frames = movie
    out = tmp_path / "out.zarr"
    segment_series(path, out, timepoints="0,2", weights=tiny_weights, mode="whole")
    assert main(["measure", str(out), "--image", str(path), "--csv", str(tmp_path / "m.csv")]) == 0
    text = capsys.readouterr().out
    assert "time point 0:" in text and "time point 2:" in text and "time point 1:" not in text
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    for t in (0, 2):   # each time point's rows: its own labels, the image at that time point
        lab = np.asarray(open_volume(out / f"t{t:04d}").data)
        ref = measure_labels(lab, image=frames[t])
        mine = [r for r in rows if r["timepoint"] == str(t)]
        assert [int(r["label"]) for r in mine] == list(ref["label"])
        assert [int(r["voxels"]) for r in mine] == list(ref["voxels"])
        np.testing.assert_allclose([float(r["mean"]) for r in mine], ref["mean"], rtol=1e-4)
    # where one 3D volume is wanted, the error names a time point's output to give instead
    for argv in (["export", str(out), str(tmp_path / "x.nii.gz")], ["review", str(out)]):
        assert main(argv) == 2
        assert f"{out}/t0000" in capsys.readouterr().err


def test_ranks_started_once_name_the_time_point_that_failed_and_keep_those_before(tmp_path, movie, tiny_weights):
    """In halo mode the time points run on ranks started once (runner.run_planned); a time point
    the ranks cannot segment (NaN voxels) is named, the ones before it are written, and --resume
    after the file is mended does only what is left."""
    path, frames = movie
    bad = frames.copy()
    bad[1, 3, 4, 5] = np.nan
    tifffile.imwrite(tmp_path / "bad.tif", bad, imagej=True, metadata={"axes": "TZYX"})
    out = tmp_path / "out.zarr"
    with pytest.raises(VolumeError, match="time point 1: .*NaN"):
        segment_series(tmp_path / "bad.tif", out, weights=tiny_weights, grid=(2, 1, 1))
    v = file_contents(out)
    assert "incomplete" in v.meta
    np.testing.assert_array_equal(np.asarray(v.data[0]), _alone(frames[0], tiny_weights, tmp_path / "r0.zarr"))
    tifffile.imwrite(tmp_path / "bad.tif", frames, imagej=True, metadata={"axes": "TZYX"})   # mended
    seen = []
    res = segment_series(tmp_path / "bad.tif", out, weights=tiny_weights, grid=(2, 1, 1), resume=True,
                         progress=lambda done, total, text: seen.append((done, total, text)))
    assert res.skipped == [0]
    assert "incomplete" not in file_contents(out).meta
    for t in (1, 2):
        np.testing.assert_array_equal(np.asarray(file_contents(out).data[t]),
                                      _alone(frames[t], tiny_weights, tmp_path / f"r{t}.zarr"))
    # progress over every time point's blocks: 2 ranks x 2 time points run
    assert seen[-1][0] == seen[-1][1] and "time point 2" in seen[-1][2]


def test_torchrun_ranks_segment_every_time_point_in_one_process_group(tmp_path, movie, tiny_weights):
    """Under torchrun the ranks are the processes torchrun started: every time point in the one
    process group (a second init_process_group in them would read the first one's addresses)."""
    import os
    import subprocess
    import sys
    from halo_seg.engine.runner import _free_port
    path, frames = movie
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "halo_seg.cli", "segment", str(path), str(tmp_path / "t.zarr"),
           "--weights", str(tiny_weights), "--grid", "2,1,1", "--timepoint", "all", "--timeout", "60"]
    r = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    v = file_contents(tmp_path / "t.zarr")
    assert "incomplete" not in v.meta
    for t in range(3):
        np.testing.assert_array_equal(np.asarray(v.data[t]), _alone(frames[t], tiny_weights, tmp_path / f"r{t}.zarr"))


def test_batch_segments_every_time_point_of_each_time_lapse(tmp_path, movie, tiny_weights, capsys):
    import csv
    from halo_seg.cli import main
    path, frames = movie
    cases = tmp_path / "movies"
    cases.mkdir()
    tifffile.imwrite(cases / "a.tif", frames, imagej=True, metadata={"axes": "TZYX"})
    tifffile.imwrite(cases / "b.tif", frames[::-1], imagej=True, metadata={"axes": "TZYX"})
    argv = ["batch", str(cases), str(tmp_path / "out"), "--weights", str(tiny_weights), "--mode", "whole",
            "--timepoint", "all"]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "batch.csv")))
    assert [(r["case"], r["status"], r["timepoints"]) for r in rows] == [("a", "done", "3"), ("b", "done", "3")]
    for t in range(3):
        ref = _alone(frames[t], tiny_weights, tmp_path / f"r{t}.zarr")
        np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "out" / "a.zarr", timepoint=t).data), ref)
        np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "out" / "b.zarr", timepoint=2 - t).data), ref)
    assert main(argv) == 0   # resumed: nothing to do
    assert [r["status"] for r in csv.DictReader(open(tmp_path / "out" / "batch.csv"))] == ["already done"] * 2
    capsys.readouterr()
    assert main(argv + ["--export", ".nii.gz"]) == 2
    assert "export one with" in capsys.readouterr().err


def test_a_time_lapse_given_whole_says_how_to_segment_every_time_point(movie):
    path, _ = movie
    with pytest.raises(VolumeError, match=r"3 timepoints; choose one .*`segment --timepoint all` segments every one"):
        open_volume(path)
