"""What `halo-seg train` holds in RAM per voxel of its training volumes, this checkout against
another (e.g. the commit before the labels were kept narrow and the foreground as flat indices:
f16122b), and what its memory check counts for them.

A dataset folder in nnU-Net v2's layout (`train --dataset`), made once: ``--cases`` cases of
``--size``³ voxels (int16 CT-like images, uint8 labels of 2 classes, phantoms). Each code trains
on the first 2 cases and on all of them (a few iterations, one validation), each run in a process
of its own, interleaved, ``--repeat`` times: the numpy arrays alive at the first training step
(tracemalloc; PyTorch's are not traced), and the process's peak resident memory (ru_maxrss). The
bytes per voxel are the difference in the arrays held between the two runs over the voxels the
extra cases add: what the data costs, apart from the network and the interpreter. Also the time
to draw one background patch on a 300 x 512 x 512 scan.

    git worktree add /tmp/before f16122b
    .venv/bin/python benchmarks/train_dataset_memory.py --before /tmp/before/src [--cases 8 --size 160]
    .venv/bin/python benchmarks/train_dataset_memory.py --before - --on-disk   # in RAM against `train --on-disk`
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from _results import before_and_now_parser, interleaved, one_or_main, save_results


def _make(root: Path, cases: int, size: int) -> float:
    """The dataset (if not there yet); returns its labelled share of the voxels."""
    import nibabel as nib
    from halo_seg.samples import make_phantom
    s = make_phantom((size,) * 3, n_objects=6, seed=0)
    lab = np.minimum(s.labels, 2).astype(np.uint8)
    if not (root / "dataset.json").exists():
        for d in ("imagesTr", "labelsTr"):
            (root / d).mkdir(parents=True, exist_ok=True)
        for k in range(cases):   # shifted copies: each case its own arrays
            im = np.roll((s.image * 1000 - 600).astype(np.int16), 3 * k, 0)
            nib.save(nib.Nifti1Image(np.ascontiguousarray(im.T), np.eye(4)), str(root / "imagesTr" / f"c{k:03d}_0000.nii.gz"))
            nib.save(nib.Nifti1Image(np.ascontiguousarray(np.roll(lab, 3 * k, 0).T), np.eye(4)),
                     str(root / "labelsTr" / f"c{k:03d}.nii.gz"))
        (root / "dataset.json").write_text(json.dumps({
            "channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": cases,
            "file_ending": ".nii.gz"}))
    return float((lab > 0).mean())


def _anon() -> float:
    """The process's anonymous resident memory in MiB: what the kernel cannot drop (memory-mapped
    files it can, and reads again when they are touched)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _one(spec: dict) -> dict:
    import resource
    import shutil
    import time
    import tracemalloc
    src, _, disk = spec["src"].partition("#")   # "SRC#on-disk": that code with --on-disk
    sys.path.insert(0, src)
    from halo_seg.cli import build_parser
    from halo_seg.train import unet_train
    root = Path(spec["dataset"])
    held = []
    with tempfile.TemporaryDirectory() as tmp:
        use = Path(tmp) / "ds"   # the first `cases` of the dataset, linked
        (use / "imagesTr").mkdir(parents=True)
        (use / "labelsTr").mkdir()
        for k in range(spec["cases"]):
            (use / "imagesTr" / f"c{k:03d}_0000.nii.gz").symlink_to(root / "imagesTr" / f"c{k:03d}_0000.nii.gz")
            (use / "labelsTr" / f"c{k:03d}.nii.gz").symlink_to(root / "labelsTr" / f"c{k:03d}.nii.gz")
        meta = json.loads((root / "dataset.json").read_text())
        (use / "dataset.json").write_text(json.dumps({**meta, "numTraining": spec["cases"]}))
        args = build_parser().parse_args([
            "train", "--dataset", str(use), "--out", f"{tmp}/m.safetensors", "--patch", "48", "48", "48",
            "--iterations", "3", "--epoch", "3", "--threads", str(spec["threads"]), "--quiet"]
            + (["--on-disk", tmp] if disk else []))
        # numpy's arrays alive at the first step: what the run holds of its data (PyTorch's are not traced)
        args.on_step = lambda it: held.append((tracemalloc.get_traced_memory()[0], _anon())) if it == 1 else None
        tracemalloc.start()
        t = time.perf_counter()
        rc = args.fn(args)
        seconds = time.perf_counter() - t
        tracemalloc.stop()
        shutil.rmtree(use)
    assert rc == 0 and held
    # one background patch drawn on a 300 x 512 x 512 scan's whole-volume region, as the code makes it
    shape = (300, 512, 512)
    region = getattr(unet_train, "everywhere", lambda s: np.ones(s, bool))(shape)
    lazy = np.broadcast_to(np.float32(0), shape)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(10):
        unet_train._sample_patch(lazy, lazy, lazy, region, {}, (48, 48, 48), rng, 0.0)
    draw = (time.perf_counter() - t) / 10
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "data_mib": held[0][0] / 2 ** 20,
            "anonymous_mib": held[0][1],
            "seconds": seconds, "background_draw_ms": draw * 1000}


