"""Where a camera's messages go: counts into the durable outbox, presence and health to the MQTT link.

A :class:`~roadside.edge.camera_worker.CameraWorker` and the
:class:`~roadside.edge.health_publisher.HealthPublisher` know only these two narrow outputs, not the
service, the outbox or the link behind them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from pydantic import BaseModel

from roadside.core.payloads import CountsMessage

if TYPE_CHECKING:
    from roadside.edge.mqtt_link import MqttLink
    from roadside.edge.outbox import Outbox


class CountsSink(Protocol):
    def put(self, camera: str, message: Callable[[int], CountsMessage]) -> None:
        """Store one counts message; ``message(seq)`` builds it once its ``seq`` is allocated."""


class LiveSink(Protocol):
    @property
    def connected(self) -> bool:
        """Real-time messages go out only while connected."""

    def publish(self, camera: str, kind: str, message: BaseModel) -> None:
        """Send a real-time message (``presence``, ``health``) of a camera now, or drop it (and count it)."""


class OutboxCounts:
    """Counts messages into the outbox, in one transaction with their ``seq``; the link delivers them."""

    def __init__(self, outbox: "Outbox", link: "MqttLink"):
        self.outbox = outbox
        self.link = link

    def put(self, camera: str, message: Callable[[int], CountsMessage]) -> None:
        self.outbox.add(camera, self.link.camera_topic(camera, "counts"), lambda seq: message(seq).model_dump_json().encode())
        self.link.notify()


class LinkLive:
    """Presence and health straight to the MQTT link."""

    def __init__(self, link: "MqttLink"):
        self.link = link

    @property
    def connected(self) -> bool:
        return self.link.connected

    def publish(self, camera: str, kind: str, message: BaseModel) -> None:
        self.link.publish_now(camera, kind, message.model_dump_json().encode())


__all__ = ["CountsSink", "LinkLive", "LiveSink", "OutboxCounts"]
