"""The safety envelope: the last layer between any timing decision and the signal heads.

It receives, on every tick, the set of phases someone *wants* green (policies, the stage sequencer,
manual commands; possibly nonsense) and produces the signals actually shown. Whatever it is asked, it
guarantees:

* a phase turns green only when every conflicting phase is red and has completed its red clearance;
* a green lasts at least its min green (WALK at least ``walk``); its max green is timed while a
  conflicting phase is called (as a NEMA max timer, from the first conflicting call; it keeps running when
  that call drops for a while, as a presence zone's does between vehicles passing through it, and ends the
  green only while a conflicting call stands), so a phase that conflicts with nothing never maxes out. It holds provided ticks are never
  further apart than its ``horizon_s`` (it ends a green on the last tick that cannot overshoot). The
  horizon is ``tick_s``; a service whose ticks arrive late (a stalled machine) widens it to the gaps it has
  lately seen, so that greens end early rather than late. Without call information (:meth:`note_calls`
  never called) every phase counts as called: max green from the green's start;
* every green ends through a full yellow (pedestrians: full clearance) and then red, shown for at least
  one tick and for the red clearance before any conflicting phase starts;
* a phase that maxed out is not green again until the demand for it has been dropped once, or the
  sequencer reaches the next stage boundary (:meth:`clear_latches`).

Unknown phase ids are ignored, time that goes backwards or is not finite does not advance anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal

from roadside.controller.intersection import Intersection

Signal = Literal["green", "yellow", "red"]
GREEN: Signal = "green"
YELLOW: Signal = "yellow"
RED: Signal = "red"


@dataclass
class PhaseSignal:
    signal: Signal
    since: float
    #: Maxed out: held off until the demand for the phase is dropped once (or the next stage boundary).
    latched: bool = False
    #: While green: since when its max green is being timed (the first conflicting call of this green),
    #: None until a conflicting phase is called.
    max_from: float | None = None


class SafetyEnvelope:
    def __init__(self, inter: Intersection, tick_s: float, start: float) -> None:
        if not (math.isfinite(start) and 0 < tick_s <= 1):
            raise ValueError("the envelope needs a finite start time and 0 < tick_s <= 1")
        self.tick_s = tick_s
        #: the longest gap expected before the next tick (s): tick_s, or more while ticks arrive late
        self.horizon_s = tick_s
        self.inter = inter
        self.order = tuple(inter.phases)
        self.timing = {pid: p.timing for pid, p in inter.phases.items()}  # the numbers it enforces, by phase
        # Power-up: everything red, and red clearance is timed from power-up.
        self.phases: dict[str, PhaseSignal] = {p: PhaseSignal(RED, start) for p in self.order}
        self.now = start
        #: Phases called now (None: unknown, every phase counts as called).
        self.calls: frozenset[str] | None = None

    # -- queries -------------------------------------------------------------------------------
    def signals(self) -> dict[str, Signal]:
        return {p: s.signal for p, s in self.phases.items()}

    def green_elapsed(self, pid: str) -> float:
        s = self.phases[pid]
        return self.now - s.since if s.signal == GREEN else 0.0

    def conflicting_call(self, pid: str) -> bool:
        """A phase that conflicts with ``pid`` is called (always True without call information)."""
        conflicts = self.inter.phases[pid].conflicts
        if not conflicts:
            return False  # nothing to serve instead: it never maxes out
        if self.calls is None:
            return True
        return any(q in self.calls for q in conflicts)

    def max_elapsed(self, pid: str) -> float:
        """How long the phase's max green has been timing (0 when it is not green or nothing conflicting has
        been called during this green)."""
        s = self.phases[pid]
        return self.now - s.max_from if s.signal == GREEN and s.max_from is not None else 0.0

    def will_max_out(self, pid: str) -> bool:
        """True when the phase is green and must end on this tick to respect its max green: its max timer
        runs out and a conflicting phase is called now."""
        s = self.phases[pid]
        if s.signal != GREEN or s.max_from is None or not self.conflicting_call(pid):
            return False
        timed, max_green = self.now - s.max_from, self.timing[pid].max_green
        return timed + self.horizon_s > max_green + 1e-9 or timed >= max_green

    def note_calls(self, calls: Iterable[object] | None) -> None:
        """The phases called now (detector calls, recalls, fail-safe): start each green phase's max timer at
        the first conflicting call of its green. The timer is not reset when that call drops: a presence
        zone that vehicles pass through (or a queue that creeps out of the zone) drops its call between
        vehicles, and a timer that restarted on every drop would let the green run on without limit (a
        non-locking call; what locking detector memory prevents in a cabinet controller). ``None`` means
        unknown: every phase counts as called."""
        if calls is None:
            self.calls = None
        else:
            try:
                self.calls = frozenset(c for c in calls if isinstance(c, str) and c in self.phases)
            except TypeError:
                self.calls = None
        for pid, s in self.phases.items():
            if s.signal != GREEN:
                continue
            if s.max_from is None and self.conflicting_call(pid):
                s.max_from = self.now if self.calls is not None else s.since

    def clear_latches(self) -> None:
        """A stage boundary: maxed-out phases may be served again."""
        for s in self.phases.values():
            s.latched = False

    def can_end(self, pid: str) -> bool:
        s = self.phases[pid]
        return s.signal != GREEN or self.now - s.since >= self.timing[pid].min_green - 1e-9

    def cleared(self, pid: str) -> bool:
        """True when the phase is red and its red clearance is complete."""
        s = self.phases[pid]
        return s.signal == RED and self.now - s.since >= self.timing[pid].red_clearance - 1e-9

    def may_start(self, pid: str) -> bool:
        return all(self.cleared(q) for q in self.inter.phases[pid].conflicts)

    def latched(self, pid: str) -> bool:
        return self.phases[pid].latched

    # -- the one mutating call -----------------------------------------------------------------
    def apply(self, now: float, wanted: Iterable[object], calls: Iterable[object] | None = None) -> dict[str, Signal]:
        """Show what is safe of ``wanted``; ``calls`` (optional) are the phases called now, for the max
        timers (else the last :meth:`note_calls` holds)."""
        try:
            now = float(now)
        except (TypeError, ValueError):
            now = self.now
        if math.isfinite(now) and now > self.now:
            self.now = now
        if calls is not None:
            self.note_calls(calls)
        else:
            self.note_calls(self.calls)
        want = set()
        try:
            for w in wanted:
                if isinstance(w, str) and w in self.phases:
                    want.add(w)
        except TypeError:
            pass
        t = self.now
        # 1. greens that end: not wanted any more (after min green), or at max green.
        for pid in self.order:
            s = self.phases[pid]
            if s.signal != GREEN:
                continue
            timing = self.timing[pid]
            elapsed = t - s.since
            at_max = self.will_max_out(pid)
            if elapsed >= timing.min_green - 1e-9 and (at_max or pid not in want or s.latched):
                if at_max and pid in want:
                    s.latched = True
                s.signal, s.since, s.max_from = YELLOW, t, None
        # 2. yellows (pedestrian clearances) that are complete.
        for pid in self.order:
            s = self.phases[pid]
            if s.signal == YELLOW and t - s.since >= self.timing[pid].yellow - 1e-9:
                s.signal, s.since = RED, t
        # 3. latches released by dropped demand; reds that may start.
        for pid in self.order:
            s = self.phases[pid]
            if pid not in want:
                s.latched = False
            elif s.signal == RED and not s.latched and t > s.since and self.may_start(pid):
                # (a phase shows red for at least one tick after its own yellow, even with no red clearance)
                s.signal, s.since = GREEN, t
                s.max_from = t if self.conflicting_call(pid) else None
        return self.signals()
