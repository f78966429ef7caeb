"""What every policy sees and returns, and the helpers they share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roadside.controller.config import ControllerConfig
from roadside.controller.engine import Decision, SignalEngine
from roadside.controller.inputs import PhaseInput
from roadside.controller.intersection import Intersection


@dataclass
class View:
    now: float
    engine: SignalEngine
    inputs: dict[str, PhaseInput]


#: A WALK asked for after the stage started is still given if the stage is this young (s).
LATE_WALK_S = 2.0
#: A stop-bar vehicle that stood this long in its zone during a green (past start-up) is not moving (s).
STANDING_S = 5.0


class Policy:
    name = "policy"

    def __init__(self, cfg: ControllerConfig, inter: Intersection) -> None:
        self.cfg = cfg
        self.inter = inter
        self.stage_ids = inter.sequence
        self.stages = inter.stages
        #: phase -> per stop-bar zone (lane), the other phases fed by the same zone, with their zone index
        self.presence_mates = self.lane_mates(cfg, "presence")
        #: (phase, zone index) -> (start of the phase's green, time seen, the zone's longest dwell or None)
        self._head_seen: dict[tuple[str, int], tuple[float, float, float | None]] = {}
        #: (phase, zone index) -> since when the zone's oldest vehicle is the same (this green), None if empty
        self.head_since: dict[tuple[str, int], float | None] = {}

    @staticmethod
    def lane_mates(cfg: ControllerConfig, kind: str) -> dict[str, list[list[tuple[str, int]]]]:
        """phase -> per zone of its ``kind`` detectors (``presence`` or ``queue``: one per lane), the other
        phases fed by the same zone, with their index of it."""
        def key(ref):
            return (ref.device or cfg.device, ref.camera, ref.zone)
        refs = {ph.id: [key(r) for r in getattr(ph.detectors, kind)] for ph in cfg.intersection.phases}
        return {p: [[(q, j) for q, qk in refs.items() if q != p for j, r in enumerate(qk) if r == k] for k in ks]
                for p, ks in refs.items()}

    def decide(self, view: View) -> Decision:
        """The decision of a demand-responsive policy: WALKs, the next stage, max-out and fail-safe here;
        whether to keep the green in :meth:`extend_or_end`."""
        e = view.engine
        self.track_heads(view)
        if e.changing or e.current is None:
            return Decision(walk=self.walks(view, e.target or self.stage_ids[0]))
        cur = e.current
        elapsed = e.stage_elapsed()
        walk = self.walks(view, cur) if elapsed <= LATE_WALK_S else frozenset()
        nxt, why_next = self.choose_next(view, cur)
        if nxt is None:
            return Decision(walk=walk)  # rest in green: nobody else is waiting
        used = self.inputs_used(view, self.stages[cur].phases | self.inter.new_phases(cur, nxt))
        if e.must_change():  # the engine labels the forced change "max-out"
            return Decision(nxt, f"next {why_next}", walk, used)
        failsafe = self.failsafe_in(view, cur)
        if failsafe:
            if elapsed + 1e-9 >= self.fixed_green(cur):
                return Decision(nxt, f"fail-safe recall of {', '.join(failsafe)}: fixed green "
                                     f"{self.fixed_green(cur):.0f}s done", walk, used)
            return Decision(walk=walk)
        return self.extend_or_end(view, cur, nxt, why_next, walk, used)

    def choose_next(self, view: View, current: str) -> tuple[str | None, str]:
        nxt = self.next_called(view, current)
        return nxt, f"{nxt} called"

    def extend_or_end(self, view: View, cur: str, nxt: str, why_next: str, walk: frozenset[str],
                      used: dict[str, Any]) -> Decision:  # pragma: no cover - interface
        raise NotImplementedError

    def plan(self) -> dict[str, Any]:
        """Current timings and why, for the retained ``plan`` topic."""
        return {"policy": self.name}

    # -- shared helpers ------------------------------------------------------------------------
    def demanded(self, view: View, current: str | None, sid: str) -> bool:
        """A phase that ``sid`` would serve better than ``current`` is called (see
        :meth:`Intersection.serves`)."""
        return any(view.inputs[p].call for p in self.inter.serves(current, sid))

    def walks(self, view: View, sid: str) -> frozenset[str]:
        """Pedestrian phases of a stage that are called (or on recall or fail-safe)."""
        return frozenset(p for p in self.stages[sid].pedestrians if view.inputs[p].call)

    def failsafe_in(self, view: View, sid: str) -> list[str]:
        return [p for p in self.stages[sid].phases if not view.inputs[p].reliable]

    def fixed_green(self, sid: str) -> float:
        """The stage's fixed-plan green, within its min and max green."""
        st = self.stages[sid]
        return st.clamp(st.fixed_green)

    def next_called(self, view: View, current: str) -> str | None:
        """The next stage after ``current`` in ring order that has a call for a phase it would start."""
        i = self.stage_ids.index(current)
        for k in range(1, len(self.stage_ids)):
            sid = self.stage_ids[(i + k) % len(self.stage_ids)]
            if self.demanded(view, current, sid):
                return sid
        return None

    def losing(self, cur: str, nxt: str) -> list[str]:
        """Vehicle phases of stage ``cur`` that a change to ``nxt`` ends, or leaves green only permissively
        (yielding) where ``cur`` protects them: both lose the service they have now."""
        a, b = self.stages[cur], self.stages[nxt]
        return sorted(p for p in a.vehicles if p not in b.phases or (p in b.permissive and p not in a.permissive))

    def green_as_now(self, view: View, pid: str) -> float:
        """How long the phase has been green as it is green now: a phase protected in this stage that only
        yielded (green permissively) in the one before is protected only since this stage began, and a
        turner that waited for a gap through that green moves now."""
        e = view.engine
        green = e.envelope.green_elapsed(pid)
        if e.current is None or e.previous is None or e.changing:
            return green
        cur, prev = self.stages[e.current], self.stages[e.previous]
        if pid in cur.phases and pid not in cur.permissive and pid in prev.permissive:
            return min(green, e.stage_elapsed())
        return green

    def head_stopped(self, view: View, pid: str, zone: tuple[bool, float, float] | None,
                     after_s: float | None = None) -> bool:
        """A stop-bar zone of a green phase whose oldest vehicle stands (well past start-up,
        ``blocked_after_s`` unless ``after_s``): the lane serves nothing now. It stands when it has not moved
        since the green began, or when it has stood in the zone for ``blocked_after_s`` (at least
        :data:`STANDING_S`) of this green: a vehicle that reached the stop bar during the green and stopped
        there (a left-turner arriving at a through green on a shared lane) holds the lane as surely as one
        that was there before, and a moving vehicle crosses the zone in a few seconds."""
        if zone is None or not zone[0]:
            return False
        green = self.green_as_now(view, pid)
        ac = self.cfg.timing.adaptive
        stand = ac.blocked_after_s if after_s is None else after_s
        if green < ac.startup_lost_s + stand:
            return False
        return zone[2] >= min(green - 1.0, max(stand, STANDING_S))

    def track_heads(self, view: View) -> None:
        """For each green phase's stop-bar zones: since when the zone's oldest vehicle (the one at the stop bar)
        is the same. While it stays, the zone's longest dwell grows with the clock; when it leaves, the next
        vehicle's dwell is shorter. A green's start, an empty zone and a vehicle entering an empty zone
        restart the clock."""
        for pid, ph in view.engine.envelope.phases.items():
            if ph.signal != "green" or pid not in view.inputs:
                continue
            start = ph.since  # this green's start
            for k, z in enumerate(view.inputs[pid].presence_zones):
                key = (pid, k)
                seen = self._head_seen.get(key)
                dwell = z[2] if z is not None and z[0] else None
                if dwell is None:
                    self.head_since[key] = None
                elif seen is None or seen[0] != start:
                    self.head_since[key] = start  # there when the green began
                elif seen[2] is None or dwell < seen[2] + (view.now - seen[1]) - 0.6:
                    self.head_since[key] = view.now  # a vehicle entered the empty zone, or the head left
                self._head_seen[key] = (start, view.now, dwell)

    def held_for_red(self, view: View, pid: str, lane: int) -> bool:
        """The ``lane``-th stop-bar zone of ``pid``, protected in the current stage, also feeds a phase that is
        red, and the same vehicle has stood at its stop bar for start-up plus ``held_head_s``
        (:meth:`track_heads`): it is that phase's vehicle, and this green cannot move it (a protected green
        yields to nobody, so nothing else holds it)."""
        e = view.engine
        if e.current is None or e.changing or pid in self.stages[e.current].permissive:
            return False
        if not self.feeds_a_red_phase(view, pid, lane):
            return False
        since = self.head_since.get((pid, lane))
        ac = self.cfg.timing.adaptive
        return since is not None and view.now - since >= ac.startup_lost_s + ac.held_head_s

    def feeds_a_red_phase(self, view: View, pid: str, lane: int) -> bool:
        """The ``lane``-th stop-bar zone of ``pid`` also feeds a phase that is not green now."""
        mates = self.presence_mates.get(pid, [])
        return lane < len(mates) and any(view.engine.envelope.phases[q].signal != "green" for q, _ in mates[lane])

    def lane_blocked(self, view: View, pid: str, lane: int, after_s: float | None = None) -> bool:
        """The ``lane``-th stop-bar zone of a green phase is held by a vehicle for another phase: the lane
        also feeds a phase that is not green now, and its head stands (:meth:`head_stopped`; on a protected
        green, within seconds: :meth:`held_for_red`). This green can never move it, so the lane must not
        extend it. A lane whose phases are all green is never blocked: its stopped head is this green's own (a
        permissive turner waiting for a gap, which comes within this green or at its end), and it still calls
        for the green."""
        if not self.feeds_a_red_phase(view, pid, lane):
            return False
        zones = view.inputs[pid].presence_zones
        zone = zones[lane] if lane < len(zones) else None
        return self.head_stopped(view, pid, zone, after_s) or self.held_for_red(view, pid, lane)

    def extends(self, view: View, pid: str) -> bool:
        """A vehicle arrives within the passage time on a lane that is moving (not :meth:`lane_blocked`)."""
        inp = view.inputs[pid]
        passage = self.inter.phases[pid].config.passage
        zones = inp.presence_zones
        if not zones or not inp.reliable:
            return inp.gap_s < passage
        moving = [z for k, z in enumerate(zones) if z is not None and z[0] and not self.lane_blocked(view, pid, k)]
        if moving:
            return True
        if any(z is not None and z[0] for z in zones):
            return False  # every occupied lane is blocked
        return inp.gap_s < passage

    def inputs_used(self, view: View, phases) -> dict[str, Any]:
        return {p: view.inputs[p].summary() for p in sorted(phases)}
