"""Issue 11, item 4: the shipped Mosquitto ACL (controller/examples/mosquitto.acl) closes what a device with
publish rights could do. Against a private mosquitto with one user per device and that file, unchanged:

* a device publishing under another device's prefix, or on the controller's mode or command topics, is
  refused by the broker (the controller never receives it), while its own topics pass;
* the operator may send a manual-mode request; the real controller service publishes its plan and state."""
from __future__ import annotations

from helpers.broker import Mosquitto, Recorder, wait_for
from helpers.controller import EXAMPLE
from roadside.controller.config import load_controller_config
from roadside.controller.service import ControllerService
from roadside.core.broker import BrokerClient
from roadside.core.mqtt import MqttConfig

ACL = EXAMPLE.with_name("mosquitto.acl")
PREFIX = "roadside/main-and-5th"
USERS = {u: f"{u}-pw-0123" for u in ("controller", "edge1", "edge2", "operator", "cabinet")}


def test_the_shipped_acl_keeps_every_device_under_its_own_prefix(tmp_path):
    broker = Mosquitto(tmp_path / "broker", users=USERS, acl_file=ACL, persistence=False).start()
    mq = lambda user: MqttConfig(port=broker.port, username=user, password=USERS[user],  # noqa: E731
                                 reconnect_min_s=0.2, reconnect_max_s=1.0)
    seen = Recorder(mq("controller"), PREFIX)  # what the controller would receive
    watch = Recorder(mq("operator"), f"{PREFIX}/controller")
    clients = {u: BrokerClient(mq(u), f"acl-{u}", name=u).start() for u in ("edge1", "edge2", "operator")}
    cfg = load_controller_config(EXAMPLE)
    svc = ControllerService(cfg.model_copy(update={"mqtt": mq("controller")}))
    try:
        seen.wait_connected()
        watch.wait_connected()
        for c in clients.values():
            assert c.wait_connected(10)
        e1, e2, op = clients["edge1"], clients["edge2"], clients["operator"]
        for topic in (f"{PREFIX}/edge2/cam1/health", f"{PREFIX}/edge2/status", f"{PREFIX}/controller/mode",
                      f"{PREFIX}/controller/command", f"{PREFIX}/controller/plan", "roadside/other-site/edge1/status"):
            e1.publish(topic, b"SPOOF", qos=1)
        e1.publish(f"{PREFIX}/edge1/cam1/health", b"REAL-1", qos=1)  # after the spoofs, on the same connection
        e2.publish(f"{PREFIX}/edge2/cam1/health", b"REAL-2", qos=1)
        op.publish(f"{PREFIX}/controller/mode", b'{"mode": "auto"}', qos=1)
        op.publish(f"{PREFIX}/edge1/cam1/presence", b"SPOOF", qos=1)  # an operator is no camera either
        wait_for(lambda: {"REAL-1", "REAL-2", '{"mode": "auto"}'} <= {p.decode() for _, _, p, _ in seen.messages}, 20,
                 "the messages the ACL allows")
        e1.publish(f"{PREFIX}/edge1/status", b"online", qos=1)
        wait_for(lambda: b"online" in [p for _, _, p, _ in seen.messages], 20, "a later message")  # spoofs had time
        assert [t for _, t, p, _ in seen.messages if p == b"SPOOF"] == []
        # the controller itself may publish what it publishes
        svc.start()
        svc.process()
        wait_for(lambda: watch.payloads("/plan") and watch.payloads("/state"), 20, "the controller's plan and state")
        assert "refused" not in (svc.client.status().last_error or "")
    finally:
        svc.stop()
        for c in clients.values():
            c.stop(0.5)
        seen.close()
        watch.close()
        broker.close()
