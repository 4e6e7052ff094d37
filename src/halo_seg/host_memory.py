"""How much RAM this process can still have (no torch import: the napari reader asks too)."""
from __future__ import annotations


def _cgroup_room() -> int | None:
    """Bytes this process's cgroup may still allocate (containers, batch schedulers), if limited."""
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as f:
                lim = f.read().strip()
            if lim == "max" or int(lim) >= 1 << 60:
                return None
            with open(usage) as f:
                return int(lim) - int(f.read().strip())
        except (OSError, ValueError):
            continue
    return None


def host_available() -> int | None:
    """Bytes of RAM new allocations can have on this machine (MemAvailable, within the cgroup's
    limit), or None where that cannot be read."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    room = _cgroup_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail
