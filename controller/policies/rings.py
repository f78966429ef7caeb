"""Ring-and-barrier (NEMA dual ring) operation, for the policies that run it (``RING_POLICIES``: fixed and
actuated).

On every tick, for the stage being shown (or the one being changed to), each ring's phase is *done* when
its policy says so: actuated, at gap-out (after min green, no vehicle within the passage time) or max-out;
fixed, when its planned green is over. A done ring moves on to its next called phase in the same barrier
group, while the other ring's phase goes on (the two end independently; a change of one ring may replace
the stage a change of the other is running to, see :meth:`SignalEngine.can_retarget`). A ring with nothing
left in the group rests in its green until both rings are done; only then is the barrier crossed, to the
next group with a call (its first called phase in each ring). A phase that reaches its max green with
nothing left in its ring's group ends, and its ring rests at the barrier without a green.

Each phase is served at most once per visit of its barrier group, in ring order; a phase on fail-safe is
called and runs its fixed-plan green. The safety envelope enforces the rings and barriers as conflicts
(rings.py), whatever this asks.
"""
from __future__ import annotations

from typing import Callable

from roadside.controller.engine import Decision
from roadside.controller.intersection import Intersection
from roadside.controller.policies.base import LATE_WALK_S, View
from roadside.controller.rings import RingStage
from roadside.controller.safety import GREEN

#: done(phase) -> (done, why)
DoneRule = Callable[[str], "tuple[bool, str]"]


class RingSequencer:
    def __init__(self, inter: Intersection, fixed_greens: dict[str, float]) -> None:
        assert inter.rings is not None
        self.inter = inter
        self.rb = inter.rings
        stages = self.rb.stages()
        self.stage_of: dict[str, RingStage] = {s.id: s for s in stages}
        self.by_rings: dict[tuple[str | None, str | None], str] = {s.ring_phases: s.id for s in stages}
        self.peds_of: dict[str, list[str]] = {}
        for ped, veh in self.rb.walk_with.items():
            self.peds_of.setdefault(veh, []).append(ped)
        #: each ring phase's fixed-plan green (``timing.fixed.greens``, else halfway from min to max green)
        self.greens: dict[str, float] = {}
        for pid in self.rb.ring_of:
            t = inter.phases[pid].timing
            g = fixed_greens.get(pid, t.min_green + (t.max_green - t.min_green) / 2)
            self.greens[pid] = min(max(g, t.min_green), t.max_green)
        self._group: int | None = None
        self._served: set[str] = set()
        self._last: tuple[str | None, str | None] = (None, None)

    # -- what the ring has done in this barrier visit --------------------------------------------
    def _observe(self, rs: RingStage) -> None:
        again = any(p is not None and p in self._served and p != self._last[r] for r, p in enumerate(rs.ring_phases))
        if rs.group != self._group or again:  # a new visit of the group
            self._group, self._served = rs.group, set()
        self._served |= {p for p in rs.ring_phases if p is not None}
        self._last = rs.ring_phases

    def called(self, view: View, pid: str) -> bool:
        """The phase or a pedestrian phase beside it is called (recall and fail-safe included)."""
        return view.inputs[pid].call or any(view.inputs[q].call for q in self.peds_of.get(pid, ()))

    def _next_in_group(self, ring: int, pid: str | None, group: int, called: Callable[[str], bool]) -> str | None:
        order = self.rb.groups[group][ring]
        start = order.index(pid) + 1 if pid in order else 0
        return next((q for q in order[start:] if q not in self._served and called(q)), None)

    def _next_group(self, group: int, called: Callable[[str], bool]) -> tuple[str | None, str | None] | None:
        n = len(self.rb.groups)
        for k in range(1, n + 1):  # k == n: the same group again, a new visit
            g = self.rb.groups[(group + k) % n]
            firsts = tuple(next((q for q in ring if called(q)), None) for ring in g)
            if firsts != (None, None):
                return firsts  # type: ignore[return-value]
        return None

    # -- the decision ------------------------------------------------------------------------------
    def decide(self, view: View, done: DoneRule, called: Callable[[str], bool],
               walks: Callable[[str], frozenset[str]]) -> Decision:
        e = view.engine
        if e.current is None:  # power-up
            return Decision(walk=walks(e.target or self.inter.sequence[0]))
        shown = e.target if e.changing else e.current
        assert shown is not None
        rs = self.stage_of[shown]
        self._observe(rs)
        env = e.envelope
        walk = walks(shown) if e.changing or e.stage_elapsed() <= LATE_WALK_S else frozenset()
        state: list[tuple[bool, str]] = []
        for p in rs.ring_phases:
            if p is None:
                state.append((True, "no green"))
            elif env.phases[p].signal != GREEN:
                # still starting (a change is running to it), or ended by the envelope
                state.append((not e.changing, "ended"))
            else:
                state.append(done(p))
        new = list(rs.ring_phases)
        why: list[str] = []
        for r, (d, reason) in enumerate(state):
            if d:
                nxt = self._next_in_group(r, rs.ring_phases[r], rs.group, called)
                if nxt is not None:
                    new[r] = nxt
                    why.append(f"ring {r + 1}: {rs.ring_phases[r] or '-'} {reason}, next {nxt}")
        if not why and all(d for d, _ in state):
            cross = self._next_group(rs.group, called)
            if cross is not None and cross != rs.ring_phases:
                new = list(cross)
                why.append("barrier: both rings done (" + "; ".join(
                    f"ring {r + 1}: {rs.ring_phases[r] or '-'} {reason}" for r, (_, reason) in enumerate(state))
                           + f"), next {'+'.join(p for p in cross if p)}")
        if not why:
            for r, p in enumerate(rs.ring_phases):
                if p is not None and env.will_max_out(p) and new[1 - r] is not None:
                    new[r] = None  # max-out with nothing left in the group: rest at the barrier without green
                    why.append(f"ring {r + 1}: {p} max-out, rests at the barrier")
        target = self.by_rings.get((new[0], new[1]))
        if target is None or target == shown:
            return Decision(walk=walk)
        used = {p: view.inputs[p].summary() for p in sorted(set(self.stage_of[target].phases) | set(rs.phases))}
        return Decision(target, "; ".join(why), walks(target), used, while_changing=e.changing)

    def plan(self) -> dict[str, object]:
        return {"rings": [list(self.rb.ring_sequence(r)) for r in (0, 1)],
                "barriers": [[p for ring in g for p in ring] for g in self.rb.groups]}
