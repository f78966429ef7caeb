"""The one MQTT connection of the edge service (paho-mqtt): status, counts from the outbox, presence, health.

One thread owns the paho client and drives its network loop (``loop_read``/``loop_write``/``loop_misc``
around a ``select``), so nothing else ever touches the socket; other threads hand messages over through
:meth:`MqttLink.publish_now` and wake it with a pipe. The thread connects, and reconnects with
exponential backoff and random jitter, forever.

Topics under the prefix (default ``roadside/<site>/<device>``):

* ``status``: retained ``online`` on every connection, ``offline`` as the Last Will and on a clean shutdown;
* ``<camera>/counts``: from the :class:`~roadside.edge.outbox.Outbox`, QoS 1, strictly in the order they
  were produced; a message leaves the outbox only when the broker has acknowledged it (PUBACK). Messages
  produced before the current connection was established (during an outage, or before a restart) are
  sent with ``"late": true``;
* ``<camera>/presence`` and ``<camera>/health``: QoS 1, sent only while connected (a stale presence is of
  no use to a signal controller), otherwise dropped and counted.

Delivery order: on each connection the outbox is replayed from its oldest message. paho also re-sends
the messages that were in flight when the connection dropped; those are the oldest pending ones, so a
subscriber that keeps the first copy of each ``seq`` sees every camera's messages in ``seq`` order.
"""
from __future__ import annotations

import json
import logging
import os
import random
import select
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from roadside.core.errors import RoadsideError
from roadside.edge.outbox import Outbox, OutboxError
from roadside.edge.service_config import MqttConfig

log = logging.getLogger("roadside.edge.mqtt")

#: a CONNECT without CONNACK for this long counts as a failed attempt
_CONNACK_TIMEOUT_S = 10.0
#: presence/health messages waiting for the link thread, at most (the oldest are dropped beyond)
_MAX_WAITING = 1000


class MqttSetupError(RoadsideError):
    """The MQTT client cannot be set up from the configuration (e.g. unreadable TLS files)."""


def mark_late(payload: bytes) -> bytes:
    data = json.loads(payload)
    data["late"] = True
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass
class LinkStatus:
    #: connecting | connected | disconnected | refused | unreachable | stopped
    state: str
    connected: bool
    broker: str
    last_error: str | None = None
    connected_since: float | None = None  # epoch
    connects: int = 0
    counts_published: int = 0  # publish calls, including re-sends
    counts_acked: int = 0
    late_published: int = 0
    realtime_dropped: int = 0  # presence/health not sent because the broker was not connected
    last_ack: float | None = None  # epoch of the last acknowledgement of any message
    last_counts_ack: dict[str, float] = field(default_factory=dict)  # camera -> epoch


