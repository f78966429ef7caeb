"""The controller as an MQTT service: subscribes to the edge topics of its site, runs the controller core
every tick and publishes ``plan``, ``state``, ``events`` (and ``command`` through the MQTT actuator)
under ``<prefix>/controller/`` (see roadside.core.topics).

The broker connection is the product's one MQTT client (:class:`~roadside.core.broker.BrokerClient`,
configured by ``mqtt``: TLS, username/password, the site prefix, reconnect backoff; Last Will ``offline``
on ``<prefix>/controller/status``). Messages are received on its network thread and queued; everything
else runs on one thread, in order, so the core needs no locks. When the broker goes away the client
reconnects by itself and subscribes again; meanwhile the edge data turns stale and the affected phases go
to fail-safe, exactly as when a camera dies.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

from roadside.controller.config import ControllerConfig
from roadside.controller.core import Controller, TickOutput
from roadside.core.broker import BrokerClient, BrokerError, Received, Will

log = logging.getLogger(__name__)

STATE_EVERY_S = 5.0
COMMAND_HEARTBEAT_S = 1.0
__all__ = ["Actuator", "BrokerError", "ControllerService", "MqttCommandActuator", "NullActuator", "describe", "dump"]


class Actuator(Protocol):
    """Where the phase decisions go: a cabinet adapter over MQTT, SUMO, ..."""

    def apply(self, ctrl: Controller, out: TickOutput, now: float) -> None: ...


class NullActuator:
    def apply(self, ctrl: Controller, out: TickOutput, now: float) -> None:
        pass


class MqttCommandActuator:
    """Publishes :class:`SignalCommand` to ``<prefix>/controller/command`` on every signal change and
    every second as a heartbeat (a cabinet adapter falls back to its own plan when it stops)."""

    def __init__(self, client: BrokerClient, topic: str, qos: int = 1) -> None:
        self.client = client
        self.topic = topic
        self.qos = qos
        self.last = -float("inf")

    def apply(self, ctrl: Controller, out: TickOutput, now: float) -> None:
        if out.step.signals_changed or now - self.last >= COMMAND_HEARTBEAT_S:
            self.last = now
            self.client.publish(self.topic, ctrl.command().model_dump_json(), qos=self.qos)


class ControllerService:
    def __init__(self, cfg: ControllerConfig, policy=None,
                 clock: Callable[[], float] = time.monotonic, actuator: Actuator | None = None,
                 audit_log: str | None = None, wall=None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.topics = cfg.topics
        self.ctrl = Controller(cfg, clock(), policy, wall=wall)
        self.inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self.received = 0
        #: messages received per device (topic level after the site), e.g. for a simulation's sync barrier
        self.received_from: dict[str, int] = {}
        self.connected = threading.Event()
        cid = cfg.mqtt.client_id or f"roadside-controller-{cfg.site}"
        self.client = BrokerClient(cfg.mqtt, cid, will=Will(self.topics.controller("status")), clean_session=True,
                                   on_message=self._on_message, on_connect=lambda _: self.connected.set(),
                                   on_disconnect=self.connected.clear, name="controller")
        self.client.subscribe(self.topics.edge_subscriptions() + [self.topics.controller("mode")])
        if actuator is None:
            actuator = MqttCommandActuator(self.client, self.topics.controller("command"), cfg.mqtt.qos) if cfg.actuator.kind == "mqtt" \
                else NullActuator()
        self.actuator = actuator
        path = audit_log if audit_log is not None else cfg.audit_log
        self.audit_file = open(Path(path), "a", encoding="utf-8") if path else None
        self._last_state = -float("inf")
        self._last_state_key: tuple | None = None
        self.last_tick_mono: float | None = None

    # -- MQTT (the client's network thread) -------------------------------------------------------
    def _on_message(self, msg: Received) -> None:
        self.inbox.put((msg.topic, msg.payload, self.clock()))
        self.received += 1
        where = self.topics.parse(msg.topic)
        if where is not None:
            self.received_from[where.device] = self.received_from.get(where.device, 0) + 1

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and subscribe; BrokerError when the broker refuses us or does not answer in time."""
        m = self.cfg.mqtt
        self.client.start()
        if not self.client.wait_connected(timeout_s, stop_on_refusal=True):
            st = self.client.status()
            why = st.last_error or "no answer"
            self.client.stop(0, final=False)
            if st.state == "refused":
                raise BrokerError(f"mqtt: {why} (check mqtt.username, mqtt.password and mqtt.client_id)")
            raise BrokerError(f"no connection to the MQTT broker at {m.host}:{m.port} within {timeout_s:g}s: {why} "
                              "(is it running? check mqtt.host, mqtt.port and mqtt.tls)")
        log.info("connected to %s:%s; topics under %s/", m.host, m.port, self.topics.prefix)

    def stop(self) -> None:
        """Publish the shutdown event and ``offline`` (retained), wait for them and disconnect."""
        self.ctrl.emit("shutdown", {"reason": "service stopped"})
        self._publish_events(self.ctrl.pending)
        self.ctrl.pending = []
        self.client.stop(flush_timeout_s=2.0)
        if self.audit_file:
            self.audit_file.close()
            self.audit_file = None

    def run(self, stop: threading.Event | None = None, duration_s: float | None = None) -> None:
        """Tick every ``tick_s`` until ``stop`` is set or ``duration_s`` has passed."""
        stop = stop or threading.Event()
        t0 = self.clock()
        next_tick = t0
        while not stop.is_set():
            now = self.clock()
            if duration_s is not None and now - t0 >= duration_s:
                break
            self.process(now)
            next_tick += self.cfg.tick_s
            delay = next_tick - self.clock()
            if delay < 0:  # fell behind (a stalled machine): do not try to catch up in a burst
                next_tick = self.clock()
                delay = 0
            stop.wait(delay)

    # -- one tick -------------------------------------------------------------------------------
    def drain(self) -> int:
        n = 0
        while True:
            try:
                topic, payload, at = self.inbox.get_nowait()
            except queue.Empty:
                return n
            self.ctrl.on_message(topic, payload, at)
            n += 1

    def liveness(self, stuck_after_s: float = 10.0) -> tuple[bool, str]:
        """Alive while the tick loop turns and the MQTT network thread runs (for systemd's watchdog)."""
        idle = time.monotonic() - self.last_tick_mono if self.last_tick_mono is not None else 0.0
        if idle > stuck_after_s:
            return False, f"no controller tick for {idle:.0f} s"
        if not self.client.running:
            return False, "the MQTT network thread stopped"
        return True, f"mode {self.ctrl.mode}, stage {self.ctrl.engine.current}, broker {self.client.status().state}"

    def process(self, now: float | None = None) -> TickOutput:
        self.last_tick_mono = time.monotonic()
        self.drain()
        now = self.clock() if now is None else now
        out = self.ctrl.tick(now)
        self.actuator.apply(self.ctrl, out, now)
        q = self.cfg.mqtt.qos
        if out.plan_changed:
            self.client.publish(self.topics.controller("plan"), self.ctrl.plan_message().model_dump_json(),
                                qos=q, retain=True)
        key = (self.ctrl.mode, self.ctrl.engine.current, self.ctrl.engine.target, tuple(out.step.signals.values()))
        if key != self._last_state_key or now - self._last_state >= STATE_EVERY_S:
            self._last_state_key, self._last_state = key, now
            self.client.publish(self.topics.controller("state"), self.ctrl.state_message().model_dump_json(),
                                qos=q, retain=True)
        self._publish_events(out.events)
        return out

    def _publish_events(self, events) -> None:
        for ev in events:
            text = ev.model_dump_json()
            self.client.publish(self.topics.controller("events"), text, qos=self.cfg.mqtt.qos)
            if self.audit_file:
                self.audit_file.write(text + "\n")
        if events and self.audit_file:
            self.audit_file.flush()


def describe(cfg: ControllerConfig) -> dict:
    """The derived timings of a configuration (for ``roadside controller check``)."""
    from roadside.controller.intersection import Intersection

    inter = Intersection.of(cfg)
    return {
        "site": cfg.site,
        "policy": cfg.timing.policy,
        "phases": {p.id: {"kind": p.kind, **{k: round(v, 2) for k, v in vars(p.timing).items()}}
                   for p in inter.phases.values()},
        "stages": {s.id: {"phases": s.phases, "min_green_s": inter.stages[s.id].min_green,
                          "fixed_green_s": inter.stages[s.id].fixed_green} for s in cfg.intersection.stages},
        "conflicts": sorted([a, b] for a in inter.phases for b in inter.phases[a].conflicts if a < b),
    }


def dump(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
