"""The napari manifest ships in the package, validates, and its contributions work."""
import numpy as np
import zarr
from npe2 import PluginManifest

from napari_halo_seg._reader import get_reader
from napari_halo_seg._sample_data import colin27, phantom
from napari_halo_seg._writer import write_labels


def test_manifest_is_installed_and_valid():
    pm = PluginManifest.from_distribution("napari-halo-seg")
    pm.validate_imports()
    c = pm.contributions
    assert {s.key for s in c.sample_data} == {"colin27", "phantom", "dividing_cells"}
    assert any("*.nii.gz" in r.filename_patterns for r in c.readers)
    assert {".zarr", ".nii.gz"} <= set(c.writers[0].filename_extensions)


def test_reader_returns_lazy_image_with_spacing(tmp_path):
    z = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=(6, 7, 8), chunks=(3, 7, 8), dtype="u2")
    z[...] = 5
    z.attrs["spacing"] = [3.0, 1.0, 1.0]
    reader = get_reader(str(tmp_path / "v.zarr"))
    [(data, meta, kind)] = reader(str(tmp_path / "v.zarr"))
    assert kind == "image" and meta["scale"] == (3.0, 1.0, 1.0)
    assert hasattr(data, "dask") and data.shape == (6, 7, 8)
    assert get_reader(str(tmp_path / "file.png")) is None


def test_writer_and_reader_roundtrip_labels(tmp_path):
    lab = np.zeros((6, 7, 8), np.uint8)
    lab[1:3, 2:5, 3:4] = 2
    assert write_labels(str(tmp_path / "l.nii.gz"), lab, {"scale": (2.0, 1.0, 1.0)}) == [str(tmp_path / "l.nii.gz")]
    [(data, meta, _)] = get_reader(str(tmp_path / "l.nii.gz"))(str(tmp_path / "l.nii.gz"))
    np.testing.assert_array_equal(np.asarray(data), lab)
    assert meta["scale"] == (2.0, 1.0, 1.0)
    # a zarr saved from a Labels layer opens again as Labels, not as an image
    write_labels(str(tmp_path / "l.zarr"), lab, {"scale": (2.0, 1.0, 1.0)})
    [(zdata, zmeta, kind)] = get_reader(str(tmp_path / "l.zarr"))(str(tmp_path / "l.zarr"))
    assert kind == "labels" and zmeta["scale"] == (2.0, 1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(zdata), lab)


def test_sample_data_have_ground_truth():
    (img, imeta, ik), (lab, lmeta, lk) = colin27()
    assert ik == "image" and lk == "labels" and img.shape == lab.shape == (91, 109, 91)
    assert imeta["scale"] == lmeta["scale"] == (2.0, 2.0, 2.0)
    assert set(np.unique(lab)) == {0, 37, 38, 41, 42, 71, 72, 73, 74, 75, 76, 77, 78}
    # placed in the scan's millimetres, as the files are: voxel (0, 0, 0) at (-70.5, -124.5, -89.5) (z, y, x)
    assert tuple(imeta["translate"]) == tuple(lmeta["translate"]) == (-70.5, -124.5, -89.5)
    assert imeta["metadata"]["geometry"] == lmeta["metadata"]["geometry"]
    assert dict(zip(lmeta["features"]["index"], lmeta["features"]["name"]))[77] == "Thalamus_L"
    (pimg, _, _), (plab, _, _) = phantom()
    assert pimg.shape == plab.shape and plab.max() >= 3


def test_reader_opens_engine_output_as_labels(tmp_path, phantom_npy, tiny_weights):
    from halo_seg.engine.runner import segment
    segment(phantom_npy, tmp_path / "seg.zarr", tiny_weights, mode="whole")
    (data, meta, kind), (unc, umeta, ukind) = get_reader(str(tmp_path / "seg.zarr"))(str(tmp_path / "seg.zarr"))
    g = zarr.open_group(str(tmp_path / "seg.zarr"))
    assert kind == "labels"
    np.testing.assert_array_equal(np.asarray(data), g["labels"][...])
    # beside them, hidden, where they are likely wrong
    assert ukind == "image" and umeta["visible"] is False and umeta["name"] == "seg uncertainty"
    np.testing.assert_array_equal(np.asarray(unc), g["uncertainty"][...])
