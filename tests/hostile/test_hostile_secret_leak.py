"""Issue 11, item 7: no planted secret appears in any output.

A real edge service runs with two cameras whose URLs carry passwords (an RTSP camera that refuses the
connection, an HTTP stream with a password and a ``?token=``), a broker password and an API token; a real
controller, with its own broker password, reads that edge's health (and copies its reasons into its
fail-safe events). Every output is then searched for every secret: the service's log, every MQTT message on
the broker, every endpoint of the health API, the controller's log and events, and the errors of
``roadside edge check``. The redacted URLs must be there (the test sees the camera errors), the secrets
must not."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

from helpers.broker import Mosquitto, Recorder, free_port, wait_for
from helpers.controller import fast_config
from helpers.data import ROOT
from helpers.edge_service import ServiceProcess, site_config
from roadside.controller.service import ControllerService
from roadside.core.mqtt import MqttConfig

SECRETS = {"rtsp": "S3cr-et@pw1", "http": "H77p-secret2", "token_param": "TOK3N-secret3", "edge_mqtt": "Mq77-secret4",
           "controller_mqtt": "Ctrl-secret5", "api_token": "Api-token-secret6-0123456789"}
USERS = {"edge-t": SECRETS["edge_mqtt"], "controller": SECRETS["controller_mqtt"], "recorder": "recorder-pw"}


def leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def test_no_planted_secret_reaches_any_output(tmp_path, caplog):
    broker = Mosquitto(tmp_path / "broker", users=USERS, persistence=False).start()
    mq = lambda user: MqttConfig(port=broker.port, username=user, password=USERS[user],  # noqa: E731
                                 reconnect_min_s=0.2, reconnect_max_s=1.0)
    rec = Recorder(mq("recorder"), None)
    rtsp = f"rtsp://operator:{SECRETS['rtsp']}@127.0.0.1:{free_port()}/stream"
    http = f"http://viewer:{SECRETS['http']}@127.0.0.1:{free_port()}/live.ts?token={SECRETS['token_param']}"
    line = [{"id": "l1", "a": [10, 10], "b": [100, 10]}]
    api = free_port()
    conf = site_config(tmp_path, broker_port=broker.port, api_port=api,
                       mqtt={"username": "edge-t", "password": SECRETS["edge_mqtt"]},
                       api={"token": SECRETS["api_token"]}, sources={"open_timeout_s": 3, "backoff_max_s": 2},
                       cameras=[{"id": "cam1", "source": rtsp, "lines": line}, {"id": "cam2", "source": http, "lines": line}])
    ctrl_cfg = fast_config(mq("controller"), site="test", device="edge-t")
    svc = ServiceProcess(conf, api, tmp_path / "service.log")
    ctrl = ControllerService(ctrl_cfg)
    stop = threading.Event()
    try:
        rec.wait_connected()
        with caplog.at_level(logging.DEBUG):
            ctrl.start()
            svc.start()
            err = lambda cam: [h for h in rec.payloads(f"/{cam}/health")  # noqa: E731
                               if any("**********" in r for r in h["reasons"])]
            wait_for(lambda: err("cam1") and err("cam2"), 60, "both cameras' health with their (redacted) errors")
            assert "rtsp://operator:**********@" in " ".join(err("cam1")[0]["reasons"])
            th = threading.Thread(target=ctrl.run, args=(stop,), daemon=True)
            th.start()
            wait_for(lambda: [e for e in rec.payloads("/controller/events")
                              if "rtsp://operator:**********@" in json.dumps(e)], 60,
                     "a controller event (fail-safe inputs) naming the camera's (redacted) error")
            bodies = {path: svc.get(path, token=token)
                      for path in ("/healthz", "/readyz", "/api/status", "/api/config", "/metrics", "/openapi.json",
                                   "/api/cameras/cam1/snapshot.jpg", "/api/cameras/cam2/snapshot.jpg")
                      for token in (None, SECRETS["api_token"])}
            assert bodies["/readyz"][0] == 503 and b"operator:**********@" in bodies["/readyz"][1]
            check = subprocess.run([sys.executable, "-m", "roadside.core.cli", "edge", "check", "--config", str(conf)],
                                   cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        svc.stop()
        stop.set()
        ctrl.stop()
        rec.close()
        broker.close()
    found = {}
    found["service log"] = leaks(svc.log())
    found["mqtt"] = sorted({n for _, t, p, _ in rec.messages for n in leaks(t + p.decode("utf-8", "replace"))})
    found.update({f"api {path}": leaks(body.decode("utf-8", "replace")) for path, (code, body) in bodies.items()})
    found["controller log"] = leaks(caplog.text)
    found["edge check"] = leaks(check.stdout + check.stderr)
    assert svc.log() and rec.messages and caplog.text
    assert {where: names for where, names in found.items() if names} == {}
