"""Webster's optimum cycle and green split (F. V. Webster, *Traffic Signal Settings*, 1958).

``C0 = (1.5 L + 5) / (1 - Y)``, with L the lost time per cycle (change intervals plus start-up lost time of
every stage) and Y the sum over stages of the critical flow ratio y = q / s; the effective green
``C0 - L`` is split in proportion to y. Each vehicle phase is counted in its home stage
(:attr:`Intersection.home`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from roadside.controller.config import WebsterConfig
from roadside.controller.intersection import Intersection


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
