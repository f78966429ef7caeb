"""The fleet's test fixtures: one private 3-node RabbitMQ cluster for the whole session (with TLS and
per-device users), and a fresh PostgreSQL database per test (created on 127.0.0.1:5432, dropped after)."""
from __future__ import annotations

import os
import secrets

import pytest

from helpers.broker import _missing, broker_tls, make_certificates
from roadside.fleet.acl import collector_user, controller_user, device_user
from roadside.fleet.config import FleetConfig
from roadside.fleet.load import SITE as LOAD_SITE
from roadside.fleet.load import device_names

SITE = "main-st"
PREFIX = f"roadside/{SITE}"
DEVICES = ["dev1", "dev2", "dev3"]
PASSWORDS = {d: secrets.token_hex(8) for d in [*DEVICES, "ctl", "collector"]}
QUEUE = "roadside.fleet.collector"
#: the simulated devices of the short load test (tests/fleet/test_fleet_load.py), each its own user
LOAD_DEVICES = device_names(12)
LOAD_PASSWORDS = {d: secrets.token_hex(8) for d in LOAD_DEVICES}
PG_DSN = os.environ.get("ROADSIDE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    from roadside.fleet.cluster import ClusterError, RabbitCluster

    certs = make_certificates(tmp_path_factory.mktemp("fleet-certs"))
    users = [device_user(PREFIX, d, PASSWORDS[d]) for d in DEVICES]
    users += [device_user(f"roadside/{LOAD_SITE}", d, LOAD_PASSWORDS[d]) for d in LOAD_DEVICES]
    users += [controller_user(PREFIX, "ctl", PASSWORDS["ctl"]), collector_user("collector", PASSWORDS["collector"], QUEUE)]
    try:
        c = RabbitCluster(3, users=users, tls=broker_tls(certs))
    except ClusterError as e:
        _missing(str(e))
    c.certs = certs
    with c:
        yield c


def _admin():
    import psycopg

    try:
        return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        _missing(f"PostgreSQL is not reachable at {PG_DSN} ({e}); install and start postgresql")


@pytest.fixture
def database():
    """A fresh database's DSN; dropped after the test."""
    name = f"roadside_fleet_test_{secrets.token_hex(4)}"
    admin = _admin()
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def delete_queue(cluster) -> None:
    """The collectors' queue starts empty in each test (earlier tests' messages stay in it otherwise)."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_urls()[1]))
    try:
        conn.channel().queue_delete(QUEUE)
    finally:
        conn.close()


def fleet_config(cluster, dsn: str, **over) -> FleetConfig:
    """The collector's configuration for ``cluster`` and ``dsn``, with the queue deleted (a fresh one per test)."""
    delete_queue(cluster)
    data = {"broker": {"nodes": [f"127.0.0.1:{n.amqp_port}" for n in cluster.nodes], "username": "collector",
                       "password": PASSWORDS["collector"], "queue": QUEUE, "heartbeat_s": 2},
            "database": {"dsn": dsn}, "batch": {"max_messages": 200, "max_wait_s": 0.05}}
    data.update(over)
    return FleetConfig.model_validate(data)
