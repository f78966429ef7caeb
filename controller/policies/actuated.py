"""Fully actuated control: stages in ring order, skipping those nobody calls; a stage runs at least its
min green, is extended while a vehicle keeps arriving within the passage (gap) time on a phase that would
end, and ends on gap-out or at max green. A lane whose stop-bar vehicle has not moved since the green began
(a vehicle for another phase on a shared lane, a turner waiting for a gap) does not extend it. Pedestrians get WALK when called. Phases on fail-safe are
called every cycle and their stage runs its fixed-plan green."""
from __future__ import annotations

from roadside.controller.engine import Decision
from roadside.controller.policies.base import Policy


class ActuatedPolicy(Policy):
    name = "actuated"

    def extend_or_end(self, view, cur, nxt, why_next, walk, used) -> Decision:
        ending = [p for p in self.stages[cur].vehicles - self.stages[nxt].phases]
        phases = self.inter.phases
        extending = [p for p in ending if self.extends(view, p) or phases[p].config.recall == "max"]
        if extending:
            return Decision(walk=walk)
        return Decision(nxt, f"gap-out: no vehicle on {', '.join(ending) or '-'} within the passage time; "
                             f"next {why_next}", walk, used)

    def plan(self):
        return {"policy": self.name,
                "why": "gap-out / max-out from presence calls; stages without calls are skipped",
                "phases": {p.id: {"min_green": p.timing.min_green, "max_green": p.timing.max_green,
                                  "passage": p.config.passage} for p in self.inter.phases.values() if p.vehicle}}
