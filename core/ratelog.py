"""Log lines that an attacker or a broken device can trigger at any rate, without flooding the journal.

:class:`RateLimitedLog` lets through at most ``burst`` lines per key and then one every ``every_s`` seconds
(after ``burst * every_s`` seconds of quiet, a new burst);
the lines held back in between are counted, and the next line that passes says how many of its kind were
suppressed (``(+12 similar suppressed)``). Nothing is silently lost: the count is always reported with the
next line of that key, and :meth:`RateLimitedLog.suppressed` gives the totals.

Keys are bounded too (``max_keys``): beyond them every new key shares one bucket, so a flood of distinct
ids cannot grow the limiter itself.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

_OVERFLOW = "(other keys)"


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, burst: int = 5, every_s: float = 10.0, max_keys: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.every_s = every_s
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        #: key -> [lines let through in the burst, time of the last line let through, held back since]
        self._state: dict[str, list] = {}
        self._total_suppressed = 0

    def log(self, level: int, key: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` has used up its rate; True if it was logged."""
        now = self.clock()
        with self._lock:
            if key not in self._state and len(self._state) >= self.max_keys:
                key = _OVERFLOW
            st = self._state.setdefault(key, [0, -float("inf"), 0])
            if now - st[1] >= self.every_s * self.burst:
                st[0] = 0  # quiet for long enough: a new burst may pass
            if st[0] < self.burst or now - st[1] >= self.every_s:
                st[0] = min(st[0] + 1, self.burst)
                st[1] = now
                held, st[2] = st[2], 0
            else:
                st[2] += 1
                self._total_suppressed += 1
                return False
        if held:
            msg = f"{msg} (+{held} similar suppressed)"
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, key: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        return self.log(logging.WARNING, key, msg, *args, exc_info=exc_info)

    def error(self, key: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        return self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)

    def suppressed(self) -> int:
        """Lines held back so far (all keys)."""
        return self._total_suppressed


__all__ = ["RateLimitedLog"]
