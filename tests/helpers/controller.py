"""Helpers of the controller tests: a four-phase intersection with a pedestrian crossing, the timeline
checker for it, fast real-time configurations, and over MQTT a stand-in edge box publishing the real
payloads and a listener recording what the controller publishes."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from roadside.controller.config import ControllerConfig, parse_controller_config
from roadside.controller.intersection import Intersection
from roadside.controller.sim.signal_check import SignalRules, SignalTimelineChecker
from roadside.core.broker import BrokerClient, Will
from roadside.core.mqtt import MqttConfig
from roadside.core.payloads import HealthMessage, PresenceMessage, ZoneState
from roadside.core.testing import Recorder
from roadside.core.topics import Topics

SITE = "testsite"

EXAMPLE = Path(__file__).resolve().parents[2] / "controller" / "examples" / "ctrl.yaml"


def intersection_dict() -> dict:
    det = lambda cam, name: {"presence": [{"camera": cam, "zone": f"{name}_stop"}],  # noqa: E731
                             "queue": [{"camera": cam, "zone": f"{name}_queue"}],
                             "counts": [{"camera": cam, "line": f"{name}_line"}]}
    return {
        "phases": [
            {"id": "ns", "min_green": 6, "max_green": 40, "yellow": 3, "red_clearance": 2, "lanes": 2,
             "detectors": det("cam1", "ns")},
            {"id": "nsl", "min_green": 4, "max_green": 15, "yellow": 3, "red_clearance": 1,
             "detectors": det("cam1", "nsl")},
            {"id": "ew", "min_green": 6, "max_green": 40, "lanes": 2,
             "clearance": {"approach_speed_kmh": 50, "width_m": 20}, "detectors": det("cam2", "ew")},
            {"id": "ped_ew", "kind": "pedestrian", "walk": 6, "crossing_length_m": 10,
             "detectors": {"presence": [{"camera": "cam1", "zone": "ped_ew"}]}},
        ],
        "compatible": [["ns", "ped_ew"], ["ns", "nsl"]],
        "stages": [{"id": "NS", "phases": ["ns", "ped_ew"]}, {"id": "NSL", "phases": ["ns", "nsl"]},
                   {"id": "EW", "phases": ["ew"]}],
    }


#: NEMA dual ring: ring 1 = 1 (EB left), 2 (WB through), 3 (NB left), 4 (SB through); ring 2 = 5 (WB left),
#: 6 (EB through), 7 (SB left), 8 (NB through); barriers between the east-west and north-south groups.
NEMA_RINGS = [["p1", "p2", "p3", "p4"], ["p5", "p6", "p7", "p8"]]
NEMA_BARRIERS = [["p1", "p2", "p5", "p6"], ["p3", "p4", "p7", "p8"]]


def dual_ring_dict() -> dict:
    """An 8-phase intersection with protected lefts, as NEMA numbers it, and a crossing beside phase 4."""
    det = lambda name: {"presence": [{"camera": "cam1", "zone": f"{name}_stop"}],  # noqa: E731
                        "queue": [{"camera": "cam1", "zone": f"{name}_queue"}],
                        "counts": [{"camera": "cam1", "line": f"{name}_line"}]}
    phases = []
    for i in range(1, 9):
        left = i in (1, 3, 5, 7)
        phases.append({"id": f"p{i}", "min_green": 4 if left else 8, "max_green": 15 if left else 40,
                       "yellow": 3 if left else 3.5, "red_clearance": 1 if left else 1.5, "lanes": 1 if left else 2,
                       "detectors": det(f"p{i}")})
    phases.append({"id": "ped4", "kind": "pedestrian", "walk": 6, "ped_clearance": 9,
                   "detectors": {"presence": [{"camera": "cam1", "zone": "ped4"}]}})
    # within a barrier group: each phase of ring 1 with each of ring 2; the crossing beside 4 (across the
    # west leg) runs with 4, 7 and 8, whose paths do not cross it
    compatible = [[a, b] for g in NEMA_BARRIERS for a in g if a in NEMA_RINGS[0] for b in g if b in NEMA_RINGS[1]]
    compatible += [["ped4", "p4"], ["ped4", "p7"], ["ped4", "p8"]]
    return {"phases": phases, "compatible": compatible,
            "dual_ring": {"rings": [list(r) for r in NEMA_RINGS], "barriers": [list(b) for b in NEMA_BARRIERS],
                          "walk_with": {"ped4": "p4"}}}


def make_config(**over) -> ControllerConfig:
    data = {"site": "testsite", "device": "edge1", "intersection": intersection_dict(), "tick_s": 0.5}
    data.update(over)
    return parse_controller_config(data)


def make_intersection(**over) -> Intersection:
    return Intersection.of(make_config(**over))


def checker_for(inter: Intersection, start: float = 0.0) -> SignalTimelineChecker:
    rules = {p.id: SignalRules(p.timing.min_green, p.timing.max_green, p.timing.yellow, p.timing.red_clearance)
             for p in inter.phases.values()}
    conflicts = {frozenset((a, b)) for a in inter.phases for b in inter.phases if a < b and inter.conflicts(a, b)}
    return SignalTimelineChecker(rules, conflicts, start=start)


def fast_config(mqtt: MqttConfig | int, site: str = SITE, **over) -> ControllerConfig:
    """Short timings so that a real-time test sees several cycles in seconds (``mqtt``: the broker's
    settings, or just the port of a local one)."""
    inter = intersection_dict()
    for p in inter["phases"]:
        if p["kind" if "kind" in p else "id"] == "pedestrian":
            p.update(walk=2, ped_clearance=2)
            p.pop("crossing_length_m")
        else:
            p.update(min_green=3)
    data = dict(site=site, mqtt={"host": "127.0.0.1", "port": mqtt} if isinstance(mqtt, int) else mqtt, tick_s=0.1, intersection=inter,
                failsafe={"stale_after_s": 1.5, "recover_after_s": 0.5, "malformed_hold_s": 1.5},
                timing={"policy": "actuated"})
    data.update(over)
    return make_config(**data)


def local(port: int) -> MqttConfig:
    return MqttConfig(port=port, reconnect_min_s=0.2, reconnect_max_s=1.0, keepalive_s=10)


class Listener(Recorder):
    """Records everything published under ``<prefix>/controller/`` (clean session)."""

    def __init__(self, mqtt: MqttConfig | int, site: str = SITE, prefix: str | None = None) -> None:
        topics = Topics.for_site(site, prefix)
        super().__init__(local(mqtt) if isinstance(mqtt, int) else mqtt, topics.device("controller"))
        self.wait_connected()

    def json(self, suffix: str) -> list[dict]:
        return self.payloads("/" + suffix)

    @property
    def msgs(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [(t, p, r) for _, t, p, r in self.messages]

    def events(self, kind: str | None = None) -> list[dict]:
        return [e for e in self.json("events") if kind is None or e["type"] == kind]

    def wait(self, pred, timeout: float = 30.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; events: {[e['type'] for e in self.events()][-20:]}")


class StandInEdge:
    """A stand-in edge box publishing the real payloads: health of both cameras every 0.3 s, presence on
    request; its retained status is ``online``, its Last Will ``offline``."""

    def __init__(self, mqtt: MqttConfig | int, site: str = SITE, device: str = "edge1", prefix: str | None = None) -> None:
        self.site, self.device = site, device
        self.topics = Topics.for_site(site, prefix)
        self.c = BrokerClient(local(mqtt) if isinstance(mqtt, int) else mqtt, f"stand-in-{device}",
                              will=Will(self.topics.device_status(device)), name="stand-in-edge")
        self.c.start()
        if not self.c.wait_connected(15):
            raise AssertionError(f"the stand-in edge could not connect: {self.c.status().last_error}")
        self.silent: set[str] = set()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._beat, daemon=True)
        self.t.start()

    def topic(self, cam: str, kind: str) -> str:
        return self.topics.camera(self.device, cam, kind)

    def _beat(self) -> None:
        while not self.stop.is_set():
            for cam in ("cam1", "cam2"):
                if cam not in self.silent:
                    msg = HealthMessage(site=self.site, device=self.device, camera=cam,
                                        ts=datetime.now(timezone.utc), state="ok")
                    self.c.publish(self.topic(cam, "health"), msg.model_dump_json(), qos=1)
            self.stop.wait(0.3)

    def presence(self, cam: str, zones: dict[str, tuple[bool, int]]) -> None:
        msg = PresenceMessage(site=self.site, device=self.device, camera=cam, ts=datetime.now(timezone.utc),
                              zones={z: ZoneState(occupied=o, count=n) for z, (o, n) in zones.items()})
        self.c.publish(self.topic(cam, "presence"), msg.model_dump_json(), qos=1)

    def publish(self, cam: str, kind: str, payload: bytes | str) -> None:
        self.c.publish(self.topic(cam, kind), payload, qos=1)

    def close(self) -> None:
        self.stop.set()
        self.t.join()
        self.c.stop(flush_timeout_s=1.0, final=False)


@contextmanager
def serving(cfg: ControllerConfig, port: int, edge: bool = True, **service):
    """A controller service running on its own thread against the broker on ``port``, with a listener and
    (``edge``) a stand-in edge; yields ``(service, edge or None, listener, thread)``."""
    from roadside.controller.service import ControllerService

    listener = Listener(port)
    svc = ControllerService(cfg, **service)
    svc.start()
    stop = threading.Event()
    th = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    th.start()
    box = StandInEdge(port) if edge else None
    try:
        yield svc, box, listener, th
    finally:
        stop.set()
        th.join(5)
        svc.stop()
        if box is not None:
            box.close()
        listener.close()


def sim_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``roadside sim ARGS`` in a child process, its output captured."""
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", "sim", *args], capture_output=True, text=True,
                          timeout=timeout)