def main(argv=None) -> int:
    ap = before_and_now_parser(__doc__, "train_dataset_memory.json")
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--on-disk", action="store_true", help="compare this checkout's volumes in RAM (before) with "
                                                          "them on disk (now), memory-mapped")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--dataset", default=str(Path(tempfile.gettempdir()) / "halo-seg-bench-dataset"))
    a = ap.parse_args(argv)
    root = Path(a.dataset) / f"{a.cases}x{a.size}"
    share = _make(root, a.cases, a.size)
    now = str(Path(__file__).resolve().parents[1] / "src")
    # --on-disk: this checkout with its volumes in RAM ("before") and on disk ("now")
    codes = {"before": now, "now": now + "#on-disk"} if a.on_disk else {"before": a.before, "now": now}
    med = {}
    runs = {}
    for n in (2, a.cases):
        runs[n], med[n] = interleaved(__file__, codes, {"dataset": str(root), "cases": n, "threads": a.threads},
                                      a.repeat)
    voxels = (a.cases - 2) * a.size ** 3
    per_voxel = {c: (med[a.cases][c]["data_mib"] - med[2][c]["data_mib"]) * 2 ** 20 / voxels for c in codes}
    print(f"\n{a.cases} cases of {a.size}^3 (labelled share {share:.2f}), median of {a.repeat} runs, {a.threads} threads")
    print("| | before | now |\n|---|---|---|")
    for n in (2, a.cases):
        for key, what, f in (("data_mib", "data held at the first step, MiB", ".0f"),
                             ("anonymous_mib", "anonymous resident memory at the first step, MiB", ".0f"),
                             ("peak_mib", "peak MiB", ".0f"),
                             ("seconds", "seconds", ".1f")):
            print(f"| {what}, {n} cases | {med[n]['before'][key]:{f}} | {med[n]['now'][key]:{f}} |")
    print(f"| bytes per voxel of the data | {per_voxel['before']:.1f} | {per_voxel['now']:.1f} |")
    print(f"| a background patch's draw on 300x512x512, ms | {med[2]['before']['background_draw_ms']:.1f} | "
          f"{med[2]['now']['background_draw_ms']:.2f} |")
    return save_results(a.out, {"before": a.before, "on_disk": a.on_disk, "cases": a.cases, "size": a.size, "threads": a.threads,
                                "repeat": a.repeat, "labelled_share": share},
                        [{"median": {str(n): m for n, m in med.items()}, "bytes_per_voxel": per_voxel,
                          "runs": {str(n): r for n, r in runs.items()}}])


if __name__ == "__main__":
    raise SystemExit(one_or_main(_one, main))
