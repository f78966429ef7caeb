"""The one MQTT client of the product (paho-mqtt): the edge's link, the controller service, the SUMO
harness and the tests all talk to a broker through :class:`BrokerClient`.

One network thread owns the paho client and its socket: it drives paho's ``loop_read``/``loop_write``/
``loop_misc`` around a ``select``, so nothing else ever touches the socket. Other threads hand messages
over with :meth:`BrokerClient.publish` (a bounded queue, the oldest dropped and counted beyond it) and
wake the thread through a pipe. The thread connects and reconnects forever, with exponential backoff and
random jitter (``reconnect_min_s`` .. ``reconnect_max_s``), moving to the next node of ``mqtt.brokers`` (a
clustered broker) after every failed attempt or lost connection; every (re)connection restores the
subscriptions and publishes the birth message of the Last Will (``online``).

What runs on the network thread, in this order, on each round while connected: queued messages, then the
``feeder`` (a function that publishes from a store of its own, e.g. the edge's outbox, and says whether it
has more). Callbacks (``on_message``, ``on_connect``, ``on_disconnect``, ``on_ack``) run on the network
thread too; they must be quick and must not block.

Why the last attempt failed is kept in :meth:`BrokerClient.status` (``last_error``): the broker refused
the connection (bad credentials, ...), the TLS handshake failed, the broker is unreachable, or it closed
the connection before accepting it (e.g. a client certificate is required). Passwords never appear in
logs or in the status.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from roadside.core.errors import RoadsideError
from roadside.core.mqtt import MqttConfig

#: a CONNECT without CONNACK for this long counts as a failed attempt
CONNACK_TIMEOUT_S = 10.0
#: messages handed over by other threads and not yet given to paho, at most (the oldest are dropped beyond)
MAX_QUEUED = 1000
#: a QoS 1 message without PUBACK for this long (s) means the broker is not acknowledging (a consumer of
#: the status, e.g. the edge's readiness, says so)
ACK_TIMEOUT_S = 10.0
#: paho may have this many QoS 1 messages in flight beyond ``MqttConfig.inflight`` (the window of a feeder):
#: room for the real-time messages published beside it
EXTRA_INFLIGHT = 20


def _poll(fds: list[tuple[int, int]], timeout: float) -> set[int]:
    """The descriptors among ``fds`` that are readable (or closed / in error) within ``timeout`` s.
    ``poll``, not ``select``: a process with many clients (the fleet's load test) has descriptors >= 1024."""
    p = select.poll()
    for fd, events in fds:
        p.register(fd, events)
    hit = select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL
    return {fd for fd, ev in p.poll(max(0.0, timeout) * 1000) if ev & hit}


class BrokerError(RoadsideError):
    """The MQTT client cannot be set up (e.g. unreadable TLS files) or cannot reach its broker."""


@dataclass(frozen=True)
class Will:
    """The client's retained status topic: ``payload`` is its Last Will (the broker publishes it when the
    connection dies) and its last word on a clean stop; ``birth`` is published on every connection."""

    topic: str
    payload: bytes = b"offline"
    birth: bytes | None = b"online"
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class Received:
    """A message received on a subscription."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class BrokerStatus:
    #: connecting | connected | disconnected | refused | unreachable | stopped
    state: str
    connected: bool
    broker: str  # host:port
    #: why the last attempt failed or the connection was lost (None while connected)
    last_error: str | None = None
    connected_since: float | None = None  # epoch of the current (or last) connection
    connects: int = 0  # successful connections
    published: int = 0  # messages given to paho (re-sends by paho not counted)
    acked: int = 0  # acknowledgements (PUBACK; for QoS 0: written to the socket)
    dropped: int = 0  # queued messages dropped because the queue was full
    last_ack: float | None = None  # epoch of the last acknowledgement of any message
    subscribed: bool = False  # connected and every subscription acknowledged
    #: epoch since which the oldest QoS 1 message sent on this connection waits for its PUBACK (None: none
    #: waits). A broker that keeps the TCP connection but answers nothing (a hung or frozen broker) shows here
    #: long before the keepalive notices: see ACK_TIMEOUT_S.
    unacked_since: float | None = None


OnAck = Callable[[], None]


class BrokerClient:
    """One MQTT connection (MQTT 3.1.1) built from an :class:`~roadside.core.mqtt.MqttConfig`.

    ``clean_session=False`` asks the broker to keep the subscriptions and queued QoS 1 messages of
    ``client_id`` across disconnections. ``feeder`` (optional) is called on the network thread on every
    round while connected; it publishes what it has and returns True while it has more to deliver (a
    clean :meth:`stop` waits for it, up to its flush timeout).
    """

    def __init__(self, config: MqttConfig, client_id: str, *, will: Will | None = None, clean_session: bool = True,
                 on_message: Callable[[Received], None] | None = None,
                 on_connect: Callable[[bool], None] | None = None,
                 on_disconnect: Callable[[], None] | None = None,
                 feeder: Callable[[], bool] | None = None,
                 name: str = "mqtt", seed: int | None = None, max_queued: int = MAX_QUEUED) -> None:
        self.config = config
        self.client_id = client_id
        self.will = will
        self.clean_session = clean_session
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.feeder = feeder
        self.name = name
        self.log = logging.getLogger(f"roadside.mqtt.{name}")
        self._rng = random.Random(seed)
        self._max_queued = max_queued
        self._addresses = config.addresses  # several: the nodes of a cluster, tried in turn
        self._node = 0  # index into _addresses of the current (or next) attempt
        self._status = BrokerStatus("connecting", False, self._node_address())
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._flush_deadline: float | None = None
        self._final = True
        self._queue: deque[tuple[str, bytes, int, bool, OnAck | None]] = deque()
        self._queue_lock = threading.Lock()
        self._subs: dict[str, int] = {}  # topic filter -> QoS
        self._subs_lock = threading.Lock()
        self._new_subs: list[tuple[str, int]] = []  # asked for while connected, not yet sent
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        # network-thread state
        self._pending: dict[int, tuple[int, OnAck | None]] = {}  # paho mid -> (qos, on_ack) until acknowledged
        self._sent_at: dict[int, float] = {}  # QoS 1 mid -> when sent (on this connection), oldest first
        self._suback_mids: set[int] = set()
        self._final_mid: int | None = None
        self._final_acked = False
        self._disconnect_reason: str | None = None
        self._client = self._make_client()  # configuration problems surface here, to the caller
        self._wake_r: int | None
        self._wake_w: int | None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- any thread ----------------------------------------------------------------------------------
    def start(self) -> "BrokerClient":
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.name}", daemon=True)
        self._thread.start()
        return self

    def subscribe(self, topics: str | list[str], qos: int | None = None) -> None:
        """Subscribe now (if connected) and on every later (re)connection."""
        q = self.config.qos if qos is None else qos
        new = [(t, q) for t in ([topics] if isinstance(topics, str) else topics)]
        with self._subs_lock:
            self._subs.update(new)
            self._new_subs.extend(new)
        if self._status.connected:
            self._set(subscribed=False)  # until the broker acknowledged the new ones
        self.wake()

    def publish(self, topic: str, payload: bytes | str, qos: int | None = None, retain: bool = False,
                on_ack: OnAck | None = None) -> None:
        """Send a message (QoS ``mqtt.qos`` by default). ``on_ack`` is called on the network thread when the
        broker acknowledged it (for QoS 0: when it was written), in the order of the acknowledgements.

        From another thread the message waits in a bounded queue until the network thread is connected;
        on the network thread (in a callback or the feeder) it goes to paho at once."""
        q = self.config.qos if qos is None else qos
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        if threading.get_ident() == self._thread_id:
            self._send(topic, data, q, retain, on_ack)
            return
        with self._queue_lock:
            if len(self._queue) >= self._max_queued:
                self._queue.popleft()
                self._status.dropped += 1
            self._queue.append((topic, data, q, retain, on_ack))
        self.wake()

    def wake(self) -> None:
        """Make the network thread run a round now (e.g. the feeder has something new)."""
        if self._wake_w is None:
            return  # stopped
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the pipe is full: the thread is awake anyway

    @property
    def connected(self) -> bool:
        return self._status.connected

    @property
    def running(self) -> bool:
        """The network thread is alive (started and not stopped): the liveness a watchdog checks."""
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> BrokerStatus:
        return dataclasses.replace(self._status)

    def wait_connected(self, timeout: float, subscribed: bool = True, stop_on_refusal: bool = False) -> bool:
        """Wait until connected (and, with ``subscribed``, every subscription acknowledged). False after
        ``timeout`` s, or as soon as the broker refuses the connection when ``stop_on_refusal``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                s = self._status
                if s.connected and (s.subscribed or not subscribed):
                    return True
                if stop_on_refusal and s.state == "refused":
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))

    def stop(self, flush_timeout_s: float = 2.0, final: bool = True) -> None:
        """Deliver what is queued and unacknowledged (and what the feeder has), up to ``flush_timeout_s``;
        then, with ``final``, publish the Last Will's payload (retained: a clean DISCONNECT makes the broker
        drop the will) and wait up to 2 s for its acknowledgement; disconnect and end the thread.
        From a callback (the network thread itself) it only asks: the thread stops when the callback returns."""
        self._flush_deadline = time.monotonic() + flush_timeout_s
        self._final = final
        self._stop.set()
        self.wake()
        if self._thread is threading.current_thread():
            return
        if self._thread is not None:
            self._thread.join(flush_timeout_s + 10)
            if self._thread.is_alive():
                self.log.error("the MQTT network thread (%s) did not stop", self.name)
                return
        fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), None, None
        for fd in fds:
            if fd is not None:
                os.close(fd)
        self._set(state="stopped", connected=False, subscribed=False)

    # -- set-up --------------------------------------------------------------------------------------
    def _make_client(self):
        import paho.mqtt.client as mqtt

        c = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=self.clean_session, protocol=mqtt.MQTTv311)
        if self.will is not None:
            w = self.will
            client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        if c.username is not None:
            client.username_pw_set(c.username, c.password.get_secret_value() if c.password else None)
        if c.tls is not None:
            try:
                client.tls_set(ca_certs=c.tls.ca_file, certfile=c.tls.cert_file, keyfile=c.tls.key_file,
                               cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as e:
                raise BrokerError(f"mqtt.tls: cannot load the TLS files ({c.tls.ca_file}, {c.tls.cert_file}, "
                                  f"{c.tls.key_file}): {e}") from None
            client.tls_insecure_set(c.tls.insecure)
        client.max_inflight_messages_set(c.inflight + EXTRA_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _set(self, **changes) -> None:
        with self._changed:
            for k, v in changes.items():
                setattr(self._status, k, v)
            self._changed.notify_all()

    # -- paho callbacks (network thread) ---------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        s = self._status
        if reason_code.is_failure:
            self._set(state="refused", connected=False,
                      last_error=f"the broker {s.broker} refused the connection: {reason_code}")
            self.log.error("%s", s.last_error)
            return
        self._no_delay()
        with self._subs_lock:
            subs = list(self._subs.items())
            self._new_subs.clear()
        self._suback_mids.clear()
        if subs:
            self._suback_mids.add(client.subscribe(subs)[1])
        now = time.time()
        self._sent_at = {mid: now for mid in self._sent_at}  # paho re-sends them on this connection
        self._set(state="connected", connected=True, connected_since=now, connects=s.connects + 1,
                  last_error=None, subscribed=not subs, unacked_since=now if self._sent_at else None)
        self.log.info("connected to the MQTT broker %s as %s (session present: %s)", s.broker, self.client_id,
                      flags.session_present)
        if self.will is not None and self.will.birth is not None:
            w = self.will
            self._send(w.topic, w.birth, w.qos, w.retain, None)
        self._call(self.on_connect, bool(flags.session_present))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        s = self._status
        self._disconnect_reason = str(reason_code)
        was = s.connected
        changes: dict = {"connected": False, "subscribed": False}
        if s.state == "connected":
            changes["state"] = "disconnected"
            if reason_code.is_failure:
                changes["last_error"] = f"lost the connection to {s.broker}: {reason_code}"
        self._set(**changes)
        for mid in [m for m, (q, _) in self._pending.items() if q == 0]:
            del self._pending[mid]  # QoS 0 is never re-sent: no acknowledgement will come
        if was:
            (self.log.info if self._stop.is_set() else self.log.warning)(
                "disconnected from the MQTT broker %s (%s)", s.broker, reason_code)
            self._call(self.on_disconnect)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        s = self._status
        s.last_ack = time.time()
        entry = self._pending.pop(mid, None)
        if self._sent_at.pop(mid, None) is not None:
            s.unacked_since = next(iter(self._sent_at.values()), None)
        if entry is None:
            return
        s.acked += 1
        if mid == self._final_mid:
            self._final_acked = True
        self._call(entry[1])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            self._set(last_error=f"the broker {self._status.broker} refused a subscription: {', '.join(failed)}")
            self.log.error("%s", self._status.last_error)
        self._suback_mids.discard(mid)
        if not self._suback_mids and self._status.connected:
            self._set(subscribed=True)

    def _on_message(self, client, userdata, msg) -> None:
        self._call(self.on_message, Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    # -- the network thread --------------------------------------------------------------------------
    def _send(self, topic: str, payload: bytes, qos: int, retain: bool, on_ack: OnAck | None) -> int:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        self._status.published += 1
        if qos > 0:
            self._pending[info.mid] = (qos, on_ack)  # paho keeps it and re-sends it until acknowledged
            if not self._sent_at:
                self._status.unacked_since = time.time()
            self._sent_at[info.mid] = time.time()
        elif info.is_published():  # QoS 0 written at once: paho said so inside publish()
            self._status.acked += 1
            self._call(on_ack)
        elif info.rc == 0:  # QoS 0 waiting for the socket
            self._pending[info.mid] = (qos, on_ack)
        return info.mid

    def _call(self, fn, *args) -> None:
        """A user callback; its exception is logged and never ends the network thread."""
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            self.log.exception("error in an MQTT callback (%s)", getattr(fn, "__qualname__", fn))

    def _no_delay(self) -> None:
        """Send small messages at once (no Nagle batching: a signal command must not wait 40 ms)."""
        sock = self._client.socket()
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass

    def _wait(self, seconds: float) -> None:
        """Sleep between connection attempts; a stop request ends it."""
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            _poll([(self._wake_r, select.POLLIN)], min(left, 0.5))
            self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass

    def _node_address(self) -> str:
        host, port = self._addresses[self._node]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _next_node(self) -> None:
        """After a failed attempt or a lost connection: the next node of the list (if there are several)."""
        if len(self._addresses) > 1:
            self._node = (self._node + 1) % len(self._addresses)
            self._set(broker=self._node_address())

    def _connect(self, first: bool) -> bool:
        s = self._status
        if s.state not in ("unreachable", "refused", "disconnected"):
            self._set(state="connecting")  # a retry keeps saying why the last attempt failed
        try:
            if first or len(self._addresses) > 1:
                host, port = self._addresses[self._node]
                self._client.connect(host, port, keepalive=self.config.keepalive_s)
            else:
                self._client.reconnect()
            self._no_delay()
            return True
        except ssl.SSLError as e:
            self._set(state="unreachable", last_error=f"TLS handshake with {s.broker} failed: {e}")
        except OSError as e:
            self._set(state="unreachable", last_error=f"cannot reach the MQTT broker {s.broker}: {e.strerror or e}")
        self.log.warning("%s", s.last_error)
        return False

    def _round(self) -> bool:
        """While connected: queued messages, new subscriptions, then the feeder. True when the feeder or
        the queue has more."""
        with self._queue_lock:
            queued, self._queue = list(self._queue), deque()
        for topic, payload, qos, retain, on_ack in queued:
            self._send(topic, payload, qos, retain, on_ack)
        with self._subs_lock:
            new, self._new_subs = self._new_subs, []
        if new:
            self._suback_mids.add(self._client.subscribe(new)[1])
            self._set(subscribed=False)
        if self.feeder is None:
            return False
        try:
            return bool(self.feeder())
        except Exception:
            self.log.exception("error in the MQTT feeder (%s)", self.name)
            return False

    def _network(self, timeout: float) -> bool:
        """One round of the paho network loop; False when the connection is gone."""
        from paho.mqtt.client import MQTT_ERR_SUCCESS

        client = self._client
        sock = client.socket()
        if sock is None:
            return False
        try:
            ready = _poll([(sock.fileno(), select.POLLIN | (select.POLLOUT if client.want_write() else 0)),
                           (self._wake_r, select.POLLIN)], timeout)
        except (OSError, ValueError):
            return False
        if self._wake_r in ready:
            self._drain_wake()
        if sock.fileno() in ready and client.loop_read() != MQTT_ERR_SUCCESS:
            return False
        if client.want_write() and client.loop_write() != MQTT_ERR_SUCCESS:
            return False
        if client.loop_misc() != MQTT_ERR_SUCCESS:
            return False
        return client.socket() is not None

    def _run(self) -> None:
        self._thread_id = threading.get_ident()
        cfg = self.config
        s = self._status
        backoff = cfg.reconnect_min_s
        first = True
        try:
            while not self._stop.is_set():
                if not self._connect(first):
                    self._next_node()
                    self._wait(self._rng.uniform(0.5, 1.0) * backoff)
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
                        self._round()
                    elif time.monotonic() - started > CONNACK_TIMEOUT_S:
                        self._set(state="unreachable", last_error=f"no answer from the MQTT broker {s.broker} (no CONNACK)")
                        answered = True
                        break
                if self._stop.is_set():
                    break
                if s.connected:
                    self._set(connected=False, subscribed=False)
                if not answered:  # closed before CONNACK: e.g. a TLS client certificate is required
                    self._set(state="disconnected", last_error=(
                        f"the broker {s.broker} closed the connection before accepting it "
                        f"({self._disconnect_reason or 'no reason given'}; a client certificate or TLS required?)"))
                    self.log.warning("%s", s.last_error)
                elif s.state == "connected":
                    self._set(state="disconnected")
                self._next_node()
                self._wait(self._rng.uniform(0.5, 1.0) * backoff)
                backoff = min(backoff * 2, cfg.reconnect_max_s)
        finally:
            self._shutdown()
            self._thread_id = None  # a later thread with the same ident is not the network thread

    def _shutdown(self) -> None:
        """Flush while the deadline allows, then the final word and a clean disconnect."""
        s = self._status
        client = self._client
        deadline = self._flush_deadline or time.monotonic()
        if s.connected:
            while time.monotonic() < deadline:
                more = self._round()
                if not more and not self._pending and not self._queue:
                    break
                if not self._network(0.1):
                    break
            if s.connected:
                if self._final and self.will is not None:
                    w = self.will
                    self._final_mid = self._send(w.topic, w.payload, w.qos, w.retain, None)
                    end = time.monotonic() + 2.0
                    while not self._final_acked and time.monotonic() < end:
                        if not self._network(0.1):
                            break
                client.disconnect()
                end = time.monotonic() + 1.0
                while client.socket() is not None and time.monotonic() < end:
                    self._network(0.1)
        elif client.socket() is not None:
            client.disconnect()  # a connection still waiting for its CONNACK
        self._set(state="stopped", connected=False, subscribed=False)


__all__ = ["ACK_TIMEOUT_S", "BrokerClient", "BrokerError", "BrokerStatus", "Received", "Will"]
