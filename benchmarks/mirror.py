"""Test-time mirroring of the automatic engine: Dice and time against no mirroring, in one run.

The 2 mm Colin27 sample, scored on the right hemisphere that the default model never trained on
(classes brain and deep grey matter, as in its model card). Every mirror setting runs through the
public `segment` call; the halo run (2 ranks) with the most views is checked against the whole
volume, since mirroring there is done with flipped kernels rather than flipped blocks.

    .venv/bin/python benchmarks/mirror.py [--weights default PATH ...] [--threads 2] [--repeats 3]

With ../shared/data (HALO_SEG_SHARED_DATA) the same settings are also timed on the 1 mm volume
(181 x 217 x 181, 8 times the voxels), where the network's share of the time is larger.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from _results import save_results, timed  # noqa: E402

from halo_seg.engine.mirror import flip_sets  # noqa: E402
from halo_seg.engine.runner import segment  # noqa: E402
from halo_seg.metrics import dice  # noqa: E402
from halo_seg.samples import load_colin27_full, shared_data_dir  # noqa: E402
from halo_seg.train.default_model import default_targets, hemisphere_regions  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="*", default=["default"])
    ap.add_argument("--mirror", nargs="*", default=["", "x", "yx", "zyx"], help="'' for none")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grid", default="2,1,1", help="the halo run checked against the whole volume")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mirror.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    img, lab = default_targets()
    _, va = hemisphere_regions(img.shape)
    rows = []
    print(f"{'weights':>22} {'mirror':>6} {'views':>5} {'brain':>6} {'deep grey':>9} {'s median':>8} {'x time':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t1.npy"
        np.save(src, img)
        for w in a.weights:
            base_s = None
            for k, m in enumerate(a.mirror):
                out = Path(tmp) / f"{k}.zarr"
                _, s, _ = timed(lambda: segment(src, out, w, mode="whole", mirror=m, threads=a.threads,
                                                save_probabilities=True), a.repeats)
                pred = zarr.open_group(str(out), mode="r")["labels"][...]
                base_s = s if base_s is None else base_s
                row = {"weights": str(w), "mirror": m, "views": len(flip_sets(m)), "seconds": s,
                       "time_ratio": s / base_s,
                       "dice": {c: float(dice(pred[va] == i, lab[va] == i)) for i, c in
                                ((1, "brain"), (2, "deep_grey"))}}
                if m == a.mirror[-1]:
                    hout = Path(tmp) / "halo.zarr"
                    grid = tuple(int(g) for g in a.grid.split(","))
                    segment(src, hout, w, grid=grid, mirror=m, save_probabilities=True)
                    hp = zarr.open_group(str(hout), mode="r")
                    wp = zarr.open_group(str(out), mode="r")
                    row["halo_grid"] = list(grid)
                    row["halo_max_prob_diff"] = float(np.abs(hp["probabilities"][...] - wp["probabilities"][...]).max())
                    row["halo_labels_equal"] = bool((hp["labels"][...] == pred).all())
                rows.append(row)
                print(f"{Path(str(w)).stem[-22:]:>22} {m or 'none':>6} {row['views']:>5} {row['dice']['brain']:6.3f} "
                      f"{row['dice']['deep_grey']:9.3f} {s:8.2f} {row['time_ratio']:6.1f}"
                      + (f"   halo {a.grid}: max prob diff {row['halo_max_prob_diff']:.1e}, labels equal "
                         f"{row['halo_labels_equal']}" if "halo_grid" in row else ""))
        if shared_data_dir():
            full = Path(tmp) / "t1_1mm.npy"
            np.save(full, load_colin27_full().image.astype(np.float32))
            base_s = None
            for k, m in enumerate(a.mirror):
                out = Path(tmp) / f"full{k}.zarr"
                _, s, _ = timed(lambda: segment(full, out, a.weights[0], mode="whole", mirror=m, threads=a.threads),
                                a.repeats)
                base_s = s if base_s is None else base_s
                rows.append({"weights": str(a.weights[0]), "volume": "1 mm", "mirror": m,
                             "views": len(flip_sets(m)), "seconds": s, "time_ratio": s / base_s})
                print(f"{'1 mm volume, ' + Path(str(a.weights[0])).stem:>22} {m or 'none':>6} {len(flip_sets(m)):>5} "
                      f"{'':>6} {'':>9} {s:8.2f} {s / base_s:6.1f}")
    rows.append({"platform": platform.platform(), "threads": a.threads, "torch": torch.__version__})
    return save_results(a.out, "2 mm Colin27, right hemisphere (never trained on)", rows)


if __name__ == "__main__":
    raise SystemExit(main())
