"""DICOM series in, labels out where the series lies: slice order from positions, values in their
units, the geometry against the DICOM standard's own formula, and clear refusals."""
import nibabel as nib
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from halo_seg.cli import main  # noqa: E402
from halo_seg.io import VolumeError, open_volume, write_labels  # noqa: E402
from halo_seg.io.geometry import KEY, best_affine  # noqa: E402


def _write_series(folder, stored, positions, iop, pixel_spacing, slope=1.0, intercept=-1024.0,
                  series_uid=None, description="axial", names=None):
    """Single-frame CT slices as a scanner writes them: ``stored`` (Z, rows, cols) int16 in slice
    order, ``positions`` each slice's ImagePositionPatient; files named by ``names`` (default a
    shuffled order, so that nothing may rely on file names)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study, frame_uid = generate_uid(), generate_uid()
    names = names or [f"IM{n:04d}" for n in np.random.default_rng(1).permutation(len(stored))]
    for k, (px, ipp) in enumerate(zip(stored, positions)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        ds.Modality, ds.SeriesDescription, ds.InstanceNumber = "CT", description, len(stored) - k
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "HS0001", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20261202", "120000", "1", "A1"
        ds.ReferringPhysicianName, ds.SeriesNumber = "", 3
        ds.FrameOfReferenceUID, ds.SliceThickness = frame_uid, "2.5"
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.PixelSpacing = [f"{v:.4f}" for v in pixel_spacing]
        ds.Rows, ds.Columns = px.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.WindowCenter, ds.WindowWidth = ["40", "300"], ["80", "1500"]   # brain, then bone
        ds.PixelData = px.astype("<i2").tobytes()
        ds.save_as(folder / names[k], enforce_file_format=True)
    return folder


def _oblique():
    """Row and column directions tilted 15 degrees about patient x; spacing 0.7 (rows) x 0.6 (cols)."""
    t = np.radians(15)
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, np.cos(t), -np.sin(t)])
    normal = np.cross(row_dir, col_dir)
    return row_dir, col_dir, normal


@pytest.fixture
def series(tmp_path):
    rng = np.random.default_rng(0)
    stored = rng.integers(900, 1100, (7, 12, 10)).astype(np.int16)
    stored[2:5, 3:8, 2:6] += 400                       # a bright block, slices 2..4
    row_dir, col_dir, normal = _oblique()
    origin = np.array([-40.25, 12.5, 30.0])
    positions = [np.round(origin + k * 2.5 * normal, 4) for k in range(7)]
    iop = np.concatenate([row_dir, col_dir])
    folder = _write_series(tmp_path / "ct", stored, positions, iop, (0.7, 0.6))
    return folder, stored, positions, np.round(iop, 6)


def _world_ras(positions, iop, pixel_spacing, i, j, k):
    """DICOM PS3.3 C.7.6.2.1.1: the patient (LPS) position of column i, row j of slice k, in RAS."""
    lps = (np.asarray(positions[k], float) + i * pixel_spacing[1] * np.asarray(iop[:3])
           + j * pixel_spacing[0] * np.asarray(iop[3:]))
    return lps * [-1, -1, 1]


def test_series_opens_in_position_order_with_its_geometry(series):
    folder, stored, positions, iop = series
    vol = open_volume(folder)
    assert vol.meta["format"] == "dicom" and vol.shape == (7, 12, 10)
    np.testing.assert_allclose(vol.spacing, (2.5, 0.7, 0.6), atol=1e-4)
    # Hounsfield units in slice order, whatever the file names and instance numbers say
    np.testing.assert_array_equal(np.asarray(vol.data), stored.astype(np.int32) - 1024)
    aff = best_affine(vol.meta[KEY])
    for i, j, k in [(0, 0, 0), (9, 0, 0), (0, 11, 0), (3, 5, 6), (9, 11, 6)]:
        np.testing.assert_allclose(aff @ [i, j, k, 1], np.append(_world_ras(positions, iop, (0.7, 0.6), i, j, k), 1),
                                   atol=1e-3)
    # one file of the series opens the whole series
    one = open_volume(sorted(folder.iterdir())[3])
    np.testing.assert_array_equal(np.asarray(one.data), np.asarray(vol.data))


def test_labels_of_a_series_export_onto_it(tmp_path, series, tiny_weights):
    folder, stored, positions, iop = series
    vol = open_volume(folder)
    mask = (np.asarray(vol.data) > 200).astype(np.uint8)
    out = write_labels(mask, tmp_path / "block.nii.gz", geometry=vol.meta[KEY])
    img = nib.load(str(out))
    lab = np.asarray(img.dataobj)                     # NIfTI (i = column, j = row, k = slice)
    i, j, k = np.argwhere(lab)[0]
    assert stored[k, j, i] > 1300                     # the labelled voxel is the block's, in the series
    np.testing.assert_allclose(img.affine @ [i, j, k, 1],
                               np.append(_world_ras(positions, iop, (0.7, 0.6), i, j, k), 1), atol=1e-3)
    # the command line: segment the series, export where it lies
    assert main(["segment", str(folder), str(tmp_path / "seg.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole"]) == 0
    assert main(["export", str(tmp_path / "seg.zarr"), str(tmp_path / "seg.nii.gz")]) == 0
    np.testing.assert_allclose(nib.load(str(tmp_path / "seg.nii.gz")).affine, img.affine, atol=1e-5)


def test_rescale_to_float_and_a_tilted_gantry(tmp_path):
    stored = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    iop = np.array([1.0, 0, 0, 0, 1.0, 0])
    # a tilted CT gantry: each slice is offset 0.3 mm along y as well as 2 mm along z
    positions = [np.array([0.0, 0.3 * k, 2.0 * k]) for k in range(4)]
    folder = _write_series(tmp_path / "t", stored, positions, iop, (0.5, 0.5), slope=0.5, intercept=10.25)
    vol = open_volume(folder)
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(np.asarray(vol.data), stored * 0.5 + 10.25)
    aff = best_affine(vol.meta[KEY])
    np.testing.assert_allclose(aff @ [2, 3, 3, 1], np.append(_world_ras(positions, iop, (0.5, 0.5), 2, 3, 3), 1),
                               atol=1e-4)


def test_series_that_are_not_one_volume_are_refused(tmp_path, series):
    folder, stored, positions, iop = series
    # two series in one folder: both are named
    _write_series(folder, stored[:3], positions[:3], iop, (0.7, 0.6), description="scout",
                  names=["S1", "S2", "S3"])
    with pytest.raises(VolumeError, match=r"2 DICOM series.*scout, 3 files.*Open one series"):
        open_volume(folder)
    # a missing slice
    gap = _write_series(tmp_path / "gap", np.delete(stored, 3, 0), [p for k, p in enumerate(positions) if k != 3],
                        iop, (0.7, 0.6))
    with pytest.raises(VolumeError, match="unevenly spaced"):
        open_volume(gap)
    # two images per position (echoes)
    dup = _write_series(tmp_path / "dup", stored[:4], [positions[0], positions[1], positions[1], positions[2]],
                        iop, (0.7, 0.6))
    with pytest.raises(VolumeError, match="same position"):
        open_volume(dup)
    # a slice without its position
    bad = _write_series(tmp_path / "bad", stored[:3], positions[:3], iop, (0.7, 0.6), names=["A", "B", "C"])
    ds = pydicom.dcmread(str(bad / "B"))
    del ds.ImagePositionPatient
    ds.save_as(bad / "B")
    with pytest.raises(VolumeError, match="B: the DICOM tag ImagePositionPatient is missing"):
        open_volume(bad)
    with pytest.raises(VolumeError, match=r"series in the folders below it: bad \(CT 'axial', 3 files\); ct .*; "
                                          r"dup .*; gap .*Open one of them"):
        open_volume(tmp_path)              # a study folder: the series are named, none is guessed
    # a localiser in another orientation, and a slice of another size
    tilted = _write_series(tmp_path / "tilt", stored[:3], positions[:3], iop, (0.7, 0.6), names=["A", "B", "C"])
    ds = pydicom.dcmread(str(tilted / "C"))
    ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
    ds.save_as(tilted / "C")
    with pytest.raises(VolumeError, match="C: its slice orientation differs"):
        open_volume(tilted)
    small = _write_series(tmp_path / "small", stored[:3], positions[:3], iop, (0.7, 0.6), names=["A", "B", "C"])
    _write_series(tmp_path / "small2", stored[:1, :6, :5], positions[2:3], iop, (0.7, 0.6), names=["C"],
                  series_uid=pydicom.dcmread(str(small / "A")).SeriesInstanceUID)
    (tmp_path / "small2" / "C").replace(small / "C")
    with pytest.raises(VolumeError, match="C: 6 x 5 pixels, but A has 12 x 10"):
        open_volume(small)
    (tmp_path / "broken.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(VolumeError, match="broken.dcm is not a DICOM file"):
        open_volume(tmp_path / "broken.dcm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeError, match="unsupported volume format"):
        open_volume(tmp_path / "empty")


def test_napari_reader_opens_a_series_folder(series):
    from napari_halo_seg._reader import get_reader
    folder, stored, _, _ = series
    reader = get_reader(str(folder))
    assert reader is not None
    [(data, meta, kind)] = reader(str(folder))
    assert kind == "image" and data.shape == (7, 12, 10) and KEY in meta["metadata"]
    assert meta["contrast_limits"] == [0.0, 80.0]         # the series' first window: brain, 40 +- 40 HU
    np.testing.assert_allclose(meta["scale"], (2.5, 0.7, 0.6), atol=1e-4)


def test_series_folder_opens_in_napari(make_napari_viewer, series):
    pytest.importorskip("napari")
    folder, stored, _, _ = series
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-halo-seg")   # File > Open Folder..., reader Halo Seg
    [layer] = viewer.layers
    assert layer.data.shape == (7, 12, 10) and KEY in layer.metadata
    np.testing.assert_array_equal(np.asarray(layer.data), stored.astype(np.int32) - 1024)


def test_pixels_it_cannot_decode_are_named_when_opening(tmp_path, series):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless
    folder, stored, positions, iop = series
    jp = _write_series(tmp_path / "j2k", stored[:3], positions[:3], iop, (0.7, 0.6), names=["A", "B", "C"])
    for name in "ABC":
        ds = pydicom.dcmread(str(jp / name))
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a real codestream"])
        ds.save_as(jp / name)
    with pytest.raises(VolumeError, match="cannot decode its pixels.*JPEG 2000"):
        open_volume(jp)


def test_labels_go_back_as_dicom_seg_on_their_source_images(tmp_path, series):
    hd = pytest.importorskip("highdicom")
    from halo_seg.io.dicom_seg import write_dicom_seg
    folder, stored, positions, iop = series
    vol = open_volume(folder)
    labels = np.zeros(vol.shape, np.uint16)
    labels[np.asarray(vol.data) > 200] = 5                 # the block
    labels[0, :2, :2] = 9                                  # a second object on the first slice
    out = write_dicom_seg(labels, folder, tmp_path / "seg.dcm", names={5: "block"})
    seg = hd.seg.segread(str(out))
    assert seg.Modality == "SEG" and seg.number_of_segments == 2
    assert [seg.get_segment_description(i).segment_label for i in (1, 2)] == ["block", "object 9"]
    # every labelled voxel is in a frame that references the image it was drawn on
    by_uid = {pydicom.dcmread(str(f)).SOPInstanceUID: k for k, f in enumerate(vol.meta["files"])}
    for number, value in ((1, 5), (2, 9)):
        frames = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(by_uid), segment_numbers=[number], ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True)[..., 0]
        expected = labels == value
        np.testing.assert_array_equal(frames.astype(bool), expected[[by_uid[u] for u in by_uid]])
    with pytest.raises(VolumeError, match="not on the grid"):
        write_dicom_seg(labels[:-1], folder, tmp_path / "x.dcm")
    with pytest.raises(VolumeError, match="empty"):
        write_dicom_seg(np.zeros_like(labels), folder, tmp_path / "x.dcm")
    with pytest.raises(VolumeError, match="integer or boolean"):
        write_dicom_seg(labels.astype(np.float32), folder, tmp_path / "x.dcm")
    with pytest.raises(VolumeError, match="negative values; label ids must be >= 0"):
        write_dicom_seg(-labels.astype(np.int16), folder, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_segment_a_series_and_send_it_back_as_dicom_seg(tmp_path, series, tiny_weights, capsys):
    hd = pytest.importorskip("highdicom")
    folder, _, _, _ = series
    assert main(["segment", str(folder), str(tmp_path / "seg.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole"]) == 0
    labels = open_volume(tmp_path / "seg.zarr").data.compute()
    assert main(["export", str(tmp_path / "seg.zarr"), str(tmp_path / "seg.dcm")]) == 0   # the series is known
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    values = [v for v in np.unique(labels) if v]
    assert seg.number_of_segments == len(values)
    assert seg.get_segment_description(1).algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    # each segment named by the model's class (tiny_weights: bg, a, b), not "object N"
    assert [seg.get_segment_description(i + 1).segment_label for i in range(len(values))] == \
        [{1: "a", 2: "b"}[int(v)] for v in values]
    assert open_volume(tmp_path / "seg.zarr").meta["segment_names"] == {1: "a", 2: "b"}
    np.save(tmp_path / "lab.npy", labels)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "lab.npy"), str(tmp_path / "x.dcm")]) == 2
    assert "--like SERIES_FOLDER" in capsys.readouterr().err


def test_napari_objects_drawn_on_a_series_save_as_dicom_seg(make_napari_viewer, tmp_path, series):
    hd = pytest.importorskip("highdicom")
    pytest.importorskip("napari")
    from napari_halo_seg._interactive_widget import InteractiveWidget
    folder, stored, _, _ = series
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-halo-seg")
    w = InteractiveWidget(viewer)
    w.image.setCurrentText(viewer.layers[0].name)
    w.ensure_prompt_layers()
    objects = viewer.layers["objects"]
    objects.data = (stored > 1300).astype(np.uint16) * 2
    objects.save(str(tmp_path / "objects.dcm"), plugin="napari-halo-seg")
    seg = hd.seg.segread(str(tmp_path / "objects.dcm"))
    assert seg.number_of_segments == 1 and seg.get_segment_description(1).segment_label == "object 2"
    objects.features = {"index": [2], "name": ["tumour"]}   # as Commit object names it
    objects.save(str(tmp_path / "contours.rtstruct.dcm"), plugin="napari-halo-seg")   # or as contours, named
    rt = pydicom.dcmread(tmp_path / "contours.rtstruct.dcm")
    assert rt.Modality == "RTSTRUCT" and [r.ROIName for r in rt.StructureSetROISequence] == ["tumour"]
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "contours.rtstruct.dcm").data),
                                  objects.data)              # its id kept as its ROI number
    objects.save(str(tmp_path / "objects.nii.gz"), plugin="napari-halo-seg")   # and NIfTI, on the series
    np.testing.assert_allclose(nib.load(str(tmp_path / "objects.nii.gz")).affine,
                               best_affine(open_volume(folder).meta[KEY]), atol=1e-5)
    # a layer drawn on something else cannot claim a series
    viewer.add_labels(np.zeros((3, 4, 5), np.uint8), name="other")
    with pytest.raises(Exception, match="not drawn on a DICOM series"):
        viewer.layers["other"].save(str(tmp_path / "other.dcm"), plugin="napari-halo-seg")


def test_geometry_and_values_agree_with_highdicom_on_every_voxel(tmp_path, series):
    """highdicom reconstructs the same series on its own (its slice order is the reverse): every
    voxel maps to the same world position and holds the same value in both."""
    hd = pytest.importorskip("highdicom")
    folder, _, _, _ = series
    ours = open_volume(folder)
    ref = hd.get_volume_from_series([pydicom.dcmread(str(p)) for p in sorted(folder.iterdir())])
    _same_voxels(ours, np.asarray(ref.array), np.asarray(ref.affine))


def _same_voxels(ours, ref_array, ref_affine_lps):
    arr = np.asarray(ours.data)
    z, y, x = np.indices(arr.shape).reshape(3, -1)
    world = best_affine(ours.meta[KEY]) @ np.stack([x, y, z, np.ones_like(x)])
    idx = np.linalg.solve(ref_affine_lps, world * np.array([-1, -1, 1, 1])[:, None])[:3]
    np.testing.assert_allclose(idx, np.round(idx), atol=1e-3)      # voxel centres on voxel centres
    s, r, c = np.round(idx).astype(int)
    np.testing.assert_allclose(arr.reshape(-1), ref_array[s, r, c])


def test_an_enhanced_multiframe_image_opens_as_its_series_does(tmp_path, series, tiny_weights):
    hd = pytest.importorskip("highdicom")
    folder, _, _, _ = series
    datasets = [pydicom.dcmread(str(p)) for p in sorted(folder.iterdir())]
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(datasets, series_instance_uid=hd.UID(), series_number=5,
                                                  sop_instance_uid=hd.UID(), instance_number=1)
    (tmp_path / "mf").mkdir()
    mf.save_as(tmp_path / "mf" / "enhanced.dcm")
    one = open_volume(tmp_path / "mf")
    single = open_volume(folder)
    assert one.meta.get("multiframe") and one.shape == single.shape
    np.testing.assert_allclose(one.spacing, single.spacing, atol=1e-4)
    # the same slices in the same order, placed alike, as the single-frame series
    np.testing.assert_allclose(np.asarray(one.data), np.asarray(single.data))
    np.testing.assert_allclose(best_affine(one.meta[KEY]), best_affine(single.meta[KEY]), atol=1e-4)
    # and labels computed on it export onto it
    mask = (np.asarray(one.data) > 200).astype(np.uint8)
    out = write_labels(mask, tmp_path / "m.nii.gz", geometry=one.meta[KEY])
    np.testing.assert_allclose(nib.load(str(out)).affine, best_affine(one.meta[KEY]), atol=1e-5)
    # and as contours, each on its frame of the one image
    from halo_seg.io.rtstruct import write_rtstruct
    write_rtstruct(mask * 6, tmp_path / "mf", tmp_path / "mf" / "rs.dcm")
    rs = pydicom.dcmread(tmp_path / "mf" / "rs.dcm")
    iop = np.asarray(mf.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    for c in rs.ROIContourSequence[0].ContourSequence:       # each contour in the plane of the frame it names
        frame = mf.PerFrameFunctionalGroupsSequence[int(c.ContourImageSequence[0].ReferencedFrameNumber) - 1]
        ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        pts = np.asarray(c.ContourData, float).reshape(-1, 3)
        assert np.abs((pts - ipp) @ normal).max() < 1e-3
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "mf" / "rs.dcm").data), mask * 6)


def test_dicom_seg_of_a_multiframe_image_whose_frames_are_out_of_order(tmp_path, series):
    hd = pytest.importorskip("highdicom")
    from halo_seg.io.dicom_seg import write_dicom_seg
    folder, _, _, _ = series
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(str(p)) for p in sorted(folder.iterdir())], series_instance_uid=hd.UID(),
        series_number=5, sop_instance_uid=hd.UID(), instance_number=1)
    # frames as an interleaved acquisition stores them: 0, 2, 4, 6, 1, 3, 5
    order = [0, 2, 4, 6, 1, 3, 5]
    px = mf.pixel_array[order]
    mf.PerFrameFunctionalGroupsSequence = [mf.PerFrameFunctionalGroupsSequence[i] for i in order]
    mf.PixelData = px.astype(px.dtype.newbyteorder("<")).tobytes()
    (tmp_path / "mf").mkdir()
    mf.save_as(tmp_path / "mf" / "interleaved.dcm")
    vol = open_volume(tmp_path / "mf")
    np.testing.assert_allclose(np.asarray(vol.data), np.asarray(open_volume(folder).data))   # sorted again
    labels = np.zeros(vol.shape, np.uint8)
    labels[np.asarray(vol.data) > 200] = 1
    labels[1, 0, 0] = 1                                  # a mark that tells slice 1 from the others
    seg = hd.seg.segread(str(write_dicom_seg(labels, tmp_path / "mf", tmp_path / "seg.dcm")))
    back = seg.get_volume(combine_segments=True)
    # the SEG's own volume, placed by its frames' positions, lies on ours voxel for voxel
    lps_ours = np.diag([-1.0, -1.0, 1.0, 1.0]) @ best_affine(vol.meta[KEY]) @ np.eye(4)[[2, 1, 0, 3]]
    for k, j, i in np.argwhere(np.asarray(back.array) > 0):
        z, y, x = np.round(np.linalg.solve(lps_ours, back.affine @ [k, j, i, 1])[:3]).astype(int)
        assert labels[z, y, x] == 1
    assert int((np.asarray(back.array) > 0).sum()) == int(labels.sum())
    # and read back here, by the multi-frame image's frames, onto its slices
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "seg.dcm").data), labels)


def _labels_on(vol):
    labels = np.zeros(vol.shape, np.uint16)
    labels[np.asarray(vol.data) > 200] = 5                 # the block
    labels[0, :2, :2] = 9                                  # a second object on the first slice
    return labels


def test_a_dicom_seg_opens_as_labels_on_its_series_and_does_not_spoil_the_series_folder(tmp_path, series,
                                                                                         monkeypatch):
    pytest.importorskip("highdicom")
    from halo_seg.io.dicom_seg import write_dicom_seg
    folder, stored, _, _ = series
    vol = open_volume(folder)
    labels = _labels_on(vol)
    write_dicom_seg(labels, folder, folder / "seg.dcm")   # saved beside the images, in their folder
    again = open_volume(folder)                              # the folder is still the one CT series
    np.testing.assert_array_equal(np.asarray(again.data), np.asarray(vol.data))
    seg = open_volume(folder / "seg.dcm")
    np.testing.assert_array_equal(np.asarray(seg.data), labels)   # the label values, on the series' grid
    assert seg.meta["labels"] and seg.meta["overlap"] == 0 and seg.spacing == pytest.approx(vol.spacing)
    assert seg.meta["segment_names"] == {5: "object 5", 9: "object 9"}
    np.testing.assert_allclose(best_affine(seg.meta[KEY]), best_affine(vol.meta[KEY]))
    # in a folder beside the series' (a study exported a folder per series); another tool's SEG,
    # whose segments carry no label value: numbered by segment
    (tmp_path / "seg").mkdir()
    ds = pydicom.dcmread(folder / "seg.dcm")
    for item in ds.SegmentSequence:
        del item.TrackingID
        del item.TrackingUID
    ds.save_as(tmp_path / "seg" / "other.dcm")
    other = open_volume(tmp_path / "seg" / "other.dcm")
    np.testing.assert_array_equal(np.asarray(other.data), np.select([labels == 5, labels == 9], [1, 2], 0))
    assert main(["measure", str(tmp_path / "seg" / "other.dcm")]) == 0   # any command reads it as labels
    assert main(["export", str(tmp_path / "seg" / "other.dcm"), str(tmp_path / "again.dcm")]) == 0   # its series known
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "again.dcm").data), np.asarray(other.data))
    assert main(["export", str(tmp_path / "seg" / "other.dcm"), str(tmp_path / "on_scan.nii.gz")]) == 0
    np.testing.assert_allclose(nib.load(tmp_path / "on_scan.nii.gz").affine, best_affine(vol.meta[KEY]), atol=1e-4)
    with pytest.raises(VolumeError, match="holds no DICOM images, only a DICOM SEG"):
        open_volume(tmp_path / "seg")
    (tmp_path / "far" / "alone" / "x").mkdir(parents=True)   # nowhere near the series
    ds.save_as(tmp_path / "far" / "alone" / "lost.dcm")
    with pytest.raises(VolumeError, match="neither in its folder nor in a folder in or beside it, or in one of those"):
        open_volume(tmp_path / "far" / "alone" / "lost.dcm")
    (tmp_path / "work").mkdir()                              # exported to a work folder beside the data's
    ds.save_as(tmp_path / "work" / "mine.dcm")
    (tmp_path / "data").mkdir()
    folder.rename(tmp_path / "data" / "ct")
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "work" / "mine.dcm").data),
                                  np.asarray(other.data))
    with monkeypatch.context() as m:                         # named from its own folder: "." has folders beside it
        m.chdir(tmp_path / "work")
        np.testing.assert_array_equal(np.asarray(open_volume("mine.dcm").data), np.asarray(other.data))
    (tmp_path / "data" / "ct").rename(folder)
    ds.Modality = "SR"                                       # another non-image object in the folder: passed over
    ds.save_as(folder / "report.dcm")
    np.testing.assert_array_equal(np.asarray(open_volume(folder).data), np.asarray(vol.data))
    with pytest.raises(VolumeError, match="report.dcm is a structured report, not an image"):
        open_volume(folder / "report.dcm")


def test_napari_opens_a_dicom_seg_as_labels_that_save_back_as_a_seg(make_napari_viewer, tmp_path, series):
    hd = pytest.importorskip("highdicom")
    from halo_seg.io.dicom_seg import write_dicom_seg
    folder, _, _, _ = series
    labels = _labels_on(open_volume(folder))
    write_dicom_seg(labels, folder, tmp_path / "seg.dcm", names={5: "liver", 9: "tumour"})
    viewer = make_napari_viewer()
    layer, = viewer.open(str(tmp_path / "seg.dcm"), plugin="napari-halo-seg")
    assert layer.__class__.__name__ == "Labels" and isinstance(layer.data, np.ndarray)
    np.testing.assert_array_equal(layer.data, labels)
    layer.data[6, 5, 5] = 7                                  # a correction, saved back as a SEG
    layer.save(str(tmp_path / "corrected.dcm"), plugin="napari-halo-seg")
    back = hd.seg.segread(str(tmp_path / "corrected.dcm"))
    assert back.number_of_segments == 3
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "corrected.dcm").data), layer.data)
    # the segments keep the names they were read with (the new object has none)
    assert [back.get_segment_description(i).segment_label for i in (1, 2, 3)] == ["liver", "object 7", "tumour"]


def _write_rtstruct(path, vol, rois):
    """An RT structure set on the series ``vol``: ``rois`` [(number, name, [(slice, [(x, y), ...]),
    ...])], the contour points given in voxel (column, row) coordinates on that slice."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
    head = pydicom.dcmread(vol.meta["files"][0], stop_before_pixels=True)
    to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ best_affine(vol.meta[KEY])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = RTStructureSetStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = RTStructureSetStorage, meta.MediaStorageSOPInstanceUID, "RTSTRUCT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = head.StudyInstanceUID, generate_uid(), \
        head.FrameOfReferenceUID
    series = Dataset()
    series.SeriesInstanceUID = head.SeriesInstanceUID
    study = Dataset()
    study.RTReferencedSeriesSequence = Sequence([series])
    ref = Dataset()
    ref.FrameOfReferenceUID, ref.RTReferencedStudySequence = head.FrameOfReferenceUID, Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref])
    ds.StructureSetROISequence, ds.ROIContourSequence = Sequence(), Sequence()
    for number, name, contours in rois:
        r = Dataset()
        r.ROINumber, r.ROIName, r.ReferencedFrameOfReferenceUID = number, name, head.FrameOfReferenceUID
        ds.StructureSetROISequence.append(r)
        rc = Dataset()
        rc.ReferencedROINumber, rc.ContourSequence = number, Sequence()
        for k, xy, *kind in contours:
            c = Dataset()
            c.ContourGeometricType = kind[0] if kind else "CLOSED_PLANAR"
            pts = np.array([to_lps @ [x, y, k, 1.0] for x, y in xy])[:, :3]
            c.NumberOfContourPoints, c.ContourData = len(pts), [f"{v:.4f}" for v in pts.ravel()]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    ds.save_as(path, enforce_file_format=True)
    return path


