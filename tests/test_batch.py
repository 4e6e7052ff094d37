"""`halo-seg batch`: every volume of a folder, resumable, one failure recorded while the rest go on."""
import csv

import nibabel as nib
import numpy as np
import zarr

from halo_seg.cli import main
from halo_seg.engine.runner import segment


def _rows(out):
    with open(out / "batch.csv") as fh:
        return {r["case"]: r for r in csv.DictReader(fh)}


def _labels(path):
    return zarr.open_group(str(path), mode="r")["labels"][...]


def test_batch_segments_each_case_resumes_and_reports_failures(tmp_path, phantom_npy, tiny_weights, capsys):
    img = np.load(phantom_npy)
    src, out = tmp_path / "scans", tmp_path / "out"
    src.mkdir()
    affine = np.array([[0, 0, -0.8, 40], [0, 0.8, 0, -20], [2.0, 0, 0, 7], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(img.transpose(2, 1, 0), affine), src / "a.nii.gz")
    np.save(src / "b.npy", img[::-1].copy())
    (src / "c.nii.gz").write_bytes(b"not a nifti")
    (src / "notes.txt").write_text("not a volume")
    (src / ".hidden.npy").write_bytes(b"")
    args = ["batch", str(src), str(out), "--weights", str(tiny_weights), "--mode", "whole"]
    assert main(args + ["--export", ".png"]) == 2              # refused before any case is segmented
    assert "--export .png: use one of" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--export", ".dcm"]) == 1              # segmented; the SEG needs a DICOM series
    rows = _rows(out)
    assert rows["a"]["status"] == "done" and "a.nii.gz is not a DICOM series" in rows["a"]["error"]
    assert not list(out.glob("*.dcm"))
    capsys.readouterr()
    assert main(args + ["--export", ".nii.gz"]) == 1          # one case failed, the others were done
    rows = _rows(out)
    assert sorted(rows) == ["a", "b", "c"]
    assert rows["a"]["status"] == rows["b"]["status"] == "already done"   # the .dcm run segmented them
    assert rows["c"]["status"] == "failed" and "cannot read NIfTI" in rows["c"]["error"]
    assert "2 of 3 cases segmented" in capsys.readouterr().out
    for case, vol in (("a", src / "a.nii.gz"), ("b", src / "b.npy")):
        segment(vol, tmp_path / f"ref_{case}.zarr", tiny_weights, mode="whole")
        np.testing.assert_array_equal(_labels(out / f"{case}.zarr"), _labels(tmp_path / f"ref_{case}.zarr"))
    exported = nib.load(out / "a.nii.gz")   # placed on its scan
    np.testing.assert_allclose(exported.affine, affine)
    np.testing.assert_array_equal(np.asarray(exported.dataobj).transpose(2, 1, 0), _labels(out / "a.zarr"))

    # the corrupt scan replaced, case b interrupted: a rerun finishes both and skips a
    nib.save(nib.Nifti1Image(img.transpose(2, 1, 0), affine), src / "c.nii.gz")
    g = zarr.open_group(str(out / "b.zarr"), mode="a")
    ref_b = g["labels"][...]
    g["labels"][...] = 0
    g["done"][...] = 0
    assert main(args + ["--export", "nii.gz"]) == 0
    rows = _rows(out)
    assert [rows[c]["status"] for c in "abc"] == ["already done", "done", "done"]
    np.testing.assert_array_equal(_labels(out / "b.zarr"), ref_b)
    assert (out / "c.nii.gz").exists()

    # another job over the same outputs is refused case by case, and nothing is overwritten
    before = _labels(out / "a.zarr")
    assert main(["batch", str(src), str(out), "--weights", str(tiny_weights), "--mode", "tile", "--tile", "16"]) == 1
    rows = _rows(out)
    assert all(r["status"] == "failed" and "different job" in r["error"] for r in rows.values())
    np.testing.assert_array_equal(_labels(out / "a.zarr"), before)


def test_batch_refuses_a_folder_without_cases_or_with_colliding_names(tmp_path, tiny_weights, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), str(tmp_path / "o"), "--weights", str(tiny_weights)]) == 2
    assert "holds no volume" in capsys.readouterr().err
    twice = tmp_path / "twice"
    twice.mkdir()
    np.save(twice / "x.npy", np.zeros((8, 8, 8), np.float32))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), twice / "x.nii.gz")
    assert main(["batch", str(twice), str(tmp_path / "o"), "--weights", str(tiny_weights)]) == 2
    assert "several volumes are named x" in capsys.readouterr().err
    np.save(twice / "x.npy", np.zeros((8, 8, 8), np.float32))
    (twice / "x.nii.gz").unlink()
    assert main(["batch", str(twice), str(twice), "--weights", str(tiny_weights)]) == 2
    assert "must not be the input folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_evaluate_a_folder_of_cases_against_references(tmp_path, phantom_npy, tiny_weights, capsys):
    from halo_seg.evaluate import compare_labels
    img = np.load(phantom_npy)
    src, out, truth = tmp_path / "scans", tmp_path / "out", tmp_path / "truth"
    src.mkdir()
    truth.mkdir()
    for case, shift in (("a", 0), ("b", 3)):
        np.save(src / f"{case}.npy", np.roll(img, shift, 0))
    assert main(["batch", str(src), str(out), "--weights", str(tiny_weights), "--mode", "whole",
                 "--export", ".nii.gz"]) == 0   # a.zarr and a.nii.gz: the output is taken, not a collision
    refs = {}
    for case in "ab":
        pred = _labels(out / f"{case}.zarr")
        ref = np.roll(pred, 1, 2)               # a reference that disagrees a little
        ref[:4] = 0
        refs[case] = ref
        np.save(truth / f"{case}.npy", ref)
    np.save(truth / "c.npy", np.zeros((4, 4, 4), np.uint8))        # no prediction for c
    assert main(["evaluate", str(out), str(truth), "--no-distances", "--csv", str(tmp_path / "e.csv")]) == 0
    text = capsys.readouterr().out
    per_case = {c: compare_labels(_labels(out / f"{c}.zarr"), refs[c], distances=False) for c in "ab"}
    for k in per_case["a"]["label"]:
        d = [float(per_case[c]["dice"][per_case[c]["label"] == k][0]) for c in "ab"]
        # the model's class names beside the ids (the references name none)
        line = next(l for l in text.splitlines() if l.split()[:3] == [str(k), {1: "a", 2: "b"}.get(int(k), ""), "2"])
        assert f"{np.mean(d):.3f} +- {np.std(d, ddof=1):.3f}" in line
    assert "no prediction (left out): c" in text
    with open(tmp_path / "e.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["case"] for r in rows} == {"a", "b"}
    assert {(r["label"], r["name"]) for r in rows} <= {("1", "a"), ("2", "b")}
    assert len(rows) == len(per_case["a"]["label"]) + len(per_case["b"]["label"])
    np.save(truth / "b.npy", refs["b"][:, :-1])                      # a reference on another grid
    assert main(["evaluate", str(out), str(truth), "--no-distances"]) == 1
    assert "failed: b:" in capsys.readouterr().out
    assert main(["evaluate", str(out), str(truth / "a.npy")]) == 2
    assert "a folder with a folder" in capsys.readouterr().err


def test_batch_records_a_case_too_large_for_memory_and_goes_on(tmp_path, phantom_npy, tiny_weights, monkeypatch):
    from halo_seg.engine import memory
    src, out = tmp_path / "scans", tmp_path / "out"
    src.mkdir()
    np.save(src / "small.npy", np.load(phantom_npy))
    zarr.open(str(src / "huge.zarr"), mode="w", shape=(1024, 1024, 1024), chunks=(128, 128, 128), dtype="uint8")
    small = segment(phantom_npy, tmp_path / "probe.zarr", tiny_weights, mode="whole").memory.per_rank
    monkeypatch.setattr(memory, "host_available", lambda: int(small / memory.USABLE) + 2 ** 20)
    assert main(["batch", str(src), str(out), "--weights", str(tiny_weights), "--mode", "whole"]) == 1
    rows = _rows(out)
    assert rows["small"]["status"] == "done"
    assert rows["huge"]["status"] == "failed" and "not enough memory" in rows["huge"]["error"]
    assert not (out / "huge.zarr").exists()
