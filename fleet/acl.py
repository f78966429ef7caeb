"""Per-device credentials and ACLs for the clustered broker (RabbitMQ with ``rabbitmq_mqtt``), as a
RabbitMQ *definitions* document (``rabbitmqctl import_definitions FILE`` or ``load_definitions`` in
``rabbitmq.conf``).

RabbitMQ's MQTT plugin maps an MQTT topic onto a routing key of the ``amq.topic`` exchange: ``/`` becomes
``.``; a ``.`` inside a topic level stays as it is (measured on 3.10), so the names of a fleet's sites and
devices must not contain one (:func:`device_user` refuses them). A user's *topic permissions* on ``amq.topic`` are two
regular expressions over that routing key: ``write`` is checked on every PUBLISH (a Last Will included),
``read`` on every SUBSCRIBE. So a device ``dev1`` of the site prefix ``roadside/main-st`` gets

* write: ``^roadside\\.main-st\\.dev1\\.`` (its status, counts, presence, health and nothing else);
* read: ``^roadside\\.main-st\\.dev1\\.`` (its own subtree: commands addressed to it).

RabbitMQ answers a PUBLISH outside them by closing the connection (MQTT 3.1.1 has no negative PUBACK),
and a SUBSCRIBE outside them with the SUBACK failure code 0x80. The collector and the controller get
their own users (see :func:`collector_user` and :func:`controller_user`).
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field

from roadside.core.topics import CONTROLLER, check_prefix

#: the exchange RabbitMQ's MQTT plugin publishes into (``mqtt.exchange``)
MQTT_EXCHANGE = "amq.topic"
#: the queues RabbitMQ's MQTT plugin declares for a client's subscriptions are named after its client id
MQTT_QUEUES = r"^mqtt-subscription-.*"


def routing_key(topic: str) -> str:
    """The AMQP routing key RabbitMQ's MQTT plugin gives an MQTT topic (``/`` -> ``.``; a ``.`` inside a
    level stays, which is why fleet names must not contain one)."""
    return topic.replace("/", ".")


def topic_of(key: str) -> str:
    """The MQTT topic of an AMQP routing key (the inverse of :func:`routing_key` for names without ``.``)."""
    return key.replace(".", "/")


def subtree(topic_prefix: str) -> str:
    """A regular expression matching the routing keys of every topic under ``topic_prefix``."""
    return "^" + re.escape(routing_key(check_prefix(topic_prefix))) + r"\."


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


@dataclass(frozen=True)
class BrokerUser:
    """One broker account: its vhost permissions (AMQP resources) and topic permissions (routing keys)."""

    name: str
    password: str
    configure: str = MQTT_QUEUES
    write: str = r"^(amq\.topic|mqtt-subscription-.*)$"
    read: str = r"^(amq\.topic|mqtt-subscription-.*)$"
    topic_write: str = "^$"
    topic_read: str = "^$"
    tags: tuple[str, ...] = field(default_factory=tuple)


def device_user(prefix: str, device: str, password: str) -> BrokerUser:
    """An edge device: publishes and subscribes only under ``<prefix>/<device>/``."""
    if device == CONTROLLER:
        raise ValueError(f"{device!r} is the controller's name under the site prefix, not a device's")
    if "." in device or "." in prefix:
        # RabbitMQ keeps a '.' of a topic level in the routing key: dev1.x's topics would match dev1's ACL
        raise ValueError(f"{prefix}/{device}: names in a RabbitMQ fleet must not contain '.' (it separates routing-key levels)")
    own = subtree(f"{check_prefix(prefix)}/{device}")
    return BrokerUser(device, password, topic_write=own, topic_read=own)


def controller_user(prefix: str, name: str, password: str) -> BrokerUser:
    """A site's signal controller: publishes under ``<prefix>/controller/``, reads the whole site."""
    p = check_prefix(prefix)
    return BrokerUser(name, password, topic_write=subtree(f"{p}/{CONTROLLER}"), topic_read=subtree(p))


def collector_user(name: str, password: str, queue: str) -> BrokerUser:
    """The central collector: declares, binds and consumes its own queue (AMQP), reads every topic (the
    bindings of its queue), publishes nothing."""
    q = "^" + re.escape(queue) + "$"
    return BrokerUser(name, password, configure=q, write=q, read=rf"^(amq\.topic|{re.escape(queue)})$",
                      topic_read=".*")


def admin_user(name: str, password: str) -> BrokerUser:
    return BrokerUser(name, password, configure=".*", write=".*", read=".*", topic_write=".*", topic_read=".*",
                      tags=("administrator",))


def definitions(users: list[BrokerUser], vhost: str = "/") -> dict:
    """A RabbitMQ definitions document with these users and their permissions."""
    return {
        "vhosts": [{"name": vhost}],
        "users": [{"name": u.name, "password_hash": password_hash(u.password),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": list(u.tags)} for u in users],
        "permissions": [{"user": u.name, "vhost": vhost, "configure": u.configure, "write": u.write, "read": u.read}
                        for u in users],
        "topic_permissions": [{"user": u.name, "vhost": vhost, "exchange": MQTT_EXCHANGE, "write": u.topic_write,
                               "read": u.topic_read} for u in users],
    }


__all__ = ["BrokerUser", "MQTT_EXCHANGE", "admin_user", "collector_user", "controller_user", "definitions",
           "device_user", "password_hash", "routing_key", "subtree", "topic_of"]