def _rect(x0, y0, x1, y1):
    """A rectangle around the pixels x0..x1, y0..y1 (corners half a pixel outside their centres)."""
    return [(x0 - 0.5, y0 - 0.5), (x1 + 0.5, y0 - 0.5), (x1 + 0.5, y1 + 0.5), (x0 - 0.5, y1 + 0.5)]


def test_an_rt_structure_set_opens_as_labels_on_its_series(tmp_path, series, make_napari_viewer):
    folder, _, _, _ = series                                 # oblique slices, 0.7 x 0.6 mm pixels
    vol = open_volume(folder)
    body = [(k, _rect(1, 1, 8, 10)) for k in range(1, 6)]
    organ = [(2, _rect(3, 4, 6, 8)), (3, _rect(3, 4, 6, 8)), (3, _rect(4, 5, 5, 6)),   # a hole on slice 3
             (4, [(4.0, 4.0)], "POINT")]                     # a marker: no voxels
    _write_rtstruct(folder / "rt.dcm", vol, [(7, "BODY", body), (3, "tumour", organ)])
    expected = np.zeros(vol.shape, np.uint16)                # each structure labelled with its ROI number
    expected[1:6, 1:11, 1:9] = 7
    expected[2:4, 4:9, 3:7] = 3
    expected[3, 5:7, 4:6] = 7                                # the hole shows the body beneath
    np.testing.assert_array_equal(np.asarray(open_volume(folder).data), np.asarray(vol.data))   # passed over
    rt = open_volume(folder / "rt.dcm")
    np.testing.assert_array_equal(np.asarray(rt.data), expected)
    assert rt.meta["segment_names"] == {7: "BODY", 3: "tumour"} and rt.meta["overlap"] == int((expected == 3).sum())
    viewer = make_napari_viewer()
    layer, = viewer.open(str(folder / "rt.dcm"), plugin="napari-halo-seg")
    assert layer.__class__.__name__ == "Labels" and list(layer.features["name"]) == ["BODY", "tumour"]
    np.testing.assert_array_equal(layer.data, expected)
    _write_rtstruct(tmp_path / "off.dcm", vol, [(1, "tilted", [(2.4, _rect(3, 4, 6, 8))])])
    with pytest.raises(VolumeError, match="a contour of 'tilted' does not lie on a slice"):
        open_volume(tmp_path / "off.dcm")
    _write_rtstruct(tmp_path / "marks.dcm", vol, [(1, "marks", [(2, [(4.0, 4.0)], "POINT")])])
    with pytest.raises(VolumeError, match="marks.dcm holds no closed contour on the series"):
        open_volume(tmp_path / "marks.dcm")
    ds = pydicom.dcmread(tmp_path / "marks.dcm")
    del ds.ReferencedFrameOfReferenceSequence
    ds.save_as(tmp_path / "nameless.dcm")
    with pytest.raises(VolumeError, match="nameless.dcm: the structure set names no series it was drawn on"):
        open_volume(tmp_path / "nameless.dcm")


