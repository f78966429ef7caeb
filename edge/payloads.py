"""MQTT payloads between the edge and the signal controller: the one shared contract.

The edge publishes these under ``<prefix>/`` (default ``roadside/<site>/<device>/``); the controller
parses them with the same models, so a malformed message is rejected identically on both sides.

Topics (relative to the prefix):

* ``status`` (retained): ``online`` / ``offline`` as plain text (``offline`` is also the Last Will).
* ``<camera>/counts``: :class:`CountsMessage`, one per interval bin.
* ``<camera>/presence``: :class:`PresenceMessage`, on every zone occupancy change.
* ``<camera>/health``: :class:`HealthMessage`, periodic.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

SCHEMA_VERSION = 1
Direction = Literal["forward", "backward"]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION


class DirectionCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    forward: dict[str, NonNegativeInt] = Field(default_factory=dict)  # category -> vehicles
    backward: dict[str, NonNegativeInt] = Field(default_factory=dict)


class CountsMessage(Payload):
    """Vehicles that crossed each count line during one interval bin."""

    seq: NonNegativeInt  # monotonic per camera, survives restarts
    site: str
    device: str
    camera: str
    interval_start: datetime  # UTC, ISO-8601
    interval_s: float = Field(gt=0)
    lines: dict[str, DirectionCounts]
    config_hash: str
    model: str
    late: bool = False  # True when delivered from the outbox after an outage
    #: optional, added with the edge service: True when the camera delivered frames for only part of the
    #: interval (start-up, shutdown, an outage); the counts then cover ``observed_s`` seconds of it
    partial: bool = False
    observed_s: float | None = Field(None, ge=0)


class ZoneState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    occupied: bool
    count: NonNegativeInt  # vehicles in the zone now
    #: longest current dwell (s) of a vehicle in the zone, 0 when empty
    max_dwell_s: float = Field(0.0, ge=0)


class PresenceMessage(Payload):
    """Zone occupancy for actuated control; sent on every change, low latency."""

    site: str
    device: str
    camera: str
    ts: datetime  # UTC time of the frame that changed the state
    zones: dict[str, ZoneState]


class HealthMessage(Payload):
    site: str
    device: str
    camera: str
    ts: datetime
    state: Literal["ok", "degraded", "offline"]
    reasons: list[str] = Field(default_factory=list)
    fps_in: float = Field(0.0, ge=0)
    fps_processed: float = Field(0.0, ge=0)
    detector_latency_ms: float = Field(0.0, ge=0)
    last_frame_age_s: float | None = None
