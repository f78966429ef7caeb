"""The intersection as the controller runs it, derived once from the configuration.

:class:`~roadside.controller.config.IntersectionConfig` is what the engineer wrote; an :class:`Intersection`
is everything that follows from it, worked out once:

* per phase: its timings (:class:`PhaseTiming`, with the ITE clearances computed), the stages that serve
  it (in ring order) and the phases it conflicts with;
* per stage: its phases, vehicle and pedestrian, its shortest and longest green, and its fixed-plan green
  (``timing.fixed.greens``, else a neutral default);
* the change (clearance) time between any two stages, the ring sequence, and each vehicle phase's home
  stage (where Webster counts its flow);
* with ``dual_ring``, the ring-and-barrier structure (rings.py): its stages, and as conflicts the pairs
  the rings and barriers keep apart (two phases of one ring, phases of different barrier groups).

The safety envelope, the stage sequencer, the policies and Webster's formula all read this one object.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from roadside.controller.clearance import ite_clearance, pedestrian_clearance_s
from roadside.controller.rings import RingBarrier, ring_barrier

if TYPE_CHECKING:  # annotations only
    from roadside.controller.config import ControllerConfig, IntersectionConfig, PhaseConfig


@dataclass(frozen=True)
class PhaseTiming:
    """What the safety envelope enforces. Pedestrians: green is WALK (timed ``walk`` to ``walk`` + 1 s),
    yellow is the pedestrian clearance (flashing DON'T WALK)."""

    min_green: float
    max_green: float
    yellow: float
    red_clearance: float


def phase_timing(p: PhaseConfig) -> PhaseTiming:
    """The four numbers of a phase; its yellow and red clearance computed by the ITE formulas when the
    configuration gives the approach geometry instead."""
    if p.kind == "pedestrian":
        assert p.walk is not None
        fdw = (p.ped_clearance if p.ped_clearance is not None
               else pedestrian_clearance_s(float(p.crossing_length_m or 0)))
        return PhaseTiming(p.walk, p.walk + 1.0, fdw, p.red_clearance or 0.0)
    assert p.min_green is not None and p.max_green is not None
    if p.clearance is not None:
        c = ite_clearance(p.clearance.approach_speed_kmh, p.clearance.grade_percent, p.clearance.width_m,
                          p.clearance.vehicle_length_m)
        return PhaseTiming(p.min_green, p.max_green, c.yellow_s, c.red_clearance_s)
    assert p.yellow is not None and p.red_clearance is not None
    return PhaseTiming(p.min_green, p.max_green, p.yellow, p.red_clearance)


@dataclass(frozen=True)
class Phase:
    id: str
    kind: str  # "vehicle" or "pedestrian"
    timing: PhaseTiming
    #: Stages that show this phase green, in ring order.
    stages: tuple[str, ...]
    #: Phases that must never be green at the same time as this one.
    conflicts: frozenset[str]
    #: The phase as configured (passage, recall, lanes, saturation flow, detectors).
    config: PhaseConfig

    @property
    def vehicle(self) -> bool:
        return self.kind == "vehicle"

    @property
    def saturation_vph(self) -> float:
        """Saturation flow of all its lanes together (veh/h of green)."""
        return self.config.saturation_flow_vph * self.config.lanes


@dataclass(frozen=True)
class Stage:
    id: str
    phases: frozenset[str]
    vehicles: frozenset[str]
    pedestrians: frozenset[str]
    #: Shortest green: its vehicle min greens, and WALK plus clearance of its pedestrians (s).
    min_green: float
    #: Longest green: the smallest max green of its vehicle phases (inf when it has none).
    max_green: float
    #: The fixed-plan green as configured (``timing.fixed.greens``), else the largest min green of its
    #: vehicle phases plus half the room up to the smallest max green. Not clamped: see :meth:`clamp`.
    fixed_green: float
    #: Phases green only permissively in this stage (they yield).
    permissive: frozenset[str] = frozenset()

    def clamp(self, green: float) -> float:
        """``green`` within this stage's min and max green."""
        return min(max(green, self.min_green), self.max_green)


class Intersection:
    """Phases, stages and the facts between them, derived once; read-only afterwards."""

    def __init__(self, config: IntersectionConfig, fixed_greens: Mapping[str, float] | None = None) -> None:
        self.config = config
        stages = config.stage_list
        #: Ring-and-barrier structure (None: one ring of stages). Its rings and barriers add conflicts.
        self.rings: RingBarrier | None = ring_barrier(config.dual_ring) if config.dual_ring is not None else None
        #: The ring: stage ids in their normal order.
        self.sequence: tuple[str, ...] = tuple(s.id for s in stages)
        pairs = config.compatible_pairs
        ids = [p.id for p in config.phases]
        rb = self.rings

        def conflict(a: str, b: str) -> bool:
            return frozenset((a, b)) not in pairs or (rb is not None and rb.separates(a, b))
        #: Phases in configuration order.
        self.phases: dict[str, Phase] = {
            p.id: Phase(p.id, p.kind, phase_timing(p), tuple(s.id for s in stages if p.id in s.phases),
                        frozenset(q for q in ids if q != p.id and conflict(p.id, q)), p)
            for p in config.phases}
        fixed_greens = fixed_greens or {}
        #: Stages in ring order.
        self.stages: dict[str, Stage] = {}
        for s in stages:
            phases = frozenset(s.phases)
            self.stages[s.id] = Stage(
                s.id, phases, frozenset(p for p in phases if self.phases[p].vehicle),
                frozenset(p for p in phases if not self.phases[p].vehicle),
                self._stage_minimum(s.phases), self._stage_maximum(s.phases),
                fixed_greens[s.id] if s.id in fixed_greens else self._default_green(s.phases),
                frozenset(s.permissive))
        #: vehicle phase -> its home stage: the one that serves it with the fewest other vehicle phases
        #: (a through phase that also runs beside a protected left counts in its own stage).
        self.home: dict[str, str] = {p.id: min(p.stages, key=lambda sid: (sid in self.stages and p.id in
                                                                           self.stages[sid].permissive,
                                                                           len(self.stages[sid].vehicles)))
                                     for p in self.phases.values() if p.vehicle}
        self._change = {(a, b): self._change_time(a, b) for a in self.sequence for b in self.sequence}

    @classmethod
    def of(cls, cfg: ControllerConfig) -> "Intersection":
        """The intersection of a controller configuration, with its fixed plan."""
        return cls(cfg.intersection, cfg.timing.fixed.greens)

    # -- lookups ----------------------------------------------------------------------------------
    def conflicts(self, a: str, b: str) -> bool:
        return b in self.phases[a].conflicts

    def change_time(self, from_stage: str, to_stage: str) -> float:
        """Yellow plus red clearance of the slowest vehicle phase that ends between two stages."""
        return self._change[(from_stage, to_stage)]

    def new_phases(self, from_stage: str | None, to_stage: str) -> frozenset[str]:
        """Phases a change from ``from_stage`` (None: all red) to ``to_stage`` would start."""
        return self.stages[to_stage].phases - (self.stages[from_stage].phases if from_stage else frozenset())

    def serves(self, from_stage: str | None, to_stage: str) -> frozenset[str]:
        """Phases a change from ``from_stage`` to ``to_stage`` would serve better: the ones it starts, and
        the ones green only permissively now that ``to_stage`` runs protected (a protected-left stage
        is called by its left turners even while they are green permissively)."""
        new = self.new_phases(from_stage, to_stage)
        if from_stage is None:
            return new
        cur, tgt = self.stages[from_stage], self.stages[to_stage]
        return new | frozenset(p for p in cur.permissive & tgt.phases if p not in tgt.permissive)

    def always_green(self, pid: str) -> bool:
        """The phase is green in every stage (it conflicts with nothing that is ever served): it is never
        critical for timing."""
        return len(self.phases[pid].stages) == len(self.sequence)

    def next_in_sequence(self, sid: str | None) -> str:
        """The stage after ``sid`` in ring order (the first stage after an unknown one)."""
        if sid not in self.stages:
            return self.sequence[0]
        return self.sequence[(self.sequence.index(sid) + 1) % len(self.sequence)]

    # -- derivations (run once) -------------------------------------------------------------------
    def _stage_minimum(self, phases: list[str]) -> float:
        need = 0.0
        for pid in phases:
            t = self.phases[pid].timing
            need = max(need, t.min_green + (t.yellow if not self.phases[pid].vehicle else 0.0))
        return need

    def _stage_maximum(self, phases: list[str]) -> float:
        vals = [self.phases[p].timing.max_green for p in phases if self.phases[p].vehicle]
        return min(vals) if vals else math.inf

    def _default_green(self, phases: list[str]) -> float:
        timings = [self.phases[p].timing for p in phases if self.phases[p].vehicle]
        if not timings:
            return max(self.phases[p].timing.min_green + self.phases[p].timing.yellow for p in phases)
        lo = max(t.min_green for t in timings)
        hi = min(t.max_green for t in timings)
        return lo + max(0.0, hi - lo) / 2

    def _change_time(self, from_stage: str, to_stage: str) -> float:
        ending = self.stages[from_stage].phases - self.stages[to_stage].phases
        return max((self.phases[p].timing.yellow + self.phases[p].timing.red_clearance
                    for p in ending if self.phases[p].vehicle), default=0.0)