def _dicom_pixel(point, head):
    """DICOM PS3.3 C.7.6.2.1.1 solved for (row, column) of an LPS ``point`` on the image ``head``,
    and its distance from the image's plane."""
    ipp = np.asarray(head.ImagePositionPatient, float)
    iop = np.asarray(head.ImageOrientationPatient, float)
    row_dir, col_dir = iop[:3], iop[3:]
    d_row, d_col = (float(v) for v in head.PixelSpacing)
    v = point - ipp
    return (v @ col_dir) / d_row, (v @ row_dir) / d_col, abs(v @ np.cross(row_dir, col_dir))


def test_labels_go_out_as_an_rt_structure_set_on_their_series(tmp_path, series, capsys):
    from skimage.draw import polygon2mask
    from skimage.morphology import ball
    from halo_seg.io.rtstruct import write_rtstruct
    folder, _, _, _ = series                                 # oblique slices, 0.7 x 0.6 mm pixels
    vol = open_volume(folder)
    labels = np.zeros(vol.shape, np.uint16)                  # 7 x 12 x 10
    labels[1:6, 1:11, 1:9] = 3                               # a body ...
    labels[2:5, 3:8, 3:7] = 8                                # ... an organ in it, its slice 3 ringed round an island
    labels[3, 4:7, 4:6] = 3
    labels[3, 5, 4] = 8
    labels[0, 0, 0] = labels[0, 1, 1] = 5                    # diagonal pixels in the image's corner
    labels[:, 6:, :5][ball(3)[:, 1:, 2:].astype(bool)] = 11   # through the first and last slice
    names = {3: "BODY", 8: "tumour Ü", 5: "marks"}
    write_rtstruct(labels, folder, tmp_path / "rs.dcm", names=names, automatic=True)
    ds = pydicom.dcmread(tmp_path / "rs.dcm")
    heads = {str(h.SOPInstanceUID): h for h in (pydicom.dcmread(f, stop_before_pixels=True) for f in vol.meta["files"])}
    assert ds.Modality == "RTSTRUCT" and ds.FrameOfReferenceUID == next(iter(heads.values())).FrameOfReferenceUID
    rois = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    assert sorted(rois.values()) == ["BODY", "marks", "object 11", "tumour Ü"]
    assert {str(r.ROIGenerationAlgorithm) for r in ds.StructureSetROISequence} == {"AUTOMATIC"}
    # independently of this package's geometry: each contour lies in the plane of the image it names,
    # and filled there (skimage, pixel centres) by exclusive or gives each label's voxels
    back = {v: np.zeros(vol.shape, bool) for v in rois}
    order = {uid: k for k, uid in enumerate(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                                            for f in vol.meta["files"])}
    for item in ds.ROIContourSequence:
        for c in item.ContourSequence:
            uid = str(c.ContourImageSequence[0].ReferencedSOPInstanceUID)
            pts = np.asarray(c.ContourData, float).reshape(-1, 3)
            rcd = np.array([_dicom_pixel(p, heads[uid]) for p in pts])
            assert rcd[:, 2].max() < 1e-3 and c.ContourGeometricType == "CLOSED_PLANAR"
            back[int(item.ReferencedROINumber)][order[uid]] ^= polygon2mask(vol.shape[1:], rcd[:, :2])
    for number, name in rois.items():
        value = {"BODY": 3, "tumour Ü": 8, "marks": 5, "object 11": 11}[name]
        np.testing.assert_array_equal(back[number], labels == value)
    # this package reads it back as the same labels; saved in the series' folder it is passed over
    # when the folder is opened
    ds.save_as(folder / "rs.dcm")
    np.testing.assert_array_equal(np.asarray(open_volume(folder).data), np.asarray(vol.data))
    rt = open_volume(folder / "rs.dcm")                     # the label values are the ROI numbers
    assert rt.meta["overlap"] == 0 and rt.meta["segment_names"] == {**names, 11: "object 11"}
    np.testing.assert_array_equal(np.asarray(rt.data), labels)
    capsys.readouterr()
    assert main(["info", str(folder / "rs.dcm")]) == 0        # labels: their names, not the memory to segment them
    import json
    info = json.loads(capsys.readouterr().out)
    assert info["labels"] == {"3": "BODY", "5": "marks", "8": "tumour Ü", "11": "object 11"}
    assert "segment_memory" not in info
    # measured, each structure by its name
    assert main(["measure", str(folder / "rs.dcm"), "--csv", str(tmp_path / "m.csv")]) == 0
    assert "tumour Ü" in capsys.readouterr().out
    import csv
    with open(tmp_path / "m.csv", newline="", encoding="utf-8") as f:
        measured = {r["name"]: int(r["voxels"]) for r in csv.DictReader(f)}
    assert measured == {"BODY": int((labels == 3).sum()), "tumour Ü": int((labels == 8).sum()),
                        "marks": 2, "object 11": int((labels == 11).sum())}
    # against a set that numbers the same structures otherwise (another planning system): by id the
    # comparison is of different organs, and says so; --by-name matches them
    other = np.select([labels == 3, labels == 8, labels == 5], [8, 3, 2], labels.astype(np.int64)).astype(np.uint16)
    write_rtstruct(other, folder, tmp_path / "other.dcm", names={8: "body", 3: "Tumour  Ü", 2: "marks", 9: "lungs"})
    capsys.readouterr()
    assert main(["evaluate", str(folder / "rs.dcm"), str(tmp_path / "other.dcm"), "--no-distances",
                 "--csv", str(tmp_path / "by_id.csv")]) == 0
    out = capsys.readouterr().out
    assert "2 ids name different structures" in out and "3: 'BODY' against 'Tumour  Ü'" in out
    assert main(["evaluate", str(folder / "rs.dcm"), str(tmp_path / "other.dcm"), "--no-distances", "--by-name",
                 "--csv", str(tmp_path / "by_name.csv")]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out
    with open(tmp_path / "by_name.csv", newline="", encoding="utf-8") as f:
        rows = {r["name"]: float(r["dice"]) for r in csv.DictReader(f)}
    assert rows == {"body": 1.0, "Tumour  Ü": 1.0, "marks": 1.0, "object 11": 1.0}   # each structure, itself
    with open(tmp_path / "by_id.csv", newline="", encoding="utf-8") as f:
        assert {r["label"]: float(r["dice"]) for r in csv.DictReader(f)}["3"] == 0.0
    np.save(tmp_path / "plain.npy", labels)
    assert main(["evaluate", str(tmp_path / "plain.npy"), str(tmp_path / "other.dcm"), "--by-name"]) == 2
    assert "--by-name needs both volumes to name their labels" in capsys.readouterr().err
    # labels read from a structure set export back as one, names and all; any labels to .rtstruct.dcm
    assert main(["export", str(folder / "rs.dcm"), str(tmp_path / "again.dcm")]) == 0
    assert "RT structure set of (7, 12, 10) labels" in capsys.readouterr().out
    again = pydicom.dcmread(tmp_path / "again.dcm")
    assert again.Modality == "RTSTRUCT" and [r.ROIName for r in again.StructureSetROISequence] == \
        ["BODY", "marks", "tumour Ü", "object 11"]
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "again.dcm").data), labels)
    np.save(tmp_path / "lab.npy", labels)
    assert main(["export", str(tmp_path / "lab.npy"), str(tmp_path / "x.rtstruct.dcm"), "--like", str(folder)]) == 0
    assert pydicom.dcmread(tmp_path / "x.rtstruct.dcm").Modality == "RTSTRUCT"
    capsys.readouterr()
    assert main(["export", str(tmp_path / "lab.npy"), str(tmp_path / "y.rtstruct.dcm")]) == 2
    assert "an RT structure set references the DICOM series" in capsys.readouterr().err
    with pytest.raises(VolumeError, match="the labels are empty"):
        write_rtstruct(np.zeros(vol.shape, np.uint8), folder, tmp_path / "empty.dcm")
    with pytest.raises(VolumeError, match="not on the grid of the DICOM series"):
        write_rtstruct(labels[1:], folder, tmp_path / "short.dcm")
    assert not (tmp_path / "empty.dcm").exists() and not (tmp_path / "short.dcm").exists()


