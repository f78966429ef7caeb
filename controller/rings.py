"""Ring-and-barrier (NEMA dual ring) structure: which phase is in which ring and barrier group, and the
stages that follow from it.

Two rings each serve their vehicle phases in sequence. The barriers cut both rings into the same number of
*barrier groups*: within a group, either phase of ring 1 may be green with either phase of ring 2, and the
rings move on independently; a barrier is crossed only when both rings are done with the group. So two
phases of one ring never show green together, and no phase of one group shows green with a phase of
another (:meth:`RingBarrier.separates`: the :class:`~roadside.controller.intersection.Intersection` adds
these pairs to the conflicts, so the safety envelope enforces them like any conflict).

The stages the sequencer and the envelope work with are every combination a group allows: one phase of
each ring, or one ring's phase alone (the other ring resting at the barrier or not called). A pedestrian
phase runs beside its vehicle phase (``walk_with``) and is in every stage of that phase.

:func:`ring_barrier` works this out from a validated :class:`~roadside.controller.config.DualRingConfig`; the
operation itself (gap-out and max-out per ring, barrier crossing) is in
:mod:`roadside.controller.policies.rings`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from roadside.controller.config import DualRingConfig

#: At most this many characters in a stage id (the configuration's identifier limit).
MAX_ID = 64


@dataclass(frozen=True)
class RingStage:
    """One combination: the phase of each ring (None: that ring shows no green in this stage)."""

    id: str
    group: int
    ring_phases: tuple[str | None, str | None]
    #: Pedestrian phases that run beside the stage's vehicle phases.
    pedestrians: tuple[str, ...] = ()

    @property
    def phases(self) -> list[str]:
        return [p for p in self.ring_phases if p is not None] + list(self.pedestrians)


@dataclass(frozen=True)
class RingBarrier:
    #: Per barrier group (in order), per ring, its phases in ring order.
    groups: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    #: Pedestrian phase -> the vehicle phase it runs beside.
    walk_with: dict[str, str]

    @property
    def ring_of(self) -> dict[str, int]:
        return {p: r for g in self.groups for r, ring in enumerate(g) for p in ring}

    @property
    def group_of(self) -> dict[str, int]:
        out = {p: gi for gi, g in enumerate(self.groups) for ring in g for p in ring}
        out.update({ped: out[veh] for ped, veh in self.walk_with.items() if veh in out})
        return out

    def ring_sequence(self, ring: int) -> tuple[str, ...]:
        """One ring's phases in order over all barrier groups."""
        return tuple(p for g in self.groups for p in g[ring])

    def separates(self, a: str, b: str) -> bool:
        """The rings and barriers keep ``a`` and ``b`` apart: the same ring, or different barrier groups (a
        pedestrian phase counts as its vehicle phase)."""
        host = lambda p: self.walk_with.get(p, p)  # noqa: E731
        ha, hb = host(a), host(b)
        if ha == hb:
            return False  # a phase and its own pedestrians
        rings, groups = self.ring_of, self.group_of
        if ha not in rings or hb not in rings:
            return False
        return rings[ha] == rings[hb] or groups[ha] != groups[hb]

    def stages(self) -> list[RingStage]:
        """Every stage the rings allow, group by group: each phase of ring 1 with each of ring 2, then each
        phase alone."""
        peds: dict[str, list[str]] = {}
        for ped, veh in self.walk_with.items():
            peds.setdefault(veh, []).append(ped)
        out: list[RingStage] = []
        used: set[str] = set()

        def add(gi: int, a: str | None, b: str | None) -> None:
            name = ".".join(p for p in (a, b) if p is not None)
            if len(name) > MAX_ID or name in used:
                name = f"g{gi}.{a or '-'}.{b or '-'}"[:MAX_ID]
                k = 0
                while name in used:
                    k += 1
                    name = f"g{gi}.{len(out)}.{k}"
            used.add(name)
            out.append(RingStage(name, gi, (a, b), tuple(q for p in (a, b) if p is not None for q in peds.get(p, []))))

        for gi, (r1, r2) in enumerate(self.groups):
            for a in r1:
                for b in r2:
                    add(gi, a, b)
            for a in r1:
                add(gi, a, None)
            for b in r2:
                add(gi, None, b)
        return out


def ring_barrier(cfg: DualRingConfig) -> RingBarrier:
    """The structure of a validated ring-and-barrier configuration."""
    groups = []
    for members in cfg.barriers:
        inside = set(members)
        groups.append(tuple(tuple(p for p in ring if p in inside) for ring in cfg.rings))
    return RingBarrier(tuple(groups), dict(cfg.walk_with))  # type: ignore[arg-type]
