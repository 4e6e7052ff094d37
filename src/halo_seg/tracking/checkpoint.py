"""A tracking's progress kept beside its output, so that `track --resume` goes on from the time
point after the last one finished instead of from the first: a light-sheet time-lapse takes hours,
and a crash, a cancel or a killed process should cost one time point, not all of them.

The work folder ``.NAME.partial`` (beside the output NAME) holds the labels written so far
(``tracks.zarr``), each time point's table and Tracks rows (``t<T>.npz``), the ids of the last few
time points when they were labelled here (``t<T>.zarr``), and ``state.json``: the settings, how
many time points are done, the linker's state (tracks, lineage, tracks that may yet close a gap,
velocities) and which time points' ids are kept; ``running`` names the host and process writing
it, so that a second run of the same command is refused while the first lives. The state is
replaced (written aside, then renamed) only after everything of its time point is on disk, so it
always names a consistent point to go on from; whatever a half-done time point wrote is written
again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..io.volume import VolumeError

STATE = "state.json"
LOCK = "running"   # host and process id of the run writing the folder now


class PartialError(VolumeError):
    """The work folder beside the output cannot be used as it is: another run is writing it, or it
    was made with other settings, or it cannot be read."""


def claim(work: Path, out: Path, what: str = "track") -> None:
    """Mark ``work`` as this process's, refusing while another live run writes it (two runs of
    one command at once would each clear and rewrite the other's time points). The mark is made
    with an exclusive create, so of two runs starting at once one claims it and the other is
    refused; a mark left by a run that died is taken over. ``what``: the command, as said."""
    import socket
    work.mkdir(parents=True, exist_ok=True)
    lock, me = work / LOCK, f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):   # a second try after a dead run's mark was removed
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                host, pid = lock.read_text().split()
                pid = int(pid)
            except (OSError, ValueError):   # being written, or garbled: a run starting now owns it
                raise PartialError(f"another `{what}` run is starting to write {out}; if none is, delete "
                                   f"{lock}") from None
            if f"{host} {pid}" == me:
                return
            if host != socket.gethostname():
                raise PartialError(f"a `{what}` run on {host} (process {pid}) is writing {out}: if it is no longer "
                                   f"going, delete {lock}") from None
            if _alive(pid):
                raise PartialError(f"another `{what}` run (process {pid}) is writing {out} now: wait for it, or "
                                   "stop it") from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return
    raise PartialError(f"another `{what}` run took over {out} just now: wait for it, or stop it")


def release(work: Path) -> None:
    (work / LOCK).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's
        return True
    return True


def partial_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def _linker_state(linker) -> dict:
    t, tracks = linker._last
    return {"lineage": {str(k): v for k, v in linker.lineage.items()}, "divisions": linker.divisions,
            "last": [t, None if tracks is None else [int(x) for x in tracks]],
            "ended": {str(k): list(v) for k, v in linker._ended.items()}, "steps": linker._steps,
            "velocity": {str(k): [float(x) for x in v] for k, v in linker._velocity.items()},
            "persist": list(linker._persist), "given_used": linker.given_used,
            # link "auto": what it chose, on the time points done
            "choices": linker.choices}


def _restore_linker(linker, s: dict) -> None:
    linker.lineage = {int(k): list(v) for k, v in s["lineage"].items()}
    linker.divisions = int(s["divisions"])
    t, tracks = s["last"]
    linker._last = (t, None if tracks is None else np.array(tracks, np.int64))
    linker._ended = {int(k): tuple(v) for k, v in s["ended"].items()}
    linker._steps = int(s["steps"])
    linker._velocity = {int(k): np.array(v, float) for k, v in s["velocity"].items()}
    linker._persist = [float(x) for x in s["persist"]]
    linker.given_used = int(s.get("given_used", 0))
    linker.choices = [dict(c) for c in s.get("choices", [])]
    if "motion" in s:   # made before link "auto" chose at each time point: it goes on as it chose once
        linker.link, linker.max_distance = s["link"], s["max_distance"]


def save_state(work: Path, settings: dict, done: int, linker, kept: list) -> None:
    """After time point number ``done`` - 1 is wholly on disk: what resuming needs."""
    tmp = work / (STATE + ".tmp")
    tmp.write_text(json.dumps({"settings": settings, "done": done, "linker": _linker_state(linker),
                               "kept": [int(t) for t in kept]}))
    os.replace(tmp, work / STATE)


def load_state(work: Path, settings: dict, linker) -> dict | None:
    """The saved state (the linker restored from it), or None where there is none; a partial
    tracking made with other settings is refused, naming them."""
    path = work / STATE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        saved = state["settings"]
    except (OSError, ValueError, KeyError) as exc:
        raise PartialError(f"the partial tracking in {work} cannot be read ({exc}); run without --resume to "
                          "start again") from None
    differ = [k for k in sorted(set(saved) | set(settings)) if saved.get(k) != settings.get(k)]
    if differ:
        what = "; ".join(f"{k}: {saved.get(k)!r} then, {settings.get(k)!r} now" for k in differ)
        raise PartialError(f"the partial tracking in {work} was made with other settings ({what}): give the same "
                          "ones to go on, or run without --resume to start again")
    _restore_linker(linker, state["linker"])
    return state


def save_timepoint(work: Path, t: int, table: dict, rows: np.ndarray) -> None:
    tmp = work / f"t{t}.tmp.npz"
    np.savez(tmp, rows=rows, **{f"table_{k}": np.asarray(v) for k, v in table.items()})
    os.replace(tmp, work / f"t{t}.npz")


def load_timepoint(work: Path, t: int) -> tuple[dict, np.ndarray]:
    with np.load(work / f"t{t}.npz", allow_pickle=False) as f:
        table = {k[len("table_"):]: f[k] for k in f.files if k.startswith("table_")}
        return table, f["rows"]
