"""Webster's optimum cycle and green split (F. V. Webster, *Traffic Signal Settings*, 1958).

``C0 = (1.5 L + 5) / (1 - Y)``, with L the lost time per cycle (change intervals plus start-up lost time of
every stage) and Y the sum over stages of the critical flow ratio y = q / s; the effective green
``C0 - L`` is split in proportion to y. Each vehicle phase is counted in its *home* stage: the stage that
serves it with the fewest other vehicle phases (a through phase that also runs beside a protected left
counts in its own stage).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from roadside.controller.config import IntersectionConfig, WebsterConfig, stage_maximum, stage_minimum


@dataclass(frozen=True)
class WebsterPlan:
    cycle_s: float
    greens: dict[str, float]
    flow_ratios: dict[str, float]
    lost_time_s: float
    flow_ratio_sum: float


def home_stages(inter: IntersectionConfig) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in inter.phases:
        if p.kind != "vehicle":
            continue
        best = None
        for s in inter.stages:
            if p.id in s.phases:
                nveh = sum(inter.phase(q).kind == "vehicle" for q in s.phases)
                if best is None or nveh < best[0]:
                    best = (nveh, s.id)
        assert best is not None
        out[p.id] = best[1]
    return out


def change_time(inter: IntersectionConfig, from_stage: str, to_stage: str) -> float:
    """Yellow plus red clearance of the slowest phase that ends between two stages."""
    ending = set(inter.stage(from_stage).phases) - set(inter.stage(to_stage).phases)
    return max((inter.phase(p).timing.yellow + inter.phase(p).timing.red_clearance
                for p in ending if inter.phase(p).kind == "vehicle"), default=0.0)


def webster_plan(inter: IntersectionConfig, flows_vph: dict[str, float], cfg: WebsterConfig) -> WebsterPlan:
    stages = [s.id for s in inter.stages]
    home = home_stages(inter)
    ratios = {s: 0.0 for s in stages}
    for pid, sid in home.items():
        p = inter.phase(pid)
        q = max(0.0, float(flows_vph.get(pid) or 0.0))
        ratios[sid] = max(ratios[sid], q / (p.saturation_flow_vph * p.lanes))
    lost = sum(change_time(inter, s, stages[(i + 1) % len(stages)]) + cfg.startup_lost_s for i, s in enumerate(stages))
    y_sum = min(sum(ratios.values()), cfg.max_flow_ratio)
    cycle = (1.5 * lost + 5.0) / (1.0 - y_sum)
    cycle = min(max(cycle, cfg.min_cycle_s), cfg.max_cycle_s)
    total = sum(ratios.values())
    effective = max(cycle - lost, 0.0)
    greens = {}
    for s in stages:
        share = ratios[s] / total if total > 0 else 1.0 / len(stages)
        g = effective * share
        greens[s] = min(max(g, stage_minimum(inter, s)), stage_maximum(inter, s))
    return WebsterPlan(cycle, greens, ratios, lost, y_sum)


def smooth(previous: float | None, new: float, dt: float, tau: float) -> float:
    if previous is None or tau <= 0:
        return new
    a = 1.0 - math.exp(-max(dt, 0.0) / tau)
    return previous + a * (new - previous)
