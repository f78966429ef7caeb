"""Fully actuated control: stages in ring order, skipping those nobody calls; a stage runs at least its
min green, is extended while a vehicle keeps arriving within the passage (gap) time on a phase that would
end, and ends on gap-out or at max green. Pedestrians get WALK when called. Phases on fail-safe are
called every cycle and their stage runs its fixed-plan green."""
from __future__ import annotations

from roadside.controller.engine import Decision
from roadside.controller.policies.base import Policy, View

#: A WALK asked for after the stage started is still given if the stage is this young (s).
LATE_WALK_S = 2.0


class ActuatedPolicy(Policy):
    name = "actuated"

    def decide(self, view: View) -> Decision:
        e = view.engine
        if e.changing or e.current is None:
            return Decision(walk=self.walks(view, e.target or self.stage_ids[0]))
        cur = e.current
        elapsed = e.stage_elapsed()
        walk = self.walks(view, cur) if elapsed <= LATE_WALK_S else frozenset()
        nxt = self.next_called(view, cur)
        if nxt is None:
            return Decision(walk=walk)  # rest in green: nobody else is waiting
        if e.must_change():
            return Decision(nxt, "max-out", walk, self.inputs_used(view, self.stage_phases[cur] | self.stage_phases[nxt]))
        failsafe = self.failsafe_in(view, cur)
        if failsafe:
            if elapsed + 1e-9 >= self.fixed_green(cur):
                return Decision(nxt, f"fail-safe recall of {', '.join(failsafe)}: fixed green "
                                     f"{self.fixed_green(cur):.0f}s done", walk, self.inputs_used(view, failsafe))
            return Decision(walk=walk)
        ending = [p for p in self.vehicles(cur) - self.stage_phases[nxt]]
        extending = [p for p in ending if view.inputs[p].gap_s < self.inter.phase(p).passage
                     or self.inter.phase(p).recall == "max"]
        if extending:
            return Decision(walk=walk)
        return Decision(nxt, f"gap-out: no vehicle on {', '.join(ending) or '-'} within the passage time; "
                             f"{nxt} called", walk, self.inputs_used(view, set(ending) | self.new_phases(cur, nxt)))

    def plan(self):
        return {"policy": self.name,
                "why": "gap-out / max-out from presence calls; stages without calls are skipped",
                "phases": {p.id: {"min_green": p.timing.min_green, "max_green": p.timing.max_green,
                                  "passage": p.passage} for p in self.inter.phases if p.kind == "vehicle"}}
