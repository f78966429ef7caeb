"""The controller service against a broker set up as a site would run it: TLS only (a test CA), a password
for every client and a custom site prefix. A real edge link (the edge's outbox and MQTT link, over the
product's one MQTT client) publishes counts, presence and health under that prefix; the controller
receives them, decides, and publishes plan, state, events and commands under ``<prefix>/controller/``.
A wrong password is a clear error at once, not a hang."""
from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from helpers.broker import Mosquitto, Recorder, broker_tls, make_certificates, wait_for
from helpers.controller import SITE, Listener, fast_config, intersection_dict
from roadside.controller.service import BrokerError, ControllerService
from roadside.core.mqtt import MqttConfig, TlsConfig
from roadside.core.payloads import CountsMessage, DirectionCounts, HealthMessage, PresenceMessage, ZoneState
from roadside.core.topics import Topics
from roadside.edge.mqtt_link import MqttLink
from roadside.edge.outbox import Outbox

PREFIX = "city/zone-7"
USERS = {"controller": "ctrl-secret-1", "edge1": "edge-secret-2", "listener": "listen-secret-3"}


@pytest.fixture
def secure(tmp_path):
    """A TLS-only mosquitto with a password file; yields (broker, CA file)."""
    certs = make_certificates(tmp_path / "certs")
    broker = Mosquitto(tmp_path / "broker", users=USERS, tls=broker_tls(certs), persistence=False).start()
    yield broker, certs["ca"]
    broker.close()


def settings(broker, ca, user: str, password: str | None = None) -> MqttConfig:
    return broker.mqtt_config(prefix=PREFIX, username=user, password=password or USERS[user],
                              tls=TlsConfig(ca_file=str(ca)), reconnect_min_s=0.2, reconnect_max_s=1.0)


class EdgeBox:
    """The edge side as the edge service does it: counts through the durable outbox, presence and health
    as real-time messages, all through :class:`MqttLink` under ``<prefix>/edge1/``."""

    def __init__(self, mqtt: MqttConfig, tmp_path) -> None:
        self.outbox = Outbox(tmp_path / "outbox.sqlite")
        self.link = MqttLink(mqtt, "edge1", Topics.for_site(SITE, PREFIX), "edge1", self.outbox).start()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._health, daemon=True)
        self.t.start()

    def _health(self) -> None:
        while not self.stop.wait(0.3):
            for cam in ("cam1", "cam2"):
                msg = HealthMessage(site=SITE, device="edge1", camera=cam, ts=datetime.now(timezone.utc), state="ok")
                self.link.publish_now(cam, "health", msg.model_dump_json().encode())

    def counts(self, cam: str, line: str, vehicles: int) -> None:
        def make(seq: int) -> bytes:
            return CountsMessage(seq=seq, site=SITE, device="edge1", camera=cam,
                                 interval_start=datetime.now(timezone.utc) - timedelta(seconds=1), interval_s=1.0,
                                 lines={line: DirectionCounts(forward={"car": vehicles})}, config_hash="test",
                                 model="test").model_dump_json().encode()

        self.outbox.add(cam, self.link.camera_topic(cam, "counts"), make)
        self.link.notify()

    def presence(self, cam: str, zones: dict[str, tuple[bool, int]]) -> bool:
        msg = PresenceMessage(site=SITE, device="edge1", camera=cam, ts=datetime.now(timezone.utc),
                              zones={z: ZoneState(occupied=o, count=n) for z, (o, n) in zones.items()})
        return self.link.publish_now(cam, "presence", msg.model_dump_json().encode())

    def close(self) -> None:
        self.stop.set()
        self.t.join(5)
        self.link.stop(flush_timeout_s=2.0)
        self.outbox.close()


