"""Labels out to TIFF for Fiji, and the labels' length unit kept by every export."""
import json

import numpy as np
import pytest
import tifffile

from halo_seg.cli import main
from halo_seg.io import VolumeError, open_volume, write_labels
from halo_seg.io.export import export_labels
from halo_seg.io.tiff_labels import write_tiff_labels


@pytest.fixture
def labels_um(tmp_path):
    lab = np.zeros((9, 12, 10), np.uint16)
    lab[2:6, 3:9, 2:7] = 3
    lab[7, 1:4, 1:4] = 200
    path = write_labels(lab, tmp_path / "cells.zarr", spacing=(2.0, 0.5, 0.5), unit="µm")
    return lab, path


def test_export_to_tiff_is_a_calibrated_imagej_stack(tmp_path, labels_um, capsys):
    lab, path = labels_um
    assert main(["export", str(path), str(tmp_path / "cells.tif")]) == 0
    assert "TIFF records no scan placement" in capsys.readouterr().out
    with tifffile.TiffFile(tmp_path / "cells.tif") as tf:   # what Fiji reads: slices, voxel depth, unit
        assert tf.is_imagej and tf.series[0].shape == lab.shape and tf.series[0].dtype == np.uint8
        ij = tf.imagej_metadata
        assert ij["slices"] == 9 and ij["spacing"] == pytest.approx(2.0) and ij["unit"] == "micron"
        num, den = tf.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.5)
        np.testing.assert_array_equal(tf.asarray(), lab)
    v = open_volume(tmp_path / "cells.tif")
    assert v.spacing == pytest.approx((2.0, 0.5, 0.5)) and v.meta["unit"] == "µm"
    assert main(["info", str(tmp_path / "cells.tif")]) == 0   # the spacing's unit is said with it
    info = json.loads(capsys.readouterr().out)
    assert info["spacing"] == pytest.approx([2.0, 0.5, 0.5]) and info["unit"] == "µm"


def test_ids_above_65535_or_a_large_stack_go_to_ome_tiff(tmp_path):
    lab = np.zeros((6, 7, 8), np.uint32)
    lab[1:4, 2:5, 3:6] = 70000
    lab[5, 0, 0] = 1
    out = write_labels(lab, tmp_path / "many.tif", spacing=(1.5, 0.2, 0.25), unit="µm")
    with tifffile.TiffFile(out) as tf:
        assert tf.is_ome and not tf.is_imagej and tf.series[0].dtype == np.uint32
    v = open_volume(out)
    np.testing.assert_array_equal(v.data.compute(), lab)
    assert v.spacing == pytest.approx((1.5, 0.2, 0.25)) and v.meta["unit"] == "µm"
    small = write_tiff_labels(lab > 0, tmp_path / "big.tif", spacing=(1, 2, 3), imagej_limit=100, slab_voxels=100)
    with tifffile.TiffFile(small) as tf:   # past ImageJ's 4 GB (here 100 bytes): OME, written in slabs
        assert tf.is_ome and tf.series[0].dtype == np.uint8
        np.testing.assert_array_equal(tf.asarray(), lab > 0)


def test_a_tiff_not_written_here_is_never_replaced(tmp_path, labels_um):
    lab, path = labels_um
    image = (np.arange(9 * 12 * 10) % 251).reshape(9, 12, 10).astype(np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", image)
    with pytest.raises(VolumeError, match="is not a TIFF of labels written here"):
        export_labels(path, tmp_path / "stack.tif")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "stack.tif"), image)
    export_labels(path, tmp_path / "mine.tif")
    write_labels(lab * 0 + 1, tmp_path / "mine.tif")   # an earlier export of labels: replaced
    assert tifffile.imread(tmp_path / "mine.tif").min() == 1
    assert not list(tmp_path.glob(".*writing*"))


@pytest.mark.parametrize("suffix", [".nii.gz", ".zarr", ".nrrd"])
def test_export_keeps_the_labels_unit(tmp_path, labels_um, suffix):
    # µm labels exported to NIfTI came back as NIfTI's default mm: volumes 10**9 times too large
    if suffix == ".nrrd":
        pytest.importorskip("SimpleITK")
    lab, path = labels_um
    export_labels(path, tmp_path / f"out{suffix}")
    v = open_volume(tmp_path / f"out{suffix}")
    if suffix == ".nrrd":   # ITK's files are in mm: the sizes converted, the physical size kept
        assert v.meta["unit"] == "mm" and v.spacing == pytest.approx((2e-3, 5e-4, 5e-4))
    else:
        assert v.meta["unit"] == "µm" and v.spacing == pytest.approx((2.0, 0.5, 0.5))


def test_napari_saves_a_labels_layer_as_tiff(tmp_path):
    from napari_halo_seg._writer import write_labels as napari_write
    lab = np.zeros((5, 6, 7), np.uint8)
    lab[1:3, 2:4, 2:5] = 2
    napari_write(str(tmp_path / "layer.tif"), lab, {"scale": (3.0, 0.4, 0.4), "metadata": {"unit": "µm"}})
    v = open_volume(tmp_path / "layer.tif")
    np.testing.assert_array_equal(v.data.compute(), lab)
    assert v.spacing == pytest.approx((3.0, 0.4, 0.4)) and v.meta["unit"] == "µm"
