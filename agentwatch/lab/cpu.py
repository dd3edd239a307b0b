"""CPU time of a process and of the whole host, from Linux's ``/proc`` (the benchmarks).

On a shared host, wall-clock throughput moves with whatever else runs; CPU time per event
hardly does. Both read ``/proc`` (Linux); elsewhere they raise ``OSError``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["child_pids", "cpu_seconds", "host_cpu"]

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc/<pid>/stat``).

    Examples
    --------
    >>> cpu_seconds(os.getpid()) > 0
    True
    """
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a worker's engine process), from ``/proc``.

    Examples
    --------
    >>> import subprocess, sys
    >>> child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    >>> child.pid in child_pids(os.getpid())
    True
    >>> child.kill(); child.wait() != 0
    True
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:  # gone meanwhile
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def host_cpu() -> tuple[float, float]:
    """Busy and total CPU time of the whole host so far, in seconds (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text(encoding="ascii").split()[1:9]]
    total = sum(fields)
    idle = fields[3] + fields[4]  # idle, iowait
    return (total - idle) / _TICKS, total / _TICKS
