"""Labels out to DICOM as an RT structure set (contours) against a DICOM SEG (highdicom), and back:
seconds to write and to read (median of --repeats), file size, contours, and whether reading gives
the labels back exactly. Cases from ../shared/data, written as DICOM series first:

- CT head (108 x 256 x 256): head outline (> -300 HU) and bone (>= 226 HU), thresholds, so many
  small fragments and holes: a hard case for contours;
- Colin27 (181 x 217 x 181) with the 116 AAL regions: a realistic atlas of structures.

    .venv/bin/python benchmarks/rtstruct.py [--repeats 3] [--out benchmarks/results/rtstruct.json]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import save_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_series(folder: Path, stored: np.ndarray, spacing) -> Path:
    """Axial single-frame slices (int16) as a scanner writes them."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k, px in enumerate(stored):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.InstanceNumber, ds.SeriesNumber = "CT", k + 1, 1
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Bench^Mark", "B1", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = \
            "20261205", "120000", "1", "A1", ""
        ds.ImagePositionPatient = [-100.0, -100.0, float(k * spacing[0])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [spacing[1], spacing[2]], spacing[0]
        ds.Rows, ds.Columns = px.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.PixelData = px.astype("<i2").tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return folder


def cases():
    import nibabel as nib
    read = lambda p: np.asanyarray(nib.load(p).dataobj).transpose(2, 1, 0)
    ct = read(DATA / "ct_cranium" / "ct.nii.gz").astype(np.int16)
    head = np.zeros(ct.shape, np.uint8)
    head[ct > -300] = 1
    head[ct >= 226] = 2
    yield "CT head: outline + bone", ct, (1.5, 0.957, 0.957), head, {1: "head", 2: "bone"}
    t1 = read(DATA / "colin27" / "ch2.nii.gz").astype(np.int16)
    aal = read(DATA / "colin27" / "aal.nii.gz").astype(np.uint16)
    names = {}
    for line in (DATA / "colin27" / "aal_labels.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    yield "Colin27: 116 AAL regions", t1, (1.0, 1.0, 1.0), aal, names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "rtstruct.json"))
    a = ap.parse_args()
    import pydicom
    from halo_seg.io import open_volume
    from halo_seg.io.dicom_seg import write_dicom_seg
    from halo_seg.io.rtstruct import write_rtstruct
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="rtstruct-bench-"))
    try:
        for name, image, spacing, labels, names in cases():
            folder = write_series(tmp / name.split(":")[0].replace(" ", "_"), image, spacing)
            for kind, write, path in (("RT structure set", write_rtstruct, folder / "rs.dcm"),
                                      ("DICOM SEG", write_dicom_seg, folder / "seg.dcm")):
                w = []
                for _ in range(a.repeats):
                    path.unlink(missing_ok=True)
                    t = time.perf_counter()
                    write(labels, folder, path, names=names)
                    w.append(time.perf_counter() - t)
                r = []
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    back = open_volume(path)
                    arr = np.asarray(back.data)
                    r.append(time.perf_counter() - t)
                ids = {n: k for k, n in back.meta["segment_names"].items()}
                expected = np.zeros(labels.shape, np.uint16)
                for v, n in names.items():
                    if n in ids:
                        expected[labels == v] = ids[n]
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                contours = sum(len(getattr(i, "ContourSequence", [])) for i in getattr(ds, "ROIContourSequence", []))
                rows.append({"case": name, "shape": list(labels.shape), "structures": len(np.unique(labels)) - 1,
                             "format": kind, "write s": float(np.median(w)), "read s": float(np.median(r)),
                             "MB": path.stat().st_size / 1e6, "contours": contours,
                             "read back exactly": bool((arr == expected).all()),
                             "voxels differing": int((arr != expected).sum())})
                print(f"{name:26s} {kind:17s} write {rows[-1]['write s']:6.2f} s  read {rows[-1]['read s']:6.2f} s  "
                      f"{rows[-1]['MB']:6.1f} MB  contours {contours:6d}  exact {rows[-1]['read back exactly']}",
                      flush=True)
                path.unlink()   # a SEG and a structure set side by side are fine; kept apart for the timings
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return save_results(a.out, {"repeats": a.repeats}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