def test_the_scanline_fill_agrees_with_skimage_on_random_outlines():
    from skimage.draw import polygon2mask
    from halo_seg.io.rtstruct import fill_even_odd, slice_contours
    rng = np.random.default_rng(4)
    for _ in range(200):                                     # crossing, nested, partly outside the slice
        shape = tuple(int(v) for v in rng.integers(4, 30, 2))
        outlines = [rng.uniform(-4, 34, (int(rng.integers(3, 10)), 2)) for _ in range(int(rng.integers(1, 4)))]
        expected = np.zeros(shape, bool)
        for o in outlines:
            expected ^= polygon2mask(shape, o)
        np.testing.assert_array_equal(fill_even_odd(outlines, shape), expected)
    for _ in range(100):                                     # a mask's outlines fill back to the mask
        mask = rng.random((17, 23)) < rng.uniform(0.2, 0.8)
        np.testing.assert_array_equal(fill_even_odd(slice_contours(mask), mask.shape), mask)


def test_napari_saves_a_structure_set_read_in_back_as_one(make_napari_viewer, tmp_path, series):
    folder, _, _, _ = series
    vol = open_volume(folder)
    _write_rtstruct(folder / "rt.dcm", vol, [(7, "BODY", [(k, _rect(1, 1, 8, 10)) for k in range(1, 6)])])
    viewer = make_napari_viewer()
    layer, = viewer.open(str(folder / "rt.dcm"), plugin="napari-halo-seg")
    layer.data[3, 2:4, 2:4] = 2                              # a new structure drawn on it
    layer.save(str(tmp_path / "corrected.dcm"), plugin="napari-halo-seg")
    ds = pydicom.dcmread(tmp_path / "corrected.dcm")
    assert ds.Modality == "RTSTRUCT" and [r.ROIName for r in ds.StructureSetROISequence] == ["object 2", "BODY"]
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "corrected.dcm").data), layer.data)


