"""What the box says about itself: CPU temperature (Linux sysfs), the process's memory (/proc), free disk."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from roadside.edge.status import SystemStatus


def cpu_temperature_c() -> float | None:
    """The hottest thermal zone the OS exposes (Linux sysfs), or None."""
    temps = []
    for p in Path("/sys/class/thermal").glob("thermal_zone*/temp"):
        try:
            temps.append(int(p.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return max(temps) if temps else None


def process_stats(pid: int | None = None) -> dict[str, int | None]:
    """Resident memory (bytes), threads and open file descriptors of a process (default: this one), from /proc;
    None for what /proc does not say."""
    out: dict[str, int | None] = {"rss_bytes": None, "threads": None, "fds": None}
    where = f"/proc/{pid or 'self'}"
    try:
        for line in Path(f"{where}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_bytes"] = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"{where}/fd"))
    except (OSError, ValueError, IndexError):
        pass
    return out


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): field 3,
    the state, comes first. OSError when the process is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def process_cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU time a process has used (s), from /proc; None where /proc does not say."""
    try:
        fields = _stat_fields(pid or "self")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None


def child_pids(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (e.g. the service's decoders), from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int(_stat_fields(d.name)[1]) == pid:  # field 4, the parent
                out.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def process_rss_bytes(pid: int | None = None) -> int | None:
    """Resident memory of a process (default: this one), or None where /proc does not say."""
    return process_stats(pid)["rss_bytes"]


def disk_free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def system_status(state_dir: Path) -> SystemStatus:
    return SystemStatus(cpu_temperature_c=cpu_temperature_c(), disk_free_bytes=disk_free_bytes(state_dir),
                        state_dir=str(state_dir), rss_bytes=process_rss_bytes(), threads=threading.active_count(),
                        pid=os.getpid())


__all__ = ["cpu_temperature_c", "disk_free_bytes", "process_rss_bytes", "process_stats", "system_status"]
