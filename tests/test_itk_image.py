"""NRRD and MetaImage in and labels out, placed where ITK (and so 3D Slicer, ITK-SNAP) puts them:
checked against the NIfTI that ITK itself writes of the same image, read by nibabel."""
import nibabel as nib
import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from halo_seg.cli import main  # noqa: E402
from halo_seg.io import VolumeError, open_volume  # noqa: E402
from halo_seg.io.geometry import KEY, best_affine  # noqa: E402


@pytest.fixture
def scan(tmp_path):
    """An oblique, anisotropic scan written by ITK as NRRD, MetaImage and NIfTI."""
    arr = np.random.default_rng(0).integers(-1000, 1000, (9, 11, 13)).astype(np.int16)   # (Z, Y, X)
    img = sitk.GetImageFromArray(arr)
    t = np.radians(20)
    direction = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])
    img.SetDirection(direction.ravel().tolist())
    img.SetSpacing([0.7, 0.8, 2.5])
    img.SetOrigin([-40.0, 12.5, 30.0])
    paths = {}
    for suffix in (".nrrd", ".mha", ".mhd", ".nii.gz"):
        paths[suffix] = tmp_path / f"ct{suffix}"
        sitk.WriteImage(img, str(paths[suffix]), useCompression=True)
    return arr, img, paths


def test_nrrd_and_metaimage_open_with_their_geometry(scan):
    arr, img, paths = scan
    reference = nib.load(paths[".nii.gz"]).affine   # ITK's own conversion to RAS, read by nibabel
    for suffix in (".nrrd", ".mha", ".mhd"):
        v = open_volume(paths[suffix])
        assert v.meta["format"] in ("nrrd", "metaimage") and not v.meta["labels"]
        np.testing.assert_array_equal(np.asarray(v.data), arr)
        assert v.spacing == pytest.approx((2.5, 0.8, 0.7)) and v.meta["unit"] == "mm"
        np.testing.assert_allclose(best_affine(v.meta[KEY]), reference, atol=1e-4)


def test_labels_export_to_nrrd_and_mha_onto_the_scan(tmp_path, scan):
    arr, img, paths = scan
    labels = (arr > 500).astype(np.uint8) * 3
    np.save(tmp_path / "lab.npy", labels)
    for suffix in (".nrrd", ".mha"):
        out = tmp_path / f"lab{suffix}"
        assert main(["export", str(tmp_path / "lab.npy"), str(out), "--like", str(paths[".nrrd"])]) == 0
        back = sitk.ReadImage(str(out))   # what Slicer or ITK-SNAP reads: on the scan, voxel for voxel
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)
        np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-6)
    with pytest.raises(VolumeError, match="not lab.mhd"):
        from halo_seg.io.itk_image import write_itk_labels
        write_itk_labels(labels, tmp_path / "lab.mhd")


def test_a_slicer_segmentation_opens_as_labels(tmp_path, make_napari_viewer):
    lab = np.zeros((6, 7, 8), np.uint8)
    lab[1:4, 2:5, 2:6] = 2
    img = sitk.GetImageFromArray(lab)
    img.SetMetaData("Segment0_LabelValue", "2")
    img.SetMetaData("Segment0_Name", "liver")
    sitk.WriteImage(img, str(tmp_path / "liver.seg.nrrd"), useCompression=True)
    v = open_volume(tmp_path / "liver.seg.nrrd")
    assert v.meta["labels"] and v.meta["segment_names"] == {2: "liver"}
    viewer = make_napari_viewer()
    layer, = viewer.open(str(tmp_path / "liver.seg.nrrd"), plugin="napari-halo-seg")
    assert layer.__class__.__name__ == "Labels" and isinstance(layer.data, np.ndarray)
    np.testing.assert_array_equal(layer.data, lab)
    layer.save(str(tmp_path / "saved.nrrd"), plugin="napari-halo-seg")   # saved back where it lies
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "saved.nrrd"))), lab)
    # the brush writes into the layer's array, which is not the file's copy the reader keeps
    layer.paint((0, 0, 0), 5, refresh=False)
    assert layer.data[0, 0, 0] == 5
    np.testing.assert_array_equal(np.asarray(open_volume(tmp_path / "liver.seg.nrrd").data), lab)


