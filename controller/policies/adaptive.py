"""Adaptive control: a queue-estimating look-ahead that weighs, every step, ending the current green now
against keeping it one more step.

The ``rate`` model (experimental; ``model: rate``, worse than ``delay`` so far): keep the green while the
ending phases serve more (wait-weighted) vehicles per second than the next stage would, counting that
stage's whole service: its change interval and start-up lost time (the cost of the switch) plus the green
its queue needs. A standing queue discharges at saturation flow, so it is served until it is gone or max
green; a thin stream loses to any real queue elsewhere. Waits are measured from each phase's last service
(not dwell in a queue zone, which is large for every approach of a standing queue), and nothing is derived
from the policy's own recent greens.

The ``delay`` model (the default), with waits from each phase's last service and a return time that is
not capped by the policy's own recent greens:
Keeping the green ``h`` more seconds lets the ending phases serve ``r x h`` more vehicles, each of which
would otherwise wait ``R``; it delays every vehicle waiting elsewhere by ``h``. But ending now is no gift
to them either when the green is still in use: the vehicles it would still serve need that green later,
while the next vehicles elsewhere wait again. So a share ``u`` of the vehicles waiting elsewhere (the share
of the green's capacity in use, up to the stage's Webster green for the measured flows, 0 beyond it) counts
as delayed either way. The green is kept while ``hold_bias x r x R + u x N`` exceeds ``N``, the
(wait-weighted) number of vehicles waiting elsewhere; min/max greens bound it as always.

* ``r``, lane by lane from the zones: a standing queue (the queue zone's oldest vehicle dwelt longer than
  free travel through it) discharges at saturation flow; free-flowing vehicles reach the stop line within
  the travel time and count with ``free_flow_weight`` (below 1: serve queues exhaustively rather than
  hold the green for a thin stream, which keeps cycles short); a lane whose stop-bar vehicle stands
  (not moved since the green began, or stopped there during it: a turning vehicle waiting for a gap or for
  its own stage) serves nothing; a yielding left whose stop-bar vehicle stands counts among the vehicles
  waiting elsewhere.
* ``R``: the time until this stage comes back: the greens the other stages' queues need plus the change
  intervals (``return_from_history: true`` caps them by what those stages have really been getting lately).

The next stage is the one with the most weighted waiting vehicles (weight grows with the wait since the
phase's last service; a yielding green whose stop-bar vehicles stand is no service), and a stage whose
oldest call waited ``max_wait_s`` goes first. Phases on fail-safe count as called with a
default queue, and their stage runs its fixed-plan green.
"""
from __future__ import annotations

from roadside.controller.engine import Decision
from roadside.controller.policies.base import STANDING_S, Policy, View
from roadside.controller.policies.cycle_failures import CycleFailures
from roadside.controller.policies.webster import webster_plan


