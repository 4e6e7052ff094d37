"""Reading MetaImage and NRRD volumes as the engine does: a halo rank's block, and a tile-mode run's
bands, this checkout against another (e.g. the commit before uncompressed MetaImages were streamed
box by box and files read whole were kept for the run, or before uncompressed NRRDs were
memory-mapped, io/itk_image.py).

One int16 volume (random values 0..999) written as an uncompressed `.mha`, `.mhd` + `.raw`, a
compressed `.mha`, a compressed `.nrrd`, an uncompressed `.nrrd`, and a zarr (64^3 chunks) for
reference (``--files`` picks some of them: mha mhd cmha nrrd rnrrd zarr). Each (code, file,
access) runs in a process of its own; medians of ``--repeat`` interleaved runs:

- block: the first of 4 ranks' blocks of a 4x1x1 grid (a quarter of the slices), as a rank reads it;
- last block: the last of them (a compressed stream read box by box is decompressed up to it);
- bands: the whole volume 16 slices at a time, as the tile loop reads its bands.

Peak memory: the growth of the process's resident memory (its high-water mark) over what it held
after the imports (SimpleITK, dask, zarr), in MiB.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python benchmarks/itk_reading.py --before /tmp/before/src [--shape 256 512 512] [--repeat 3]
        [--files rnrrd nrrd zarr]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from _results import before_and_now_parser, interleaved, one_or_main, save_results

FILES = {"mha": "uncompressed .mha", "mhd": "uncompressed .mhd + .raw", "cmha": "compressed .mha",
         "nrrd": "compressed .nrrd", "rnrrd": "uncompressed .nrrd", "zarr": "zarr (reference)"}
BAND = 16


def _one(spec: dict) -> dict:
    import time
    sys.path.insert(0, spec["src"])
    import dask.array  # noqa: F401  (what every reader imports: not part of the reading's memory)
    import SimpleITK  # noqa: F401
    import zarr  # noqa: F401
    from halo_seg.engine.runner import _peak_growth_mb, _reset_peak
    from halo_seg.io import open_volume
    base = _reset_peak()   # the high-water mark from here on, not the imports'

    t = time.perf_counter()
    vol = open_volume(spec["file"])
    z = vol.shape[0]
    if spec["access"] == "block":
        total = int(np.asarray(vol.data[: z // 4]).sum(dtype=np.int64))
    elif spec["access"] == "last block":
        total = int(np.asarray(vol.data[3 * z // 4:]).sum(dtype=np.int64))
    else:
        total = sum(int(np.asarray(vol.data[a:a + BAND]).sum(dtype=np.int64)) for a in range(0, z, BAND))
    sec = time.perf_counter() - t
    return {"seconds": sec, "peak_mib": _peak_growth_mb(base),
            "checksum": total}


def _write(folder: Path, shape, kinds) -> dict:
    import SimpleITK as sitk
    import zarr
    arr = np.random.default_rng(0).integers(0, 1000, shape).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    paths = {k: folder / name for k, name in (("mha", "u.mha"), ("mhd", "u.mhd"), ("cmha", "c.mha"),
                                               ("nrrd", "c.nrrd"), ("rnrrd", "u.nrrd"), ("zarr", "v.zarr"))
             if k in kinds}
    for k in paths.keys() - {"zarr"}:
        sitk.WriteImage(img, str(paths[k]), useCompression=k in ("cmha", "nrrd"))
    if "zarr" in paths:
        z = zarr.open_array(str(paths["zarr"]), mode="w", shape=arr.shape, chunks=(64, 64, 64), dtype=arr.dtype)
        z[:] = arr
    return {k: str(p) for k, p in paths.items()}


def main(argv=None) -> int:
    ap = before_and_now_parser(__doc__, "itk_reading.json", shape=(256, 512, 512))
    ap.add_argument("--files", nargs="+", choices=list(FILES), default=list(FILES))
    a = ap.parse_args(argv)
    now = str(Path(__file__).resolve().parents[1] / "src")
    rows = []
    with tempfile.TemporaryDirectory(dir=str(Path(__file__).parent)) as tmp:
        files = _write(Path(tmp), tuple(a.shape), a.files)
        for access in ("block", "last block", "bands"):
            for kind, path in files.items():
                runs, med = interleaved(__file__, {"before": a.before, "now": now},
                                        {"file": path, "access": access}, a.repeat)
                assert runs["before"][0]["checksum"] == runs["now"][0]["checksum"]   # the same voxels read
                rows.append({"access": access, "file": FILES[kind], "median": med, "runs": runs})
    print(f"\n{' x '.join(map(str, a.shape))} int16 ({np.prod(a.shape) * 2 / 2 ** 20:.0f} MiB); median of {a.repeat} "
          "runs each; seconds and peak memory growth (MiB), before -> now")
    print("| read | file | seconds | ratio | peak MiB |")
    print("|---|---|---|---|---|")
    for r in rows:
        b, n = r["median"]["before"], r["median"]["now"]
        print(f"| {r['access']} | {r['file']} | {b['seconds']:.2f} -> {n['seconds']:.2f} | "
              f"{b['seconds'] / max(n['seconds'], 1e-9):.1f}x | {b['peak_mib']:.0f} -> {n['peak_mib']:.0f} |")
    return save_results(a.out, {"before": a.before, "shape": a.shape, "repeat": a.repeat, "files": a.files}, rows)


if __name__ == "__main__":
    raise SystemExit(one_or_main(_one, main))
