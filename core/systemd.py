"""systemd integration without a dependency: ``sd_notify`` (READY, STATUS, STOPPING, WATCHDOG) over the
datagram socket systemd names in ``$NOTIFY_SOCKET``.

A service unit with ``Type=notify`` and ``WatchdogSec=`` restarts the process when it stops sending
``WATCHDOG=1``; :class:`Watchdog` sends it only while the service's own liveness check passes, so a hung
camera loop or a dead link thread is restarted by systemd, not just a dead process. Outside systemd (no
``$NOTIFY_SOCKET``) everything here does nothing.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Callable

log = logging.getLogger("roadside.systemd")


def notify(*fields: str) -> bool:
    """Send ``KEY=value`` fields to systemd; False when not running under systemd (or it cannot be reached)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    addr = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall("\n".join(fields).encode())
        return True
    except OSError as e:
        log.warning("cannot notify systemd at %s: %s", path, e)
        return False


def watchdog_interval_s() -> float | None:
    """The watchdog period systemd asked for (``WatchdogSec=``), if it is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6
    except ValueError:
        return None


class Watchdog:
    """Sends ``WATCHDOG=1`` at half the watchdog period while ``alive()`` is true (and a STATUS line)."""

    def __init__(self, alive: Callable[[], tuple[bool, str]]):
        self.alive = alive
        self.interval = watchdog_interval_s()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Watchdog":
        if self.interval:
            self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval / 2):
            try:
                ok, status = self.alive()
            except Exception as e:  # a failing check is a failed check, not a dead watchdog thread
                ok, status = False, f"liveness check failed: {type(e).__name__}: {e}"
            if ok:
                notify("WATCHDOG=1", f"STATUS={status}")
            else:
                log.error("not alive: %s (systemd's watchdog will restart the service)", status)
                notify(f"STATUS=not alive: {status}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


__all__ = ["Watchdog", "notify", "watchdog_interval_s"]
