"""Interactive segmentation on a modality the networks never saw: 3D fluorescence nuclei.

The volume is the synthetic 3D nuclei stack StarDist ships as test data (31 x 61 x 57, uint16, 51
labelled nuclei, BSD-3-Clause, Schmidt & Weigert): noisy, anisotropic, and most nuclei touch a
neighbour of the same brightness, the situation where sweeps leak (caudate into thalamus on MRI).
It is read straight out of StarDist's wheel, fetched once from PyPI with ``pip download --no-deps``
into ``benchmarks/.cache/`` (nothing of it is committed), or given with ``--wheel``.

Per nucleus, the simulated user of ``interactive.py`` (a tight box on the largest slice, then one
box or an empty mask per round on the recommended slice), and where the error comes from: the box
segmentation of that slice alone, the volume propagated from the exact mask of that slice, and the
same cut to the nucleus' true slice extent (an oracle end rule). ``--variants`` sets engine switches
as ``interactive_variants.py`` does (``shrunk``, ``regrown``, ``contrast``, ``weights``, ``segfill``), and
``strict=1`` turns on the session option ``strict_ends`` (propagation.STRICT_ENDS), ``quality=PATH``
loads another quality model; ``choose=random``
or ``choose=oracle`` picks the corrected slices as ``interactive.py``'s other strategies do.

    .venv/bin/python benchmarks/microscopy.py [--variants base regrown=1.2] [--rounds 4] [--ids even] [--wheel PATH]
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from _results import save_results

WHEEL = "stardist==0.9.2"
CACHE = Path(__file__).parent / ".cache"


def find_wheel(path: str | None) -> Path:
    if path:
        return Path(path)
    hits = sorted(CACHE.glob("stardist-0.9.2-*.whl"))
    if not hits:
        CACHE.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CACHE), WHEEL], check=True)
        hits = sorted(CACHE.glob("stardist-0.9.2-*.whl"))
    if not hits:
        raise SystemExit(f"no {WHEEL} wheel in {CACHE}; pass --wheel PATH")
    return hits[0]


def load_nuclei(wheel: Path):
    import tifffile
    with zipfile.ZipFile(wheel) as z:
        img = tifffile.imread(io.BytesIO(z.read("stardist/data/images/img3d.tif")))
        lab = tifffile.imread(io.BytesIO(z.read("stardist/data/images/mask3d.tif")))
    return img, lab


def run_variant(args) -> dict:
    spec, wheel, spacing, rounds, ids = args
    import torch
    from halo_seg import InteractiveSegmenter
    from halo_seg.interactive import propagation
    from halo_seg.interactive.baseline import fill_between_curve
    from halo_seg.interactive.simulate import run_session, tight_box
    from halo_seg.metrics import dice, pearson
    torch.set_num_threads(1)
    kv = dict(x.split("=", 1) for x in spec.split(",")) if spec != "base" else {}
    propagation.SHRUNK = float(kv.get("shrunk", propagation.SHRUNK))
    propagation.REGROWN = float(kv.get("regrown", propagation.REGROWN))
    propagation.CONTRAST_STOP = float(kv["contrast"]) if "contrast" in kv else None
    from halo_seg.interactive import segmenter
    segmenter.FILL_SEGMENTED_MM = float(kv.get("segfill", segmenter.FILL_SEGMENTED_MM))
    img, lab = load_nuclei(wheel)
    opts = {"weights": kv.get("weights", "default"), "strict_ends": kv.get("strict", "0") == "1",
            "quality_model": kv.get("quality", "auto")}
    per, pairs, secs = {}, [], []
    for i in (int(v) for v in np.unique(lab) if v and (ids == "all" or v % 2 == (ids == "odd"))):
        truth = lab == i
        area = truth.reshape(len(truth), -1).sum(1)
        z = int(area.argmax())
        seg = InteractiveSegmenter(img, spacing=spacing, device="cpu", **opts)
        recs = run_session(seg, truth, rounds, kv.get("choose", "recommend"), seed=i)
        pairs += [p for r in recs for p in r["pairs"]]
        secs += [r["seconds"] for r in recs if r["seconds"] is not None]
        seg = InteractiveSegmenter(img, spacing=spacing, device="cpu", **opts)
        seg.add_box(z, *tight_box(truth[z]))
        box2d = dice(seg.segment_slice(z), truth[z])
        seg = InteractiveSegmenter(img, spacing=spacing, device="cpu", **opts)
        seg.set_slice_mask(z, truth[z])
        exact = seg.propagate()
        cut = exact & (area > 0)[:, None, None]
        per[str(i)] = {"rounds": [r["dice"] for r in recs], "box_slice": box2d, "exact_slice": dice(exact, truth),
                       "exact_slice_true_extent": dice(cut, truth), "fill_between": fill_between_curve(truth, rounds),
                       "slices": int((area > 0).sum())}
    rows = list(per.values())
    out = {"variant": spec, "nuclei": len(rows),
           "mean_dice_per_round": np.mean([r["rounds"] for r in rows], 0).tolist(),
           "fill_between": np.mean([r["fill_between"] for r in rows], 0).tolist(),
           "box_slice": float(np.mean([r["box_slice"] for r in rows])),
           "exact_slice": float(np.mean([r["exact_slice"] for r in rows])),
           "exact_slice_true_extent": float(np.mean([r["exact_slice_true_extent"] for r in rows])),
           "pearson_r_pooled": pearson(pairs), "seconds_median": float(np.median(secs)), "per_nucleus": per}
    c = out["mean_dice_per_round"]
    print(f"{spec}: one box {c[0]:.3f}, round {rounds} {c[-1]:.3f}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=["base"])
    ap.add_argument("--rounds", type=int, default=4,
                    help="a nucleus spans about 7 slices; past 4 rounds most sessions have annotated it all")
    ap.add_argument("--spacing", type=float, nargs=3, default=(2.0, 1.0, 1.0),
                    help="z, y, x; the default is the ratio of the nuclei's median extents (15 px across, 7 slices)")
    ap.add_argument("--wheel", help="a downloaded stardist-0.9.2 wheel (default: fetch it into benchmarks/.cache)")
    ap.add_argument("--ids", choices=["all", "odd", "even"], default="all",
                    help="score only the nuclei with odd or even label values (e.g. the half not trained on)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "microscopy.json"))
    a = ap.parse_args(argv)
    wheel = find_wheel(a.wheel)
    img, lab = load_nuclei(wheel)
    ids = [v for v in np.unique(lab) if v]
    ext = np.array([[np.ptp(ax) + 1 for ax in np.nonzero(lab == v)] for v in ids])
    print(f"{len(ids)} nuclei in {img.shape}; median extent z / y / x: {np.median(ext, 0)} slices / px")
    # one variant per process: the switches are module constants
    with get_context("spawn").Pool(a.jobs, maxtasksperchild=1) as pool:
        results = pool.map(run_variant, [(v, wheel, tuple(a.spacing), a.rounds, a.ids) for v in a.variants], chunksize=1)
    print()
    print(f"| variant | one box | round {a.rounds} | r pooled | box slice alone | from exact slice | "
          "exact slice, true extent | fill between (exact masks) 1 / last |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        c, f = r["mean_dice_per_round"], r["fill_between"]
        print(f"| {r['variant']} | {c[0]:.3f} | {c[-1]:.3f} | {r['pearson_r_pooled']:.2f} | {r['box_slice']:.3f} | "
              f"{r['exact_slice']:.3f} | {r['exact_slice_true_extent']:.3f} | {f[0]:.3f} / {f[-1]:.3f} |")
    return save_results(a.out, {"spacing": list(a.spacing), "rounds": a.rounds, "ids": a.ids, "wheel": wheel.name},
                        results)


if __name__ == "__main__":
    raise SystemExit(main())
