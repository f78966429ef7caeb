"""`roadside demo` as a new user runs it: the model fetched into a fresh store, then one command that brings up
the edge service on the shared intersection clip, the controller paired with it (timing a SUMO junction driven by
the camera's counts when the sim extra is installed) and the console; counts and controller decisions flow over a
real broker, the console shows them in headless Chromium, Ctrl-C stops all."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from helpers.broker import Mosquitto, Recorder, free_port, wait_for
from helpers.browser import chromium_page
from helpers.data import MODELS, ROOT, VIDEOS
from roadside.core.payloads import AuditEvent, CountsMessage, StateMessage
from roadside.core.topics import Topics
from roadside.demo.runner import demo_configs
from roadside.demo.sumo_junction import available

SCREENSHOT = ROOT / "edge" / "docs" / "console.png"


def _roadside(*args: str, env: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, **kw)


class Output:
    """The demo's stdout, read as it comes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.t.start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def test_the_shipped_controller_configuration_pairs_with_the_edge_default():
    """Same site and device, and every detector of the controller names a line or zone of the edge's camera."""
    edge, ctrl = demo_configs()
    assert ctrl["site"] == edge["site"] and ctrl["device"] == edge["device"]
    cams = {c["id"]: c for c in edge["cameras"]}
    for phase in ctrl["intersection"]["phases"]:
        dets = phase.get("detectors", {})
        for ref in dets.get("presence", []) + dets.get("queue", []):
            assert ref["zone"] in {z["id"] for z in cams[ref["camera"]]["zones"]}, (phase["id"], ref)
        for ref in dets.get("counts", []):
            assert ref["line"] in {ln["id"] for ln in cams[ref["camera"]]["lines"]}, (phase["id"], ref)
    assert ctrl["detection"]["counts_interval_s"] in edge["counting"]["bins_s"]


def test_without_a_model_it_says_how_to_fetch_one(tmp_path):
    env = dict(os.environ, ROADSIDE_HOME=str(tmp_path / "home"))
    env.pop("ROADSIDE_MODELS_DIR", None)
    r = _roadside("demo", "--broker", "embedded", env=env)
    assert r.returncode == 2
    assert "roadside models fetch picodet_s_416_coco --from DIR" in r.stderr and "../shared/models" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_embedded_broker_carries_qos1_and_retained_messages():
    from roadside.core.broker import BrokerClient
    from roadside.core.mqtt import MqttConfig
    from roadside.demo.brokers import choose_broker

    b = choose_broker("127.0.0.1", free_port(), "embedded")
    try:
        assert b.kind == "embedded" and "amqtt" in b.description
        acked = []
        pub = BrokerClient(MqttConfig(port=b.port), "demo-test-pub", clean_session=True, name="pub")
        pub.start()
        assert pub.wait_connected(10)
        for i in range(3):
            pub.publish("t/q", str(i), qos=1, on_ack=lambda i=i: acked.append(i))
        pub.publish("t/r", "kept", qos=1, retain=True)
        wait_for(lambda: len(acked) == 3, 10, "three acknowledgements")
        rec = Recorder(b.port, "t")  # subscribes after the fact: gets the retained one
        rec.wait_connected()
        wait_for(lambda: rec.texts("t/r"), 10, "the retained message")
        rec.close()
        pub.stop(1)
        assert acked == [0, 1, 2]
    finally:
        b.stop()


