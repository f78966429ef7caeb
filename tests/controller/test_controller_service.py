"""The controller service against a real Mosquitto: topics, retained plan/state, audit events, commands,
and the fail-safe on stale, malformed and offline edge data, with automatic recovery."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from helpers.broker import free_port
from helpers.controller import SITE, Listener, StandInEdge, fast_config, serving
from roadside.controller.service import BrokerError, ControllerService
from roadside.core.payloads import HealthMessage


@pytest.fixture
def running(broker):
    """A controller service on a private broker, with an edge and a listener."""
    with serving(fast_config(broker.port), broker.port) as (svc, edge, listener, _):
        yield svc, edge, listener


def failsafe_events(listener, phase, state):
    return [e for e in listener.events("failsafe") if e["detail"]["phase"] == phase and e["detail"]["state"] == state]


def test_service_publishes_plan_state_commands_and_explained_decisions(running):
    svc, edge, listener = running
    listener.wait(lambda: failsafe_events(listener, "ew", "normal"), what="recovery once data flows")
    # a vehicle waits on EW: the controller must serve it, and say why
    edge.presence("cam2", {"ew_stop": (True, 1), "ew_queue": (True, 2)})
    ev = listener.wait(lambda: [e for e in listener.events("decision") if e["detail"]["to"] == "EW"],
                       what="a change to EW")[0]
    assert ev["detail"]["policy"] == "actuated" and ev["detail"]["reason"]
    assert ev["detail"]["inputs"]["ew"]["call"] is True
    edge.presence("cam2", {"ew_stop": (False, 0), "ew_queue": (False, 0)})
    cmds = listener.wait(lambda: [c for c in listener.json("command") if c["signals"]["ew"] == "green"],
                         what="a command showing EW green")
    assert cmds[0]["signals"]["ns"] == "red"
    states = listener.json("state")
    assert {s["mode"] for s in states} >= {"fail-safe", "normal"}
    # plan and state are retained: a new subscriber gets them at once
    late = Listener(svc.cfg.mqtt.port)
    try:
        late.wait(lambda: late.json("plan") and late.json("state"), what="retained plan and state")
        assert all(r for t, _, r in late.msgs if t.endswith(("/plan", "/state")))
        assert late.json("plan")[0]["policy"] == "actuated"
    finally:
        late.close()
    seqs = [e["seq"] for e in listener.events()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_stale_camera_puts_its_phases_on_failsafe_and_recovers(running):
    svc, edge, listener = running
    listener.wait(lambda: failsafe_events(listener, "ew", "normal"), what="initial recovery")
    edge.silent.add("cam2")
    ev = listener.wait(lambda: failsafe_events(listener, "ew", "fail-safe"), what="ew fail-safe")[0]
    assert any("stale" in r for r in ev["detail"]["reasons"])
    assert not failsafe_events(listener, "ns", "fail-safe")  # cam1 is still fine
    listener.wait(lambda: any(s["mode"] == "fail-safe" for s in listener.json("state")[-3:]), what="state mode")
    # on recall, EW is served without any presence call
    listener.wait(lambda: [c for c in listener.json("command") if c["signals"]["ew"] == "green"], timeout=40,
                  what="EW served on recall")
    edge.silent.discard("cam2")
    listener.wait(lambda: len(failsafe_events(listener, "ew", "normal")) >= 2, what="recovery after stale")


def test_malformed_payload_is_reported_and_recovers(running):
    svc, edge, listener = running
    listener.wait(lambda: failsafe_events(listener, "ns", "normal"), what="initial recovery")
    edge.publish("cam1", "presence", b'{"site": "testsite", "zones": 3}')
    bad = listener.wait(lambda: listener.events("malformed"), what="malformed event")[0]
    assert bad["detail"]["topic"].endswith("edge1/cam1/presence")
    assert "problem" in bad["detail"]["error"]
    ev = listener.wait(lambda: failsafe_events(listener, "ns", "fail-safe"), what="ns fail-safe")[0]
    assert any("malformed" in r for r in ev["detail"]["reasons"])
    # a payload claiming another camera than its topic is malformed too
    msg = HealthMessage(site=SITE, device="edge1", camera="cam9", ts=datetime.now(timezone.utc), state="ok")
    edge.publish("cam1", "health", msg.model_dump_json())
    listener.wait(lambda: [e for e in listener.events("malformed") if "topic says" in e["detail"]["error"]],
                  what="topic/payload mismatch")
    listener.wait(lambda: len(failsafe_events(listener, "ns", "normal")) >= 2, what="recovery after malformed")


def test_edge_last_will_offline_triggers_failsafe(broker):
    """A real edge process dies without saying goodbye: the broker publishes its Last Will (offline)."""
    cfg = fast_config(broker.port, failsafe={"stale_after_s": 30, "recover_after_s": 0.5, "malformed_hold_s": 2})
    listener = Listener(broker.port)
    svc = ControllerService(cfg)
    svc.start()
    stop = threading.Event()
    th = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    th.start()
    code = f"""
import time
from datetime import datetime, timezone
from roadside.core.broker import BrokerClient, Will
from roadside.core.mqtt import MqttConfig
from roadside.core.payloads import HealthMessage
c = BrokerClient(MqttConfig(port={broker.port}, keepalive_s=5), "edge1", will=Will("roadside/{SITE}/edge1/status"))
c.start()
while True:
    for cam in ("cam1", "cam2"):
        c.publish(f"roadside/{SITE}/edge1/{{cam}}/health",
                  HealthMessage(site="{SITE}", device="edge1", camera=cam, ts=datetime.now(timezone.utc),
                                state="ok").model_dump_json(), qos=1)
    time.sleep(0.3)
"""
    edge = subprocess.Popen([sys.executable, "-c", code])
    try:
        listener.wait(lambda: failsafe_events(listener, "ns", "normal"), what="recovery with the edge online")
        edge.kill()  # no DISCONNECT: the broker sends the will
        ev = listener.wait(lambda: failsafe_events(listener, "ns", "fail-safe"), what="fail-safe on edge offline")[0]
        assert any("edge offline" in r for r in ev["detail"]["reasons"])
        assert [e for e in listener.events("edge-status") if e["detail"]["status"] == "offline"]
    finally:
        edge.kill()
        stop.set()
        th.join(5)
        svc.stop()
        listener.close()


def test_broker_restart_is_survived(broker):
    cfg = fast_config(broker.port)
    svc = ControllerService(cfg)
    svc.start()
    stop = threading.Event()
    th = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    th.start()
    try:
        broker.stop()
        time.sleep(2.0)  # data goes stale while the broker is away
        broker.start()
        listener = Listener(broker.port)
        edge = StandInEdge(broker.port)
        try:
            listener.wait(lambda: failsafe_events(listener, "ew", "normal"), timeout=20,
                          what="reconnect, resubscribe and recover")
            assert svc.connected.is_set()
        finally:
            edge.close()
            listener.close()
    finally:
        stop.set()
        th.join(5)
        svc.stop()


def test_unreachable_broker_is_a_clear_error():
    svc = ControllerService(fast_config(free_port()))
    with pytest.raises(BrokerError, match="no connection to the MQTT broker at 127.0.0.1"):
        svc.start(timeout_s=1.5)
