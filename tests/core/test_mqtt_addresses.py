"""mqtt.brokers: a clustered broker's address list. The client moves to the next node when an attempt fails
or the connection is lost; a single host/port keeps working as before; bad entries name their key path."""
from __future__ import annotations

import pytest

from helpers.broker import Mosquitto, free_port, wait_for
from roadside.core.broker import BrokerClient
from roadside.core.config import parse_config
from roadside.core.errors import ConfigError
from roadside.core.mqtt import MqttConfig


def test_address_list_parses_and_single_host_still_works():
    assert MqttConfig(host="10.0.0.5", port=8883).addresses == [("10.0.0.5", 8883)]
    c = MqttConfig(brokers=["10.0.0.5:1883", "[fd00::6]:8883"])
    assert c.addresses == [("10.0.0.5", 1883), ("fd00::6", 8883)]


@pytest.mark.parametrize("data, where", [
    ({"brokers": ["10.0.0.5"]}, "mqtt.brokers"),
    ({"brokers": ["10.0.0.5:1883", "a:99999"]}, "brokers[1]"),
    ({"brokers": ["10.0.0.5:1883"], "host": "10.0.0.6"}, "not both"),
])
def test_bad_address_lists_are_rejected_with_their_place(data, where):
    with pytest.raises(ConfigError) as e:
        parse_config({"mqtt": data}, type("Wrap", (MqttConfig.__base__,), {"__annotations__": {"mqtt": MqttConfig}}),
                     "site.yaml")
    assert where in str(e.value) and "site.yaml" in str(e.value)


def test_the_client_moves_to_the_next_node_when_one_is_down_and_back_when_it_dies():
    with Mosquitto() as a, Mosquitto() as b:
        dead = free_port()
        cfg = MqttConfig(brokers=[f"127.0.0.1:{dead}", a.address, b.address], reconnect_min_s=0.1, reconnect_max_s=0.5)
        c = BrokerClient(cfg, "failover-test").start()
        try:
            assert c.wait_connected(10), c.status()
            assert c.status().broker == a.address  # the dead first node was skipped
            a.stop()
            wait_for(lambda: c.connected and c.status().broker == b.address, 15, "the client on the third node")
            assert c.status().connects == 2
        finally:
            c.stop(0.2)
