"""A folder of TIFF frames, one per time point (the Cell Tracking Challenge's layout), read as a
time-lapse wherever a hyperstack file is, and by `track` whatever its names."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from halo_seg.io.tiff_frames import looks_like_frames, open_frames, time_word
from halo_seg.io.tiff_slices import looks_like_slices
from halo_seg.io.volume import VolumeError, file_contents, open_volume
from halo_seg.tracking.phantom import cell_timelapse


def _write(folder, frames, name="t{:03d}.tif"):
    folder.mkdir(parents=True, exist_ok=True)
    for t, f in enumerate(frames):
        tifffile.imwrite(folder / name.format(t), f)
    return folder


@pytest.fixture(scope="module")
def tl():
    return cell_timelapse(shape=(12, 40, 40), cells=4, timepoints=4, radius=4.0, divisions=1, seed=3)


@pytest.mark.parametrize("names, word", [
    (["t000.tif", "t001.tif"], "t"), (["mask000.tif", "mask001.tif"], "mask"),
    (["man_track000.tif", "man_track001.tif"], "man_track"), (["embryo_T0001.tif", "embryo_T0002.tif"], "t"),
    (["frame_1.tif", "frame_2.tif"], "frame"), (["img_001.tif", "img_002.tif"], None),
    (["cut001.tif", "cut002.tif"], None), (["slice_t1_z001.tif", "slice_t1_z002.tif"], None)])
def test_time_words(tmp_path, names, word):
    from pathlib import Path
    assert time_word([Path(n) for n in names]) == word


def test_3d_frames_read_as_a_time_lapse(tmp_path, tl):
    folder = _write(tmp_path / "01", [f.astype(np.uint16) for f in tl.ids])
    assert looks_like_frames(folder) and not looks_like_slices(folder)
    raw = file_contents(folder)
    assert raw.data.shape == tl.ids.shape and raw.meta["axes"] == ["t", "z", "y", "x"]
    assert not raw.meta.get("labels")   # t000.tif: the images, not masks
    np.testing.assert_array_equal(open_volume(raw, timepoint=2).data.compute(), tl.ids[2])
    with pytest.raises(VolumeError, match="4 timepoints"):   # like a hyperstack: which time point is asked
        open_volume(file_contents(folder))


def test_2d_masks_read_as_a_labelled_movie(tmp_path, tl):
    folder = _write(tmp_path / "01_RES", [f[6].astype(np.uint16) for f in tl.ids], "mask{:03d}.tif")
    raw = file_contents(folder)
    assert raw.data.shape == (4, 40, 40) and raw.meta["axes"] == ["t", "y", "x"] and raw.meta["labels"]
    np.testing.assert_array_equal(np.asarray(raw.data[3]), tl.ids[3][6])


def test_unnamed_2d_files_stay_slices(tmp_path, tl):
    folder = _write(tmp_path / "stack", [tl.ids[0][z].astype(np.uint16) for z in range(3)], "img_{:03d}.tif")
    assert looks_like_slices(folder) and not looks_like_frames(folder)
    assert file_contents(folder).data.shape == (3, 40, 40)


def test_a_missing_frame_is_named(tmp_path, tl):
    folder = _write(tmp_path / "gap", [f.astype(np.uint16) for f in tl.ids])
    (folder / "t002.tif").unlink()
    with pytest.raises(VolumeError, match="time point 2 missing between t000.tif and t003.tif"):
        file_contents(folder)


def test_frames_of_other_sizes_or_series_are_refused(tmp_path, tl):
    folder = _write(tmp_path / "sizes", [f.astype(np.uint16) for f in tl.ids])
    tifffile.imwrite(folder / "t001.tif", tl.ids[1][:, :30].astype(np.uint16))
    with pytest.raises(VolumeError, match="t001.tif is .* but t000.tif is .* share one size"):
        open_frames(folder)
    mixed = _write(tmp_path / "mixed", [f.astype(np.uint16) for f in tl.ids[:2]])
    tifffile.imwrite(mixed / "other_5.tif", tl.ids[0].astype(np.uint16))
    with pytest.raises(VolumeError, match="do not number time points in one place"):
        open_frames(mixed)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "halo_seg.cli", *map(str, args)], capture_output=True, text=True)


def test_track_takes_any_folder_of_frames_and_its_image(tmp_path, tl):
    """A folder of 2D masks named img_000.tif ... reads as z slices elsewhere; `track` is given a
    time-lapse, so it reads each file as a time point, and the raw frames' folder as its image."""
    masks = _write(tmp_path / "masks", [f[6].astype(np.uint16) for f in tl.ids], "img_{:03d}.tif")
    image = _write(tmp_path / "01", [(f[6] > 0).astype(np.uint16) * (t + 10) for t, f in enumerate(tl.ids)])
    out = tmp_path / "tracks.zarr"
    r = _cli("track", masks, out, "--ids", "--quiet", "--image", image, "--csv", tmp_path / "o.csv",
             "--spacing", "1,0.5,0.25", "--unit", "µm")   # the challenge's TIFFs record no voxel size
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["timepoints"] == 4
    import csv
    rows = list(csv.DictReader(open(tmp_path / "o.csv")))
    assert {int(r["timepoint"]) for r in rows} == {0, 1, 2, 3}
    assert all(float(r["mean"]) == int(r["timepoint"]) + 10 for r in rows)   # each frame's own image
    assert all(float(r["volume"]) == pytest.approx(int(r["voxels"]) * 0.125) for r in rows)
    import zarr
    assert zarr.open_group(str(out))["labels"].shape == (4, 1, 40, 40)


def test_measure_takes_a_folder_of_masks_at_each_time_point(tmp_path, tl):
    """`measure` of labels with a t axis: every time point into one table (a timepoint column), or
    the one --timepoint names with the image there; each row as measuring that frame alone gives."""
    import csv

    from halo_seg.measure import measure_labels
    masks = _write(tmp_path / "01_RES", [f.astype(np.uint16) for f in tl.ids], "mask{:03d}.tif")
    image = _write(tmp_path / "01", [(f > 0).astype(np.uint16) * (t + 5) for t, f in enumerate(tl.ids)])
    r = _cli("measure", masks, "--csv", tmp_path / "all.csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "all.csv")))
    for t in range(4):
        ref = measure_labels(tl.ids[t], (1.0, 1.0, 1.0))
        mine = [row for row in rows if int(row["timepoint"]) == t]
        assert [int(row["label"]) for row in mine] == list(ref["label"])
        assert [int(row["voxels"]) for row in mine] == list(ref["voxels"])
    r = _cli("measure", masks, "--timepoint", 2, "--image", image, "--csv", tmp_path / "t2.csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "t2.csv")))
    assert {row["timepoint"] for row in rows} == {"2"} and all(float(row["mean"]) == 7 for row in rows)
