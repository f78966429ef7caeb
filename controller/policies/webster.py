"""Webster control: Webster's optimum cycle and green split (F. V. Webster, *Traffic Signal Settings*,
1958), recomputed from the measured flows once per cycle, smoothly: flows are smoothed exponentially, and
no stage's green moves by more than ``max_green_change_s`` per cycle, once the flow window
(``detection.flow_window_s``) has filled. Until then the flows are the window's means (the mean of every count
so far) and the greens follow the plan in full: the power-up plan (the fixed plan) measured nothing, and
stepping from it 4 s per cycle ran the shipped ``city`` scenario for some eight minutes on its 42 s default
greens.

The formula (:func:`webster_plan`): ``C0 = (1.5 L + 5) / (1 - Y)``, with L the lost time per cycle (change
intervals plus start-up lost time of every stage) and Y the sum over stages of the critical flow ratio
y = q / s; the effective green ``C0 - L`` is split in proportion to y. Each vehicle phase is counted in
its home stage (:attr:`Intersection.home`). The SUMO harness also uses the formula on the true demand
(the ``webster-true`` baseline). A phase green in every stage is never critical and is left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from roadside.controller.config import WebsterConfig
from roadside.controller.engine import Decision
from roadside.controller.intersection import Intersection
from roadside.controller.policies.base import View
from roadside.controller.policies.fixed import FixedTimePolicy


@dataclass(frozen=True)
class WebsterPlan:
    cycle_s: float
    greens: dict[str, float]
    flow_ratios: dict[str, float]
    lost_time_s: float
    flow_ratio_sum: float


def webster_plan(inter: Intersection, flows_vph: dict[str, float], cfg: WebsterConfig) -> WebsterPlan:
    stages = inter.sequence
    ratios = {s: 0.0 for s in stages}
    for pid, sid in inter.home.items():
        if inter.always_green(pid):
            continue  # green in every stage: never critical
        q = max(0.0, float(flows_vph.get(pid) or 0.0))
        ratios[sid] = max(ratios[sid], q / inter.phases[pid].saturation_vph)
    lost = sum(inter.change_time(s, stages[(i + 1) % len(stages)]) + cfg.startup_lost_s for i, s in enumerate(stages))
    y_sum = min(sum(ratios.values()), cfg.max_flow_ratio)
    cycle = (1.5 * lost + 5.0) / (1.0 - y_sum)
    cycle = min(max(cycle, cfg.min_cycle_s), cfg.max_cycle_s)
    total = sum(ratios.values())
    effective = max(cycle - lost, 0.0)
    greens = {}
    for s in stages:
        share = ratios[s] / total if total > 0 else 1.0 / len(stages)
        greens[s] = inter.stages[s].clamp(effective * share)
    return WebsterPlan(cycle, greens, ratios, lost, y_sum)


def smooth(previous: float | None, new: float, dt: float, tau: float) -> float:
    if previous is None or tau <= 0:
        return new
    a = 1.0 - math.exp(-max(dt, 0.0) / tau)
    return previous + a * (new - previous)


class WebsterPolicy(FixedTimePolicy):
    name = "webster"

    def __init__(self, cfg, inter) -> None:
        super().__init__(cfg, inter)
        self.flows: dict[str, float | None] = {pid: None for pid, p in self.inter.phases.items() if p.vehicle}
        self.last_update: float | None = None
        self.cycle_s: float | None = None
        self.why = "fixed plan until flows are measured"
        self.last_target: dict[str, float] = {}
        #: when the first counts arrived (None: not yet; the power-up plan runs)
        self.first_counts_t: float | None = None

    def decide(self, view: View) -> Decision:
        d = super().decide(view)
        if d.target == self.stage_ids[0]:
            self.recompute(view)
            d.inputs = {"plan": self.plan_greens(), "flows_vph": self.flow_summary()}
        return d

    def recompute(self, view: View) -> None:
        ws = self.cfg.timing.webster
        dt = view.now - self.last_update if self.last_update is not None else 0.0
        self.last_update = view.now
        filling = self.first_counts_t is None or view.now - self.first_counts_t < self.cfg.detection.flow_window_s
        for pid in self.flows:
            inp = view.inputs[pid]
            if inp.reliable and inp.flow_vph is not None:
                if self.first_counts_t is None:
                    self.first_counts_t = view.now
                # while the flow window fills, its mean is the mean of every count so far: the best estimate
                # there is (smoothed from its first bin, that bin would weigh 60% for five minutes)
                self.flows[pid] = inp.flow_vph if filling else smooth(self.flows[pid], inp.flow_vph, dt,
                                                                      ws.flow_smoothing_s)
        if all(f is None for f in self.flows.values()):
            return
        plan = webster_plan(self.inter, {k: v or 0.0 for k, v in self.flows.items()}, ws)
        self.cycle_s = plan.cycle_s
        self.last_target = plan.greens
        for s, target in plan.greens.items():
            g = self.greens[s]
            step = target - g if filling else max(-ws.max_green_change_s, min(ws.max_green_change_s, target - g))
            self.greens[s] = self.stages[s].clamp(g + step)
        self.why = (f"Webster from {'the flow window so far' if filling else 'smoothed flows'}: "
                    f"Y={plan.flow_ratio_sum:.2f}, L={plan.lost_time_s:.0f}s, C0={plan.cycle_s:.0f}s; "
                    + ("the plan in full while the flow window fills" if filling else
                       f"greens move at most {ws.max_green_change_s:g}s per cycle"))

    def flow_summary(self) -> dict[str, float | None]:
        return {k: None if v is None else round(v) for k, v in self.flows.items()}

    def plan(self) -> dict[str, Any]:
        out = super().plan()
        out.update({"webster_cycle_s": None if self.cycle_s is None else round(self.cycle_s, 1),
                    "webster_target_greens_s": {s: round(g, 1) for s, g in self.last_target.items()},
                    "flows_vph": self.flow_summary()})
        return out