def test_controller_over_tls_with_a_password_and_a_site_prefix(secure, tmp_path):
    broker, ca = secure
    everything = Recorder(settings(broker, ca, "listener"), None)  # every topic on the broker
    everything.wait_connected()
    listener = Listener(settings(broker, ca, "listener"), prefix=PREFIX)
    cfg = fast_config(settings(broker, ca, "controller"), detection={"counts_interval_s": 1.0})
    assert cfg.topics.controller("plan") == f"{PREFIX}/controller/plan"
    svc = ControllerService(cfg)
    svc.start()
    stop = threading.Event()
    th = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    th.start()
    edge = EdgeBox(settings(broker, ca, "edge1"), tmp_path)
    try:
        wait_for(lambda: edge.link.connected, 15, "the edge link connected over TLS")
        listener.wait(lambda: [e for e in listener.events("edge-status") if e["detail"]["status"] == "online"],
                      what="the edge's retained online status seen by the controller")
        listener.wait(lambda: [e for e in listener.events("failsafe")
                               if e["detail"]["phase"] == "ew" and e["detail"]["state"] == "normal"],
                      what="recovery once the edge's health flows")
        # counts through the outbox: acknowledged by the broker, so routed to the controller before what follows
        edge.counts("cam2", "ew_line", 3)
        wait_for(lambda: edge.link.status().counts_acked >= 1 and edge.outbox.stats().depth == 0, 15,
                 "the counts message acknowledged and removed from the outbox")
        assert edge.presence("cam2", {"ew_stop": (True, 1), "ew_queue": (True, 2)})
        ev = listener.wait(lambda: [e for e in listener.events("decision") if e["detail"]["to"] == "EW"],
                           what="a change to EW")[0]
        assert ev["detail"]["inputs"]["ew"]["call"] is True
        assert ev["detail"]["inputs"]["ew"]["flow_vph"] > 0  # the counts arrived and were used
        edge.presence("cam2", {"ew_stop": (False, 0), "ew_queue": (False, 0)})
        listener.wait(lambda: [c for c in listener.json("command") if c["signals"]["ew"] == "green"],
                      what="a command showing EW green")
        listener.wait(lambda: listener.json("plan") and listener.json("state"), what="plan and state")
        assert svc.received_from["edge1"] >= 4 and svc.client.status().last_error is None
    finally:
        stop.set()
        th.join(5)
        svc.stop()
        edge.close()
    listener.wait(lambda: "offline" in listener.texts(f"{PREFIX}/controller/status"), what="the controller's offline")
    assert listener.texts(f"{PREFIX}/controller/status")[0] == "online"
    listener.close()
    everything.close()
    topics = {t for _, t, _, _ in everything.messages}
    assert {f"{PREFIX}/controller/{k}" for k in ("status", "plan", "state", "events", "command")} <= topics
    assert {f"{PREFIX}/edge1/status", f"{PREFIX}/edge1/cam2/counts", f"{PREFIX}/edge1/cam2/presence"} <= topics
    assert all(t.startswith(PREFIX + "/") for t in topics), sorted(topics)  # nothing under the default prefix


def test_wrong_password_is_a_clear_error_not_a_hang(secure):
    broker, ca = secure
    svc = ControllerService(fast_config(settings(broker, ca, "controller", password="not-the-password")))
    with pytest.raises(BrokerError) as e:
        svc.start(timeout_s=120)  # the refusal ends the wait: the message is the broker's answer, not a timeout
    msg = str(e.value)
    assert "refused the connection" in msg and "not authori" in msg.lower(), msg
    assert "within" not in msg and "not-the-password" not in msg
    assert svc.client.status().state == "stopped"


def test_cli_reports_a_wrong_password_in_one_line(secure, tmp_path):
    """``roadside controller run`` with a site file: TLS CA relative to the file, wrong password."""
    broker, ca = secure
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "ca.pem").write_bytes(ca.read_bytes())
    conf = tmp_path / "site" / "ctrl.yaml"
    conf.write_text(yaml.safe_dump({
        "site": SITE, "device": "edge1", "intersection": intersection_dict(),
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "prefix": PREFIX, "username": "controller",
                 "password": "wrong-one", "tls": {"ca_file": "ca.pem"}}}))
    r = subprocess.run([sys.executable, "-m", "roadside.core.cli", "controller", "run", "--config", str(conf),
                        "--connect-timeout", "120"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and "refused the connection" in lines[0] and "wrong-one" not in r.stderr, r.stderr
