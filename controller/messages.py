"""What the controller publishes under ``roadside/<site>/controller/``:

* ``status`` (retained): ``online`` / ``offline`` (the Last Will);
* ``plan`` (retained): :class:`PlanMessage`, the current timings and why;
* ``state`` (retained): :class:`StateMessage`, on every signal change and every few seconds;
* ``events``: :class:`AuditEvent`, one per decision or incident, with the inputs it used;
* ``command``: :class:`SignalCommand` for a cabinet adapter (MQTT actuator), on every change and as a
  heartbeat every second.

It listens on ``mode`` for :class:`ModeRequest` (manual hold of a stage, or back to automatic).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

Mode = Literal["normal", "fail-safe", "manual"]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    site: str
    ts: datetime


class PlanMessage(_Msg):
    policy: str
    mode: Mode
    plan: dict[str, Any]
    failsafe_phases: dict[str, list[str]] = Field(default_factory=dict)


class StateMessage(_Msg):
    mode: Mode
    stage: str | None
    changing_to: str | None
    time_in_stage_s: float
    signals: dict[str, Literal["green", "yellow", "red"]]
    time_in_signal_s: dict[str, float]


class AuditEvent(_Msg):
    seq: NonNegativeInt
    type: Literal["startup", "decision", "stage-green", "failsafe", "malformed", "edge-status", "mode", "plan",
                  "shutdown"]
    #: controller clock (s since start) of the event, for ordering within a run
    t: float
    detail: dict[str, Any]


class SignalCommand(_Msg):
    seq: NonNegativeInt
    stage: str | None
    signals: dict[str, Literal["green", "yellow", "red"]]


class ModeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "manual"]
    #: Manual: the stage to hold (it changes through the safety envelope like any decision).
    stage: str | None = None
