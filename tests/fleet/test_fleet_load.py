"""The short version of `roadside fleet load`: simulated devices (the edge's outbox and MQTT link) on the
3-node cluster with two `roadside fleet collect` processes; one broker node and one collector are SIGKILLed
mid-run; every bin produced is in PostgreSQL exactly once."""
from __future__ import annotations

from conftest import LOAD_DEVICES, LOAD_PASSWORDS, PASSWORDS, delete_queue
from roadside.fleet.load import run_load


def test_load_with_a_node_and_a_collector_killed_loses_and_duplicates_nothing(cluster, database, tmp_path):
    delete_queue(cluster)
    try:
        res = run_load(cluster, database, tmp_path, devices=len(LOAD_DEVICES), seconds=24, collectors=2, kill=True,
                       passwords=LOAD_PASSWORDS, collector_password=PASSWORDS["collector"], long_s=10)
    finally:
        for n in cluster.nodes:
            cluster.restart(n.index)  # the killed one (the node with the most devices)
    print(res)
    assert len(res.killed) == 2, res.killed  # both failures really happened mid-run
    assert res.produced >= len(LOAD_DEVICES) * 24 and res.reconnects >= 1
    assert res.loss == 0 and res.duplicates == 0, res
    assert res.stored == res.produced
    assert res.delivery_ms["p50"] > 0
