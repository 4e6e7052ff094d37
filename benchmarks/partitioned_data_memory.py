"""What each torchrun rank of partitioned training holds of the training volumes, this checkout
against another (e.g. the commit before a machine's ranks shared the prepared pairs from disk,
train/partitioned_run.py).

``--cases`` phantom pairs of ``--size``^3 voxels (float32 images, uint8 labels) in .npy files,
trained on by two torchrun ranks on a 2x1x1 grid for 2 iterations of a small network, each code as
its `train` command gives the volumes: before, read whole (numpy arrays); now, as opened (lazy).
Reported by the training itself: the largest rank's private memory (RssAnon) when its training
loop starts, which holds whatever the rank keeps of the data, and the training's peak growth
above it. Each code runs ``--repeat`` times, interleaved; medians.

    git worktree add /tmp/before 98e6793
    .venv/bin/python benchmarks/partitioned_data_memory.py --before /tmp/before/src [--cases 4 --size 128]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _results import before_and_now_parser, save_results


def _rank(spec: dict) -> None:
    """One torchrun rank: train as the code's CLI would hand it the volumes; rank 0 prints the result."""
    sys.path.insert(0, spec["src"])
    from halo_seg.io import open_volume
    from halo_seg.train.partitioned_run import train_partitioned_torchrun
    vols = [open_volume(p) for p in spec["images"]]
    labs = [np.load(p, mmap_mode="r") for p in spec["labels"]]
    if spec["code"] == "before":   # its CLI read every volume whole before training
        imgs, labs = [np.asarray(v.data) for v in vols], [np.asarray(lb) for lb in labs]
    else:
        imgs = [v.data for v in vols]
    cfg = dict(n_classes=2, patch=[64, 64, 64], iterations=2, lr=1e-3, base=4, depth=2, epoch=2, threads=1,
               memory_check=False)
    res = train_partitioned_torchrun(imgs, labs, cfg, (2, 1, 1), spec["out"], log=lambda *a: None)
    if res is not None:
        print(json.dumps({"process_mib": res["process_mb"], "peak_mib": res["peak_mb"]}))


def _make(folder: Path, cases: int, size: int) -> tuple[list, list]:
    from halo_seg.samples import make_phantom
    images, labels = [], []
    for k in range(cases):
        ph = make_phantom((size,) * 3, n_objects=4, seed=k)
        images.append(str(folder / f"img{k}.npy"))
        labels.append(str(folder / f"lab{k}.npy"))
        np.save(images[-1], ph.image.astype(np.float32))
        np.save(labels[-1], (ph.labels > 0).astype(np.uint8))
    return images, labels


def _run(spec: dict) -> dict:
    from halo_seg.engine.runner import _free_port
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           __file__, "--rank", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = before_and_now_parser(__doc__, "partitioned_data_memory.json")
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    a = ap.parse_args(argv)
    now = str(Path(__file__).resolve().parents[1] / "src")
    runs = {"before": [], "now": []}
    with tempfile.TemporaryDirectory() as tmp:
        images, labels = _make(Path(tmp), a.cases, a.size)
        for _ in range(a.repeat):
            for code, src in (("before", a.before), ("now", now)):
                runs[code].append(_run({"src": src, "code": code, "images": images, "labels": labels,
                                        "out": f"{tmp}/{code}.safetensors"}))
                print(code, runs[code][-1], flush=True)
    med = {c: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for c, rs in runs.items()}
    voxels = a.cases * a.size ** 3
    print(f"\n{a.cases} pairs of {a.size}^3 ({voxels / 1e6:.1f} M voxels), 2 torchrun ranks, median of {a.repeat}")
    print("| code | largest rank's private memory at the first step, MiB | training peak above it, MiB |")
    print("|---|---|---|")
    for c in ("before", "now"):
        print(f"| {c} | {med[c]['process_mib']:.0f} | {med[c]['peak_mib']:.0f} |")
    return save_results(a.out, {"before": a.before, "cases": a.cases, "size": a.size, "repeat": a.repeat},
                        [{"code": c, "median": med[c], "runs": runs[c]} for c in runs])


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--rank":
        _rank(json.loads(sys.argv[2]))
    else:
        raise SystemExit(main())
