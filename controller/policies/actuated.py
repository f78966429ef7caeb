"""Fully actuated control: stages in ring order, skipping those nobody calls; a stage runs at least its min
green, is extended while a vehicle keeps arriving within the passage (gap) time on a phase that would end,
and ends on gap-out or at max green. A lane that also feeds a phase that is not green, whose stop-bar
vehicle stands (it has not moved since the green began, or stopped there during it: a vehicle for that other
phase), does not extend it; a stopped vehicle on a lane whose phases are all green (a permissive turner
waiting for a gap) does, as a stop-bar presence detector would. Pedestrians get WALK when called. Phases on
fail-safe are called every cycle and their stage runs its fixed-plan green. With ``dual_ring`` the same
rules run per ring (policies/rings.py): each ring's phase gaps out or maxes out on its own."""
from __future__ import annotations

from roadside.controller.engine import Decision
from roadside.controller.policies.base import Policy, View
from roadside.controller.policies.rings import RingSequencer


class ActuatedPolicy(Policy):
    name = "actuated"

    def __init__(self, cfg, inter) -> None:
        super().__init__(cfg, inter)
        self.rings = RingSequencer(inter, cfg.timing.fixed.greens) if inter.rings is not None else None

    def decide(self, view: View) -> Decision:
        if self.rings is None:
            return super().decide(view)
        rings = self.rings
        return rings.decide(view, lambda p: self.ring_phase_done(view, p), lambda p: rings.called(view, p),
                            lambda sid: self.walks(view, sid))

    def ring_phase_done(self, view: View, pid: str) -> tuple[bool, str]:
        """Dual ring: the green phase ``pid`` of a ring may end (max-out, gap-out, or its fixed green when on
        fail-safe)."""
        assert self.rings is not None
        env = view.engine.envelope
        if env.will_max_out(pid):
            return True, "max-out"
        if not env.can_end(pid):
            return False, "min green"
        if not view.inputs[pid].reliable:
            return env.green_elapsed(pid) + 1e-9 >= self.rings.greens[pid], "fail-safe: fixed green done"
        if self.extends(view, pid) or self.inter.phases[pid].config.recall == "max":
            return False, "extending"
        return True, "gap-out"

    def extend_or_end(self, view, cur, nxt, why_next, walk, used) -> Decision:
        ending = self.losing(cur, nxt)
        phases = self.inter.phases
        extending = [p for p in ending if self.extends(view, p) or phases[p].config.recall == "max"]
        if extending:
            return Decision(walk=walk)
        return Decision(nxt, f"gap-out: no vehicle on {', '.join(ending) or '-'} within the passage time; "
                             f"next {why_next}", walk, used)

    def plan(self):
        return {"policy": self.name, **(self.rings.plan() if self.rings is not None else {}),
                "why": "gap-out / max-out from presence calls; stages without calls are skipped",
                "phases": {p.id: {"min_green": p.timing.min_green, "max_green": p.timing.max_green,
                                  "passage": p.config.passage} for p in self.inter.phases.values() if p.vehicle}}
