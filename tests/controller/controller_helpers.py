"""Shared helpers of the controller tests (a module with a unique name, so that no other test folder's
conftest can shadow it): a four-phase intersection with a pedestrian crossing, the timeline checker for it,
and a private Mosquitto."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from roadside.controller.config import ControllerConfig, parse_controller_config
from roadside.controller.intersection import Intersection
from roadside.controller.signal_check import SignalRules, SignalTimelineChecker

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A private mosquitto on a free port, for tests that stop and restart the broker."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["/usr/sbin/mosquitto", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None
