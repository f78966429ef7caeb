"""The collector on the real cluster and a real PostgreSQL: redeliveries and replays are stored once, late bins
are history and never live, partial bins keep observed_s, malformed or forged messages are rejected with the
reason; the report's 15-minute table, coverage and fail-safe periods; the fleet's Prometheus metrics."""
from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import threading
import urllib.request
from datetime import datetime, timedelta, timezone

import pika
import psycopg

from conftest import PASSWORDS, PREFIX, SITE, fleet_config
from helpers.broker import wait_for
from roadside.core.broker import BrokerClient
from roadside.core.payloads import AuditEvent, CountsMessage, HealthMessage, PlanMessage, StateMessage
from roadside.fleet.collector import Collector, declare

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def counts(seq, cam, minute, interval_s=60.0, rng=random.Random(1), **kw) -> CountsMessage:
    lines = {"L1": {"forward": {"car": rng.randint(0, 30), "truck": rng.randint(0, 5)}, "backward": {"car": rng.randint(0, 30)}}}
    return CountsMessage(seq=seq, site=SITE, device="dev1", camera=cam, interval_start=T0 + timedelta(minutes=minute),
                         interval_s=interval_s, lines=lines, config_hash="h", model="m", **kw)


class Publisher:
    def __init__(self, cluster, user: str, node: int):
        cfg = cluster.mqtt_config([node], username=user, password=PASSWORDS[user], reconnect_min_s=0.2, reconnect_max_s=1)
        self.client = BrokerClient(cfg, f"pub-{user}").start()
        assert self.client.wait_connected(30, subscribed=False), self.client.status().last_error
        self.sent = self.acked = 0

    def send(self, topic: str, payload: bytes | str) -> None:
        self.sent += 1
        self.client.publish(topic, payload, qos=1, on_ack=self._ack)

    def _ack(self) -> None:
        self.acked += 1

    def close(self) -> None:
        wait_for(lambda: self.acked == self.sent, 30, "every message acknowledged")
        self.client.stop(0.5, final=False)


