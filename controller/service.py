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
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Protocol

from roadside.controller.config import ControllerConfig
from roadside.controller.core import Controller, TickOutput
from roadside.core.broker import BrokerClient, BrokerError, Received, Will
from roadside.core.payloads import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)

STATE_EVERY_S = 5.0
COMMAND_HEARTBEAT_S = 1.0
#: the input queue between the network thread and the decision loop holds at most this many messages per
#: topic and this many bytes in all; beyond, new messages are dropped and counted (an ``overload`` event
#: says how many)
INBOX_PER_TOPIC = 500
INBOX_MAX_BYTES = 16 * 1024 * 1024
#: share of a tick that reading input may take; the rest of the queue waits for the next tick, so the
#: decision tick never waits on input whatever the input rate
INPUT_BUDGET = 0.3
#: the envelope's horizon follows the longest gap between ticks over this window (s), up to MAX_HORIZON_S
HORIZON_WINDOW_S = 60.0
MAX_HORIZON_S = 2.0
#: an ``overload`` event at most this often while messages are being dropped
OVERLOAD_EVERY_S = 5.0
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


class Inbox:
    """The received messages, between the network thread and the decision loop: one FIFO per topic, read
    round-robin, so a flood on one topic neither delays nor pushes out another camera's data. Bounded per
    topic (messages) and in all (bytes): ``put`` never blocks the network thread; a message that does not
    fit is dropped and counted. A payload over :data:`MAX_PAYLOAD_BYTES` is kept only as its size (the
    controller reports it malformed, unread). Only topics the controller reads get a queue (the caller
    filters the rest out), so the number of queues is bounded by the configuration."""

    def __init__(self, per_topic: int = INBOX_PER_TOPIC, max_bytes: int = INBOX_MAX_BYTES) -> None:
        self.per_topic, self.max_bytes = per_topic, max_bytes
        self._queues: dict[str, deque[tuple[bytes | None, float, int]]] = {}
        self._ready: deque[str] = deque()  # topics with messages, in round-robin order
        self._bytes = 0
        self._n = 0
        self._lock = threading.Lock()
        self.dropped = 0

    def put(self, topic: str, payload: bytes, at: float) -> bool:
        size = len(payload)
        kept = payload if size <= MAX_PAYLOAD_BYTES else None
        cost = size if kept is not None else 0
        with self._lock:
            q = self._queues.get(topic)
            if q is None:
                q = self._queues[topic] = deque()
            if len(q) >= self.per_topic or self._bytes + cost > self.max_bytes:
                self.dropped += 1
                return False
            if not q:
                self._ready.append(topic)
            q.append((kept, at, size))
            self._bytes += cost
            self._n += 1
            return True

    def get(self) -> tuple[str, bytes | None, float, int] | None:
        with self._lock:
            if not self._ready:
                return None
            topic = self._ready.popleft()
            q = self._queues[topic]
            kept, at, size = q.popleft()
            if q:
                self._ready.append(topic)
            self._bytes -= size if kept is not None else 0
            self._n -= 1
            return topic, kept, at, size

    def __len__(self) -> int:
        return self._n


