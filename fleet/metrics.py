"""Prometheus metrics of the whole fleet, computed from the store on every scrape (so any collector
serves the same truth) plus the broker queue's backlog:

* ``roadside_fleet_devices{state}``: devices ``online`` (status online and heard within
  ``online_timeout_s``), ``offline`` (Last Will or clean stop) and ``silent`` (online, but not heard for
  longer: its node died with the connection, or it hangs);
* ``roadside_fleet_device_up{site,device}``: 1 when online as above;
* ``roadside_fleet_last_counts_age_seconds{site,device}``: since the newest counts bin was stored;
* ``roadside_fleet_backlog_messages``: messages waiting in the collectors' queue (absent when unknown);
  ``roadside_fleet_broker_up``: a node answered; ``roadside_fleet_queue_declared``: the queue exists (before
  a collector declared it, the broker drops what devices publish);
* ``roadside_fleet_counts_bins``, ``roadside_fleet_rejected_messages``: rows stored / rejected, all time.
"""
from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from roadside.fleet.config import FleetConfig

log = logging.getLogger("roadside.fleet.metrics")


def backlog(cfg: FleetConfig) -> tuple[bool, int | None]:
    """(a broker node answered, messages waiting in the collectors' queue or None when it does not exist)."""
    import pika

    from roadside.fleet.amqp import amqp_parameters

    for p in amqp_parameters(cfg):
        try:
            conn = pika.BlockingConnection(p)
        except (pika.exceptions.AMQPError, OSError):
            continue
        try:
            return True, int(conn.channel().queue_declare(cfg.broker.queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            return True, None  # 404: no collector has declared it: devices' messages are dropped
        except pika.exceptions.AMQPError:
            continue
        finally:
            if conn.is_open:
                conn.close()
    return False, None


class FleetMetrics:
    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg

    def collect(self):
        from roadside.fleet.store import StoreError, connect

        try:
            with connect(self.cfg.database.dsn.get_secret_value()) as db:
                rows = db.execute(
                    "SELECT site, device, status, EXTRACT(EPOCH FROM clock_timestamp() - last_seen),"
                    " EXTRACT(EPOCH FROM clock_timestamp() - last_counts_at) FROM fleet_devices ORDER BY 1, 2").fetchall()
                bins = db.execute("SELECT count(*) FROM fleet_counts").fetchone()[0]
                rejected = db.execute("SELECT count(*) FROM fleet_rejected").fetchone()[0]
        except StoreError as e:
            log.error("metrics: %s", e)
            return
        except Exception as e:  # a store without the schema yet, a lost connection: no metrics this time
            log.error("metrics: cannot read the fleet database: %s", e)
            return
        states = {"online": 0, "offline": 0, "silent": 0}
        up = GaugeMetricFamily("roadside_fleet_device_up", "1 when the device is online and was heard recently",
                               labels=["site", "device"])
        age = GaugeMetricFamily("roadside_fleet_last_counts_age_seconds", "seconds since the newest counts bin was stored",
                                labels=["site", "device"])
        for site, device, status, seen_age, counts_age in rows:
            online = status != "offline" and float(seen_age) <= self.cfg.online_timeout_s
            states["online" if online else "offline" if status == "offline" else "silent"] += 1
            up.add_metric([site, device], 1.0 if online else 0.0)
            if counts_age is not None:
                age.add_metric([site, device], float(counts_age))
        devices = GaugeMetricFamily("roadside_fleet_devices", "devices by state", labels=["state"])
        for k, v in states.items():
            devices.add_metric([k], v)
        yield devices
        yield up
        yield age
        up, waiting = backlog(self.cfg)
        yield GaugeMetricFamily("roadside_fleet_broker_up", "1 when a node of the cluster answered", value=float(up))
        yield GaugeMetricFamily("roadside_fleet_queue_declared", "1 when the collectors' queue exists (else the broker "
                                "drops what devices publish)", value=float(waiting is not None))
        if waiting is not None:
            yield GaugeMetricFamily("roadside_fleet_backlog_messages", "messages waiting in the collectors' queue",
                                    value=waiting)
        yield GaugeMetricFamily("roadside_fleet_counts_bins", "counts bins stored", value=bins)
        yield GaugeMetricFamily("roadside_fleet_rejected_messages", "messages rejected (malformed, forged identity)",
                                value=rejected)


def registry(cfg: FleetConfig) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(FleetMetrics(cfg))
    return reg


def serve_metrics(cfg: FleetConfig):
    """The Prometheus endpoint (a background thread); returns the HTTP server (``server_port`` is its port)."""
    from prometheus_client import start_http_server

    m = cfg.metrics
    server, _ = start_http_server(m.port, addr=m.host, registry=registry(cfg))
    log.info("fleet metrics on http://%s:%d/metrics", m.host, server.server_port)
    return server


__all__ = ["FleetMetrics", "backlog", "registry", "serve_metrics"]
