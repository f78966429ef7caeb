"""Edges on a private 3-node RabbitMQ cluster (fleet/cluster.py): a node dies mid-run, every edge moves to
another node of its address list, its outbox replays, and the collectors store every bin exactly once."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

from conftest import PASSWORDS, PREFIX, SITE, fleet_config
from helpers.broker import wait_for
from roadside.core.broker import BrokerClient
from roadside.fleet.collector import Collector
from roadside.fleet.simdevice import SimDevice


def device_config(cluster, device: str, order: list[int], tls: bool = False):
    return cluster.mqtt_config(order, tls=tls, username=device, password=PASSWORDS[device], reconnect_min_s=0.2,
                               reconnect_max_s=1.0, keepalive_s=5)


def start_collectors(cfg, n: int) -> list[tuple[Collector, threading.Thread]]:
    out = []
    for i in range(n):
        c = Collector(cfg, name=f"collector{i}", first_node=i)
        t = threading.Thread(target=c.run, daemon=True)
        t.start()
        out.append((c, t))
    for c, _ in out:  # the queue exists before any device publishes (else the broker drops what has no queue)
        assert c.ready.wait(60), c.stats.last_error
    return out


def stop_collectors(collectors) -> None:
    for c, _ in collectors:
        c.stop()
    for _, t in collectors:
        t.join(30)


def stored_seqs(dsn: str) -> dict[tuple[str, str], list[int]]:
    with psycopg.connect(dsn) as db:
        rows = db.execute("SELECT device, camera, seq FROM fleet_counts ORDER BY device, camera, seq").fetchall()
    out: dict = {}
    for d, c, s in rows:
        out.setdefault((d, c), []).append(s)
    return out


def test_a_node_dies_every_edge_moves_to_another_node_and_nothing_is_lost(cluster, database, tmp_path):
    cfg = fleet_config(cluster, database)
    collectors = start_collectors(cfg, 2)
    orders = {"dev1": [1, 2, 3], "dev2": [2, 3, 1], "dev3": [3, 1, 2]}
    devices = {d: SimDevice(device_config(cluster, d, o), SITE, d, tmp_path, seed=i).start()
               for i, (d, o) in enumerate(orders.items())}
    try:
        for d in devices.values():
            assert d.link.client.wait_connected(30, subscribed=False), d.link.status().last_error
        on = devices["dev1"].link.status().broker  # normally node 1, its first; kill whichever it is on
        victim = next(n.index for n in cluster.nodes if on == f"127.0.0.1:{n.mqtt_port}")
        t0 = 1_800_000_000.0
        for k in range(60):
            if k == 25:
                cluster.kill(victim)  # mid-run: dev1's node, and maybe the queue's leader
            for d in devices.values():
                d.produce("cam1", t0 + k, 1.0)
            time.sleep(0.1)
        wait_for(lambda: all(d.pending() == 0 for d in devices.values()), 90, "every outbox to be delivered")
        want = {(d.device, "cam1"): sorted(s for _, s in d.produced) for d in devices.values()}
        try:
            wait_for(lambda: stored_seqs(database) == want, 60, "every bin in the database")
        except AssertionError:
            got = stored_seqs(database)
            missing = {k: sorted(set(v) - set(got.get(k, []))) for k, v in want.items()}
            pytest.fail(f"missing in the database: {missing}; collectors: {[c.stats for c, _ in collectors]}")
        st = devices["dev1"].link.status()
        assert st.connects >= 2 and st.broker != on, st  # it moved to another node of its list
        with psycopg.connect(database) as db:
            # what is stored is what the device counted (not just a row with its key)
            for d in devices.values():
                for (cam, seq), (_, _, lines, _) in d.produced.items():
                    got = db.execute("SELECT lines FROM fleet_counts WHERE device = %s AND camera = %s AND seq = %s",
                                     (d.device, cam, seq)).fetchone()[0]
                    assert got == lines
    finally:
        for d in devices.values():
            d.stop(1.0)
        stop_collectors(collectors)
        for n in cluster.nodes:
            cluster.restart(n.index)


def test_over_tls_a_device_publishes_and_reads_only_under_its_own_prefix(cluster):
    from roadside.core.testing import Recorder

    watcher = Recorder(device_config(cluster, "ctl", [2, 3, 1], tls=True), PREFIX)  # the controller reads the site
    own = BrokerClient(device_config(cluster, "dev1", [1, 2, 3], tls=True), "acl-dev1").start()
    intruder = BrokerClient(device_config(cluster, "dev1", [1, 2, 3], tls=True), "acl-dev1-bad").start()
    try:
        watcher.wait_connected(30)
        assert own.wait_connected(30) and intruder.wait_connected(30), own.status().last_error
        assert own.config.tls is not None and own.status().broker.endswith(str(cluster.nodes[0].tls_port))
        acked = []
        own.publish(f"{PREFIX}/dev1/cam1/health", b"mine", qos=1, on_ack=lambda: acked.append("own"))
        wait_for(lambda: watcher.texts(f"{PREFIX}/dev1/cam1/health") == ["mine"], 20, "dev1's own message")
        assert acked == ["own"]
        # under dev2's prefix: the broker closes the connection instead of acknowledging, and nobody receives it
        before = intruder.status().connects
        intruder.publish(f"{PREFIX}/dev2/cam1/counts", b"forged", qos=1, on_ack=lambda: acked.append("forged"))
        wait_for(lambda: not intruder.connected or intruder.status().connects > before, 20, "the broker to refuse it")
        intruder.stop(0.1, final=False)
        # reading dev2's topics is refused too
        own.subscribe(f"{PREFIX}/dev2/#")
        wait_for(lambda: "refused a subscription" in (own.status().last_error or "") or not own.connected, 20,
                 "the subscription to be refused")
        time.sleep(1.0)
        assert "forged" not in acked
        assert watcher.texts(f"{PREFIX}/dev2/cam1/counts") == []
    finally:
        own.stop(0.2)
        intruder.stop(0.1, final=False)
        watcher.close()


def test_a_wrong_password_is_refused(cluster):
    cfg = cluster.mqtt_config([1], username="dev1", password="not-it", reconnect_min_s=0.5, reconnect_max_s=1.0)
    c = BrokerClient(cfg, "acl-wrong").start()
    try:
        assert not c.wait_connected(10, stop_on_refusal=True)
        assert c.status().state == "refused", c.status()
    finally:
        c.stop(0.1, final=False)