class ControllerService:
    def __init__(self, cfg: ControllerConfig, policy=None,
                 clock: Callable[[], float] = time.monotonic, actuator: Actuator | None = None,
                 audit_log: str | None = None, wall=None, input_budget_s: float | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.topics = cfg.topics
        self.ctrl = Controller(cfg, clock(), policy, wall=wall)
        self.inbox = Inbox()
        self.received = 0
        #: messages received per configured device (e.g. for a simulation's sync barrier); other devices'
        #: messages count in ``received`` only
        self.received_from: dict[str, int] = {}
        self._dropped_reported = 0
        self._last_tick_at: float | None = None
        self._gaps: deque[tuple[float, float]] = deque()
        self._unknown_lock = threading.Lock()
        self._unknown_count = 0
        self._unknown_ids: list[str] = []
        self._dropped_reported_at = -float("inf")
        #: wall-clock time a tick may spend reading input (default: INPUT_BUDGET of a tick; a simulation, whose
        #: clock is not the wall clock, reads everything: math.inf)
        self.input_budget_s = cfg.tick_s * INPUT_BUDGET if input_budget_s is None else input_budget_s
        #: ticks whose input reading hit its time budget (the rest of the queue waited for the next tick)
        self.budget_hits = 0
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
        self.received += 1
        where = self.topics.parse(msg.topic)
        if where is not None and where.device in self.ctrl.inputs.known_devices:
            self.received_from[where.device] = self.received_from.get(where.device, 0) + 1
        unknown = self.ctrl.unknown_source(msg.topic, where)
        if unknown is not None:  # an id no phase reads: never queued (counted and reported on the tick)
            with self._unknown_lock:
                self._unknown_count += 1
                if len(self._unknown_ids) < 64 and unknown not in self._unknown_ids:
                    self._unknown_ids.append(unknown)
            return
        self.inbox.put(msg.topic, msg.payload, self.clock())

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
            self.process()  # the tick's time is taken after the input is read: what the signals really show
            next_tick += self.cfg.tick_s
            delay = next_tick - self.clock()
            if delay < 0:  # fell behind (a stalled machine): do not try to catch up in a burst
                next_tick = self.clock()
                delay = 0
            stop.wait(delay)

    # -- one tick -------------------------------------------------------------------------------
    def drain(self, budget_s: float | None = None) -> int:
        """Hand queued messages to the controller, oldest first, for at most ``budget_s`` (default: the
        input share of a tick); the rest waits for the next tick."""
        budget = self.input_budget_s if budget_s is None else budget_s
        deadline = time.perf_counter() + budget
        n = 0
        while True:
            item = self.inbox.get()
            if item is None:
                return n
            topic, payload, at, size = item
            if payload is None:
                self.ctrl.on_oversized(topic, size, at)
            else:
                self.ctrl.on_message(topic, payload, at)
            n += 1
            if time.perf_counter() >= deadline:
                if len(self.inbox):
                    self.budget_hits += 1
                return n

    def liveness(self, stuck_after_s: float = 10.0) -> tuple[bool, str]:
        """Alive while the tick loop turns and the MQTT network thread runs (for systemd's watchdog)."""
        idle = time.monotonic() - self.last_tick_mono if self.last_tick_mono is not None else 0.0
        if idle > stuck_after_s:
            return False, f"no controller tick for {idle:.0f} s"
        if not self.client.running:
            return False, "the MQTT network thread stopped"
        return True, f"mode {self.ctrl.mode}, stage {self.ctrl.engine.current}, broker {self.client.status().state}"

    def process(self, now: float | None = None) -> TickOutput:
        """Read the input (within its budget), then tick at ``now`` (default: the clock after reading)."""
        self.last_tick_mono = time.monotonic()
        with self._unknown_lock:
            n, ids, self._unknown_count, self._unknown_ids = self._unknown_count, self._unknown_ids, 0, []
        for what in ids:
            self.ctrl.inputs.unknown(what)
        self.ctrl.inputs.ignored += n - len(ids)
        self.drain()
        dropped = self.inbox.dropped
        if dropped > self._dropped_reported and self.clock() - self._dropped_reported_at >= OVERLOAD_EVERY_S:
            self._dropped_reported_at = self.clock()
            self.ctrl.emit("overload", {"dropped": dropped - self._dropped_reported, "dropped_total": dropped,
                                        "message": f"input queue full: {dropped - self._dropped_reported} messages "
                                                   f"dropped ({dropped} in all); is something flooding the site's topics?"})
            self._dropped_reported = dropped
        now = self.clock() if now is None else now
        self._follow_tick_gaps(now)
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

    def _follow_tick_gaps(self, now: float) -> None:
        """Widen the envelope's horizon to the longest recent gap between ticks: when the machine stalls
        (CPU starvation, swapping), greens then end before their max instead of after it."""
        if self._last_tick_at is not None and now > self._last_tick_at:
            self._gaps.append((now, now - self._last_tick_at))
            while self._gaps and self._gaps[0][0] < now - HORIZON_WINDOW_S:
                self._gaps.popleft()
            env = self.ctrl.engine.envelope
            env.horizon_s = min(MAX_HORIZON_S, max(env.tick_s, max(g for _, g in self._gaps)))
        self._last_tick_at = now

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
                          "fixed_green_s": inter.stages[s.id].fixed_green} for s in cfg.intersection.stage_list},
        "conflicts": sorted([a, b] for a in inter.phases for b in inter.phases[a].conflicts if a < b),
        **({"dual_ring": {"rings": [list(inter.rings.ring_sequence(r)) for r in (0, 1)],
                          "barrier_groups": [[list(ring) for ring in g] for g in inter.rings.groups],
                          "walk_with": inter.rings.walk_with}} if inter.rings is not None else {}),
    }


def dump(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
