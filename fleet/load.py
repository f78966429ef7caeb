"""``roadside fleet load``: the fleet's load and failure test, bounded and on loopback only.

N simulated devices (:class:`~roadside.fleet.simdevice.SimDevice`: the edge's own outbox and MQTT link,
each with its own broker user and ACL) spread over the nodes of a private RabbitMQ cluster publish a 1-s
bin every second and a 60-s bin every minute; ``collectors`` ``roadside fleet collect`` processes write
them into a PostgreSQL database of the test's own. Mid-run (unless ``--no-kill``) one broker node is
SIGKILLed (at 40 % of the run) and one collector (at 60 %). After the run every outbox is drained and the
database is compared with what the devices produced:

* ``loss``: bins produced and not in the database;
* ``duplicates``: bins stored more than once (the same device, camera, interval), and rows nobody produced;
* ``rate``: bins stored per second of the run; ``latency`` p50/p95/p99: bin close -> row committed in
  PostgreSQL (``stored_at``; one clock, loopback); ``delivery``: from the device's outbox to the row, and
  ``producer_lag``: bin close -> outbox, which shows when the simulator itself (one process, N outboxes
  with a durable commit each) cannot keep up on the machine.
"""
from __future__ import annotations

import argparse
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from roadside.core.errors import ConfigError, RoadsideError
from roadside.fleet.acl import collector_user, device_user

SITE = "loadtest"
QUEUE = "roadside.fleet.collector"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def device_names(n: int) -> list[str]:
    return [f"dev{i:04d}" for i in range(n)]


@dataclass
class LoadResult:
    devices: int
    nodes: int
    collectors: int
    seconds: float
    produced: int
    stored: int
    loss: int
    duplicates: int
    rate_per_s: float
    latency_ms: dict[str, float]  # bin close -> row committed in PostgreSQL
    delivery_ms: dict[str, float]  # bin in the device's outbox -> row committed (without the simulator's own lag)
    producer_lag_ms: dict[str, float]  # bin close -> in the outbox: the simulator keeping up (or not) on this machine
    offered_per_s: float  # bins produced per second of the run
    drain_s: float  # after the last bin: until every bin was in the database
    killed: list[str] = field(default_factory=list)
    reconnects: int = 0  # device reconnections (after the node kill)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)

    def p(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 1)

    return {"p50": p(0.50), "p95": p(0.95), "p99": p(0.99), "max": round(v[-1] * 1000, 1)}


