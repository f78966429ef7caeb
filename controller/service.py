"""The controller as an MQTT service: subscribes to the edge topics of its site, runs the controller core
every tick and publishes ``plan``, ``state``, ``events`` (and ``command`` through the MQTT actuator)
under ``<prefix>/controller/`` (see roadside.core.topics).

Messages are received on paho's network thread and queued; everything else runs on one thread, in
order, so the core needs no locks. When the broker goes away paho reconnects by itself; meanwhile the
edge data turns stale and the affected phases go to fail-safe, exactly as when a camera dies.
"""
from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

from roadside.controller.config import ControllerConfig
from roadside.controller.core import Controller, TickOutput
from roadside.core.errors import RoadsideError

log = logging.getLogger(__name__)

STATE_EVERY_S = 5.0
COMMAND_HEARTBEAT_S = 1.0


def no_delay(client) -> None:
    """Send small control messages at once (no Nagle batching: a signal command must not wait 40 ms)."""
    sock = client.socket()
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class BrokerError(RoadsideError):
    """The MQTT broker cannot be reached."""


class Actuator(Protocol):
    """Where the phase decisions go: a cabinet adapter over MQTT, SUMO, ..."""

    def apply(self, ctrl: Controller, out: TickOutput, now: float) -> None: ...


class NullActuator:
    def apply(self, ctrl: Controller, out: TickOutput, now: float) -> None:
        pass


class MqttCommandActuator:
    """Publishes :class:`SignalCommand` to ``<prefix>/controller/command`` on every signal change and
    every second as a heartbeat (a cabinet adapter falls back to its own plan when it stops)."""

    def __init__(self, client, topic: str, qos: int = 1) -> None:
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
        import paho.mqtt.client as mqtt

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
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True)
        self.client.will_set(self.topics.controller("status"), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        if actuator is None:
            actuator = MqttCommandActuator(self.client, self.topics.controller("command"), cfg.mqtt.qos) if cfg.actuator.kind == "mqtt" \
                else NullActuator()
        self.actuator = actuator
        path = audit_log if audit_log is not None else cfg.audit_log
        self.audit_file = open(Path(path), "a", encoding="utf-8") if path else None
        self._last_state = -float("inf")
        self._last_state_key: tuple | None = None
        self._stopping = False

    # -- MQTT callbacks (network thread) ---------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        no_delay(client)
        q = self.cfg.mqtt.qos
        client.subscribe([(t, q) for t in self.topics.edge_subscriptions()] + [(self.topics.controller("mode"), q)])
        client.publish(self.topics.controller("status"), "online", qos=1, retain=True)
        self.connected.set()
        log.info("connected to %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.connected.clear()
        if not self._stopping:
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        self.inbox.put((msg.topic, bytes(msg.payload), self.clock()))
        self.received += 1
        where = self.topics.parse(msg.topic)
        if where is not None:
            self.received_from[where.device] = self.received_from.get(where.device, 0) + 1

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> None:
        m = self.cfg.mqtt
        try:
            self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s)
        except (OSError, ValueError) as e:
            raise BrokerError(f"cannot connect to the MQTT broker at {m.host}:{m.port}: {e}") from None
        self.client.loop_start()
        if not self.connected.wait(timeout_s):
            self.client.loop_stop()
            raise BrokerError(f"no connection to the MQTT broker at {m.host}:{m.port} within {timeout_s:g}s "
                              "(is it running? check mqtt.host and mqtt.port)")

    def stop(self) -> None:
        self._stopping = True
        self.ctrl.emit("shutdown", {"reason": "service stopped"})
        self._publish_events(self.ctrl.pending)
        self.ctrl.pending = []
        info = self.client.publish(self.topics.controller("status"), "offline", qos=1, retain=True)
        try:
            info.wait_for_publish(2.0)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()
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

    def process(self, now: float | None = None) -> TickOutput:
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