def test_the_series_in_the_structure_sets_own_folder_is_found_before_hundreds_beside_it(tmp_path, series):
    """A structure set saved in a case folder whose series lies in a folder in it, with 450 folders
    beside the case folder and a zarr store (chunk folders) in it: the folders in its own folder are
    looked into first, the store's are not, and the series is found (it was not: the 400 folders
    looked into were all beside it)."""
    import zarr
    folder, _, _, _ = series
    case = tmp_path / "cases" / "case"
    case.mkdir(parents=True)
    for i in range(450):                                     # other cases, sorted before it
        (tmp_path / "cases" / f"a{i:03d}").mkdir()
    z = zarr.open_array(str(case / "a_result.zarr"), mode="w", shape=(40, 40, 40), chunks=(4, 4, 4), dtype="u1")
    z[:] = 1                                                 # 1000 chunks: folders of them
    folder.rename(case / "ct")
    vol = open_volume(case / "ct")
    _write_rtstruct(case / "rt.dcm", vol, [(7, "BODY", [(k, _rect(1, 1, 8, 10)) for k in range(1, 6)])])
    got = open_volume(case / "rt.dcm")
    assert got.data.shape == vol.data.shape and np.asarray(got.data).any()


def test_a_series_compressed_as_a_pacs_exports_it_opens_with_its_values(tmp_path, series):
    """JPEG Lossless (process 14) is how many PACS and CD exports store CT and MR; pydicom alone
    cannot decode it (the [dicom] extra's python-gdcm does). RLE, which pydicom decodes itself, too."""
    gdcm = pytest.importorskip("gdcm")
    from pydicom.uid import RLELossless
    folder, stored, _, _ = series
    plain = np.asarray(open_volume(folder).data)
    for kind in ("jpeg-lossless", "rle"):
        (tmp_path / kind).mkdir()
        for f in sorted(folder.iterdir()):
            if kind == "rle":
                ds = pydicom.dcmread(f)
                ds.compress(RLELossless)
                ds.save_as(tmp_path / kind / f.name)
                continue
            reader = gdcm.ImageReader()
            reader.SetFileName(str(f))
            assert reader.Read()
            change = gdcm.ImageChangeTransferSyntax()
            change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
            change.SetInput(reader.GetImage())
            assert change.Change()
            writer = gdcm.ImageWriter()
            writer.SetFileName(str(tmp_path / kind / f.name))
            writer.SetFile(reader.GetFile())
            writer.SetImage(change.GetOutput())
            assert writer.Write()
        ts = pydicom.dcmread(next((tmp_path / kind).iterdir()), stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert ts.is_compressed and ts.name.startswith("JPEG Lossless" if kind == "jpeg-lossless" else "RLE")
        np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / kind).data), plain)