def run_load(cluster, dsn: str, workdir: Path, *, devices: int, seconds: float, collectors: int, kill: bool,
             passwords: dict[str, str], collector_password: str, long_s: int = 60, log=print) -> LoadResult:
    """Run the load on a started ``cluster`` (its users must include the devices and ``collector``) into the
    empty database ``dsn``: a 1-s bin per device every second and a ``long_s`` bin every ``long_s`` s."""
    import psycopg

    from roadside.fleet.simdevice import SimDevice

    names = device_names(devices)
    fleet_yaml = workdir / "fleet.yaml"
    fleet_yaml.write_text(yaml.safe_dump({
        "broker": {"nodes": [f"127.0.0.1:{n.amqp_port}" for n in cluster.nodes], "username": "collector",
                   "password": collector_password, "queue": QUEUE, "heartbeat_s": 2},
        "database": {"dsn": dsn}, "batch": {"max_messages": 500, "max_wait_s": 0.1}, "prefetch": 2000}))
    fleet_yaml.chmod(0o600)
    procs = []
    for i in range(collectors):
        out = open(workdir / f"collector{i}.log", "ab")
        procs.append(subprocess.Popen([sys.executable, "-m", "roadside.core.cli", "fleet", "collect", "--config",
                                       str(fleet_yaml)], stdout=out, stderr=subprocess.STDOUT))
        out.close()
    sims: list[SimDevice] = []
    killed: list[str] = []
    try:
        _wait_queue(cluster, QUEUE, procs)
        k = len(cluster.nodes)
        for i, name in enumerate(names):
            order = [(i + j) % k + 1 for j in range(k)]  # spread over the nodes, each with the others as fallback
            cfg = cluster.mqtt_config(order, username=name, password=passwords[name], reconnect_min_s=0.5,
                                      reconnect_max_s=4.0, keepalive_s=10)
            sims.append(SimDevice(cfg, SITE, name, workdir, seed=i).start())
        deadline = time.monotonic() + 120
        while not all(s.link.connected for s in sims):
            if time.monotonic() > deadline:
                raise RoadsideError(f"{sum(not s.link.connected for s in sims)} devices could not connect: "
                                    f"{next(s.link.status().last_error for s in sims if not s.link.connected)}")
            time.sleep(0.2)
        log(f"{devices} devices connected to {k} nodes, {collectors} collectors; publishing for {seconds:g} s")
        pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="produce")
        start = time.time()
        tick = int(start) + 1
        end = start + seconds
        kill_node_at = start + 0.4 * seconds if kill and k > 1 else None
        kill_collector_at = start + 0.6 * seconds if kill and collectors > 1 else None
        while tick <= end:
            time.sleep(max(0.0, tick - time.time()))
            close = float(tick)
            jobs = [pool.submit(s.produce, "cam1", close - 1, 1.0) for s in sims]
            if tick % long_s == 0:
                jobs += [pool.submit(s.produce, "cam1", close - long_s, float(long_s)) for s in sims]
            for j in jobs:
                j.result()
            if kill_node_at and time.time() >= kill_node_at:
                on = [s.link.status().broker for s in sims]
                victim = max(cluster.nodes, key=lambda n: on.count(f"127.0.0.1:{n.mqtt_port}"))
                cluster.kill(victim.index)  # the node with the most devices on it
                killed.append(f"broker node {victim.index} (with {on.count(f'127.0.0.1:{victim.mqtt_port}')} devices) "
                              f"at {time.time() - start:.1f} s")
                log(killed[-1])
                kill_node_at = None
            if kill_collector_at and time.time() >= kill_collector_at:
                procs[0].send_signal(signal.SIGKILL)
                killed.append(f"collector 1 at {time.time() - start:.1f} s")
                log(killed[-1])
                kill_collector_at = None
            tick += 1
        pool.shutdown()
        last = time.time()
        produced = {(s.device, cam, seq): v for s in sims for (cam, seq), v in s.produced.items()}
        log(f"{len(produced)} bins produced; draining")
        deadline = time.monotonic() + max(120.0, seconds)
        with psycopg.connect(dsn, autocommit=True) as db:
            while True:
                stored = db.execute("SELECT count(*) FROM fleet_counts").fetchone()[0]
                if stored >= len(produced) and all(s.pending() == 0 for s in sims):
                    break
                if time.monotonic() > deadline:
                    log(f"gave up waiting: {stored} of {len(produced)} stored, "
                        f"{sum(s.pending() for s in sims)} still in outboxes")
                    break
                time.sleep(0.2)
            drain = time.time() - last
            rows = db.execute("SELECT device, camera, seq, EXTRACT(EPOCH FROM interval_start), interval_s,"
                              " EXTRACT(EPOCH FROM stored_at) FROM fleet_counts").fetchall()
            dup_content = db.execute("SELECT count(*) - count(DISTINCT (device, camera, interval_start, interval_s))"
                                     " FROM fleet_counts").fetchone()[0]
        keys = {(d, c, s) for d, c, s, *_ in rows}
        loss = len(set(produced) - keys)
        unknown = len(keys - set(produced))
        lat = [float(stored) - (float(t0) + iv) for *_, t0, iv, stored in rows]
        delivery = [float(st) - produced[(d, c, q)][3] for d, c, q, _, _, st in rows if (d, c, q) in produced]
        lag = [at - (t0 + iv) for t0, iv, _, at in produced.values()]
        run_s = max(1e-9, last - start)
        return LoadResult(devices, len(cluster.nodes), collectors, round(run_s, 1), len(produced), len(rows), loss,
                          int(dup_content) + unknown, round(len(rows) / run_s, 1), _percentiles(lat),
                          _percentiles(delivery), _percentiles(lag), round(len(produced) / run_s, 1), round(drain, 1),
                          killed, sum(max(0, s.link.status().connects - 1) for s in sims))
    finally:
        for s in sims:
            s.stop(0.5)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_queue(cluster, queue: str, procs) -> None:
    """Until a collector has declared the queue (before it exists the broker drops what devices publish)."""
    import pika

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RoadsideError(f"a collector exited at start (status {p.returncode})")
        try:
            conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_urls()[-1]))
            try:
                conn.channel().queue_declare(queue, passive=True)
                return
            finally:
                if conn.is_open:
                    conn.close()
        except pika.exceptions.AMQPError:
            time.sleep(0.3)
    raise RoadsideError("no collector declared the queue within 90 s")


