"""Issue 11, edge items 11, 12 and 14: what a careless installer meets is one clear error, and a dead camera
still reports.

* ``edge run`` with no model installed: one line with the fetch command, exit 2, before the broker hears
  ``online`` (once a 39-line traceback ending in "Cannot operate on a closed database");
* a camera file that does not exist: a configuration error naming the camera, not retried forever;
* lines and zones outside the frame: ``edge check`` names them when the source can be opened, and the
  running service reports them (``/readyz``) once the frame size is known;
* a camera that never opens publishes its bins all the same, with ``observed_s: 0``."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import yaml

from helpers.broker import Mosquitto, Recorder, free_port, wait_for
from helpers.data import ROOT, VIDEOS
from helpers.edge_service import SMALL_MODEL, ServiceProcess, site_config

OUTSIDE = {"id": "far", "a": [5000, -300], "b": [6000, -100]}
INSIDE = {"id": "near", "a": [330, 330], "b": [345, 95]}


def roadside(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_edge_run_without_a_model_is_one_line_with_the_fetch_command(tmp_path):
    broker = Mosquitto(persistence=False).start()
    rec = Recorder(broker.port, None)
    try:
        rec.wait_connected()
        conf = site_config(tmp_path, broker_port=broker.port, api_port=free_port(), detector={"model": None})
        r = roadside("edge", "run", "--config", str(conf), env=dict(os.environ, ROADSIDE_HOME=str(tmp_path / "home")))
        assert r.returncode == 2, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "roadside models fetch picodet_s_416_coco" in lines[0] and "detector.model" in lines[0]
        assert not [t for _, t, p, _ in rec.messages if p == b"online"]  # it never announced itself
    finally:
        rec.close()
        broker.close()


def test_a_camera_file_that_does_not_exist_is_a_configuration_error(tmp_path):
    missing = tmp_path / "nowhere.mp4"
    conf = site_config(tmp_path, broker_port=free_port(), api_port=free_port(),
                       cameras=[{"id": "cam1", "source": str(missing), "lines": [INSIDE]}])
    r = roadside("edge", "run", "--config", str(conf), timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"cameras[cam1].source: no such file: {missing}" in r.stderr


def test_check_names_the_lines_and_zones_outside_the_frame(tmp_path):
    cams = [{"id": "cam1", "source": str(VIDEOS / "intersection_4way.mp4"), "lines": [OUTSIDE, INSIDE],
             "zones": [{"id": "wide", "polygon": [[0, 0], [700, 0], [700, 100]]}]}]
    conf = site_config(tmp_path, broker_port=free_port(), api_port=free_port(), cameras=cams)
    r = roadside("edge", "check", "--config", str(conf))
    assert r.returncode == 2, r.stderr
    assert "cameras[0].lines[0].a (line 'far'): [5000.0, -300.0] is outside the 640x480 frame" in r.stderr
    assert "cameras[0].lines[0].b (line 'far'): [6000.0, -100.0] is outside the 640x480 frame" in r.stderr
    assert "cameras[0].zones[0].polygon[1] (zone 'wide')" in r.stderr and "'near'" not in r.stderr
    cams[0]["lines"], cams[0]["zones"] = [INSIDE], []
    (tmp_path / "site.yaml").write_text(yaml.safe_dump({**yaml.safe_load(conf.read_text()), "cameras": cams}))
    assert roadside("edge", "check", "--config", str(conf)).returncode == 0


def test_a_dead_camera_still_reports_its_bins_and_a_line_outside_the_frame_is_reported(tmp_path):
    broker = Mosquitto(persistence=False).start()
    rec = Recorder(broker.port, "roadside/test/edge-t")
    api = free_port()
    cams = [{"id": "cam1", "source": str(VIDEOS / "intersection_4way.mp4"), "loop": True, "lines": [OUTSIDE, INSIDE]},
            {"id": "dead", "source": f"rtsp://127.0.0.1:{free_port()}/never", "lines": [INSIDE]}]
    conf = site_config(tmp_path, broker_port=broker.port, api_port=api, cameras=cams,
                       detector={"model": str(SMALL_MODEL), "threads": 1})
    svc = ServiceProcess(conf, api, tmp_path / "service.log")
    try:
        rec.wait_connected()
        svc.start()
        bins = wait_for(lambda: [c for c in rec.payloads("/dead/counts")][2:], 60, "three bins of the dead camera")
        assert all(b["observed_s"] == 0 and b["partial"] and b["lines"]["near"] == {"forward": {}, "backward": {}}
                   for b in bins)
        assert [b["seq"] for b in rec.payloads("/dead/counts")] == list(range(len(rec.payloads("/dead/counts"))))
        code, body = svc.get("/readyz")
        reasons = json.loads(body)["reasons"]
        assert code == 503
        assert any("camera cam1: line 'far' a: [5000.0, -300.0] is outside the 640x480 frame" in r for r in reasons), reasons
        assert svc.status()["cameras"]["cam1"]["state"] == "degraded"
        assert "line 'far' a:" in svc.log()
    finally:
        svc.stop()
        rec.close()
        broker.close()


# -- item 8: a frozen broker, and what a drop means ---------------------------------------------------------
def test_a_frozen_broker_makes_the_edge_not_ready_and_it_recovers(tmp_path):
    """SIGSTOP: the broker keeps the TCP connection and answers nothing, the keepalive notices nothing for a
    long time; readiness follows the acknowledgements instead."""
    from roadside.core.broker import ACK_TIMEOUT_S

    broker = Mosquitto(persistence=False).start()
    rec = Recorder(broker.port, "roadside/test/edge-t")
    api = free_port()
    conf = site_config(tmp_path, broker_port=broker.port, api_port=api, mqtt={"keepalive_s": 60, "inflight": 2})
    svc = ServiceProcess(conf, api, tmp_path / "service.log")
    try:
        rec.wait_connected()
        svc.start()
        wait_for(lambda: svc.get("/readyz")[0] == 200, 60, "the service ready")
        broker.freeze()
        t0 = time.monotonic()
        body = wait_for(lambda: svc.get("/readyz")[0] == 503 and svc.get("/readyz")[1], ACK_TIMEOUT_S + 20,
                        "not ready while the broker answers nothing")
        # the reasons first: a not-ready for another cause (a stalled camera) must say which
        assert any("broker not acknowledging" in r for r in json.loads(body)["reasons"]), body
        assert time.monotonic() - t0 >= ACK_TIMEOUT_S - 1, body
        broker.thaw()
        wait_for(lambda: svc.get("/readyz")[0] == 200, 40, "ready again once the broker answers")
        # the bins held back behind the shut window arrive late, on the same connection
        wait_for(lambda: [m for m in rec.payloads("/cam1/counts") if m["late"]], 20, "late bins")
        assert rec.texts("roadside/test/edge-t/status").count("online") == 1  # it never reconnected
    finally:
        broker.thaw()
        svc.stop()
        rec.close()
        broker.close()


def test_the_outbox_never_counts_a_message_in_flight_as_dropped_and_logs_every_drop(tmp_path, caplog):
    from roadside.edge.outbox import Outbox

    box = Outbox(tmp_path / "o.sqlite", max_bytes=1024)
    flying = set()
    box.in_flight = lambda: frozenset(flying)
    payload = lambda seq: json.dumps({"seq": seq, "pad": "x" * 90}).encode()  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="roadside.edge.outbox"):
        for i in range(3):
            box.add("cam1", "t", payload)
        flying |= {m.id for m in box.pending()}  # the three oldest are published, awaiting their PUBACK
        for i in range(30):
            box.add("cam1", "t", payload)
    kept = {json.loads(m.payload)["seq"] for m in box.pending(limit=1000)}
    assert {0, 1, 2} <= kept  # still in flight: may yet be delivered, so not lost
    dropped = box.stats().dropped["cam1"]
    assert dropped == 33 - len(kept) and dropped > 0
    assert all(not (r["first_seq"] <= s <= r["last_seq"]) for r in box.dropped_ranges("cam1") for s in (0, 1, 2))
    lines = [r.getMessage() for r in caplog.records if "outbox: dropped" in r.getMessage()]
    assert lines and lines[0].startswith("outbox: dropped 1 counts message(s) beyond outbox.max_bytes")
    assert "camera cam1 seq 3-3" in lines[0]  # the oldest not in flight
    box.close()


# -- item 13: snapshots cost the camera a bounded amount -----------------------------------------------------
def test_snapshot_clients_get_a_cached_jpeg_and_are_rate_limited(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from roadside.edge.camera_worker import SNAPSHOT_EVERY_S
    from roadside.edge.health_api import SNAPSHOT_BURST

    api = free_port()
    conf = site_config(tmp_path, broker_port=free_port(), api_port=api)
    svc = ServiceProcess(conf, api, tmp_path / "service.log")
    try:
        svc.start()
        wait_for(lambda: svc.get("/api/cameras/cam1/snapshot.jpg")[0] == 200, 60, "a first snapshot")
        time.sleep(1.0)  # the bucket refills
        enc0 = svc.status()["cameras"]["cam1"]["snapshots_encoded"]
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:  # 8 clients asking as fast as they can
            answers = list(pool.map(lambda _: svc.get("/api/cameras/cam1/snapshot.jpg"), range(200)))
        elapsed = time.monotonic() - t0
        st = svc.status()["cameras"]["cam1"]
        codes = [c for c, _ in answers]
        assert codes.count(200) >= SNAPSHOT_BURST and codes.count(429) > 0, codes
        assert all(b[:2] == b"\xff\xd8" for c, b in answers if c == 200)  # JPEGs
        # far fewer encodes than answers: one per SNAPSHOT_EVERY_S at most
        assert st["snapshots_encoded"] - enc0 <= elapsed / SNAPSHOT_EVERY_S + 2
        assert len({b for c, b in answers if c == 200}) < codes.count(200)  # the same cached JPEG served again
        assert st["state"] == "ok" and st["frames_processed"] > 0
    finally:
        svc.stop()


def test_a_reader_that_goes_away_is_no_traceback():
    r = subprocess.run(f"{sys.executable} -m roadside.core.cli edge schema counts | head -1", shell=True, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "{" and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
