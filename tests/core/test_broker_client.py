"""The product's one MQTT client (roadside.core.broker.BrokerClient) against real private Mosquittos:
acknowledgements in order, birth/will/final word, subscriptions restored after a broker restart,
messages handed over during an outage, and every kind of failed attempt named in the status (without
the password)."""
from __future__ import annotations

import logging

import pytest

from helpers.broker import Mosquitto, Recorder, broker_tls, make_certificates, wait_for
from roadside.core.broker import BrokerClient, BrokerError, Will
from roadside.core.mqtt import MqttConfig, TlsConfig
from roadside.core.testing import free_port


def fast(cfg: MqttConfig) -> MqttConfig:
    return cfg.model_copy(update={"reconnect_min_s": 0.2, "reconnect_max_s": 1.0})


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker", persistence=False).start()
    yield b
    b.close()


def test_acknowledgements_in_order_birth_and_final_word(broker):
    rec = Recorder(broker.port, "t")
    rec.wait_connected()
    acks: list[int] = []
    c = BrokerClient(fast(broker.mqtt_config()), "pub-1", will=Will("t/pub-1/status"), name="test")
    c.start()
    try:
        assert c.wait_connected(15), c.status()
        for i in range(200):
            c.publish(f"t/data/{i % 3}", f'{{"i": {i}}}', qos=1, on_ack=lambda i=i: acks.append(i))
        wait_for(lambda: len(acks) == 200, 15, "200 acknowledgements")
        assert acks == list(range(200))
        st = c.status()
        assert st.state == "connected" and st.connects == 1 and st.acked >= 200 and st.last_ack is not None
    finally:
        c.stop()
    assert c.status().state == "stopped" and not c.connected
    wait_for(lambda: "offline" in rec.texts("t/pub-1/status"), 10, "the final offline")
    assert rec.texts("t/pub-1/status") == ["online", "offline"]
    assert [m["i"] for m in rec.payloads("/data/0")] == list(range(0, 200, 3))  # one publisher, in order
    rec.close()
    # the final word is retained: a later subscriber gets it at once
    late = Recorder(broker.port, "t/pub-1")
    try:
        wait_for(lambda: late.texts("t/pub-1/status") == ["offline"], 10, "the retained offline")
    finally:
        late.close()


def test_subscriptions_and_handed_over_messages_survive_a_broker_restart(broker):
    got: list[str] = []
    sub = BrokerClient(fast(broker.mqtt_config()), "sub-1", on_message=lambda m: got.append(m.payload.decode()),
                       name="sub")
    sub.subscribe("r/#", qos=1)
    pub = BrokerClient(fast(broker.mqtt_config()), "pub-2", name="pub")
    sub.start()
    pub.start()
    try:
        assert sub.wait_connected(15) and pub.wait_connected(15)
        pub.publish("r/a", "before", qos=1)
        wait_for(lambda: got == ["before"], 10, "the first message")
        broker.stop()
        wait_for(lambda: not pub.connected and not sub.connected, 15, "the outage noticed")
        pub.publish("r/a", "during", qos=1)  # handed over while disconnected: sent after the reconnect
        broker.start()
        assert sub.wait_connected(30) and pub.wait_connected(30), (sub.status(), pub.status())
        # the subscriber's clean session starts empty: what it receives now comes through its restored
        # subscription; "during" may be published before or after the subscription was restored
        pub.publish("r/b", "after", qos=1)
        wait_for(lambda: "after" in got, 15, "a message through the restored subscription")
        assert sub.status().connects == 2 and pub.status().connects == 2
        assert pub.status().published >= 3 and pub.status().dropped == 0
    finally:
        sub.stop()
        pub.stop()


def test_every_failed_attempt_says_why_without_the_password(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="roadside.mqtt")
    certs = make_certificates(tmp_path / "certs")
    pw = Mosquitto(tmp_path / "pw", users={"u": "the-right-password"}, persistence=False).start()
    tls = Mosquitto(tmp_path / "tls", tls=broker_tls(certs), require_certificate=True, persistence=False).start()
    other_ca = make_certificates(tmp_path / "other")["ca"]
    cases = {
        "wrong password": (fast(pw.mqtt_config(username="u", password="a-wrong-password")), "refused",
                           "refused the connection: Not authorized"),
        "nothing listening": (fast(MqttConfig(port=free_port())), "unreachable", "cannot reach the MQTT broker"),
        "unknown CA": (fast(tls.mqtt_config(tls=TlsConfig(ca_file=str(other_ca)))), "unreachable",
                       "TLS handshake with"),
        "no client certificate": (fast(tls.mqtt_config(tls=TlsConfig(ca_file=str(certs["ca"])))), None,
                                  "closed the connection before accepting it"),
    }
    try:
        for what, (cfg, state, reason) in cases.items():
            c = BrokerClient(cfg, f"fail-{what.replace(' ', '-')}", name="fail")
            c.start()
            try:
                assert not c.wait_connected(3, stop_on_refusal=True), what
                st = wait_for(lambda: (lambda s: s.last_error and reason in s.last_error and s)(c.status()), 20,
                              f"the reason for {what}")
                assert not st.connected and (state is None or st.state == state), (what, st)
            finally:
                c.stop(0)
        # the same broker with the right password: connected, no error left
        good = BrokerClient(fast(pw.mqtt_config(username="u", password="the-right-password")), "ok", name="ok")
        good.start()
        assert good.wait_connected(15) and good.status().last_error is None
        good.stop()
    finally:
        pw.close()
        tls.close()
    text = caplog.text + repr([r.args for r in caplog.records])
    assert "a-wrong-password" not in text and "the-right-password" not in text


def test_a_frozen_broker_is_no_answer_and_a_thawed_one_is_used(broker):
    broker.freeze()  # SIGSTOP: the kernel still accepts the TCP connection, nobody answers
    c = BrokerClient(fast(broker.mqtt_config()), "frozen", name="frozen")
    c.start()
    try:
        st = wait_for(lambda: (lambda s: s.last_error and s)(c.status()), 30, "the attempt given up")
        assert st.state == "unreachable" and "no answer from the MQTT broker" in st.last_error and "CONNACK" in st.last_error
        broker.thaw()
        assert c.wait_connected(30), c.status()
    finally:
        broker.thaw()
        c.stop()


def test_unreadable_tls_files_are_a_setup_error(tmp_path):
    cfg = MqttConfig(tls=TlsConfig(ca_file=str(tmp_path / "missing-ca.pem")))
    with pytest.raises(BrokerError, match=r"mqtt.tls: cannot load the TLS files \(.*missing-ca.pem"):
        BrokerClient(cfg, "x")
