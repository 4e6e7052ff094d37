"""`halo-seg convert` of a compressed NIfTI to an OME-Zarr image, and what it buys: the time the
conversion takes, the sizes on disk, and the reads the engine and napari make (those of
nifti_gz_reading.py: the volume whole, every 16-slice band, the last of 4 ranks' blocks, 10
shuffled single slices), each in a process of its own, from the .nii.gz and from the zarr,
interleaved; medians of ``--repeat`` runs; the voxels checked equal.

    .venv/bin/python benchmarks/convert.py [--shape 400 512 512] [--repeat 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import interleaved, save_results
from nifti_gz_reading import ACCESS

READS = str(Path(__file__).with_name("nifti_gz_reading.py"))   # its _one reads any volume open_volume takes


def _size(path: Path) -> float:
    return (sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir()
            else path.stat().st_size) / 2 ** 20


def main(argv=None) -> int:
    import nibabel as nib
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[400, 512, 512])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "convert.json"))
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    z, y, x = a.shape
    arr = (np.linspace(-1000, 1000, x)[None, None, :] + rng.normal(0, 30, (z, y, x))).astype(np.int16)
    rows = []
    with tempfile.TemporaryDirectory(dir=str(Path(__file__).parent)) as tmp:
        gz, zr = Path(tmp) / "v.nii.gz", Path(tmp) / "v.zarr"
        nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0), np.eye(4)), str(gz))
        del arr
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "halo_seg.cli", "convert", str(gz), str(zr)], check=True)
        seconds = time.perf_counter() - t
        files = {"nii.gz": str(gz), "OME-Zarr": str(zr)}
        for access in ACCESS:
            runs, med = interleaved(READS, files, {"access": access, "reader": "indexed_gzip"}, a.repeat, key="file")
            assert runs["nii.gz"][0]["checksum"] == runs["OME-Zarr"][0]["checksum"]   # the same voxels
            rows.append({"access": access, "median": med, "runs": runs})
        sizes = {"nii.gz": _size(gz), "OME-Zarr": _size(zr)}
    print(f"\n{' x '.join(map(str, a.shape))} int16: convert took {seconds:.1f} s; on disk {sizes['nii.gz']:.0f} MiB "
          f"(.nii.gz) and {sizes['OME-Zarr']:.0f} MiB (OME-Zarr, its pyramid included); median seconds of {a.repeat}")
    print("| read | .nii.gz | OME-Zarr | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        g, o = r["median"]["nii.gz"]["seconds"], r["median"]["OME-Zarr"]["seconds"]
        print(f"| {r['access']} | {g:.2f} | {o:.2f} | {g / max(o, 1e-9):.1f}x |")
    return save_results(a.out, {"shape": a.shape, "repeat": a.repeat, "convert_seconds": seconds, "mib": sizes}, rows)


if __name__ == "__main__":
    raise SystemExit(main())
