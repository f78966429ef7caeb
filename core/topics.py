"""The topic contract between edge devices and the signal controller, in both directions.

Everything of one site lives under its *site prefix* (``mqtt.prefix``, default ``roadside/<site>``)::

    <prefix>/<device>/status                 retained online/offline of an edge device (its Last Will)
    <prefix>/<device>/<camera>/counts        CountsMessage, one per interval bin (QoS 1, from the outbox)
    <prefix>/<device>/<camera>/presence      PresenceMessage, on every zone change
    <prefix>/<device>/<camera>/health        HealthMessage, periodic and on state changes
    <prefix>/controller/status               retained online/offline of the controller (its Last Will)
    <prefix>/controller/plan|state           retained PlanMessage / StateMessage
    <prefix>/controller/events               AuditEvent, one per decision or incident
    <prefix>/controller/command              SignalCommand for a cabinet adapter
    <prefix>/controller/mode                 ModeRequest to the controller (manual hold / auto)

Build topics with :class:`Topics` and parse them with :meth:`Topics.parse`; nothing else in the product
spells a topic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The device name the controller uses under the site prefix; no edge device may be called this.
CONTROLLER = "controller"
CAMERA_KINDS = ("counts", "presence", "health")
CONTROLLER_KINDS = ("status", "plan", "state", "events", "command", "mode")

CameraKind = Literal["counts", "presence", "health"]


def default_prefix(site: str) -> str:
    return f"roadside/{site}"


def check_prefix(prefix: str) -> str:
    """A usable prefix (surrounding slashes removed); ValueError for an empty one or one with wildcards."""
    p = prefix.strip("/")
    if not p or any(c in p for c in "+#\0") or "//" in p:
        raise ValueError("the topic prefix must be non-empty, hold no MQTT wildcards (+, #) and no empty levels")
    return p


@dataclass(frozen=True)
class ParsedTopic:
    """What a topic under the site prefix names. ``kind`` is ``status`` for a device's status topic."""

    device: str
    camera: str | None
    kind: str

    @property
    def from_controller(self) -> bool:
        return self.device == CONTROLLER


@dataclass(frozen=True)
class Topics:
    """Topics of one site under ``prefix`` (e.g. ``roadside/main-st``)."""

    prefix: str

    @classmethod
    def for_site(cls, site: str, prefix: str | None = None) -> "Topics":
        return cls(check_prefix(prefix) if prefix else default_prefix(site))

    # -- building ----------------------------------------------------------------------------------
    def device(self, device: str) -> str:
        """The device's own prefix (its topics are below it)."""
        return f"{self.prefix}/{device}"

    def device_status(self, device: str) -> str:
        return f"{self.prefix}/{device}/status"

    def camera(self, device: str, camera: str, kind: CameraKind) -> str:
        if kind not in CAMERA_KINDS:
            raise ValueError(f"unknown camera topic kind {kind!r}")
        return f"{self.prefix}/{device}/{camera}/{kind}"

    def controller(self, kind: str) -> str:
        if kind not in CONTROLLER_KINDS:
            raise ValueError(f"unknown controller topic kind {kind!r}")
        return f"{self.prefix}/{CONTROLLER}/{kind}"

    def edge_subscriptions(self) -> list[str]:
        """What a consumer of every edge device of the site subscribes to."""
        return [f"{self.prefix}/+/status"] + [f"{self.prefix}/+/+/{k}" for k in CAMERA_KINDS]

    # -- parsing -----------------------------------------------------------------------------------
    def parse(self, topic: str) -> ParsedTopic | None:
        """What ``topic`` names, or None when it is not a topic of this contract under the prefix."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        if any(not p for p in parts):
            return None
        if parts[0] == CONTROLLER:
            return ParsedTopic(CONTROLLER, None, parts[1]) if len(parts) == 2 and parts[1] in CONTROLLER_KINDS else None
        if len(parts) == 2 and parts[1] == "status":
            return ParsedTopic(parts[0], None, "status")
        if len(parts) == 3 and parts[2] in CAMERA_KINDS:
            return ParsedTopic(parts[0], parts[1], parts[2])
        return None


__all__ = ["CAMERA_KINDS", "CONTROLLER", "CONTROLLER_KINDS", "ParsedTopic", "Topics", "check_prefix", "default_prefix"]