def test_collector_stores_once_keeps_late_as_history_and_the_report_adds_up(cluster, database, tmp_path):
    cfg = fleet_config(cluster, database)
    collector = Collector(cfg, first_node=1)
    thread = threading.Thread(target=collector.run, daemon=True)
    thread.start()
    assert collector.ready.wait(60), collector.stats.last_error
    dev, ctl = Publisher(cluster, "dev1", 1), Publisher(cluster, "ctl", 2)
    topic = lambda cam: f"{PREFIX}/dev1/{cam}/counts"  # noqa: E731
    sent: list[CountsMessage] = []
    try:
        dev.send(f"{PREFIX}/dev1/status", "online")
        for m in range(15):  # cam1: the 08:00 quarter complete in 60-s bins
            sent.append(counts(m, "cam1", m))
        sent.append(counts(15, "cam1", 15, late=True))  # 08:15 quarter: two late bins and a partial one
        sent.append(counts(16, "cam1", 16, late=True))
        sent.append(counts(17, "cam1", 17, partial=True, observed_s=30.0))
        for m in range(15):  # cam2 publishes 60-s and 900-s bins: the report must use the 900-s ones only
            sent.append(counts(100 + m, "cam2", m))
        sent.append(counts(200, "cam2", 0, interval_s=900.0))
        for c in sent:
            dev.send(topic(c.camera), c.model_dump_json())
        for c in (sent[5], sent[3].model_copy(update={"late": True})):  # a redelivery and an outbox replay
            dev.send(topic(c.camera), c.model_dump_json())
        dev.send(topic("cam1"), b"{not json")
        forged = counts(500, "cam1", 20).model_copy(update={"device": "dev2"})
        dev.send(topic("cam1"), forged.model_dump_json())
        for minute, state in ((0, "ok"), (5, "degraded"), (6, "degraded"), (10, "ok")):
            h = HealthMessage(site=SITE, device="dev1", camera="cam1", ts=T0 + timedelta(minutes=minute), state=state,
                              reasons=[] if state == "ok" else ["camera cam1: no frames for 12 s"])
            dev.send(f"{PREFIX}/dev1/cam1/health", h.model_dump_json())
        dev.send(f"{PREFIX}/dev1/status", "offline")
        ctl.send(f"{PREFIX}/controller/plan", PlanMessage(site=SITE, ts=T0, policy="actuated", mode="normal",
                                                          plan={"cycle_s": 90}).model_dump_json())
        for minute, mode in ((1, "normal"), (3, "fail-safe"), (4, "fail-safe"), (7, "normal")):
            s = StateMessage(site=SITE, ts=T0 + timedelta(minutes=minute), mode=mode, stage="A", changing_to=None,
                             time_in_stage_s=3.0, signals={"p1": "green"}, time_in_signal_s={"p1": 3.0})
            ctl.send(f"{PREFIX}/controller/state", s.model_dump_json())
        ev = AuditEvent(site=SITE, ts=T0 + timedelta(minutes=3), seq=7, type="failsafe", t=180.0,
                        detail={"reason": "edge dev1 offline"})
        ctl.send(f"{PREFIX}/controller/events", ev.model_dump_json())
        ctl.send(f"{PREFIX}/controller/events", ev.model_dump_json())  # redelivered
        dev.close()
        ctl.close()
        total = dev.sent + ctl.sent
        wait_for(lambda: collector.stats.messages >= total, 30, "the collector to take every message")
    finally:
        collector.stop()
        thread.join(30)

    with psycopg.connect(database) as db:
        rows = db.execute("SELECT camera, seq, late, partial, observed_s, lines FROM fleet_counts ORDER BY camera, seq").fetchall()
        assert [(r[0], r[1]) for r in rows] == sorted((c.camera, c.seq) for c in sent)  # each once, forged not
        by_key = {(r[0], r[1]): r for r in rows}
        assert by_key[("cam1", 3)][2] is False  # the first copy wins; the late replay changed nothing
        assert by_key[("cam1", 15)][2] is True and by_key[("cam1", 17)][3:5] == (True, 30.0)
        live = dict(db.execute("SELECT camera || '/' || interval_s, seq FROM fleet_counts_live").fetchall())
        assert live["cam1/60"] == 17  # the newest on-time bin; the late 08:15/08:16 bins never became live
        rejected = db.execute("SELECT error FROM fleet_rejected ORDER BY id").fetchall()
        assert len(rejected) == 2 and "device 'dev2'" in rejected[1][0], rejected
        assert db.execute("SELECT count(*) FROM fleet_controller_events").fetchone()[0] == 1
        assert [r[0] for r in db.execute("SELECT mode FROM fleet_controller_modes ORDER BY ts")] == \
            ["normal", "fail-safe", "normal"]
        assert db.execute("SELECT status FROM fleet_devices WHERE device = 'dev1'").fetchone()[0] == "offline"
    assert collector.stats.duplicates == 3 and collector.stats.rejected == 2

    out = subprocess.run([sys.executable, "-m", "roadside.core.cli", "fleet", "report", "--dsn", database, "--site", SITE,
                          "--from", "2026-12-01T08:00", "--to", "2026-12-01T08:30", "--format", "csv"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    got = {(r["slot_start"][11:16], r["camera"], r["direction"], r["class"]): r for r in table}
    for cam, wanted_len in (("cam1", 60.0), ("cam2", 900.0)):
        for slot in (0, 15):
            bins = [c for c in sent if c.camera == cam and c.interval_s == wanted_len and slot <= c.interval_start.minute < slot + 15]
            cov = min(1.0, sum(c.observed_s if c.observed_s is not None else c.interval_s for c in bins) / 900)
            for direction, cls in (("forward", "car"), ("forward", "truck"), ("backward", "car")):
                row = got[(f"08:{slot:02d}", cam, direction, cls)]
                assert abs(float(row["coverage"]) - cov) < 1e-3, (cam, slot, row)
                want = sum(getattr(c.lines["L1"], direction).get(cls, 0) for c in bins)
                assert row["vehicles"] == (str(want) if cov > 0 else ""), (cam, slot, direction, cls)
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()  # status changes are stamped on arrival
    out = subprocess.run([sys.executable, "-m", "roadside.core.cli", "fleet", "report", "--dsn", database, "--site", SITE,
                          "--from", "2026-12-01T08:00", "--to", later, "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    rep = json.loads(out.stdout)
    assert [(p["from"][11:16], p["to"][11:16]) for p in rep["failsafe"]] == [("08:03", "08:07")]
    assert [p["state"] for p in rep["health"]] == ["ok", "degraded", "ok"]
    assert len(rep["offline"]) == 1 and rep["offline"][0]["to"] is None


def test_fleet_metrics_report_devices_counts_age_and_backlog(cluster, database):
    from roadside.fleet.metrics import serve_metrics
    from roadside.fleet.store import Incoming, connect, create_schema, write_batch

    c = counts(0, "cam1", 0)
    with connect(database) as db:
        create_schema(db)
        write_batch(db, [Incoming("k", SITE, "dev1", None, "status", b"online"),
                         Incoming("k", SITE, "dev1", "cam1", "counts", c.model_dump_json().encode()),
                         Incoming("k", SITE, "dev2", None, "status", b"offline")])
    cfg = fleet_config(cluster, database, metrics={"host": "127.0.0.1", "port": 0})  # the queue deleted
    server = serve_metrics(cfg)

    def scrape() -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=30).read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line and not line.startswith("#")}

    try:
        before = scrape()
        conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_urls()[0]))
        declare(conn.channel(), cfg)
        conn.close()
        values = scrape()
    finally:
        server.shutdown()
    assert before["roadside_fleet_broker_up"] == 1 and before["roadside_fleet_queue_declared"] == 0
    assert "roadside_fleet_backlog_messages" not in before
    assert values["roadside_fleet_queue_declared"] == 1
    assert values['roadside_fleet_devices{state="online"}'] == 1
    assert values['roadside_fleet_devices{state="offline"}'] == 1
    assert values[f'roadside_fleet_device_up{{device="dev1",site="{SITE}"}}'] == 1
    assert 0 <= values[f'roadside_fleet_last_counts_age_seconds{{device="dev1",site="{SITE}"}}'] < 60
    assert values["roadside_fleet_backlog_messages"] == 0  # the queue exists and nothing waits in it
    assert values["roadside_fleet_counts_bins"] == 1


