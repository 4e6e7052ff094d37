"""Reading a compressed NIfTI (`.nii.gz`) as the engine and napari do, box by box, with and without
indexed_gzip (which nibabel uses when it is installed).

gzip cannot be read from the middle: Python's GzipFile reaches a voxel by decompressing all that
precedes it, 1 KiB at a time, so every box of a `.nii.gz` (a halo rank's block, a tile band, the
slice napari shows) cost a pass over the file up to it. indexed_gzip seeks in C and keeps an index
of points within the file. One int16 volume (a ramp plus noise, about as compressible as a CT)
written with nibabel; each (reader, access) runs in a process of its own; medians of ``--repeat``
interleaved runs, and each process's peak resident memory (the largest of the runs):

- whole: the dask volume read whole (its 32-slice chunks);
- bands: every 16-slice band, as the tile loop reads them;
- block: the last of 4 ranks' blocks of a 4x1x1 grid;
- scroll: 10 single slices spread over the depth in a shuffled order, one at a time, as napari
  shows them while the user scrolls.

    .venv/bin/python benchmarks/nifti_gz_reading.py [--shape 400 512 512] [--repeat 3]
        [--before OTHER_CHECKOUT/src --out results/nifti_gz_boxes.json]   (this code against another's)
        [--scaled]   (stored as dcm2niix stores a CT: scl_slope 1, scl_inter -1024)
        [--series T]   (a 4D file of T volumes, the last one read)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import interleaved, one_or_main, save_results

ACCESS = ("whole", "bands", "block", "scroll")


def _one(spec: dict) -> dict:
    if "src" in spec:   # --before: this checkout's code or another's
        sys.path.insert(0, spec["src"])
    reader = spec.get("reader", "indexed_gzip")
    if reader == "gzip":   # nibabel falls back to Python's gzip without it
        sys.modules["indexed_gzip"] = None
    import nibabel._compression as compression
    from halo_seg.io import open_volume
    assert compression.HAVE_INDEXED_GZIP == (reader == "indexed_gzip")
    t = time.perf_counter()
    vol = open_volume(spec["file"], timepoint=spec.get("timepoint"))
    z = vol.shape[0]
    if spec["access"] == "whole":
        total = int(np.asarray(vol.data).sum(dtype=np.int64))
    elif spec["access"] == "bands":
        total = sum(int(np.asarray(vol.data[a:a + 16]).sum(dtype=np.int64)) for a in range(0, z, 16))
    elif spec["access"] == "block":
        total = int(np.asarray(vol.data[3 * z // 4:]).sum(dtype=np.int64))
    else:
        at = np.random.default_rng(1).permutation(np.linspace(0, z - 1, 10).astype(int))
        total = sum(int(np.asarray(vol.data[int(k)]).sum(dtype=np.int64)) for k in at)
    # this process's peak (VmHWM: ru_maxrss would carry the parent's across exec)
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
    return {"seconds": time.perf_counter() - t, "checksum": total, "dtype": str(vol.data.dtype), "peak_mib": peak}


def main(argv=None) -> int:
    import nibabel as nib
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[400, 512, 512])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "nifti_gz_reading.json"))
    ap.add_argument("--before", default=None, help="the src/ of another checkout: compare its code with this "
                    "one's (both with indexed_gzip) rather than the two gzip readers")
    ap.add_argument("--series", type=int, default=0, help="a 4D file of this many volumes (the second a copy "
                    "of the first, negated, and so on); each access reads the last")
    ap.add_argument("--scaled", action="store_true", help="store it as dcm2niix stores a CT: the integers with "
                    "scl_slope 1 and scl_inter -1024 (read as floats)")
    a = ap.parse_args(argv)
    codes = {"gzip": "gzip", "indexed_gzip": "indexed_gzip"}
    if a.before:
        codes = {"before": a.before, "now": str(Path(__file__).resolve().parents[1] / "src")}
    first, second = codes
    rng = np.random.default_rng(0)
    z, y, x = a.shape
    arr = (np.linspace(-1000, 1000, x)[None, None, :] + rng.normal(0, 30, (z, y, x))).astype(np.int16)
    rows = []
    with tempfile.TemporaryDirectory(dir=str(Path(__file__).parent)) as tmp:
        path = Path(tmp) / "v.nii.gz"
        xyz = arr.transpose(2, 1, 0)
        img = nib.Nifti1Image(np.stack([xyz * (-1) ** k for k in range(a.series)], -1) if a.series else xyz, np.eye(4))
        if a.scaled:
            img.header.set_slope_inter(1.0, -1024.0)
        nib.save(img, str(path))
        mib = path.stat().st_size / 2 ** 20
        del arr, xyz, img
        for access in ACCESS:
            spec = {"file": str(path), "access": access, **({"timepoint": a.series - 1} if a.series else {})}
            runs, med = interleaved(__file__, codes, spec, a.repeat,
                                    key="src" if a.before else "reader")
            assert runs[first][0]["checksum"] == runs[second][0]["checksum"]   # the same voxels
            rows.append({"access": access, "median": med, "runs": runs})
    print(f"\n{' x '.join(map(str, a.shape))} int16{' scaled' if a.scaled else ''}"
          f"{f', the last of {a.series} volumes' if a.series else ''} ({np.prod(a.shape) * 2 / 2 ** 20:.0f} "
          f"MiB, {mib:.0f} MiB compressed); median seconds of {a.repeat} runs each")
    print(f"| read | {first if a.before else 'Python' + chr(39) + 's gzip'} | {second} | ratio | peak MiB, "
          f"{first} | {second} |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        g, i = r["median"][first]["seconds"], r["median"][second]["seconds"]
        pg, pi = (max(run["peak_mib"] for run in r["runs"][k]) for k in (first, second))
        print(f"| {r['access']} | {g:.2f} | {i:.2f} | {g / max(i, 1e-9):.1f}x | {pg:.0f} | {pi:.0f} |")
    print("read as: " + ", ".join(f"{k} {rows[0]['runs'][k][0]['dtype']}" for k in (first, second)))
    return save_results(a.out, {"shape": a.shape, "repeat": a.repeat, "compressed_mib": mib, "before": a.before,
                                "scaled": a.scaled, "series": a.series},
                        rows)


if __name__ == "__main__":
    raise SystemExit(one_or_main(_one, main))
