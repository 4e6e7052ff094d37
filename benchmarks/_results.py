"""What the benchmarks share: saving results as JSON with the date, and timing a call with its peak memory."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np


def save_results(out: str | Path, regions, results: list) -> int:
    Path(out).write_text(json.dumps({"regions": regions, "results": results,
                                     "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
    print(f"saved {out}")
    return 0


def save_ratios(out: str | Path, meta, rows: list) -> int:
    """Print the spread of the rows' estimated / measured ``ratio`` and save them (the memory benchmarks)."""
    ratios = [r["ratio"] for r in rows]
    print(f"estimated / measured: min {min(ratios):.2f}, median {np.median(ratios):.2f}, max {max(ratios):.2f}")
    return save_results(out, meta, rows)


def timed(fn, repeats: int):
    """fn's last result, its median seconds over ``repeats`` calls, and the largest peak of Python's
    allocations (tracemalloc, which numpy reports to) in MiB."""
    secs, peak, out = [], 0, None
    for _ in range(repeats):
        tracemalloc.start()
        t0 = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t0)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return out, float(np.median(secs)), peak / 2 ** 20


def in_fresh_process(script: str, spec: dict) -> dict:
    """``script``'s ``_one(spec)`` run in a process of its own (so its peak memory is its own): the
    script answers ``--one JSON`` by printing ``_one``'s result as its last line (see one_or_main)."""
    out = subprocess.run([sys.executable, script, "--one", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def before_and_now_parser(doc: str, out_name: str, before_help: str = "the src/ directory of the code to compare with",
                          shape=None) -> argparse.ArgumentParser:
    """The arguments of a script comparing this checkout with another (``--before``), run ``--repeat``
    times each on ``--threads``; ``--shape`` when a default ``shape`` is given."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--before", required=True, help=before_help)
    if shape is not None:
        ap.add_argument("--shape", type=int, nargs=3, default=list(shape))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / out_name))
    return ap


def interleaved(script: str, codes: dict, spec: dict, repeat: int, key: str = "src") -> tuple[dict, dict]:
    """``script``'s ``_one`` run ``repeat`` times for each code (name -> path, passed as ``spec[key]``),
    each in a process of its own and interleaved, since the machine is noisy. Returns (the runs per
    code, the medians of their numeric fields per code)."""
    runs = {name: [] for name in codes}
    for _ in range(repeat):
        for name, path in codes.items():
            runs[name].append(in_fresh_process(script, {**spec, key: path}))
            print(name, runs[name][-1], flush=True)
    med = {name: {k: float(np.median([r[k] for r in rs])) for k, v in rs[0].items() if isinstance(v, (int, float))}
           for name, rs in runs.items()}
    return runs, med


def one_or_main(one, main) -> int:
    """A script's entry: ``--one JSON`` runs ``one`` on it (in_fresh_process's side), else ``main``."""
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(one(json.loads(sys.argv[2]))))
        return 0
    return main()


class FreezeClock:
    """The longest UI freeze while something runs: the longest gap between the ticks of a 10 ms
    QTimer in the GUI thread (napari benchmarks; make it after the QApplication exists)."""

    def __init__(self):
        from qtpy.QtCore import QTimer
        self.gaps, self._last = [], 0.0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self._last = now

    def start(self):
        self.gaps.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self, wall: float) -> float:
        """Stop; the longest gap in seconds (``wall``, the whole time, when the timer never ticked)."""
        self.timer.stop()
        return max(self.gaps) if self.gaps else wall
