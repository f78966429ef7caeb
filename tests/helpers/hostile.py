"""Helpers of the hostile-input suite: raw payloads as an attacker or a broken device would send them (JSON
text, not built through the payload models, so that anything can be put in), and a run of the I/O-free
controller on its own clock."""
from __future__ import annotations

import json
from typing import Any

from helpers.controller import SITE
from roadside.controller.core import Controller
from roadside.core.payloads import AuditEvent


def counts(seq: int, lines: dict | None = None, camera: str = "cam1", device: str = "edge1", **over) -> dict:
    msg = {"seq": seq, "site": SITE, "device": device, "camera": camera, "interval_start": "2026-12-01T10:00:00Z",
           "interval_s": 60, "lines": lines if lines is not None else {"ns_line": {"forward": {"car": 3}}},
           "config_hash": "x", "model": "m"}
    msg.update(over)
    return msg


def presence(zones: dict | None = None, camera: str = "cam1", device: str = "edge1", **over) -> dict:
    msg = {"site": SITE, "device": device, "camera": camera, "ts": "2026-12-01T10:00:00Z",
           "zones": zones if zones is not None else {"ns_stop": {"occupied": True, "count": 1, "max_dwell_s": 2.0}}}
    msg.update(over)
    return msg


def health(state: str = "ok", camera: str = "cam1", device: str = "edge1", **over) -> dict:
    msg = {"site": SITE, "device": device, "camera": camera, "ts": "2026-12-01T10:00:00Z", "state": state}
    msg.update(over)
    return msg


def raw(obj: Any) -> bytes:
    """JSON as an attacker writes it: ``Infinity``/``NaN`` allowed, 1e309 left as text."""
    return json.dumps(obj).encode()


def topic(kind: str, camera: str = "cam1", device: str = "edge1", site: str = SITE) -> str:
    return f"roadside/{site}/{device}/{camera}/{kind}"


class CoreRun:
    """A controller core on its own clock, fed healthy data for both cameras, collecting every event."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.ctrl = Controller(cfg, 0.0)
        self.t = 0.0
        self.events: list[AuditEvent] = []

    def healthy(self) -> None:
        for cam in ("cam1", "cam2"):
            self.ctrl.on_message(topic("health", cam), raw(health(camera=cam)), self.t)

    def send(self, tp: str, payload: bytes) -> None:
        self.ctrl.on_message(tp, payload, self.t)

    def run(self, seconds: float, healthy: bool = True) -> None:
        for _ in range(round(seconds / self.cfg.tick_s)):
            self.t += self.cfg.tick_s
            if healthy:
                self.healthy()
            self.events.extend(self.ctrl.tick(self.t).events)

    def of(self, kind: str) -> list[dict]:
        return [e.detail for e in self.events if e.type == kind]