def test_bad_itk_files_are_refused(tmp_path, monkeypatch):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.uint8)), str(tmp_path / "flat.nrrd"))
    with pytest.raises(VolumeError, match="expected a 3D volume, got 2D"):
        open_volume(tmp_path / "flat.nrrd")
    (tmp_path / "bad.mha").write_text("ObjectType = Image\nNDims = 3\nthis is no header\n")
    with pytest.raises(VolumeError, match="cannot read .*bad.mha"):
        open_volume(tmp_path / "bad.mha")
    monkeypatch.setitem(__import__("sys").modules, "SimpleITK", None)   # the [itk] extra not installed
    with pytest.raises(VolumeError, match=r"flat.nrrd needs SimpleITK: pip install 'napari-halo-seg\[itk\]'"):
        open_volume(tmp_path / "flat.nrrd")


def test_a_slicer_segmentation_of_overlapping_segments_opens_as_one_label_each(tmp_path):
    """3D Slicer saves segments that overlap as layers (a 4D .seg.nrrd: one labelmap per layer,
    SegmentN_Layer and _LabelValue saying where each segment is). They were taken for channels;
    now each segment is a label, the smaller kept where two overlap."""
    body = np.zeros((6, 7, 8), np.uint8)
    body[0:5, 1:7, 1:8] = 1                                   # layer 0: the body (value 1) ...
    body[5, 0:2, 0:2] = 2                                     # ... and a marker beside it (value 2)
    organ = np.zeros_like(body)
    organ[1:4, 2:5, 2:6] = 1                                  # layer 1: an organ inside the body
    img = sitk.GetImageFromArray(np.stack([body, organ], axis=-1), isVector=True)
    for n, (layer, value, name) in enumerate([(0, 1, "body"), (1, 1, "liver"), (0, 2, "marker")]):
        img.SetMetaData(f"Segment{n}_Layer", str(layer))
        img.SetMetaData(f"Segment{n}_LabelValue", str(value))
        img.SetMetaData(f"Segment{n}_Name", name)
    sitk.WriteImage(img, str(tmp_path / "both.seg.nrrd"), useCompression=True)
    v = open_volume(tmp_path / "both.seg.nrrd")
    expected = np.zeros(body.shape, np.uint16)
    expected[body == 1] = 1
    expected[organ == 1] = 2                                  # the liver on top of the body
    expected[body == 2] = 3
    assert v.shape == body.shape and v.meta["labels"] and v.meta["segment_names"] == {1: "body", 2: "liver",
                                                                                      3: "marker"}
    np.testing.assert_array_equal(np.asarray(v.data), expected)
    assert v.meta["overlap"] == int((organ == 1).sum())


def _written(path, arr, compressed, vector=False):
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=vector), str(path), useCompression=compressed)
    return path


def test_an_uncompressed_metaimage_is_read_box_by_box(tmp_path, monkeypatch):
    """Micro-CT and light-sheet stacks larger than memory come as .mhd + .raw: ITK streams the box
    each index asks for, so a halo rank reads its block and no more; the values are ITK's own."""
    from halo_seg.io import itk_image
    arr = np.random.default_rng(1).integers(-500, 1000, (37, 41, 29)).astype(np.int16)
    vec = np.random.default_rng(2).random((12, 13, 14, 3)).astype(np.float32)
    files = {"mha": _written(tmp_path / "a.mha", arr, False), "mhd": _written(tmp_path / "a.mhd", arr, False),
             "vector": _written(tmp_path / "v.mha", vec, False, vector=True)}
    assert (tmp_path / "a.raw").is_file()   # .mhd names its data file
    monkeypatch.setattr(itk_image, "CHUNK_BYTES", 4 * 41 * 29 * 2)   # chunks of 4 slices
    monkeypatch.setattr(itk_image, "_read_whole", None)   # never the whole file
    boxes = []
    real = itk_image.MetaImageBoxes.__getitem__
    monkeypatch.setattr(itk_image.MetaImageBoxes, "__getitem__", lambda self, key: boxes.append(key) or real(self, key))
    for name, path in files.items():
        v = itk_image.open_itk(path)   # as read, channels first
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        ref = np.moveaxis(ref, -1, 0) if name == "vector" else ref
        assert "read_whole" not in v.meta and v.data.shape == ref.shape
        for sl in ((), np.s_[3:20, 5:9, 2:28:3], np.s_[5], np.s_[:, 7], np.s_[-3:, 10:], np.s_[2, 3:, 1:6:2]):
            sl = ((slice(None),) if name == "vector" else ()) + (sl if isinstance(sl, tuple) else (sl,))
            np.testing.assert_array_equal(v.data[sl].compute(), ref[sl])
    boxes.clear()
    np.asarray(open_volume(files["mha"]).data[8:16])   # a rank's block of two chunks: those chunks read
    assert len(boxes) == 2 and all(k[0].stop - k[0].start == 4 for k in boxes)


