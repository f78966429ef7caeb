"""The independent safety monitor: reads the signal state SUMO actually shows, link by link, every step,
and checks it with the timeline checker. It knows nothing of the controller: conflicts are the pairs of
links that the network's *original* program never shows green together (for a dual ring, which shows
combinations the program does not, those of them that are foes in the junction's right-of-way logic), and the interval rules come
from the configuration being enforced (for SUMO's own controllers only conflicts, yellow and all-red).
Continuous greens (links green in every phase of the program) have no rule: they conflict with nothing.
Max green counts only while a conflicting link is called; the calls are the ones the simulated sensors
can see (``DetectorFeed.true_calls``), never the controller's, with ``call_lag_s`` for their latency."""
from __future__ import annotations

from roadside.controller.sim.signal_check import SignalRules, SignalTimelineChecker
from roadside.controller.sim.tls import DerivedTLS


def conflicting_links(states: list[tuple[str, float]], n: int,
                      foes: set[frozenset[int]] | None = None) -> set[frozenset[str]]:
    """Pairs of links the program never shows green together; with ``foes`` (a dual ring, which shows
    combinations the program does not), only those that are also foes in the junction's right-of-way."""
    together = set()
    for s, _ in states:
        g = [i for i, c in enumerate(s) if c in "Gg"]
        together.update(frozenset((a, b)) for a in g for b in g if a < b)
    used = {i for s, _ in states for i, c in enumerate(s) if c in "Gg"}
    return {frozenset((str(a), str(b))) for a in used for b in used
            if a < b and frozenset((a, b)) not in together and (foes is None or frozenset((a, b)) in foes)}


class SafetyMonitor:
    def __init__(self, d: DerivedTLS, ours: bool, call_lag_s: float = 0.0, native: bool = False) -> None:
        """``native``: SUMO runs the network's own program with its own change intervals; only conflicts
        are checked for it (its yellows are netconvert's, not ours)."""
        self.n = d.n_links
        self.d = d
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
                                 else SignalRules() if native
                                 else SignalRules(0.0, float("inf"), t.yellow, t.red_clearance))
        self.checker = SignalTimelineChecker(rules, conflicting_links(d.original_states, d.n_links, d.foes), start=-1e9,
                                             call_lag_s=call_lag_s)

    def observe(self, t: float, state: str, phase_calls: set[str] | None = None) -> None:
        """SUMO's signal state at t; ``phase_calls``: the phases called (what the sensors see), None if unknown."""
        sig = {}
        for i, c in enumerate(state[: self.n]):
            sig[str(i)] = "green" if c in "Gg" else "yellow" if c in "yY" else "red"
        calls = None
        if phase_calls is not None:
            calls = {str(i) for i, pid in self.d.link_phase.items() if pid in phase_calls}
        self.checker.observe(t, sig, calls)

    @property
    def violations(self):
        return self.checker.violations
