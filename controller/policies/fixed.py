"""Fixed-time plan: every stage in ring order with its configured green, pedestrians always get WALK.
Also the fail-safe plan of the other policies. With ``dual_ring`` each ring runs its phases with their
greens (``timing.fixed.greens`` per ring phase) and the barrier is crossed when both rings are done."""
from __future__ import annotations

from typing import Any

from roadside.controller.engine import Decision
from roadside.controller.policies.base import Policy, View
from roadside.controller.policies.rings import RingSequencer


class FixedTimePolicy(Policy):
    name = "fixed"

    def __init__(self, cfg, inter, greens: dict[str, float] | None = None) -> None:
        super().__init__(cfg, inter)
        self.greens = {s: self.fixed_green(s) for s in self.stage_ids}
        if greens:
            self.set_greens(greens)
        self.why = "configured plan (timing.fixed.greens)" if cfg.timing.fixed.greens else "default plan"
        self.rings = RingSequencer(inter, cfg.timing.fixed.greens) if inter.rings is not None else None

    def set_greens(self, greens: dict[str, float]) -> None:
        for s, g in greens.items():
            self.greens[s] = self.stages[s].clamp(g)

    def decide(self, view: View) -> Decision:
        if self.rings is not None:
            return self.rings.decide(view, lambda p: self.ring_phase_done(view, p), lambda p: True,
                                     lambda sid: self.stages[sid].pedestrians)
        e = view.engine
        if e.changing or e.current is None:
            return Decision(walk=self.stages[e.target or self.stage_ids[0]].pedestrians)
        cur = e.current
        if e.stage_elapsed() + 1e-9 >= self.greens[cur]:
            nxt = self.inter.next_in_sequence(cur)
            return Decision(nxt, f"scheduled: {cur} green {self.greens[cur]:.0f}s done", self.stages[nxt].pedestrians,
                            {"plan": self.plan_greens()})
        return Decision()

    def ring_phase_done(self, view: View, pid: str) -> tuple[bool, str]:
        """Dual ring: the phase's planned green is over (or it reaches its max)."""
        assert self.rings is not None
        env = view.engine.envelope
        if env.will_max_out(pid):
            return True, "max-out"
        return (env.green_elapsed(pid) + 1e-9 >= self.rings.greens[pid],
                f"scheduled: green {self.rings.greens[pid]:.0f}s done")

    def plan_greens(self) -> dict[str, float]:
        return {s: round(g, 1) for s, g in self.greens.items()}

    def plan(self) -> dict[str, Any]:
        if self.rings is not None:
            return {"policy": self.name, "greens_s": {p: round(g, 1) for p, g in self.rings.greens.items()},
                    "why": self.why, **self.rings.plan()}
        return {"policy": self.name, "greens_s": self.plan_greens(), "why": self.why}