def test_grafana_dashboard_queries_run_on_the_store_and_name_real_metrics(cluster, database):
    import re
    from importlib.resources import files

    from prometheus_client import generate_latest

    from roadside.fleet.metrics import registry
    from roadside.fleet.store import connect, create_schema

    dash = json.loads(files("roadside.fleet").joinpath("grafana/fleet.json").read_text())
    targets = [t for p in dash["panels"] for t in p["targets"]]
    with connect(database) as db:
        create_schema(db)
        for t in [t for t in targets if "rawSql" in t] + [{"rawSql": dash["templating"]["list"][0]["query"]}]:
            sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '1 day' AND now()", t["rawSql"])
            db.execute(sql.replace("$site", SITE)).fetchall()  # a typo in a column or table fails here
        db.rollback()
    cfg = fleet_config(cluster, database)
    conn = pika.BlockingConnection(pika.URLParameters(cluster.amqp_urls()[0]))
    declare(conn.channel(), cfg)
    conn.close()
    exposed = set(re.findall(r"^# TYPE (roadside_fleet_\w+)", generate_latest(registry(cfg)).decode(), re.M))
    used = {m for t in targets if "expr" in t for m in re.findall(r"roadside_fleet_\w+", t["expr"])}
    assert used and used <= exposed, used - exposed