def test_a_file_read_whole_is_read_once_and_counted_in_each_ranks_memory(tmp_path, monkeypatch, tiny_weights):
    """A compressed file (NRRD, MetaImage) is read whole: once for a whole tile-mode run (each tile
    band asked for the whole file again, 97 reads of it), and the memory check counts it in every
    rank, which holds it beside its block; the labels equal those of the same volume from .npy."""
    from halo_seg.engine import memory
    from halo_seg.engine.runner import EngineError, segment
    from halo_seg.io import itk_image
    arr = (np.random.default_rng(3).random((40, 32, 32)) * 300).astype(np.int16)
    np.save(tmp_path / "a.npy", arr)
    nrrd = _written(tmp_path / "a.nrrd", arr, True)
    assert open_volume(nrrd).meta["read_whole"] and open_volume(_written(tmp_path / "c.mha", arr, True)).meta["read_whole"]
    itk_image._read_kept.cache_clear()
    kw = dict(weights=tiny_weights, mode="tile", tile_size=16, resample="off")
    segment(nrrd, tmp_path / "n.zarr", **kw)
    assert itk_image._read_kept.cache_info().misses == 1
    segment(tmp_path / "a.npy", tmp_path / "ref.zarr", **kw)
    np.testing.assert_array_equal(open_volume(tmp_path / "n.zarr").data, open_volume(tmp_path / "ref.zarr").data)
    # the halo ranks: each holds the whole file; an uncompressed .mha of it is read by block
    mha = _written(tmp_path / "u.mha", arr, False)
    lazy = segment(mha, tmp_path / "u.zarr", tiny_weights, grid=(2, 1, 1), resample="off").memory
    whole = segment(nrrd, tmp_path / "w.zarr", tiny_weights, grid=(2, 1, 1), resample="off").memory
    raw = segment(_written(tmp_path / "r.nrrd", arr, False), tmp_path / "r.zarr", tiny_weights, grid=(2, 1, 1),
                  resample="off").memory   # an uncompressed NRRD is mapped, read by block too
    assert whole.per_rank - lazy.per_rank == arr.nbytes and raw.per_rank == lazy.per_rank
    np.testing.assert_array_equal(open_volume(tmp_path / "r.zarr").data, open_volume(tmp_path / "w.zarr").data)
    np.testing.assert_array_equal(open_volume(tmp_path / "u.zarr").data, open_volume(tmp_path / "w.zarr").data)
    monkeypatch.setattr(memory, "host_available", lambda: int((lazy.needed + 2 * arr.nbytes // 3) / memory.USABLE))
    segment(mha, tmp_path / "u2.zarr", tiny_weights, grid=(2, 1, 1), resample="off")
    with pytest.raises(EngineError, match=r"each rank reads .*a.nrrd whole \(.*\): as zarr or an uncompressed .mha or .nrrd"):
        segment(nrrd, tmp_path / "w2.zarr", tiny_weights, grid=(2, 1, 1), resample="off")


def test_a_file_read_whole_is_counted_when_the_run_resamples_it(tmp_path):
    """A run at the model's voxel size reads the input it resamples whole too (each rank, once):
    its estimate carries the file's bytes, which an uncompressed .mha of it does not."""
    import torch
    from halo_seg.engine.runner import segment
    from halo_seg.engine.unet import UNet3D
    from halo_seg.engine.weights import save_unet
    torch.manual_seed(0)
    weights = save_unet(UNet3D(1, 2, base=4, depth=2), tmp_path / "at2mm.safetensors",
                        training={"spacing": [2.0, 2.0, 2.0], "unit": "mm"})
    arr = (np.random.default_rng(4).random((48, 40, 40)) * 300).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing([1.0, 1.0, 1.0])
    sitk.WriteImage(img, str(tmp_path / "a.nrrd"), useCompression=True)
    sitk.WriteImage(img, str(tmp_path / "a.mha"), useCompression=False)
    for mode in ("halo", "whole"):
        whole = segment(tmp_path / "a.nrrd", tmp_path / f"n_{mode}.zarr", weights, mode=mode, grid=(2, 1, 1))
        lazy = segment(tmp_path / "a.mha", tmp_path / f"m_{mode}.zarr", weights, mode=mode, grid=(2, 1, 1))
        assert whole.resampled and whole.memory.per_rank - lazy.memory.per_rank == arr.nbytes, mode
        np.testing.assert_array_equal(open_volume(tmp_path / f"n_{mode}.zarr").data,
                                      open_volume(tmp_path / f"m_{mode}.zarr").data)


def _hand_nrrd(path, arr, header: str, before: bytes = b"", after: bytes = b"", data_file=None):
    """A NRRD as teem writes it by hand: ``header`` lines, then ``before``, the voxels big-endian, ``after``
    (attached, or in ``data_file`` beside a detached header)."""
    body = before + arr.astype(arr.dtype.newbyteorder(">")).tobytes() + after
    sizes = " ".join(map(str, arr.shape[::-1]))
    head = f"NRRD0005\n# written by hand\ntype: int16\ndimension: {arr.ndim}\nsizes: {sizes}\nendian: big\n{header}"
    if data_file is None:
        path.write_bytes(head.encode() + b"\n" + body)
    else:
        (path.parent / data_file).write_bytes(body)
        path.write_text(head + f"data file: {data_file}\n")
    return path


def test_an_uncompressed_nrrd_is_read_box_by_box(tmp_path, monkeypatch):
    """3D Slicer (Compress unticked) and teem write big stacks as raw NRRD, which ITK cannot stream:
    its voxels lie in file order at an offset the header gives, so each index maps the file and reads
    its box; the values are ITK's own whole read, whatever the header's byte order, skips and data file."""
    from halo_seg.io import itk_image
    arr = np.random.default_rng(1).integers(-500, 1000, (37, 41, 29)).astype(np.int16)
    vec = np.random.default_rng(2).random((12, 13, 14, 3)).astype(np.float32)
    small = arr[:9, :11, :13]
    files = {"nrrd": _written(tmp_path / "a.nrrd", arr, False), "nhdr": _written(tmp_path / "a.nhdr", arr, False),
             "vector": _written(tmp_path / "v.nrrd", vec, False, vector=True),
             "big-endian, skips": _hand_nrrd(tmp_path / "b.nrrd", small, "encoding: raw\nline skip: 2\nbyte skip: 3\n"
                                             "my key:=a: value\n", before=b"line one\nline two\nabc"),
             "detached, ends the file": _hand_nrrd(tmp_path / "d.nhdr", small, "encoding: raw\nbyte skip: -1\n",
                                                   before=b"\x00" * 7, data_file="d.bin"),
             "labels": _written(tmp_path / "s.seg.nrrd", (arr > 300).astype(np.uint8), False)}
    assert (tmp_path / "a.raw").is_file()   # .nhdr names its data file
    monkeypatch.setattr(itk_image, "CHUNK_BYTES", 4 * 41 * 29 * 2)   # chunks of 4 slices
    monkeypatch.setattr(itk_image, "_read_whole", None)   # never the whole file
    boxes = []
    real = itk_image.RawBoxes.__getitem__
    monkeypatch.setattr(itk_image.RawBoxes, "__getitem__", lambda self, key: boxes.append(key) or real(self, key))
    for name, path in files.items():
        v = itk_image.open_itk(path)   # as read, channels first
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        ref = np.moveaxis(ref, -1, 0) if name == "vector" else ref
        assert "read_whole" not in v.meta and v.data.shape == ref.shape and v.data.dtype == ref.dtype, name
        assert v.meta["labels"] == (name == "labels")
        for sl in ((), np.s_[3:20, 5:9, 2:28:3], np.s_[5], np.s_[:, 7], np.s_[-3:, 10:], np.s_[2, 3:, 1:6:2]):
            sl = ((slice(None),) if name == "vector" else ()) + (sl if isinstance(sl, tuple) else (sl,))
            got = v.data[sl].compute()
            assert got.dtype.isnative, name
            np.testing.assert_array_equal(got, ref[sl], err_msg=name)
    boxes.clear()
    np.asarray(open_volume(files["nrrd"]).data[8:16])   # a rank's block of two chunks: those chunks read
    assert len(boxes) == 2 and all(k[0].stop - k[0].start == 4 for k in boxes)

    # what cannot be mapped is read whole, as ITK reads it: compressed, or the components last
    monkeypatch.undo()
    last = _hand_nrrd(tmp_path / "last.nrrd", np.stack([small, -small], -1).transpose(3, 0, 1, 2).copy(),
                      "encoding: raw\nkinds: domain domain domain vector\n")
    for path in (_written(tmp_path / "c.nrrd", arr, True), last):
        v = itk_image.open_itk(path)
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        assert v.meta["read_whole"], path.name
        np.testing.assert_array_equal(np.asarray(v.data), np.moveaxis(ref, -1, 0) if ref.ndim == 4 else ref)
