"""The edge service's MQTT link: the durable outbox delivered over the product's one MQTT client
(:class:`~roadside.core.broker.BrokerClient`: one network thread, reconnect with backoff, TLS, Last Will),
plus presence and health.

The outbox is the client's *feeder*: on the network thread, after every round, it publishes the next
outbox messages (a bounded window) and removes those the broker acknowledged. Other threads hand
presence/health over through :meth:`MqttLink.publish_now` and wake the thread with :meth:`MqttLink.notify`.

Topics (built by :class:`roadside.core.topics.Topics`; the device's own are below ``<site prefix>/<device>``):

* ``status``: retained ``online`` on every connection, ``offline`` as the Last Will and on a clean shutdown;
* ``<camera>/counts``: from the :class:`~roadside.edge.outbox.Outbox`, QoS 1, strictly in the order they
  were produced; a message leaves the outbox only when the broker has acknowledged it (PUBACK). Messages
  produced before the current connection was established (during an outage, or before a restart), or
  published more than ``LATE_AFTER_S`` after their bin closed (a broker that stopped acknowledging kept the
  window shut), are sent with ``"late": true``;
* ``<camera>/presence`` and ``<camera>/health``: QoS 1, sent only while connected (a stale presence is of
  no use to a signal controller), otherwise dropped and counted.

Delivery order: on each connection the outbox is replayed from its oldest message. paho also re-sends
the messages that were in flight when the connection dropped; those are the oldest pending ones, so a
subscriber that keeps the first copy of each ``seq`` sees every camera's messages in ``seq`` order.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from roadside.core.broker import BrokerClient, Will
from roadside.core.mqtt import MqttConfig
from roadside.core.topics import CameraKind, Topics
from roadside.edge.outbox import Outbox, OutboxError

log = logging.getLogger("roadside.edge.mqtt")

#: a counts message published more than this long (s) after its bin closed is ``late``
LATE_AFTER_S = 5.0

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
    #: epoch since which the oldest message sent on this connection waits for its PUBACK (None: none waits)
    unacked_since: float | None = None


class MqttLink:
    def __init__(self, config: MqttConfig, client_id: str, topics: Topics, device: str, outbox: Outbox,
                 seed: int | None = None):
        self.config = config
        self.client_id = client_id
        self.topics = topics
        self.device = device
        self.outbox = outbox
        self.counts_published = self.counts_acked = self.late_published = self._dropped = 0
        self.last_counts_ack: dict[str, float] = {}
        # network-thread state
        self._connection = 0  # which connection a counts message was published on
        self._inflight_rows: set[int] = set()  # row ids published on this connection and not yet acked
        self._replay_after = 0  # last outbox row id published on this connection
        self._acked: list[int] = []
        # a message in flight may still be delivered: the outbox's bounds never count it as lost
        outbox.in_flight = lambda: frozenset(self._inflight_rows)
        self.client: BrokerClient | None = None
        self._seed = seed

    # -- public ------------------------------------------------------------------------------------
    def camera_topic(self, camera: str, kind: CameraKind) -> str:
        return self.topics.camera(self.device, camera, kind)

    def start(self) -> "MqttLink":
        # configuration problems (unreadable TLS files) surface here, to the caller, as a BrokerError
        self.client = BrokerClient(self.config, self.client_id, will=Will(self.topics.device_status(self.device)), clean_session=False,
                                   on_connect=self._on_connect, feeder=self._pump, name="edge", seed=self._seed)
        self.client.start()
        return self

    def notify(self) -> None:
        """New messages are in the outbox: wake the link thread."""
        if self.client is not None:
            self.client.wake()

    def publish_now(self, camera: str, kind: CameraKind, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Send a real-time message (presence, health) if connected; False when it was dropped."""
        if not self.connected:
            self._dropped += 1
            return False
        self.client.publish(self.camera_topic(camera, kind), payload, qos=qos, retain=retain)
        return True

    def status(self) -> LinkStatus:
        c = self.client.status() if self.client is not None else None
        return LinkStatus(
            state=c.state if c else "connecting", connected=bool(c and c.connected), broker=c.broker if c else self.config.address,
            last_error=c.last_error if c else None, connected_since=c.connected_since if c else None,
            connects=c.connects if c else 0, counts_published=self.counts_published, counts_acked=self.counts_acked,
            late_published=self.late_published, realtime_dropped=self._dropped + (c.dropped if c else 0),
            last_ack=c.last_ack if c else None, last_counts_ack=dict(self.last_counts_ack),
            unacked_since=c.unacked_since if c and c.connected else None)

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Deliver what is pending (up to ``flush_timeout_s``), publish ``offline`` and disconnect cleanly."""
        if self.client is not None:
            self.client.stop(flush_timeout_s)
            self._flush_acks()  # the network thread has ended: its last acknowledgements

    # -- on the network thread ---------------------------------------------------------------------
    def _on_connect(self, session_present: bool) -> None:
        self._connection += 1  # acknowledgements of earlier connections' copies no longer count
        self._inflight_rows.clear()
        self._replay_after = 0  # replay the outbox from its oldest message

    def _on_ack(self, connection: int, row: int, camera: str) -> None:
        if connection != self._connection:
            return
        self._inflight_rows.discard(row)
        self._acked.append(row)
        self.counts_acked += 1
        self.last_counts_ack[camera] = time.time()

    def _flush_acks(self) -> None:
        """Remove the acknowledged messages from the outbox (one transaction per round)."""
        if self._acked:
            try:
                self.outbox.ack(self._acked)
            except OutboxError as e:
                log.error("%s", e)  # they stay and are sent again: a duplicate, never a loss
            self._acked = []

    def _pump(self) -> bool:
        """Publish the next outbox messages (in order, a bounded window); True while more are pending."""
        self._flush_acks()
        room = self.config.inflight - len(self._inflight_rows)
        if room <= 0:
            return True
        try:
            rows = self.outbox.pending(after_id=self._replay_after, limit=room)
        except Exception as e:  # sqlite3.Error: reported, retried on the next round
            log.error("cannot read the outbox: %s", e)
            return True
        since = self.client.status().connected_since or 0.0
        now = time.time()
        for row in rows:
            payload = row.payload
            # late: it waited through an outage (produced before this connection), or it is published more than
            # LATE_AFTER_S after its bin closed (a broker that stopped acknowledging held the window shut)
            late = row.created < since or now - row.created > LATE_AFTER_S
            if late:
                payload = mark_late(payload)
            self.client.publish(row.topic, payload, qos=1,
                                on_ack=lambda c=self._connection, r=row.id, cam=row.camera: self._on_ack(c, r, cam))
            self._inflight_rows.add(row.id)
            self._replay_after = row.id
            self.counts_published += 1
            self.late_published += late
        return bool(self._inflight_rows) or len(rows) >= room
