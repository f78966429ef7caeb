"""``roadside fleet collect``: every device's counts, health and status and every controller's plan, state
and events, from the clustered broker into PostgreSQL, with nothing lost and nothing counted twice.

The broker side is one RabbitMQ *quorum queue* (replicated on the cluster's nodes, surviving the loss of a
minority of them) bound to ``amq.topic``, where RabbitMQ's MQTT plugin routes what devices publish. Any
number of collectors consume it as competing consumers, each holding at most ``prefetch`` unacknowledged
messages. A collector acknowledges a message only after the database committed the batch it was in; when a
collector (or its node, or its database connection) dies, RabbitMQ hands its unacknowledged messages to
another collector, and the store's keys make the second write a no-op (:mod:`roadside.fleet.store`).
"""
from __future__ import annotations

import logging
import random
import signal
import threading
import time
from dataclasses import dataclass, field

from roadside.core.errors import RoadsideError
from roadside.core.topics import CAMERA_KINDS, CONTROLLER, Topics
from roadside.fleet.acl import topic_of
from roadside.fleet.amqp import amqp_parameters
from roadside.fleet.config import FleetConfig
from roadside.fleet.store import Incoming, StoreError, connect, create_schema, write_batch

log = logging.getLogger("roadside.fleet.collector")


class CollectorError(RoadsideError):
    """The collector cannot reach the broker or the database, or is misconfigured."""


def bindings(cfg: FleetConfig) -> list[str]:
    """The routing-key patterns of the collector's queue: what every site's devices and controller publish."""
    prefixes = [f"{cfg.topic_root}/*"] + sorted(set(cfg.sites.values()))
    keys = []
    for p in prefixes:
        base = p.replace("/", ".")
        keys += [f"{base}.*.status"] + [f"{base}.*.*.{k}" for k in CAMERA_KINDS if k != "presence"]
        keys += [f"{base}.{CONTROLLER}.{k}" for k in ("plan", "state", "events")]
    return keys


def route(cfg: FleetConfig, key: str, body: bytes) -> Incoming | None:
    """Which site/device/camera a routing key names (None: not a topic of the contract)."""
    topic = topic_of(key)
    for site, prefix in cfg.sites.items():
        parsed = Topics(prefix).parse(topic)
        if parsed is not None:
            return Incoming(key, site, parsed.device, parsed.camera, parsed.kind, body)
    head = cfg.topic_root + "/"
    if topic.startswith(head):
        site = topic[len(head):].split("/", 1)[0]
        if site in cfg.sites:  # a site with its own prefix does not also publish under the root
            return None
        parsed = Topics(f"{cfg.topic_root}/{site}").parse(topic)
        if parsed is not None:
            return Incoming(key, site, parsed.device, parsed.camera, parsed.kind, body)
    return None


def declare(channel, cfg: FleetConfig) -> int:
    """The durable quorum queue and its bindings (idempotent); the messages waiting in it."""
    q = channel.queue_declare(cfg.broker.queue, durable=True, arguments={"x-queue-type": "quorum"})
    for key in bindings(cfg):
        channel.queue_bind(cfg.broker.queue, "amq.topic", key)
    return int(q.method.message_count)


@dataclass
class CollectorStats:
    batches: int = 0
    messages: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    reconnects: int = 0
    last_error: str | None = None
    node: str | None = None