class AdaptivePolicy(Policy):
    name = "adaptive"

    def __init__(self, cfg, inter) -> None:
        super().__init__(cfg, inter)
        self.ac = cfg.timing.adaptive
        phases = self.inter.phases.values()
        self.sat = {p.id: p.saturation_vph / 3600.0 for p in phases}
        self.lanes = {p.id: p.config.lanes for p in phases}
        #: running average of each stage's actual greens (s)
        self.recent_green: dict[str, float] = {}
        self._last_change_t: float | None = None
        #: phase -> last time it was green (its last service)
        self.served_at: dict[str, float] = {}
        #: phase -> per queue zone (lane), the other phases fed by the same zone, with their zone index
        self.queue_mates = self.lane_mates(cfg, "queue")
        #: cycle failures: the lower bounds of the flow ratios in the Webster green (item 13)
        self.failures = CycleFailures(cfg, inter)

    def stuck_behind(self, view: View, pid: str, current: str) -> float:
        """Vehicles of other phases stuck behind a vehicle of ``pid`` on a shared lane: a lane green for a
        phase of the current stage whose stop-bar vehicle has not moved since that green began waits for
        another phase of the lane, so serving ``pid`` frees them too."""
        extra = 0.0
        for mates in self.queue_mates.get(pid, []):
            for q, j in mates:
                if q not in self.stages[current].phases or pid in self.stages[current].phases:
                    continue
                inp = view.inputs[q]
                if j >= len(inp.presence_zones) or j >= len(inp.queue_zones) or inp.queue_zones[j] is None:
                    continue
                if self.lane_blocked(view, q, j, after_s=0.0):
                    extra += inp.queue_zones[j][1]
        return extra

    # -- the queue model -----------------------------------------------------------------------
    def queue(self, view: View, pid: str) -> float:
        inp = view.inputs[pid]
        if inp.queue is not None and inp.reliable:
            return inp.queue
        return self.ac.default_queue_per_lane * self.lanes[pid] if inp.call else 0.0

    def arrival_rate(self, view: View, pid: str) -> float:
        f = view.inputs[pid].flow_vph
        return (f or 0.0) / 3600.0

    def discharge_rate(self, view: View, pid: str) -> float:
        """Vehicles per second the phase would serve if kept green one more step (:meth:`lane_service`)."""
        return self.lane_service(view, pid)[0]

    def lane_service(self, view: View, pid: str) -> tuple[float, float, float]:
        """(rate, used, capacity) in vehicles per second if the phase is kept green one more step, lane by
        lane: a standing queue discharges at saturation, free-flowing vehicles in the zone reach the line
        within the travel time (``rate`` weighs them by ``free_flow_weight``, ``used`` does not), and a lane
        whose stop-bar vehicle stands (:meth:`head_stopped`; a turning vehicle waiting for a gap or for its
        own stage) serves nothing. ``capacity``: the saturation flow of the lanes that hold a vehicle, so
        that ``used / capacity`` is the share of this green's capacity that is being used."""
        inp = view.inputs[pid]
        if inp.queue is None or not inp.reliable:
            busy = inp.gap_s < self.inter.phases[pid].config.passage
            r = self.sat[pid] if busy else self.arrival_rate(view, pid)
            return r, r, self.sat[pid] if busy or inp.call else 0.0
        travel = self.failures.travel[pid]
        lane_sat = self.sat[pid] / self.lanes[pid]
        lanes = list(zip(inp.presence_zones, inp.queue_zones))
        if not lanes or len(inp.presence_zones) != len(inp.queue_zones):
            lanes = [(None, (bool(inp.queue), int(inp.queue), inp.max_wait_s))]
            lane_sat = self.sat[pid]
        lam = self.arrival_rate(view, pid) / max(1, len(lanes))
        rate = used = cap = 0.0
        for k, (pz, qz) in enumerate(lanes):
            n, dwell = (qz[1], qz[2]) if qz is not None else (0, 0.0)
            if n >= 1 or (pz is not None and pz[0]):
                cap += lane_sat
            if self.head_stopped(view, pid, pz) or (pz is not None and self.held_for_red(view, pid, k)):
                continue  # the vehicle at the stop bar stands: the lane serves nothing now
            if self.failures.queue_stands(pid, n, dwell):
                r = min(lane_sat, n / self.ac.step_s)
                rate += r
            else:
                r = min(lane_sat, max(n / travel, lam))
                rate += self.ac.free_flow_weight * r
            used += r if n >= 1 else 0.0
        return rate, used, cap

    def webster_green(self, view: View, sid: str) -> float:
        """The green Webster's formula gives stage ``sid`` for the measured flows and this junction's lost
        time (:func:`~roadside.controller.policies.webster.webster_plan`); a phase whose last green was a cycle
        failure counts at least the flow that green could serve (:class:`CycleFailures`)."""
        flows = self.failures.bound({p: view.inputs[p].flow_vph or 0.0 for p, ph in self.inter.phases.items()
                                     if ph.vehicle})
        return webster_plan(self.inter, flows, self.cfg.timing.webster).greens[sid]

    def deferred_share(self, view: View, cur: str, service: list[tuple[float, float, float]]) -> float:
        """The share of the vehicles waiting elsewhere that ending now would delay anyway: the vehicles the
        green would still serve (``used`` of its ``capacity``, :meth:`lane_service`) need that green later,
        while everybody else waits again. Counted up to the stage's Webster green: a standing queue at
        saturation flow is worth keeping until the cycle that the flows and the lost time call for, and no
        longer (0 beyond it, or when nothing is served)."""
        cap = sum(c for _, _, c in service)
        if cap <= 0 or view.engine.stage_elapsed() >= self.webster_green(view, cur):
            return 0.0
        return min(1.0, sum(u for _, u, _ in service) / cap)

    def wait(self, view: View, pid: str) -> float:
        """How long the phase's traffic has waited: since its last service (while called), or the longest
        dwell in its zones (``wait_from: zone``)."""
        inp = view.inputs[pid]
        if self.ac.wait_from == "zone":
            return inp.max_wait_s
        if not inp.call or self.being_served(view, pid):
            return 0.0
        return max(0.0, view.now - self.served_at.get(pid, view.now))

    def being_served(self, view: View, pid: str) -> bool:
        """The phase is green and its vehicles move: a yielding (permissive) green serves its lanes only
        while their stop-bar vehicles change, i.e. a lane's head has been there less than :data:`STANDING_S`
        of this green (the one before it went) or no lane holds anyone. A permissive left that finds no gap,
        or whose lane is held in a standing queue, is not served by the green, and its wait goes on."""
        if view.engine.envelope.phases[pid].signal != "green":
            return False
        zones = self.yielding_zones(view, pid)
        if zones is None:
            return True
        green = self.green_as_now(view, pid)
        return not zones or any(z[2] < min(green, STANDING_S) for z in zones)

    def yielding_stands(self, view: View, pid: str) -> bool:
        """``pid`` is green only permissively (yielding) in the current stage and every occupied stop-bar lane
        of it stands (:meth:`head_stopped`): it finds no gap in this green."""
        zones = self.yielding_zones(view, pid)
        return bool(zones) and all(self.head_stopped(view, pid, z) for z in zones)

    def yielding_zones(self, view: View, pid: str) -> list[tuple[bool, float, float]] | None:
        """The occupied stop-bar zones of ``pid`` when it is green only permissively (yielding) in the
        current stage; None when it is not yielding now."""
        e = view.engine
        if e.current is None or e.changing or pid not in self.stages[e.current].permissive:
            return None
        return [z for z in view.inputs[pid].presence_zones if z is not None and z[0]]

    def weight(self, view: View, pid: str) -> float:
        return 1.0 + self.ac.wait_weight * self.wait(view, pid)

    def service_rate(self, view: View, current: str, sid: str) -> tuple[float, float, float]:
        """(weighted vehicles, seconds, weighted vehicles per second) of changing to ``sid`` now: the
        vehicles it would serve, over its change interval, start-up lost time and the green they need."""
        phases = [p for p in self.inter.serves(current, sid)]
        veh = sum(self.queue(view, p) * self.weight(view, p) + (0.5 if view.inputs[p].call else 0.0) for p in phases)
        clear = max((self.queue(view, p) / self.sat[p] for p in phases if self.inter.phases[p].vehicle), default=0.0)
        secs = self.inter.change_time(current, sid) + self.ac.startup_lost_s + max(clear, self.stages[sid].min_green)
        return veh, secs, veh / secs if secs > 0 else veh

    def stage_need(self, view: View, sid: str, current: str) -> float:
        """Green stage ``sid`` would need to clear what waits for it (0 when nobody waits)."""
        new = [p for p in self.inter.serves(current, sid) if self.inter.phases[p].vehicle]
        if not self.demanded(view, current, sid):
            return 0.0
        clear = max((self.queue(view, p) / self.sat[p] for p in new), default=0.0)
        st = self.stages[sid]
        return max(st.min_green, min(clear + self.ac.startup_lost_s, st.max_green))

    def score(self, view: View, current: str, sid: str) -> float:
        return sum((self.queue(view, p) + self.stuck_behind(view, p, current)) * self.weight(view, p)
                   + (1.0 if view.inputs[p].call else 0.0) for p in self.inter.serves(current, sid))

    def yielding_stuck(self, view: View, cur: str) -> float:
        """Vehicles of the current stage's permissive (yielding) phases that find no gap
        (:meth:`yielding_stands`): they wait for their protected stage, so holding this green delays them
        like the vehicles waiting at a red."""
        return sum(self.queue(view, p) * self.weight(view, p) for p in self.stages[cur].permissive
                   if self.yielding_stands(view, p))

    # -- the decision --------------------------------------------------------------------------
    def choose_next(self, view: View, current: str) -> tuple[str | None, str]:
        cands = [s for s in self.stage_ids if s != current and self.demanded(view, current, s)]
        if not cands:
            return None, ""
        starving = [s for s in cands if max(self.wait(view, p) for p in self.inter.serves(current, s)
                                            if view.inputs[p].call) >= self.ac.max_wait_s]
        if starving:
            return starving[0], f"{starving[0]} waited over {self.ac.max_wait_s:.0f}s"
        if self.ac.model == "rate":
            best = max(cands, key=lambda s: (self.service_rate(view, current, s)[2], -self._ring_distance(current, s)))
            veh, secs, rate = self.service_rate(view, current, best)
            return best, f"{best} serves the most ({veh:.1f} weighted vehicles in {secs:.0f}s)"
        best = max(cands, key=lambda s: (self.score(view, current, s), -self._ring_distance(current, s)))
        return best, f"{best} has the most waiting ({self.score(view, current, best):.1f} weighted)"

    def _ring_distance(self, a: str, b: str) -> int:
        return (self.stage_ids.index(b) - self.stage_ids.index(a)) % len(self.stage_ids)

    def return_time(self, view: View, current: str, nxt: str) -> float:
        """Estimated red time of the current stage if it ended now: every other stage that is waiting gets
        the green it needs, with the change intervals between them."""
        change_time = self.inter.change_time
        r = change_time(current, nxt)
        prev = nxt
        for k in range(len(self.stage_ids)):
            sid = self.stage_ids[(self.stage_ids.index(nxt) + k) % len(self.stage_ids)]
            if sid == current:
                continue
            need = self.stage_need(view, sid, current)
            if need > 0 or sid == nxt:
                if sid in self.recent_green and self.ac.return_from_history:
                    need = min(need, self.recent_green[sid])  # what that stage has really been getting
                r += max(need, self.stages[sid].min_green) + change_time(prev, sid) * (sid != nxt)
                prev = sid
        return r + change_time(prev, current) + self.ac.startup_lost_s

    def _learn(self, view: View) -> None:
        """Average the green each stage actually had, from the sequencer's accepted changes."""
        e = view.engine
        if e.changing and e.current is not None and self._last_change_t != e.stage_green_since:
            self._last_change_t = e.stage_green_since
            g = view.now - e.stage_green_since
            old = self.recent_green.get(e.current)
            self.recent_green[e.current] = g if old is None else 0.7 * old + 0.3 * g

    def decide(self, view: View) -> Decision:
        self._learn(view)
        if self.ac.cycle_failure_bound:
            self.failures.watch(view)
        for pid in view.engine.envelope.phases:
            if self.being_served(view, pid) or pid not in self.served_at:
                self.served_at[pid] = view.now
        return super().decide(view)

    def extend_or_end(self, view, cur, nxt, why_next, walk, used) -> Decision:
        e = view.engine
        if not e.can_change_to(nxt):
            return Decision(walk=walk)
        ending = self.losing(cur, nxt)
        service = [self.lane_service(view, p) for p in ending]
        rate = sum(r for r, _, _ in service)
        if self.ac.model == "rate":
            veh, secs, alt = self.service_rate(view, cur, nxt)
            if self.ac.hold_bias * rate > alt:
                return Decision(walk=walk)
            inputs = dict(used)
            inputs["model"] = {"discharge_veh_s": round(rate, 3), "next_veh": round(veh, 1),
                               "next_service_s": round(secs, 1), "next_veh_s": round(alt, 3)}
            return Decision(nxt, f"rate: keeping {cur} serves {rate:.2f} veh/s, less than {alt:.2f} weighted veh/s "
                                 f"of changing (switch and service {secs:.0f}s); next {why_next}", walk, inputs)
        ret = self.return_time(view, cur, nxt)
        others = sum(self.queue(view, p) * self.weight(view, p)
                     for p in self.inter.phases if p not in self.stages[cur].phases) + self.yielding_stuck(view, cur)
        deferred = self.deferred_share(view, cur, service)
        gain, cost = self.ac.hold_bias * rate * ret + deferred * others, others
        if gain > cost:
            return Decision(walk=walk)
        inputs = dict(used)
        inputs["model"] = {"discharge_veh_s": round(rate, 3), "return_time_s": round(ret, 1),
                           "waiting_elsewhere": round(others, 1), "deferred_share": round(deferred, 2)}
        return Decision(nxt, f"look-ahead: keeping {cur} serves {rate:.2f} veh/s that would wait {ret:.0f}s, "
                             f"less than the {others:.1f} weighted vehicles it delays ({deferred:.0%} of them "
                             f"delayed anyway); next {why_next}", walk, inputs)

    def plan(self):
        return {"policy": self.name,
                "why": "queue-estimating look-ahead: extend while the vehicles served would wait longer than "
                       "the vehicles delayed; next stage by weighted queue",
                "parameters": self.ac.model_dump()}
