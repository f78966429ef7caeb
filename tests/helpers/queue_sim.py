"""A small point-queue simulation of an intersection, for fast policy tests without SUMO.

Vehicles arrive per phase as a Poisson process, queue at the stop line and leave at the saturation flow
while the phase is green (after a start-up lost time). It publishes what an edge box would, as the real
payload JSON through :meth:`Controller.on_message`: presence for each presence zone (occupied while a
vehicle waits or just arrived), queue zone counts with the oldest wait, counts per line per bin, and
health every few seconds. Delay is the time each vehicle spent queued.
"""
from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from roadside.controller.config import ControllerConfig
from roadside.controller.core import Controller
from roadside.core.payloads import CountsMessage, DirectionCounts, HealthMessage, PresenceMessage, ZoneState

EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)


@dataclass
class QueueSimResult:
    mean_delay_s: float
    served: int
    left_in_queue: int
    stage_changes: int
    controller: Controller
    timeline: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    #: per timeline entry: the phases with a vehicle or pedestrian waiting or arriving (the true calls)
    calls: list[set[str]] = field(default_factory=list)


class QueueSim:
    def __init__(self, cfg: ControllerConfig, demand_vph: dict[str, float], seed: int = 0,
                 policy: str | None = None, startup_lost_s: float = 2.0) -> None:
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.demand = demand_vph
        self.ctrl = Controller(cfg, 0.0, policy, wall=lambda t: EPOCH + timedelta(seconds=t))
        self.queues: dict[str, deque[float]] = {p.id: deque() for p in cfg.intersection.phases}
        self.last_arrival: dict[str, float] = {p.id: -1e9 for p in cfg.intersection.phases}
        #: when the phase's last vehicle crossed the stop line: the head of the queue has been at the stop
        #: bar (in the presence zone) since then, or since it arrived
        self.last_departure: dict[str, float] = {p.id: -1e9 for p in cfg.intersection.phases}
        self.green_since: dict[str, float | None] = {p.id: None for p in cfg.intersection.phases}
        self.credit: dict[str, float] = {p.id: 0.0 for p in cfg.intersection.phases}
        self.bin_counts: dict[str, int] = {p.id: 0 for p in cfg.intersection.phases}
        self.startup = startup_lost_s
        self.delays: list[float] = []
        self.events: list = []  # every audit event, in order
        self.seqs: dict[tuple[str, str], int] = {}
        #: hook to corrupt or drop what the edge publishes: f(topic, payload bytes, t) -> bytes | None
        self.tamper = None

    def publish(self, topic: str, payload: bytes, t: float) -> None:
        if self.tamper is not None:
            payload = self.tamper(topic, payload, t)
            if payload is None:
                return
        self.ctrl.on_message(topic, payload, t)

    def _zone_msgs(self, t: float) -> dict[tuple[str, str], dict[str, ZoneState]]:
        out: dict[tuple[str, str], dict[str, ZoneState]] = {}
        for p in self.cfg.intersection.phases:
            q = self.queues[p.id]
            wait = t - q[0] if q else 0.0
            recent = t - self.last_arrival[p.id] < 1.0
            at_bar = t - max(q[0], self.last_departure[p.id]) if q else 0.0
            for ref in p.detectors.presence:
                out.setdefault((self.cfg.device_of(ref), ref.camera), {})[ref.zone] = ZoneState(
                    occupied=bool(q) or recent, count=len(q) + (1 if recent and not q else 0), max_dwell_s=at_bar)
            for ref in p.detectors.queue:
                out.setdefault((self.cfg.device_of(ref), ref.camera), {})[ref.zone] = ZoneState(
                    occupied=bool(q), count=len(q), max_dwell_s=wait)
        return out

    def run(self, duration_s: float, record: bool = False) -> QueueSimResult:
        cfg, dt = self.cfg, self.cfg.tick_s
        topics = cfg.topics
        cams = {(cfg.device_of(r), r.camera) for p in cfg.intersection.phases for r in p.detectors.refs()}
        for dev in {d for d, _ in cams}:
            self.publish(topics.device_status(dev), b"online", 0.0)
        t, changes, last_zones, next_bin, next_health = 0.0, 0, None, cfg.detection.counts_interval_s, 0.0
        timeline, calls = [], []
        for _ in range(int(duration_s / dt)):
            t = round(t + dt, 6)
            for p in cfg.intersection.phases:
                lam = self.demand.get(p.id, 0.0) / 3600.0 * dt
                if self.rng.random() < lam:
                    self.queues[p.id].append(t)
                    self.last_arrival[p.id] = t
            zones = self._zone_msgs(t)
            if zones != last_zones:
                for (dev, cam), z in zones.items():
                    self.publish(topics.camera(dev, cam, "presence"), PresenceMessage(
                        site=cfg.site, device=dev, camera=cam, ts=EPOCH + timedelta(seconds=t),
                        zones=z).model_dump_json().encode(), t)
                last_zones = zones
            if t >= next_health:
                next_health += 5.0
                for dev, cam in cams:
                    self.publish(topics.camera(dev, cam, "health"), HealthMessage(
                        site=cfg.site, device=dev, camera=cam, ts=EPOCH + timedelta(seconds=t),
                        state="ok").model_dump_json().encode(), t)
            if t >= next_bin:
                self._publish_counts(t, cams)
                next_bin += cfg.detection.counts_interval_s
            out = self.ctrl.tick(t)
            self.events.extend(out.events)
            changes += out.step.change is not None
            if record:
                timeline.append((t, out.step.signals))
                calls.append({p.id for p in cfg.intersection.phases
                              if self.queues[p.id] or t - self.last_arrival[p.id] < 1.0})
            for p in cfg.intersection.phases:
                if out.step.signals[p.id] != "green":
                    self.green_since[p.id] = None
                    self.credit[p.id] = 0.0
                    continue
                if self.green_since[p.id] is None:
                    self.green_since[p.id] = t
                if t - self.green_since[p.id] < self.startup:
                    continue
                sat = p.saturation_flow_vph * p.lanes / 3600.0 if p.kind == "vehicle" else 10.0
                self.credit[p.id] = min(self.credit[p.id] + sat * dt, 1.0 + sat * dt)
                q = self.queues[p.id]
                while q and self.credit[p.id] >= 1.0:
                    self.credit[p.id] -= 1.0
                    arrived = q.popleft()
                    self.last_departure[p.id] = t
                    self.bin_counts[p.id] += 1
                    if p.kind == "vehicle":
                        self.delays.append(t - arrived)
                if not q:
                    self.credit[p.id] = min(self.credit[p.id], 1.0)
        left = sum(len(q) for pid, q in self.queues.items() if self.ctrl.intersection.phases[pid].vehicle)
        mean = sum(self.delays) / len(self.delays) if self.delays else 0.0
        return QueueSimResult(mean, len(self.delays), left, changes, self.ctrl, timeline, calls)

    def _publish_counts(self, t: float, cams) -> None:
        cfg = self.cfg
        topics = cfg.topics
        per_cam: dict[tuple[str, str], dict[str, DirectionCounts]] = {c: {} for c in cams}
        for p in cfg.intersection.phases:
            for ref in p.detectors.counts:
                per_cam[(cfg.device_of(ref), ref.camera)][ref.line] = DirectionCounts(
                    forward={"car": self.bin_counts[p.id]})
            self.bin_counts[p.id] = 0
        for (dev, cam), lines in per_cam.items():
            seq = self.seqs.get((dev, cam), 0)
            self.seqs[(dev, cam)] = seq + 1
            msg = CountsMessage(seq=seq, site=cfg.site, device=dev, camera=cam,
                                interval_start=EPOCH + timedelta(seconds=t - cfg.detection.counts_interval_s),
                                interval_s=cfg.detection.counts_interval_s, lines=lines, config_hash="sim",
                                model="queue-sim")
            self.publish(topics.camera(dev, cam, "counts"), msg.model_dump_json().encode(), t)