def test_a_cd_or_pacs_export_names_the_series_it_holds(tmp_path, series, make_napari_viewer):
    """A CD's root (a DICOMDIR, the images three folders down) or a PACS export's patient folder
    was 'no DICOM files' or 'unsupported format': the series below are listed, with what they are."""
    folder, stored, positions, iop = series
    study = tmp_path / "cd" / "DICOM" / "PA000000" / "ST000000"
    _write_series(study / "SE000000", stored, positions, iop, (0.7, 0.6), description="T1 axial")
    _write_series(study / "SE000001", stored[:2], positions[:2], iop, (0.7, 0.6), description="localizer")
    (tmp_path / "cd" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")   # indexes the medium: not an image
    listed = (r"DICOM series in the folders below it: DICOM/PA000000/ST000000/SE000000 \(CT 'T1 axial', 7 files\); "
              r"DICOM/PA000000/ST000000/SE000001 \(CT 'localizer', 2 files\)\. Open one of them")
    for where in (tmp_path / "cd", tmp_path / "cd" / "DICOM"):
        with pytest.raises(VolumeError, match=listed.replace("DICOM/", "") if where.name == "DICOM" else listed):
            open_volume(where)
    np.testing.assert_array_equal(np.asarray(open_volume(study / "SE000000").data), np.asarray(open_volume(folder).data))
    from napari_halo_seg._reader import get_reader
    assert get_reader(str(tmp_path / "cd")) is not None       # napari says why, not "no reader found"
    viewer = make_napari_viewer()
    with pytest.raises(Exception, match="SE000001 \\(CT 'localizer'"):
        viewer.open(str(tmp_path / "cd"), plugin="napari-halo-seg")


def test_batch_takes_the_series_a_pacs_export_of_a_cohort_holds(tmp_path, series, tiny_weights, capsys):
    """A cohort exported from a PACS: a folder per patient, study and series, localisers beside the
    scans. --series picks the series by description, each case named by its folders."""
    folder, stored, positions, iop = series
    export = tmp_path / "export"
    for patient in ("P001", "P002"):
        _write_series(export / patient / "ST1" / "SE1", stored, positions, iop, (0.7, 0.6), description="T1 MPRAGE")
        _write_series(export / patient / "ST1" / "SE2", stored[:2], positions[:2], iop, (0.7, 0.6),
                      description="localizer")
    import csv
    out = tmp_path / "out"
    assert main(["batch", str(export), str(out), "--series", "t1|mprage", "--weights", str(tiny_weights),
                 "--mode", "whole", "--export", ".nii.gz"]) == 0
    with open(out / "batch.csv", newline="") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["P001_ST1_SE1", "P002_ST1_SE1"] and {r["status"] for r in rows.values()} == {"done"}
    assert main(["segment", str(folder), str(tmp_path / "one.zarr"), "--weights", str(tiny_weights),
                 "--mode", "whole"]) == 0
    one = np.asarray(open_volume(tmp_path / "one.zarr").data)
    for name in rows:                                        # each case as its series segmented alone
        np.testing.assert_array_equal(np.asarray(open_volume(out / f"{name}.zarr").data), one)
        assert (out / f"{name}.nii.gz").exists()
    capsys.readouterr()
    assert main(["batch", str(export), str(out), "--series", "flair", "--weights", str(tiny_weights)]) == 2
    assert "matching 'flair'; their descriptions: 'T1 MPRAGE', 'localizer'" in capsys.readouterr().err
    assert main(["batch", str(export), str(out), "--weights", str(tiny_weights)]) == 2   # without: no case there
    assert "--series finds DICOM series in folders below" in capsys.readouterr().err


def test_an_interactive_session_on_a_series_goes_out_as_a_structure_set_or_seg(tmp_path, capsys, boxed_session):
    """The object of a session on a DICOM series, written where a planning system or a PACS takes it."""
    from halo_seg.samples import make_phantom
    ph = make_phantom((12, 40, 36), n_objects=2, seed=5)
    stored = np.round(ph.image * 1000).astype(np.int16)
    iop = np.array([1.0, 0, 0, 0, 1, 0])
    folder = _write_series(tmp_path / "ct", stored, [np.array([-20.0, 10.0, 2.5 * k]) for k in range(12)], iop,
                           (0.8, 0.8))
    vol = open_volume(folder)
    seg, session = boxed_session(vol, ph.labels == 1)
    assert main(["session", str(folder), str(session), str(tmp_path / "rs.rtstruct.dcm"), "--label", "4",
                 "--name", "lesion"]) == 0
    rt = open_volume(tmp_path / "rs.rtstruct.dcm")
    assert pydicom.dcmread(tmp_path / "rs.rtstruct.dcm").Modality == "RTSTRUCT"
    assert rt.meta["segment_names"] == {4: "lesion"}
    np.testing.assert_array_equal(np.asarray(rt.data), seg.prediction * 4)
    nib.save(nib.Nifti1Image(np.asarray(vol.data).transpose(2, 1, 0).astype(np.float32), np.eye(4)),
             str(tmp_path / "scan.nii.gz"))
    capsys.readouterr()
    assert main(["session", str(tmp_path / "scan.nii.gz"), str(session), str(tmp_path / "x.dcm")]) == 2
    assert "references the DICOM series the object was drawn on" in capsys.readouterr().err
    pytest.importorskip("highdicom")
    assert main(["session", str(folder), str(session), str(tmp_path / "seg.dcm"), "--name", "lesion"]) == 0
    back = open_volume(tmp_path / "seg.dcm")
    assert back.meta["segment_names"] == {1: "lesion"}
    np.testing.assert_array_equal(np.asarray(back.data), seg.prediction.astype(np.uint16))
