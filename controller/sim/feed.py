"""SUMO detectors -> the edge's MQTT payloads, so the controller under test reads exactly what a deployed
edge box would send.

Per incoming lane of a vehicle phase (camera = the approach edge, device ``sumo``):

* ``p_<lane>``: a lane-area detector over the last 25 m (stop-bar presence: calls and gaps);
* ``q_<lane>``: a lane-area detector over the last 100 m (queue zone: vehicles and their longest dwell);
* ``c_<lane>``: an induction loop at the start of the queue zone (arrival counts, 60 s bins).

Per crossing: zone ``waiting`` with the pedestrians standing at either end (camera = the crossing).
Presence is published on every change, counts every bin, health every 5 s.

Degradation (``degraded``): each vehicle is missed by every detector with probability 0.10; each vehicle
seen entering a presence zone causes, with probability 0.05, a phantom vehicle of 2 s in a random
presence zone of the same camera; every message is delivered 1 s late. Outage (``outage``): no message at
all from any camera for 5 minutes starting at 20 minutes (the edge stays ``online``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from roadside.controller.sim.tls import QUEUE_M, SIM_DEVICE, DerivedTLS, ident
from roadside.core.payloads import CountsMessage, DirectionCounts, HealthMessage, PresenceMessage, ZoneState
from roadside.core.topics import Topics

EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
PRESENCE_M = 25.0
HEALTH_EVERY_S = 5.0


@dataclass(frozen=True)
class SensorDegradation:
    """How much worse than perfect the simulated detectors are (``--detection perfect|degraded|outage``)."""

    miss: float = 0.0
    phantom: float = 0.0
    latency_s: float = 0.0
    outage: tuple[float, float] | None = None

    @staticmethod
    def named(name: str, duration_s: float) -> "SensorDegradation":
        if name == "perfect":
            return SensorDegradation()
        if name == "degraded":
            return SensorDegradation(0.10, 0.05, 1.0)
        if name == "outage":
            start = min(1200.0, max(0.0, duration_s / 3))
            return SensorDegradation(outage=(start, start + 300.0))
        raise ValueError(name)


def additional_xml(d: DerivedTLS, net) -> str:
    """E2 and E1 detectors for every incoming lane of a vehicle phase."""
    out = []
    lanes = sorted({ln for ls in d.phase_lanes.values() for ln in ls})
    for ln in lanes:
        length = net.getLane(ln).getLength()
        q = min(QUEUE_M, length - 1.0)
        p = min(PRESENCE_M, q)
        i = ident(ln)
        out.append(f'    <laneAreaDetector id="p_{i}" lane="{ln}" pos="{length - p:.2f}" endPos="{length - 0.1:.2f}" '
                   f'period="3600" file="NUL" friendlyPos="true"/>')
        out.append(f'    <laneAreaDetector id="q_{i}" lane="{ln}" pos="{length - q:.2f}" endPos="{length - 0.1:.2f}" '
                   f'period="3600" file="NUL" friendlyPos="true"/>')
        out.append(f'    <inductionLoop id="c_{i}" lane="{ln}" pos="{max(length - q, 0.5):.2f}" period="3600" '
                   f'file="NUL" friendlyPos="true"/>')
    return "\n".join(out) + "\n"


class DetectorFeed:
    def __init__(self, d: DerivedTLS, site: str, degradation: SensorDegradation, seed: int,
                 counts_interval_s: float = 60.0) -> None:
        self.d = d
        self.site = site
        self.det = degradation
        self.rng = random.Random(seed * 7919 + 17)
        self.seed = seed
        self.interval = counts_interval_s
        self.topics = Topics.for_site(site)
        # camera -> lanes
        self.cam_lanes: dict[str, list[str]] = {}
        for pid, lanes in d.phase_lanes.items():
            for ln in lanes:
                cam = ident(d.links[d.phase_links[pid][0]].from_edge)
                if ln not in self.cam_lanes.setdefault(cam, []):
                    self.cam_lanes[cam].append(ln)
        self.ped_cams = {ident(c): c for c in d.phase_crossing.values()}
        self.entered: dict[str, dict[str, float]] = {}  # zone -> vehicle -> first seen
        self.seen_p: dict[str, set[str]] = {}
        self.loop_prev: dict[str, set[str]] = {}
        self.bin_counts: dict[str, int] = {ident(ln): 0 for ls in self.cam_lanes.values() for ln in ls}
        self.phantoms: list[tuple[str, str, float]] = []  # (camera, zone, until)
        self.last_zones: dict[str, dict] = {}
        self.next_bin = counts_interval_s
        self.next_health = 0.0
        self.seq: dict[str, int] = {}
        self.delayed: list[tuple[float, str, bytes]] = []
        self.crossing_ends: dict[str, set[str]] = {}
        #: lanes with a vehicle the sensors can see in a zone, and crossings with somebody waiting, as of
        #: the last step (before latency): the true calls, for the safety monitor's max-green rule
        self.occupied_lanes: set[str] = set()
        self.waiting_at: set[str] = set()

    def true_calls(self) -> set[str]:
        """Phases with a vehicle or pedestrian the sensors can see now (no latency, no phantoms)."""
        out = {pid for pid, lanes in self.d.phase_lanes.items() if any(ln in self.occupied_lanes for ln in lanes)}
        return out | {pid for pid, c in self.d.phase_crossing.items() if c in self.waiting_at}

    def start_messages(self) -> list[tuple[str, bytes, bool]]:
        """(topic, payload, retain) to send before the first step."""
        return [(self.topics.device_status(SIM_DEVICE), b"online", True)]

    def _visible(self, vid: str) -> bool:
        if self.det.miss <= 0:
            return True
        return random.Random(f"{self.seed}:{vid}").random() >= self.det.miss

    def _ts(self, t: float) -> datetime:
        return EPOCH + timedelta(seconds=t)

    def step(self, t: float, traci) -> list[tuple[str, bytes]]:
        """Read the detectors after simulation step t; return the messages due now."""
        la, il = traci.lanearea, traci.inductionloop
        msgs: list[tuple[str, bytes]] = []
        self.phantoms = [p for p in self.phantoms if p[2] > t]
        self.occupied_lanes = set()
        for cam, lanes in self.cam_lanes.items():
            zones: dict[str, tuple[bool, int, float]] = {}  # models are built only for a message
            for ln in lanes:
                i = ident(ln)
                for kind in ("p", "q"):
                    zid = f"{kind}_{i}"
                    ids = [v for v in la.getLastStepVehicleIDs(zid) if self._visible(v)]
                    first = self.entered.setdefault(zid, {})
                    for v in list(first):
                        if v not in ids:
                            del first[v]
                    for v in ids:
                        first.setdefault(v, t)
                    if ids:
                        self.occupied_lanes.add(ln)
                    if kind == "p" and self.det.phantom > 0:
                        new = set(ids) - self.seen_p.get(zid, set())
                        self.seen_p[zid] = set(ids)
                        for _ in new:
                            if self.rng.random() < self.det.phantom:
                                target = f"p_{ident(self.rng.choice(lanes))}"
                                self.phantoms.append((cam, target, t + 2.0))
                    dwell = max((t - s for s in first.values()), default=0.0)
                    zones[zid] = (bool(ids), len(ids), round(dwell, 1))
                loop = f"c_{i}"
                now_ids = {v for v in il.getLastStepVehicleIDs(loop) if self._visible(v)}
                self.bin_counts[i] += len(now_ids - self.loop_prev.get(loop, set()))
                self.loop_prev[loop] = now_ids
            for pcam, zid, _ in self.phantoms:
                if pcam == cam and zid in zones:
                    occ, n, dw = zones[zid]
                    zones[zid] = (True, n + 1, dw)
            key = {k: (occ, n, int(dw // 5)) for k, (occ, n, dw) in zones.items()}
            if key != self.last_zones.get(cam):
                self.last_zones[cam] = key
                msgs.append((self.topics.camera(SIM_DEVICE, cam, "presence"), PresenceMessage(
                    site=self.site, device=SIM_DEVICE, camera=cam, ts=self._ts(t),
                    zones={k: ZoneState(occupied=occ, count=n, max_dwell_s=dw) for k, (occ, n, dw) in zones.items()}
                ).model_dump_json().encode()))
        waiting = self._waiting_pedestrians(traci) if self.ped_cams else {}
        self.waiting_at = {c for c, n in waiting.items() if n > 0}
        for cam, crossing in self.ped_cams.items():
            n = waiting.get(crossing, 0)
            key = {"waiting": (n > 0, n)}
            if key != self.last_zones.get(cam):
                self.last_zones[cam] = key
                msgs.append((self.topics.camera(SIM_DEVICE, cam, "presence"), PresenceMessage(
                    site=self.site, device=SIM_DEVICE, camera=cam, ts=self._ts(t),
                    zones={"waiting": ZoneState(occupied=n > 0, count=n)}).model_dump_json().encode()))
        if t >= self.next_bin:
            self.next_bin += self.interval
            for cam, lanes in self.cam_lanes.items():
                lines = {}
                for ln in lanes:
                    i = ident(ln)
                    extra = sum(self.rng.random() < self.det.phantom for _ in range(self.bin_counts[i])) \
                        if self.det.phantom > 0 else 0
                    lines[f"c_{i}"] = DirectionCounts(forward={"car": self.bin_counts[i] + extra})
                    self.bin_counts[i] = 0
                seq = self.seq.get(cam, 0)
                self.seq[cam] = seq + 1
                msgs.append((self.topics.camera(SIM_DEVICE, cam, "counts"), CountsMessage(
                    seq=seq, site=self.site, device=SIM_DEVICE, camera=cam, interval_start=self._ts(t - self.interval),
                    interval_s=self.interval, lines=lines, config_hash="sumo", model="sumo-detectors"
                ).model_dump_json().encode()))
        if t >= self.next_health:
            self.next_health += HEALTH_EVERY_S
            for cam in list(self.cam_lanes) + list(self.ped_cams):
                msgs.append((self.topics.camera(SIM_DEVICE, cam, "health"), HealthMessage(
                    site=self.site, device=SIM_DEVICE, camera=cam, ts=self._ts(t), state="ok",
                    fps_in=10.0, fps_processed=10.0).model_dump_json().encode()))
        if self.det.outage and self.det.outage[0] <= t < self.det.outage[1]:
            msgs = []
        if self.det.latency_s > 0:
            self.delayed.extend((t + self.det.latency_s, tp, pl) for tp, pl in msgs)
            due = [(tp, pl) for at, tp, pl in self.delayed if at <= t + 1e-9]
            self.delayed = [x for x in self.delayed if x[0] > t + 1e-9]
            return due
        return msgs

    @staticmethod
    def _waiting_pedestrians(traci) -> dict[str, int]:
        """crossing edge -> pedestrians standing still whose next edge is that crossing."""
        out: dict[str, int] = {}
        for pid in traci.person.getIDList():
            if traci.person.getSpeed(pid) < 0.2:
                nxt = traci.person.getNextEdge(pid)
                out[nxt] = out.get(nxt, 0) + 1
        return out
