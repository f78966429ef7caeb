"""The stage sequencer: turns a policy's decisions (stay in this stage / go to that one / start a WALK)
into the phases wanted green, and feeds them through the safety envelope.

A change from stage S to stage T runs: pedestrians of S that T does not keep finish WALK and clearance
(vehicles still green), then the vehicle phases of S that T does not keep show yellow and red clearance,
then the phases of T start as soon as the envelope lets them. Stage T counts as *green* from the moment
all its vehicle phases are green. Decisions for another stage are accepted only in a green stage and only
when every phase that would end has had its min green; at max green the sequencer forces the change.

The envelope guarantees safety on its own; the sequencer only makes the sequence sensible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from roadside.controller.intersection import Intersection
from roadside.controller.safety import GREEN, RED, SafetyEnvelope, Signal


@dataclass
class Decision:
    #: Stage to change to; None (or the current stage) keeps the current one.
    target: str | None = None
    #: Why, in words an engineer can audit ("gap-out", "max-out", "scheduled", ...).
    reason: str = ""
    #: Pedestrian phases to give a WALK (in the current stage when green, else at the target's start).
    walk: frozenset[str] = frozenset()
    #: The inputs the decision used (for the audit trail).
    inputs: dict[str, Any] = field(default_factory=dict)
    #: While a change is running, ``target`` may replace the stage being changed to, if that keeps every
    #: phase the change is starting (the other ring of a dual ring ending its phase meanwhile; see
    #: :meth:`SignalEngine.can_retarget`).
    while_changing: bool = False


@dataclass
class StageChange:
    t: float
    from_stage: str | None
    to_stage: str
    reason: str
    forced: bool
    inputs: dict[str, Any]
    #: Green the stage that ends actually had (s); None at power-up.
    green_s: float | None


@dataclass
class StepResult:
    signals: dict[str, Signal]
    signals_changed: bool
    #: A change that was accepted on this tick (the audit records it).
    change: StageChange | None = None
    #: The stage that became green on this tick.
    stage_started: str | None = None


class SignalEngine:
    def __init__(self, inter: Intersection, tick_s: float, start: float, first_stage: str | None = None) -> None:
        self.inter = inter
        self.envelope = SafetyEnvelope(inter, tick_s, start)
        self.stages = inter.stages
        # power-up behaves like a change from nothing to the first stage
        self.current: str | None = None
        #: the stage before ``current`` (None until the first change after power-up)
        self.previous: str | None = None
        self.target: str | None = first_stage if first_stage in self.stages else inter.sequence[0]
        self.stage_green_since: float = start
        self.walk_pending: set[str] = set()
        self.walked: set[str] = set()  # pedestrian phases served in this stage visit
        self.change_reason = "power-up"
        self._last_signals = self.envelope.signals()

    # -- what policies may look at ---------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.envelope.now

    @property
    def changing(self) -> bool:
        return self.target is not None

    def stage_elapsed(self) -> float:
        """Green time of the current stage so far (0 while changing)."""
        return 0.0 if self.changing else self.now - self.stage_green_since

    def forced_target(self) -> str | None:
        """At max-out without a policy's choice: the next stage in ring order that does not keep a phase
        that is maxing out."""
        assert self.current is not None
        maxing = {p for p in self.stages[self.current].vehicles if self.envelope.will_max_out(p)}
        sid = self.current
        for _ in self.inter.sequence:
            sid = self.inter.next_in_sequence(sid)
            if sid != self.current and not (self.stages[sid].phases & maxing):
                return sid
        nxt = self.inter.next_in_sequence(self.current)
        return nxt if nxt != self.current else None

    def can_change_to(self, target: str) -> bool:
        """Every phase that would end has had its min green (pedestrians: their WALK)."""
        if self.changing or self.current is None:
            return False
        kept = self.stages[target].phases if target in self.stages else frozenset()
        ending = self.stages[self.current].phases - kept
        return all(self.envelope.can_end(p) for p in ending)

    def can_retarget(self, target: str) -> bool:
        """While changing from S to T: T' = ``target`` may replace T when it keeps every phase the change is
        starting (T - S), every phase of S it keeps is still green, every phase of S it ends that T kept has
        had its min green, and no pedestrian of S that it ends is in its WALK or clearance."""
        if not self.changing or self.current is None or target == self.target or target == self.current:
            return False
        sig = self.envelope.phases
        cur, tgt, new = self.stages[self.current], self.stages[self.target], self.stages[target]
        if not (tgt.phases - cur.phases) <= new.phases:
            return False
        if any(sig[p].signal != GREEN for p in cur.phases & new.phases):
            return False
        if any(sig[p].signal != RED for p in cur.pedestrians - new.phases):
            return False
        return all(self.envelope.can_end(p) for p in (cur.phases & tgt.phases) - new.phases)

    def must_change(self) -> bool:
        """A vehicle phase of the current stage reaches its max green on this tick."""
        if self.changing or self.current is None:
            return False
        return any(self.envelope.will_max_out(p) for p in self.stages[self.current].vehicles)

    def walk_possible(self, pid: str) -> bool:
        return (not self.changing and self.current is not None and pid in self.stages[self.current].pedestrians
                and pid not in self.walked and self.envelope.phases[pid].signal == RED)

    # -- one tick ----------------------------------------------------------------------------------
    def advance(self, now: float, calls=None) -> None:
        """Move the clock to this tick (before the policy is asked, so that it sees this tick's green
        times: a green asked for 42 s ends after 42 s, not 43) and note the phases called now."""
        if isinstance(now, (int, float)) and math.isfinite(now) and now > self.envelope.now:
            self.envelope.now = float(now)  # queries below see this tick's time; apply() keeps it
        if calls is not None:
            self.envelope.note_calls(calls)

    def step(self, now: float, decision: Decision | None, calls=None) -> StepResult:
        """One tick: ``calls`` (optional) are the phases called now, which time the max greens."""
        if not isinstance(decision, Decision):
            decision = Decision()
        self.advance(now, calls)
        change: StageChange | None = None
        target = decision.target if isinstance(decision.target, str) and decision.target in self.stages else None
        asked = decision.walk if isinstance(decision.walk, (set, frozenset)) else ()
        walk = {p for p in asked if p in self.inter.phases}
        if not self.changing and self.current is not None:
            forced = self.must_change()
            wanted_change = target is not None and target != self.current
            if forced and not wanted_change:
                target = self.forced_target()
            if target is not None and target != self.current and (forced or self.can_change_to(target)):
                reason = decision.reason if wanted_change else ""
                if forced:
                    reason = f"max-out{'; ' + reason if reason else ''}"
                change = StageChange(self.now, self.current, target, reason or "policy", forced,
                                     dict(decision.inputs), self.now - self.stage_green_since)
                self.target = target
                self.change_reason = change.reason
                self.walk_pending = {p for p in walk if p in self.stages[target].pedestrians}
            else:
                for p in walk:
                    if self.walk_possible(p):
                        self.walk_pending.add(p)
        elif self.changing:
            if decision.while_changing and target is not None and self.can_retarget(target):
                change = StageChange(self.now, self.current, target, decision.reason or "policy", False,
                                     dict(decision.inputs), self.now - self.stage_green_since)
                self.target = target
                self.change_reason = change.reason
                self.walk_pending &= set(self.stages[target].pedestrians)
            self.walk_pending |= {p for p in walk if p in self.stages[self.target].pedestrians}
        signals = self.envelope.apply(now, self._wanted())
        started = self._maybe_complete_change()
        for p in list(self.walk_pending):
            if signals[p] == GREEN:
                self.walk_pending.discard(p)
                self.walked.add(p)
        changed = signals != self._last_signals
        self._last_signals = signals
        return StepResult(signals, changed, change, started)

    def _wanted(self) -> set[str]:
        if not self.changing:
            assert self.current is not None
            return set(self.stages[self.current].vehicles) | self.walk_pending
        assert self.target is not None
        sig = self.envelope.phases
        cur, tgt = (self.stages[self.current] if self.current is not None else None), self.stages[self.target]
        keep = set(tgt.vehicles)
        if cur is not None:
            ending_peds = cur.pedestrians - tgt.pedestrians
            peds_done = all(sig[p].signal == RED for p in ending_peds)
            keep |= cur.vehicles & tgt.vehicles
            if not peds_done:  # vehicles of S stay green while their pedestrians clear
                return set(cur.vehicles)
        return keep | self.walk_pending

    def _maybe_complete_change(self) -> str | None:
        if not self.changing:
            return None
        assert self.target is not None
        sig = self.envelope.phases
        leaving = (self.stages[self.current].phases if self.current else frozenset()) - self.stages[self.target].phases
        if not all(sig[p].signal == RED for p in leaving):
            return None
        veh = [p for p in self.stages[self.target].vehicles if not self.envelope.latched(p)]
        if not all(sig[p].signal == GREEN for p in veh):
            return None
        self.previous, self.current, self.target = self.current, self.target, None
        self.stage_green_since = self.now
        self.envelope.clear_latches()  # max-out latches last to the next stage boundary
        self.walked = set()
        for p in list(self.walk_pending):
            if sig[p].signal == GREEN:
                self.walked.add(p)
        return self.current

    def signals(self) -> dict[str, Signal]:
        return self.envelope.signals()
