"""Every MQTT payload of the product: the one shared contract between edge devices and the controller.

Where each one is published is :mod:`roadside.core.topics`. Both sides build and parse messages with these
models, so a malformed message is rejected identically everywhere.

Edge devices (under ``<prefix>/<device>/``):

* ``status`` (retained): ``online`` / ``offline`` as plain text (``offline`` is also the Last Will);
* ``<camera>/counts``: :class:`CountsMessage`, one per interval bin;
* ``<camera>/presence``: :class:`PresenceMessage`, on every zone occupancy change;
* ``<camera>/health``: :class:`HealthMessage`, periodic.

The controller (under ``<prefix>/controller/``):

* ``status`` (retained): ``online`` / ``offline`` (the Last Will);
* ``plan`` (retained): :class:`PlanMessage`, the current timings and why;
* ``state`` (retained): :class:`StateMessage`, on every signal change and every few seconds;
* ``events``: :class:`AuditEvent`, one per decision or incident, with the inputs it used;
* ``command``: :class:`SignalCommand` for a cabinet adapter (MQTT actuator), on every change and as a
  heartbeat every second;
* ``mode`` (read by the controller): :class:`ModeRequest`, a manual hold of a stage or back to automatic.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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


# -- the controller ------------------------------------------------------------------------------------
Mode = Literal["normal", "fail-safe", "manual"]


class ControllerPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    site: str
    ts: datetime


class PlanMessage(ControllerPayload):
    policy: str
    mode: Mode
    plan: dict[str, Any]
    failsafe_phases: dict[str, list[str]] = Field(default_factory=dict)


class StateMessage(ControllerPayload):
    mode: Mode
    stage: str | None
    changing_to: str | None
    time_in_stage_s: float
    signals: dict[str, Literal["green", "yellow", "red"]]
    time_in_signal_s: dict[str, float]


class AuditEvent(ControllerPayload):
    seq: NonNegativeInt
    type: Literal["startup", "decision", "stage-green", "failsafe", "malformed", "edge-status", "mode", "plan",
                  "shutdown"]
    #: controller clock (s since start) of the event, for ordering within a run
    t: float
    detail: dict[str, Any]


class SignalCommand(ControllerPayload):
    seq: NonNegativeInt
    stage: str | None
    signals: dict[str, Literal["green", "yellow", "red"]]


class ModeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "manual"]
    #: Manual: the stage to hold (it changes through the safety envelope like any decision).
    stage: str | None = None
