"""Cycle failures: a green that ends with a standing queue shows more demand than the counts do.

Oversaturated, a phase's counted flow is what its greens let through, so a plan made from the counted flows
(Webster's, or the Webster green that bounds adaptive's hold rule) follows the policy's own short greens. A
green that ends with at least ``cycle_failure_veh`` vehicles in lanes whose queue has stood (their queue
zone's oldest vehicle dwelt longer than free travel through it plus ``queued_margin_s``; both settings under
``timing.adaptive``, whose queue model this is) is a cycle failure: the demand was at least what that green
could serve, so the phase's flow ratio is at least g / C (that green over the time since the phase's previous
green ended), until one of its greens ends without a failure. Item 13 of the controller README.
"""
from __future__ import annotations

from roadside.controller.policies.base import View


class CycleFailures:
    def __init__(self, cfg, inter) -> None:
        self.ac = cfg.timing.adaptive
        self.inter = inter
        self.travel = {p.id: p.config.detectors.queue_travel_s for p in inter.phases.values()}
        #: phase -> (its signal last tick, the start of its green, the end of its last green)
        self._greens: dict[str, tuple[str | None, float | None, float | None]] = {}
        #: phase -> lower bound of its flow ratio from its last green: g / C after a cycle failure, else 0
        self.y_low: dict[str, float] = {}

    def queue_stands(self, pid: str, n: float, dwell: float) -> bool:
        """A queue zone of ``pid`` with ``n`` vehicles whose oldest dwelt ``dwell`` holds a standing queue: its
        oldest vehicle dwelt longer than free travel through it (plus ``queued_margin_s``)."""
        return n >= 1 and dwell > self.travel[pid] + self.ac.queued_margin_s

    def failed(self, view: View, pid: str) -> bool:
        """At least ``cycle_failure_veh`` vehicles are in the phase's lanes that hold a standing queue."""
        inp = view.inputs[pid]
        if inp.queue is None or not inp.reliable:
            return False
        standing = sum(qz[1] for qz in inp.queue_zones if qz is not None and self.queue_stands(pid, qz[1], qz[2]))
        return standing >= self.ac.cycle_failure_veh

    def watch(self, view: View) -> None:
        """Every tick: at the end of each vehicle phase's green, was it a cycle failure? Then its flow ratio is
        at least g / C; else no bound."""
        for pid, ph in view.engine.envelope.phases.items():
            if not self.inter.phases[pid].vehicle:
                continue
            seen, start, last_end = self._greens.get(pid, (None, None, None))
            if ph.signal == "green":
                start = ph.since
            elif seen == "green" and start is not None:
                if last_end is not None and view.now > last_end:
                    self.y_low[pid] = (view.now - start) / (view.now - last_end) if self.failed(view, pid) else 0.0
                last_end = view.now
            self._greens[pid] = (ph.signal, start, last_end)

    def bound(self, flows_vph: dict[str, float]) -> dict[str, float]:
        """The flows, each at least what its phase's last failed green shows (``y_low`` x saturation flow)."""
        return {p: max(q, self.y_low.get(p, 0.0) * self.inter.phases[p].saturation_vph) for p, q in flows_vph.items()}