@pytest.mark.slow
def test_the_demo_runs_counts_flow_the_controller_decides_and_the_console_shows_it(tmp_path):
    home = tmp_path / "home"
    env = dict(os.environ, ROADSIDE_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("ROADSIDE_MODELS_DIR", None)
    r = _roadside("models", "fetch", "picodet_s_416_coco", "--from", str(MODELS), env=env)
    assert r.returncode == 0, r.stderr
    assert (VIDEOS / "intersection_4way.mp4").is_file()
    api_port = free_port()
    with Mosquitto(tmp_path / "broker", persistence=False) as broker:
        topics = Topics.for_site("demo")
        rec = Recorder(broker.port, topics.prefix)
        rec.wait_connected()
        proc = subprocess.Popen(
            [sys.executable, "-m", "roadside.core.cli", "demo", "--mqtt", broker.address, "--api-port", str(api_port),
             "--bin-s", "5", "--workdir", str(tmp_path / "work")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = Output(proc)
        try:
            wait_for(lambda: "Ctrl-C stops everything" in out.text or proc.poll() is not None, 180, "the demo's banner")
            assert proc.poll() is None, out.text
            text = out.text
            assert f"the configured MQTT broker at {broker.address}" in text
            assert f"console        http://127.0.0.1:{api_port}/" in text
            assert f"mosquitto_sub -h 127.0.0.1 -p {broker.port} -t 'roadside/demo/#' -v" in text
            sumo = available()
            if sumo:  # the sim extra: a SUMO junction driven by the camera's counts, lit by the controller's commands
                assert "timing a junction in SUMO" in text
            else:
                assert "in shadow mode (SUMO is not installed" in text
            # the generated configurations are the shipped pair, pointed at this broker
            edge = yaml.safe_load((tmp_path / "work" / "edge.yaml").read_text())
            assert edge["mqtt"]["port"] == broker.port and edge["counting"]["bins_s"] == [5.0, 60.0]

            # counts flow and the controller decides (from the camera's zones: actuated gap-out / max-out)
            wait_for(lambda: any(sum(d.total() for d in m.lines.values()) for m in map(CountsMessage.model_validate,
                     rec.payloads("/cam1/counts"))), 90, "a counts bin with vehicles in it")
            try:
                wait_for(lambda: [e for e in rec.payloads("/controller/events") if e["type"] == "decision"], 90,
                         "a decision of the controller")
            except AssertionError as e:  # say what the controller saw
                raise AssertionError(f"{e}; its last state: {rec.payloads('/controller/state')[-1:]}; the camera's "
                                     f"last presence: {rec.payloads('/cam1/presence')[-1:]}; the demo's last lines: {out.lines[-4:]}") from None

            with chromium_page(1400, 1000) as (page, errors):
                page.goto(f"http://127.0.0.1:{api_port}/")
                page.wait_for_function("() => { const i = document.querySelector('#cam-cam1 img.snapshot');"
                                       " return i && i.complete && i.naturalWidth === 640; }", timeout=30_000)
                page.wait_for_function("() => document.querySelectorAll('#cam-cam1 svg.chart polyline').length >= 4",
                                       timeout=30_000)
                page.wait_for_function("() => document.querySelector('#ctrl-decisions b') !== null", timeout=30_000)
                fps = float(page.inner_text("#cam-cam1 .fps").split()[0])
                assert fps > 0
                assert page.inner_text("#broker-state").startswith("connected")
                assert page.inner_text("#ctrl-mode").split()[0] in ("normal", "fail-safe")  # + phases in fail-safe
                assert page.inner_text("#ctrl-stage").split()[0] in ("NS", "EW")
                assert page.inner_text("#ctrl-policy") == "actuated"
                legend = page.inner_text("#cam-cam1 .legend")
                assert "ew_middle →" in legend and "ns_middle ←" in legend
                first_doc = page.evaluate("fetch('/api/console').then(r => r.json())")
                assert first_doc["outbox"]["depth"] >= 0 and first_doc["counts"]["cam1"]["bins"]
                page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
                if os.environ.get("ROADSIDE_UPDATE_SCREENSHOTS"):
                    SCREENSHOT.parent.mkdir(exist_ok=True)
                    page.screenshot(path=str(SCREENSHOT), full_page=True)
                assert not errors, errors

            # the running summary: frames/s, the last bin's counts, the controller's stage and mode
            wait_for(lambda: [ln for ln in out.lines if " fps (" in ln and "last 5 s: cam1:" in ln and "stage" in ln],
                     30, "a summary line with counts and the controller's stage")
            if sumo:  # the camera's vehicles entered the simulated junction, whose lights follow the commands
                wait_for(lambda: [ln for ln in out.lines if re.search(r"SUMO t=\d+ s: [1-9]\d* entered", ln)], 60,
                         "vehicles entering the SUMO junction")
                commands = rec.payloads("/controller/command")
                assert commands and {"ns", "ew"} == set(commands[-1]["signals"])
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # Ctrl-C
            rc = proc.wait(90)
            out.t.join(5)
        assert rc == 0, out.text
        assert "stopped (exit status: edge 0, controller 0)" in out.text
        # both said goodbye: offline on their status topics
        wait_for(lambda: rec.texts(topics.device_status("edge-1"))[-1:] == ["offline"]
                 and rec.texts(topics.controller("status"))[-1:] == ["offline"], 10, "offline from edge and controller")
        counts = [CountsMessage.model_validate(m) for m in rec.payloads("/cam1/counts")]
        assert [m.seq for m in counts] == sorted({m.seq for m in counts})  # in order, none twice
        events = [AuditEvent.model_validate(e) for e in rec.payloads("/controller/events")]
        decisions = [e for e in events if e.type == "decision"]
        assert decisions and all(e.detail["reason"] for e in decisions)
        states = [StateMessage.model_validate(s) for s in rec.payloads("/controller/state")]
        assert any(s.mode == "normal" for s in states)  # the camera's data is fresh: no fail-safe once running
        rec.close()
        audit = (tmp_path / "work" / "controller-audit.jsonl").read_text().splitlines()
        assert any(json.loads(ln)["type"] == "decision" for ln in audit)
