"""The independent safety monitor: reads the signal state SUMO actually shows, link by link, every step,
and checks it with the timeline checker. It knows nothing of the controller: conflicts are the pairs of
links that the network's *original* program never shows green together, and the interval rules come
from the configuration being enforced (for SUMO's own controllers only conflicts, yellow and all-red)."""
from __future__ import annotations

from roadside.controller.sim.signal_check import SignalRules, SignalTimelineChecker
from roadside.controller.sim.tls import DerivedTLS


def conflicting_links(states: list[tuple[str, float]], n: int) -> set[frozenset[str]]:
    together = set()
    for s, _ in states:
        g = [i for i, c in enumerate(s) if c in "Gg"]
        together.update(frozenset((a, b)) for a in g for b in g if a < b)
    used = {i for s, _ in states for i, c in enumerate(s) if c in "Gg"}
    return {frozenset((str(a), str(b))) for a in used for b in used
            if a < b and frozenset((a, b)) not in together}


class SafetyMonitor:
    def __init__(self, d: DerivedTLS, ours: bool) -> None:
        self.n = d.n_links
        rules = {}
        for i in range(d.n_links):
            pid = d.link_phase.get(i)
            if pid is None:
                rules[str(i)] = SignalRules()
                continue
            t = d.intersection.phases[pid].timing
            if d.phase_kind[pid] == "pedestrian":
                # SUMO shows the pedestrian clearance as red: it counts as clearance before conflicting greens
                rules[str(i)] = (SignalRules(t.min_green, t.max_green, 0.0, t.yellow + t.red_clearance) if ours
                                 else SignalRules())
            else:
                rules[str(i)] = (SignalRules(t.min_green, t.max_green, t.yellow, t.red_clearance) if ours
                                 else SignalRules(0.0, float("inf"), t.yellow, t.red_clearance))
        self.checker = SignalTimelineChecker(rules, conflicting_links(d.original_states, d.n_links), start=-1e9)

    def observe(self, t: float, state: str) -> None:
        sig = {}
        for i, c in enumerate(state[: self.n]):
            sig[str(i)] = "green" if c in "Gg" else "yellow" if c in "yY" else "red"
        self.checker.observe(t, sig)

    @property
    def violations(self):
        return self.checker.violations