class Collector:
    """One collector process (or thread): consume, write a batch, commit, acknowledge; reconnect forever."""

    def __init__(self, cfg: FleetConfig, name: str = "collector", first_node: int | None = None) -> None:
        self.cfg = cfg
        #: which node of broker.nodes to try first (default: a random one, so collectors spread over the nodes)
        self.first_node = random.randrange(len(cfg.broker.nodes)) if first_node is None else first_node
        self.name = name
        self.stats = CollectorStats()
        self._stop = threading.Event()
        #: set once the queue is declared and bound and this collector consumes it
        self.ready = threading.Event()
        self._db = None

    def stop(self) -> None:
        self._stop.set()

    def _database(self):
        if self._db is None or self._db.closed:
            self._db = connect(self.cfg.database.dsn.get_secret_value())
            create_schema(self._db)
        return self._db

    def run(self) -> None:
        """Until :meth:`stop`: connect to a node, consume, and start again on any failure."""
        import pika

        logging.getLogger("pika").setLevel(logging.CRITICAL)  # its connection errors are reported below, once
        params = amqp_parameters(self.cfg)
        attempt = self.first_node
        while not self._stop.is_set():
            p = params[attempt % len(params)]
            attempt += 1
            try:
                self._database()
                conn = pika.BlockingConnection(p)
            except (pika.exceptions.AMQPError, OSError) as e:
                self._failed(f"cannot reach the broker node {p.host}:{p.port}: {e!r}")
                continue
            except StoreError as e:
                self._failed(str(e))
                continue
            self.stats.node = f"{p.host}:{p.port}"
            try:
                self._consume(conn)
            except (pika.exceptions.AMQPError, OSError) as e:
                self._failed(f"lost the broker node {p.host}:{p.port}: {e!r}")
            except StoreError as e:
                self._failed(str(e))
            finally:
                try:
                    if conn.is_open:
                        conn.close()
                except Exception:
                    pass
        if self._db is not None:
            self._db.close()

    def _failed(self, why: str) -> None:
        self.stats.reconnects += 1
        self.stats.last_error = why
        log.warning("%s: %s", self.name, why)
        self._stop.wait(0.5)

    def _consume(self, conn) -> None:
        import psycopg

        ch = conn.channel()
        declare(ch, self.cfg)
        ch.basic_qos(prefetch_count=self.cfg.prefetch)
        self.ready.set()
        batch: list[tuple[int, Incoming | None, str, bytes]] = []
        started = None
        for method, props, body in ch.consume(self.cfg.broker.queue, inactivity_timeout=0.05):
            if method is not None:
                batch.append((method.delivery_tag, route(self.cfg, method.routing_key, body), method.routing_key, body))
                started = started or time.monotonic()
            full = len(batch) >= self.cfg.batch.max_messages
            due = batch and time.monotonic() - started >= self.cfg.batch.max_wait_s
            if full or due or (self._stop.is_set() and batch):
                items = [m if m is not None else Incoming(k, "?", "?", None, "unknown", b) for _, m, k, b in batch]
                try:
                    res = write_batch(self._database(), items)
                except psycopg.Error as e:
                    try:
                        self._db.rollback()
                    except psycopg.Error:
                        self._db = None
                    ch.basic_nack(batch[-1][0], multiple=True, requeue=True)
                    batch, started = [], None
                    if isinstance(e, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)):
                        continue
                    raise StoreError(f"cannot write to the fleet database: {e}") from None
                ch.basic_ack(batch[-1][0], multiple=True)  # after the commit: a crash before it means redelivery
                self._account(res, len(batch))
                batch, started = [], None
            if self._stop.is_set() and not batch:
                ch.cancel()
                return

    def _account(self, res, n: int) -> None:
        s = self.stats
        s.batches += 1
        s.messages += n
        s.duplicates += res.duplicates
        s.rejected += res.rejected
        s.ignored += res.ignored
        for k, v in res.stored.items():
            s.stored[k] = s.stored.get(k, 0) + v


def run_collector(cfg: FleetConfig) -> int:
    """The ``roadside fleet collect`` process: the collector, the Prometheus endpoint, SIGTERM = clean stop."""
    c = Collector(cfg)
    if cfg.metrics is not None:
        from roadside.fleet.metrics import serve_metrics

        serve_metrics(cfg)
    signal.signal(signal.SIGTERM, lambda *_: c.stop())
    try:
        c.run()
    except KeyboardInterrupt:
        c.stop()
    return 0


__all__ = ["Collector", "CollectorError", "CollectorStats", "bindings", "declare", "route", "run_collector"]
