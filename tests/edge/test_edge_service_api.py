"""The service end to end on a private broker: topics and payloads, the health API, a bad source beside a
good one, and a clean SIGTERM (flush, ``offline``, exit 0)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import cv2
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from helpers.broker import Mosquitto, Recorder, free_port, wait_for
from helpers.data import BAD, VIDEOS
from helpers.edge_service import ServiceProcess, site_config
from roadside.core.payloads import MAX_REASON_CHARS, CountsMessage, HealthMessage, PresenceMessage
from roadside.edge.soak import check_delivery

TOKEN = "test-token-0123456789"
PREFIX = "roadside/test/edge-t"


def test_service_publishes_serves_its_health_and_stops_cleanly(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    rec = Recorder(broker.port, PREFIX, "api-test-recorder")
    api = free_port()
    # the broken camera's file sits at a long path, so that its reason (path, decoder's words) is longer
    # than a health message carries: it must be cut to fit, never stop health from going out
    deep = tmp_path / ("d" * 160) / ("e" * 160)
    deep.mkdir(parents=True)
    (deep / "broken.avi").symlink_to(BAD / "bgslibrary_demo_48x48_raw.avi")
    cameras = [
        {"id": "cam1", "source": str(VIDEOS / "intersection_4way.mp4"), "loop": True,
         "lines": [{"id": "ew", "a": [330, 330], "b": [345, 95]}],
         "zones": [{"id": "box", "polygon": [[200, 110], [560, 110], [560, 235], [200, 235]]}]},
        {"id": "broken", "source": str(deep / "broken.avi")},  # crashes the decoder
    ]
    conf = site_config(tmp_path, broker_port=broker.port, api_port=api, cameras=cameras,
                       api={"token": TOKEN})
    svc = ServiceProcess(conf, api, tmp_path / "service.log")
    try:
        rec.wait_connected()
        svc.start()
        wait_for(lambda: len(rec.payloads("/cam1/counts")) >= 3, 60, "three counts messages of cam1")
        wait_for(lambda: rec.payloads("/broken/health") and rec.payloads("/cam1/health"), 30, "health of both cameras")

        # -- the health API ---------------------------------------------------------------------
        assert svc.get("/healthz") == (200, b'{"status":"alive"}')
        code, body = svc.get("/readyz")
        ready = json.loads(body)
        assert code == 503 and ready["ready"] is False
        assert len(ready["reasons"]) == 1 and ready["reasons"][0].startswith("camera broken: reconnecting")
        assert "decoder crashed" in ready["reasons"][0] or "too small" in ready["reasons"][0]

        st = svc.status()
        c1, bad = st["cameras"]["cam1"], st["cameras"]["broken"]
        assert c1["state"] == "ok" and c1["source_state"] == "live" and c1["frames_processed"] > 0
        assert c1["fps_in"] > 0 and c1["detector_latency_ms"] > 0 and c1["last_frame_age_s"] < 2
        assert c1["frames_in"] >= c1["frames_processed"] and c1["model"] == "picodet_s_320_coco"
        assert c1["last_publish_age_s"] is not None
        assert bad["state"] == "offline" and bad["reconnects"] >= 1 and bad["frames_in"] == 0
        assert st["broker"]["connected"] and st["broker"]["state"] == "connected"
        assert st["outbox"]["dropped_total"] == 0 and st["models"] == ["picodet_s_320_coco"] and st["uptime_s"] > 0
        assert st["system"]["disk_free_bytes"] > 0 and "cpu_temperature_c" in st["system"]

        code, body = svc.get("/metrics")
        assert code == 200
        metrics = {m.name: m for m in text_string_to_metric_families(body.decode())}
        fps = {s.labels["camera"]: s.value for s in metrics["roadside_camera_fps_in"].samples}
        assert fps["cam1"] > 0 and fps["broken"] == 0
        assert metrics["roadside_broker_connected"].samples[0].value == 1
        assert "roadside_outbox_depth" in metrics and "process_resident_memory_bytes" in metrics
        states = {(s.labels["camera"], s.labels["state"]): s.value for s in metrics["roadside_camera_state"].samples}
        assert states[("broken", "offline")] == 1 and states[("cam1", "ok")] == 1

        code, jpeg = svc.get("/api/cameras/cam1/snapshot.jpg")
        assert code == 200
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (480, 640, 3)
        assert svc.get("/api/cameras/nope/snapshot.jpg")[0] == 404
        assert svc.get("/api/cameras/broken/snapshot.jpg")[0] == 503

        code, body = svc.get("/api/config")
        assert code == 200 and TOKEN.encode() not in body
        assert json.loads(body)["api"]["token"] == "**********"
        code, body = svc.get("/openapi.json")
        spec = json.loads(body)
        assert code == 200 and "/api/cameras/{camera_id}/snapshot.jpg" in spec["paths"]
        # /api/status and /readyz are documented by their response models, field by field
        ok_schema = spec["paths"]["/api/status"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok_schema == {"$ref": "#/components/schemas/ServiceStatus"}
        schemas = spec["components"]["schemas"]
        for name, served in (("ServiceStatus", st), ("CameraStatus", c1), ("BrokerStatus", st["broker"]),
                             ("OutboxStatus", st["outbox"]), ("SystemStatus", st["system"]), ("Readiness", ready)):
            assert set(schemas[name]["properties"]) == set(served), name
        assert schemas["CameraStatus"]["properties"]["frames_dropped"]["description"]
        assert "Readiness" in json.dumps(spec["paths"]["/readyz"]["get"]["responses"]["503"])

        # changing state needs the bearer token
        assert svc.get("/api/cameras/cam1/reconnect", method="POST")[0] == 401
        assert svc.get("/api/cameras/cam1/reconnect", token="wrong-token-0123456789", method="POST")[0] == 401
        code, body = svc.get("/api/cameras/cam1/reconnect", token=TOKEN, method="POST")
        assert code == 202, body
        n0 = svc.status()["cameras"]["cam1"]["frames_in"]
        wait_for(lambda: svc.status()["cameras"]["cam1"]["frames_in"] > n0 + 10, 20, "frames after the reconnect")

        # -- a clean stop: flush, offline, exit 0 ------------------------------------------------
        assert svc.terminate() == 0
        wait_for(lambda: rec.texts(f"{PREFIX}/status")[-1:] == ["offline"], 10, "status offline")
    finally:
        svc.stop()
        rec.close()
        broker.stop()

    assert rec.texts(f"{PREFIX}/status")[0] == "online"
    counts = [CountsMessage.model_validate(m) for m in rec.payloads("/cam1/counts")]
    assert [m.seq for m in counts] == list(range(len(counts)))
    for m in counts:
        assert (m.site, m.device, m.camera, m.interval_s) == ("test", "edge-t", "cam1", 1.0)
        assert m.interval_start.tzinfo is not None and m.interval_start.utcoffset().total_seconds() == 0
        assert m.interval_start.microsecond == 0  # 1-s bins start on whole UTC seconds
        assert set(m.lines) == {"ew"} and m.model == "picodet_s_320_coco" and len(m.config_hash) == 16
        assert not m.late
    starts = [m.interval_start for m in counts]
    assert all((b - a).total_seconds() >= 1 for a, b in zip(starts, starts[1:]))
    # the first bin (start-up) and the last (flushed at SIGTERM) are partial; the rest cover their full second
    assert counts[0].partial and counts[-1].partial
    assert len(counts) >= 4 and any(not m.partial and m.observed_s == 1.0 for m in counts[1:-1]), counts
    assert all(m.partial == (m.observed_s < 0.99) for m in counts), counts
    assert counts[-1].interval_start <= datetime.now(timezone.utc)
    delivery = check_delivery(rec, tmp_path / "state" / "outbox.sqlite")
    assert delivery["ok"], delivery
    # a camera that never worked still reports its bins, each observed for 0 s (issue 11, item 14)
    broken = [CountsMessage.model_validate(m) for m in rec.payloads("/broken/counts")]
    assert broken and all(m.observed_s == 0 and m.partial for m in broken)

    for m in rec.payloads("/cam1/presence"):
        PresenceMessage.model_validate(m)
    assert rec.payloads("/cam1/presence"), "no zone change in the clip's first seconds?"
    health = [HealthMessage.model_validate(m) for m in rec.payloads("/broken/health")]
    assert health[-1].state == "offline"
    assert "decoder crashed" in health[-1].reasons[0] or "too small" in health[-1].reasons[0]
    assert all(len(r) <= MAX_REASON_CHARS for m in health for r in m.reasons)
    assert any(r.endswith("\u2026") for m in health for r in m.reasons)  # the long reason was cut, not dropped
    assert [HealthMessage.model_validate(m).state for m in rec.payloads("/cam1/health")][-1] == "ok"