def main_load(args: argparse.Namespace) -> int:
    import logging

    import psycopg

    from roadside.fleet.cluster import RabbitCluster

    logging.getLogger("pika").setLevel(logging.CRITICAL)
    logging.getLogger("roadside.mqtt").setLevel(logging.ERROR)  # a node kill makes hundreds of devices warn

    for name, v, lo, hi in (("--devices", args.devices, 1, 2000), ("--minutes", args.minutes, 0.1, 30),
                            ("--nodes", args.nodes, 1, 5), ("--collectors", args.collectors, 1, 8)):
        if not lo <= v <= hi:
            raise ConfigError(f"{name}: {v} is outside {lo}..{hi}")
    url = urlsplit(args.dsn)
    if (url.hostname or "127.0.0.1") not in LOOPBACK:
        raise ConfigError(f"--dsn: the load test runs on loopback only, not on {url.hostname}")
    names = device_names(args.devices)
    passwords = {n: secrets.token_hex(8) for n in names}
    collector_pw = secrets.token_hex(8)
    users = [device_user(f"roadside/{SITE}", n, passwords[n]) for n in names]
    users.append(collector_user("collector", collector_pw, QUEUE))
    db_name = f"roadside_fleet_load_{secrets.token_hex(4)}"
    admin = psycopg.connect(args.dsn, autocommit=True)
    admin.execute(f'CREATE DATABASE "{db_name}"')
    dsn = args.dsn.rsplit("/", 1)[0] + f"/{db_name}"
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="roadside-fleet-load-") as tmp, \
                RabbitCluster(args.nodes, users=users, workdir=Path(tmp) / "cluster") as cluster:
            print(f"cluster of {args.nodes} started in {time.monotonic() - started:.0f} s", file=sys.stderr)
            res = run_load(cluster, dsn, Path(tmp), devices=args.devices, seconds=args.minutes * 60,
                           collectors=args.collectors, kill=not args.no_kill, passwords=passwords,
                           collector_password=collector_pw, log=lambda m: print(m, file=sys.stderr))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.close()
    if args.json:
        print(json.dumps(asdict(res)))
    else:
        print(f"devices {res.devices} on {res.nodes} nodes, {res.collectors} collectors, {res.seconds:g} s"
              f" (killed: {', '.join(res.killed) or 'nothing'})")
        print(f"bins produced {res.produced}, stored {res.stored}, loss {res.loss}, duplicates {res.duplicates}")
        print(f"rate {res.rate_per_s:g} bins/s stored ({res.offered_per_s:g} offered); latency (ms) bin close -> "
              f"PostgreSQL row {res.latency_ms}, outbox -> row {res.delivery_ms}, simulator lag {res.producer_lag_ms};"
              f" drained {res.drain_s:g} s after the last bin; device reconnections {res.reconnects}")
    return 0 if res.loss == 0 and res.duplicates == 0 else 1


__all__ = ["LoadResult", "device_names", "main_load", "run_load"]