class MqttLink:
    def __init__(self, config: MqttConfig, client_id: str, prefix: str, outbox: Outbox, seed: int | None = None):
        self.config = config
        self.client_id = client_id
        self.prefix = prefix.rstrip("/")
        self.outbox = outbox
        self._rng = random.Random(seed)
        self._status = LinkStatus("connecting", False, f"{config.host}:{config.port}")
        self._stop = threading.Event()
        self._flush_deadline: float | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._waiting: deque[tuple[str, bytes, int, bool]] = deque()
        self._waiting_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # link-thread state
        self._client = None
        self._inflight: dict[int, tuple[int, str]] = {}  # paho mid -> (outbox row id, camera) of counts
        self._inflight_rows: set[int] = set()  # row ids published on this connection and not yet acked
        self._replay_after = 0  # last outbox row id published on this connection
        self._acked: list[int] = []
        self._other_mids: set[int] = set()
        self._offline_mid: int | None = None
        self._offline_acked = threading.Event()
        self._disconnect_reason: str | None = None

    # -- public ------------------------------------------------------------------------------------
    def topic(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def start(self) -> "MqttLink":
        self._client = self._make_client()  # configuration problems surface here, to the caller
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()
        return self

    def notify(self) -> None:
        """New messages are in the outbox (or waiting): wake the link thread."""
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the thread is awake anyway

    def publish_now(self, suffix: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Send a real-time message (presence, health) if connected; False when it was dropped."""
        if not self._status.connected:
            self._status.realtime_dropped += 1
            return False
        with self._waiting_lock:
            if len(self._waiting) >= _MAX_WAITING:
                self._waiting.popleft()
                self._status.realtime_dropped += 1
            self._waiting.append((self.topic(suffix), payload, qos, retain))
        self.notify()
        return True

    def status(self) -> LinkStatus:
        s = self._status
        return LinkStatus(**{**s.__dict__, "last_counts_ack": dict(s.last_counts_ack)})

    @property
    def connected(self) -> bool:
        return self._status.connected

    def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Deliver what is pending (up to ``flush_timeout_s``), publish ``offline`` and disconnect cleanly."""
        self._flush_deadline = time.monotonic() + flush_timeout_s
        self._stop.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(flush_timeout_s + 10)
            if self._thread.is_alive():
                log.error("the MQTT link thread did not stop")
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the link thread ---------------------------------------------------------------------------
    def _make_client(self):
        import paho.mqtt.client as mqtt

        c = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False,
                             protocol=mqtt.MQTTv311)
        client.will_set(self.topic("status"), "offline", qos=1, retain=True)
        if c.username is not None:
            client.username_pw_set(c.username, c.password.get_secret_value() if c.password else None)
        if c.tls is not None:
            try:
                client.tls_set(ca_certs=c.tls.ca_file, certfile=c.tls.cert_file, keyfile=c.tls.key_file,
                               cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as e:
                raise MqttSetupError(f"mqtt.tls: cannot load the TLS files ({c.tls.ca_file}, {c.tls.cert_file}, "
                                     f"{c.tls.key_file}): {e}") from None
            client.tls_insecure_set(c.tls.insecure)
        client.max_inflight_messages_set(c.inflight + 20)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        s = self._status
        if reason_code.is_failure:
            s.state, s.connected = "refused", False
            s.last_error = f"the broker {s.broker} refused the connection: {reason_code}"
            log.error("%s", s.last_error)
            return
        s.state, s.connected = "connected", True
        s.connected_since = time.time()
        s.connects += 1
        s.last_error = None
        self._inflight.clear()
        self._inflight_rows.clear()
        self._replay_after = 0  # replay the outbox from its oldest message
        log.info("connected to the MQTT broker %s as %s (session present: %s)", s.broker, self.client_id,
                 flags.session_present)
        client.publish(self.topic("status"), "online", qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        s = self._status
        self._disconnect_reason = str(reason_code)
        was = s.connected
        s.connected = False
        if s.state == "connected":
            s.state = "disconnected"
            if reason_code.is_failure:
                s.last_error = f"lost the connection to {s.broker}: {reason_code}"
        if was:
            (log.info if self._stop.is_set() else log.warning)("disconnected from the MQTT broker %s (%s)", s.broker, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        now = time.time()
        self._status.last_ack = now
        entry = self._inflight.pop(mid, None)
        if entry is not None:
            row, camera = entry
            self._inflight_rows.discard(row)
            self._acked.append(row)
            self._status.counts_acked += 1
            self._status.last_counts_ack[camera] = now
        if mid == self._offline_mid:
            self._offline_acked.set()

    def _wait(self, seconds: float) -> None:
        """Sleep between connection attempts; a stop request ends it."""
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            select.select([self._wake_r], [], [], min(left, 0.5))
            self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _connect(self, first: bool) -> bool:
        s = self._status
        if s.state not in ("unreachable", "refused", "disconnected"):
            s.state = "connecting"  # a retry keeps saying why the last attempt failed
        try:
            if first:
                self._client.connect(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
            else:
                self._client.reconnect()
            return True
        except ssl.SSLError as e:
            s.state, s.last_error = "unreachable", f"TLS handshake with {s.broker} failed: {e}"
        except OSError as e:
            s.state, s.last_error = "unreachable", f"cannot reach the MQTT broker {s.broker}: {e.strerror or e}"
        log.warning("%s", s.last_error)
        return False

    def _flush_acks(self) -> None:
        """Remove the acknowledged messages from the outbox (one transaction per round)."""
        if self._acked:
            try:
                self.outbox.ack(self._acked)
            except OutboxError as e:
                log.error("%s", e)  # they stay and are sent again: a duplicate, never a loss
            self._acked = []

    def _pump(self) -> None:
        """Publish the next outbox messages (in order, a bounded window) and realtime messages."""
        client = self._client
        self._flush_acks()
        with self._waiting_lock:
            waiting, self._waiting = list(self._waiting), deque()
        for topic, payload, qos, retain in waiting:
            client.publish(topic, payload, qos=qos, retain=retain)
        room = self.config.inflight - len(self._inflight_rows)
        if room <= 0:
            return
        try:
            rows = self.outbox.pending(after_id=self._replay_after, limit=room)
        except Exception as e:  # sqlite3.Error: reported, retried on the next round
            log.error("cannot read the outbox: %s", e)
            return
        since = self._status.connected_since or 0.0
        for row in rows:
            payload = row.payload
            late = row.created < since
            if late:
                payload = mark_late(payload)
            info = client.publish(row.topic, payload, qos=1)
            self._inflight[info.mid] = (row.id, row.camera)
            self._inflight_rows.add(row.id)
            self._replay_after = row.id
            self._status.counts_published += 1
            self._status.late_published += late

    def _network(self, timeout: float) -> bool:
        """One round of the paho network loop; False when the connection is gone."""
        from paho.mqtt.client import MQTT_ERR_SUCCESS

        client = self._client
        sock = client.socket()
        if sock is None:
            return False
        wlist = [sock] if client.want_write() else []
        try:
            r, w, _ = select.select([sock, self._wake_r], wlist, [], timeout)
        except (OSError, ValueError):
            return False
        if self._wake_r in r:
            self._drain_wake()
        if sock in r and client.loop_read() != MQTT_ERR_SUCCESS:
            return False
        if client.want_write() and client.loop_write() != MQTT_ERR_SUCCESS:
            return False
        if client.loop_misc() != MQTT_ERR_SUCCESS:
            return False
        return client.socket() is not None

    def _run(self) -> None:
        cfg = self.config
        s = self._status
        backoff = cfg.reconnect_min_s
        first = True
        while not self._stop.is_set():
            if not self._connect(first):
                wait = self._rng.uniform(0.5, 1.0) * backoff
                self._wait(wait)
                backoff = min(backoff * 2, cfg.reconnect_max_s)
                continue
            first = False
            started = time.monotonic()
            answered = False  # CONNACK received (accepted or refused) on this attempt
            while not self._stop.is_set():
                ok = self._network(0.5)
                answered = answered or s.connected or s.state == "refused"
                if not ok:
                    break
                if s.connected:
                    backoff = cfg.reconnect_min_s
                    self._pump()
                elif time.monotonic() - started > _CONNACK_TIMEOUT_S:
                    s.state, s.last_error = "unreachable", f"no answer from the MQTT broker {s.broker} (no CONNACK)"
                    answered = True
                    break
            if self._stop.is_set():
                break
            s.connected = False
            if not answered:  # closed before CONNACK: e.g. a TLS client certificate is required
                s.state = "disconnected"
                s.last_error = (f"the broker {s.broker} closed the connection before accepting it "
                                f"({self._disconnect_reason or 'no reason given'}; a client certificate or TLS required?)")
                log.warning("%s", s.last_error)
            elif s.state == "connected":
                s.state = "disconnected"
            wait = self._rng.uniform(0.5, 1.0) * backoff
            self._wait(wait)
            backoff = min(backoff * 2, cfg.reconnect_max_s)
        self._shutdown()

    def _shutdown(self) -> None:
        """Flush pending counts while the deadline allows, then a clean ``offline`` and disconnect."""
        s = self._status
        client = self._client
        deadline = self._flush_deadline or time.monotonic()
        if s.connected:
            while time.monotonic() < deadline:
                self._pump()
                if not self._inflight_rows and not self.outbox.pending(after_id=self._replay_after, limit=1):
                    break
                if not self._network(0.1):
                    break
            if s.connected:
                self._offline_mid = client.publish(self.topic("status"), "offline", qos=1, retain=True).mid
                end = time.monotonic() + 2.0
                while not self._offline_acked.is_set() and time.monotonic() < end:
                    if not self._network(0.1):
                        break
                self._flush_acks()
                client.disconnect()
                end = time.monotonic() + 1.0
                while client.socket() is not None and time.monotonic() < end:
                    self._network(0.1)
        s.connected = False
        s.state = "stopped"
