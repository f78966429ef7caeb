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


def flood(port: int, seconds: float, site: str = SITE) -> None:
    """Publish as fast as one process can for ``seconds`` (QoS 0, a plain paho client, as an attacker
    would): valid bins with fresh seqs, bins of junk cameras and junk lines, malformed presence, junk
    device statuses, oversized payloads and bytes on topics outside the contract. Prints how many it sent."""
    import time

    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood")
    c.max_queued_messages_set(10000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    big = b"[" + b"1," * 400_000 + b"1]"
    junk_lines = {f"junk{k}": {"forward": {"car": 1}} for k in range(20)}
    end, i, sent = time.monotonic() + seconds, 0, 0
    while time.monotonic() < end:
        i += 1
        batch = [
            (topic("counts", site=site), raw(counts(i))),
            (topic("counts", camera=f"j{i}", site=site), raw(counts(i, camera=f"j{i}"))),
            (topic("counts", site=site), raw(counts(10**9 + i, junk_lines))),
            (topic("presence", site=site), b'{"zones": {"ns_stop": {"occupied": "yes"}}, "x": ' + str(i).encode() + b"}"),
            (f"roadside/{site}/dev{i}/status", b"online"),
            (f"roadside/{site}/edge1/cam1/x{i}/counts", b"\xff\xfe"),
        ]
        if i % 200 == 0:
            batch.append((topic("presence", site=site), big))
        for tp, p in batch:
            if c.publish(tp, p, qos=0).rc == mqtt.MQTT_ERR_SUCCESS:
                sent += 1
        if i % 50 == 0:
            time.sleep(0.001)  # let paho's thread write
    c.loop_stop()
    c.disconnect()
    print(sent, flush=True)
