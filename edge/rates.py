"""Recent event rates (frames per second delivered by a source, processed by a camera's pipeline)."""
from __future__ import annotations

from collections import deque

#: the shortest span of events a rate is computed over (s): two frames delivered back to back at start-up
#: are not 2,800 frames/s (a rate no health message can even carry)
MIN_SPAN_S = 0.5


class RecentRate:
    """Events per second over the last ``n`` events (bounded memory); 0 while they span less than
    ``MIN_SPAN_S`` or the newest is older than ``stale_s``. Ticked by one thread, read by others."""

    def __init__(self, n: int = 64):
        self.t: deque[float] = deque(maxlen=n)

    def tick(self, t: float) -> None:
        self.t.append(t)

    def rate(self, now: float, stale_s: float = 5.0) -> float:
        t = list(self.t)  # one consistent copy (the ticking thread appends meanwhile)
        if len(t) < 2 or now - t[-1] > stale_s or t[-1] - t[0] < MIN_SPAN_S:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])


__all__ = ["MIN_SPAN_S", "RecentRate"]
