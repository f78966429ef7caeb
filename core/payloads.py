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
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from roadside.core.config import Identifier, NumbersNotBooleans

SCHEMA_VERSION = 1
Direction = Literal["forward", "backward"]

# Physical bounds of every number a payload carries. Anything outside them is not a measurement but a fault or
# an attack, and the message is rejected as malformed (so that no single message can overflow a computation).
#: A count line may carry up to this many vehicles per second (about 8 saturated lanes), plus MIN_BIN_VEHICLES.
MAX_LINE_RATE_VPS = 5.0
MIN_BIN_VEHICLES = 50
#: the shortest and the longest interval bin (a second, a day)
MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 86400.0
#: vehicles in one zone at once
MAX_ZONE_VEHICLES = 500
#: the longest dwell or age reported (a day; a stuck vehicle is reported long before)
MAX_AGE_S = 86400.0
#: entries in one message: lines, zones, classes per direction, health reasons
MAX_LINES = 64
MAX_ZONES = 64
MAX_CLASSES = 32
MAX_REASONS = 32
#: the longest reason text a health message carries
MAX_REASON_CHARS = 500
#: the highest frame rate a health message carries (frames/s)
MAX_FPS = 1000.0
#: JSON numbers above this lose integer precision in many parsers
MAX_SEQ = 2**53
#: the largest payload a consumer reads; larger ones are refused unread (the largest valid counts message,
#: every line, class and id at its longest, is about 350 kB; a real one is well under 10 kB)
MAX_PAYLOAD_BYTES = 512 * 1024

Count = Annotated[int, Field(ge=0, le=MAX_INTERVAL_S * MAX_LINE_RATE_VPS + MIN_BIN_VEHICLES)]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
ShortText = Annotated[str, Field(max_length=200)]


class _Bounded(NumbersNotBooleans):
    """Base of every payload: unknown keys, infinities, NaN and true/false for a number are all rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Payload(_Bounded):
    schema_version: int = Field(SCHEMA_VERSION, ge=0, le=1000)


class DirectionCounts(_Bounded):
    forward: dict[Identifier, Count] = Field(default_factory=dict, max_length=MAX_CLASSES)  # category -> vehicles
    backward: dict[Identifier, Count] = Field(default_factory=dict, max_length=MAX_CLASSES)

    def total(self) -> int:
        return sum(self.forward.values()) + sum(self.backward.values())


class CountsMessage(Payload):
    """Vehicles that crossed each count line during one interval bin."""

    seq: Seq  # monotonic per camera, survives restarts
    site: Identifier
    device: Identifier
    camera: Identifier
    interval_start: datetime  # UTC, ISO-8601
    interval_s: float = Field(ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S)
    lines: dict[Identifier, DirectionCounts] = Field(max_length=MAX_LINES)
    config_hash: ShortText
    model: ShortText
    late: bool = False  # True when delivered from the outbox after an outage
    #: optional, added with the edge service: True when the camera delivered frames for only part of the
    #: interval (start-up, shutdown, an outage); the counts then cover ``observed_s`` seconds of it
    partial: bool = False
    observed_s: float | None = Field(None, ge=0, le=MAX_INTERVAL_S)

    @model_validator(mode="after")
    def _physical(self) -> "CountsMessage":
        most = self.interval_s * MAX_LINE_RATE_VPS + MIN_BIN_VEHICLES
        for lid, dirs in self.lines.items():
            if dirs.total() > most:
                raise ValueError(f"line {lid!r}: {dirs.total()} vehicles in {self.interval_s:g} s is more than a count "
                                 f"line can carry (at most {most:g})")
        if self.observed_s is not None and self.observed_s > self.interval_s * 1.01 + 1:
            raise ValueError(f"observed_s {self.observed_s:g} is longer than the interval ({self.interval_s:g} s)")
        return self


class ZoneState(_Bounded):
    occupied: bool
    count: int = Field(ge=0, le=MAX_ZONE_VEHICLES)  # vehicles in the zone now
    #: longest current dwell (s) of a vehicle in the zone, 0 when empty
    max_dwell_s: float = Field(0.0, ge=0, le=MAX_AGE_S)


class PresenceMessage(Payload):
    """Zone occupancy for actuated control; sent on every change, low latency."""

    site: Identifier
    device: Identifier
    camera: Identifier
    ts: datetime  # UTC time of the frame that changed the state
    zones: dict[Identifier, ZoneState] = Field(max_length=MAX_ZONES)


class HealthMessage(Payload):
    site: Identifier
    device: Identifier
    camera: Identifier
    ts: datetime
    state: Literal["ok", "degraded", "offline"]
    reasons: list[Annotated[str, Field(max_length=MAX_REASON_CHARS)]] = Field(default_factory=list, max_length=MAX_REASONS)
    fps_in: float = Field(0.0, ge=0, le=MAX_FPS)
    fps_processed: float = Field(0.0, ge=0, le=MAX_FPS)
    detector_latency_ms: float = Field(0.0, ge=0, le=600_000)
    last_frame_age_s: float | None = Field(None, ge=0, le=10 * 365 * MAX_AGE_S)


def clip_reasons(reasons: list[str]) -> list[str]:
    """Reasons cut to what a :class:`HealthMessage` carries (a decoder's own words can make one long): the
    first ``MAX_REASONS``, each at most ``MAX_REASON_CHARS`` characters, a cut one ending in an ellipsis."""
    return [r if len(r) <= MAX_REASON_CHARS else r[:MAX_REASON_CHARS - 1] + "\u2026" for r in reasons[:MAX_REASONS]]


# -- the controller ------------------------------------------------------------------------------------
Mode = Literal["normal", "fail-safe", "manual"]


class ControllerPayload(_Bounded):
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
    seq: Seq
    type: Literal["startup", "decision", "stage-green", "failsafe", "malformed", "edge-status", "mode", "plan",
                  "shutdown", "ignored", "overload"]
    #: controller clock (s since start) of the event, for ordering within a run
    t: float
    detail: dict[str, Any]


class SignalCommand(ControllerPayload):
    seq: Seq
    stage: str | None
    signals: dict[str, Literal["green", "yellow", "red"]]


class ModeRequest(_Bounded):
    mode: Literal["auto", "manual"]
    #: Manual: the stage to hold (it changes through the safety envelope like any decision).
    stage: Identifier | None = None
