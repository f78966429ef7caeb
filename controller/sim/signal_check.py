"""The SUMO safety monitor's checker (:mod:`roadside.controller.sim.monitor`): an independent check of a
signal timeline. It sees only the signals shown over time and the safety rules, never the controller's
internals (the controller's property tests check the core's timelines with it too).

Signals are ``green``, ``yellow`` or ``red`` per signal (a phase, or a SUMO link). Rules:

* ``conflict``: two conflicting signals are never non-red at the same time;
* ``red-clearance``: a signal turns green only after every conflicting signal has been red for its red
  clearance;
* ``no-yellow``: a green never turns red directly (unless its yellow is 0, as for SUMO crossings);
* ``short-yellow``/``yellow-to-green``: a yellow lasts its full time and is followed by red;
* ``min-green``/``max-green``: a green lasts at least its min; it lasts at most its max *while a
  conflicting signal is called* (the max timer starts at the first conflicting call and resets when the
  calls go away; ``call_lag_s`` allows for the detectors' latency). Without call information every signal
  counts as called; a signal that conflicts with nothing never maxes out.

Times are the observation times; a change is taken to happen at the first observation that shows it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

EPS = 1e-6


@dataclass(frozen=True)
class SignalRules:
    min_green: float = 0.0
    max_green: float = math.inf
    yellow: float = 0.0
    red_clearance: float = 0.0


@dataclass(frozen=True)
class Violation:
    t: float
    rule: str
    signal: str
    detail: str


@dataclass
class _Track:
    state: str
    since: float
    #: while green: since when a conflicting signal has been called (None: no conflicting call)
    max_from: float | None = None


@dataclass
class SignalTimelineChecker:
    rules: dict[str, SignalRules]
    conflicts: set[frozenset[str]]
    #: Time before the first observation since which everything has been red (power-up).
    start: float = 0.0
    #: Extra time a green may run against a conflicting call before max green is a violation: how late the
    #: controller may learn of a call (detector latency).
    call_lag_s: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    _tracks: dict[str, _Track] = field(default_factory=dict)
    _last_t: float = -math.inf
    _conflicts_now: set[frozenset[str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._tracks = {s: _Track("red", self.start) for s in self.rules}
        self._partners: dict[str, list[str]] = {s: [] for s in self.rules}
        for pair in self.conflicts:
            a, b = tuple(pair)
            self._partners[a].append(b)
            self._partners[b].append(a)

    def _flag(self, t: float, rule: str, signal: str, detail: str) -> None:
        self.violations.append(Violation(t, rule, signal, detail))

    def _max_over(self, s: str, tr: _Track, t: float) -> float:
        """How far a green has run past its max against conflicting calls (<= 0: within it)."""
        if tr.max_from is None:
            return -math.inf
        return t - tr.max_from - self.rules[s].max_green - self.call_lag_s

    def observe(self, t: float, signals: dict[str, str], calls: set[str] | None = None) -> None:
        """One observation of the signals at time t; ``calls``: the signals called now (None: unknown,
        every signal counts as called)."""
        if not t >= self._last_t:
            self._flag(t, "time", "-", f"observation time {t} is before {self._last_t}")
            return
        self._last_t = t
        before = {s: (tr.state, tr.since) for s, tr in self._tracks.items()}
        started: list[str] = []
        for s, new in signals.items():
            if s not in self._tracks:
                self._flag(t, "unknown", s, "signal not in the rules")
                continue
            old, since = before[s]
            if new == old:
                continue
            r = self.rules[s]
            dur = t - since
            if old == "green":
                if dur < r.min_green - EPS:
                    self._flag(t, "min-green", s, f"green {dur:.2f}s < min {r.min_green}")
                over = self._max_over(s, self._tracks[s], t)
                if over > EPS:
                    self._flag(t, "max-green", s, f"green {dur:.2f}s ran {over + r.max_green:.2f}s against a "
                               f"conflicting call > max {r.max_green}")
                if new == "red" and r.yellow > 0:
                    self._flag(t, "no-yellow", s, "green went straight to red")
            elif old == "yellow":
                if dur < r.yellow - EPS:
                    self._flag(t, "short-yellow", s, f"yellow {dur:.2f}s < {r.yellow}")
                if new == "green":
                    self._flag(t, "yellow-to-green", s, "yellow followed by green")
            if new == "green":
                started.append(s)
            self._tracks[s] = _Track(new, t)
        for s, tr in self._tracks.items():
            if tr.state != "green":
                continue
            partners = self._partners[s]
            called = bool(partners) and (calls is None or any(q in calls for q in partners))
            if not called:
                tr.max_from = None
            elif tr.max_from is None:
                tr.max_from = t if calls is not None else tr.since
        for s in started:
            for q in self._partners[s]:
                qt = self._tracks[q]
                if qt.state == "red" and t - qt.since < self.rules[q].red_clearance - EPS:
                    self._flag(t, "red-clearance", s, f"green {t - qt.since:.2f}s after conflicting {q} "
                               f"turned red (needs {self.rules[q].red_clearance})")
        active: set[frozenset[str]] = set()
        for s, tr in self._tracks.items():
            if tr.state == "red":
                continue
            for q in self._partners[s]:
                pair = frozenset((s, q))
                if s < q and self._tracks[q].state != "red":
                    active.add(pair)
                    if pair not in self._conflicts_now:  # one violation per episode, not per tick
                        self._flag(t, "conflict", f"{s}+{q}", f"{s} {tr.state} while {q} {self._tracks[q].state}")
        self._conflicts_now = active

    def finish(self, t: float) -> None:
        """Check greens still running at the end for max green."""
        for s, tr in self._tracks.items():
            if tr.state == "green" and self._max_over(s, tr, t) > EPS:
                self._flag(t, "max-green", s, f"green {t - tr.since:.2f}s > max {self.rules[s].max_green} against "
                           "a conflicting call (running)")
