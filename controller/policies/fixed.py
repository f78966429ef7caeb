"""Fixed-time plan: every stage in ring order with its configured green, pedestrians always get WALK.
Also the fail-safe plan of the other policies."""
from __future__ import annotations

from typing import Any

from roadside.controller.engine import Decision
from roadside.controller.policies.base import Policy, View


class FixedTimePolicy(Policy):
    name = "fixed"

    def __init__(self, cfg, inter, greens: dict[str, float] | None = None) -> None:
        super().__init__(cfg, inter)
        self.greens = {s: self.fixed_green(s) for s in self.stage_ids}
        if greens:
            self.set_greens(greens)
        self.why = "configured plan (timing.fixed.greens)" if cfg.timing.fixed.greens else "default plan"

    def set_greens(self, greens: dict[str, float]) -> None:
        for s, g in greens.items():
            self.greens[s] = self.stages[s].clamp(g)

    def decide(self, view: View) -> Decision:
        e = view.engine
        if e.changing or e.current is None:
            return Decision(walk=self.stages[e.target or self.stage_ids[0]].pedestrians)
        cur = e.current
        if e.stage_elapsed() + 1e-9 >= self.greens[cur]:
            nxt = self.inter.next_in_sequence(cur)
            return Decision(nxt, f"scheduled: {cur} green {self.greens[cur]:.0f}s done", self.stages[nxt].pedestrians,
                            {"plan": self.plan_greens()})
        return Decision()

    def plan_greens(self) -> dict[str, float]:
        return {s: round(g, 1) for s, g in self.greens.items()}

    def plan(self) -> dict[str, Any]:
        return {"policy": self.name, "greens_s": self.plan_greens(), "why": self.why}
