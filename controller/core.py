"""The controller without any I/O: edge messages in, signals and audit records out, on a clock it is given.

``on_message`` takes an MQTT topic and its raw payload (parsed with the shared payload models, so a
malformed message is rejected exactly as the edge would); ``tick`` runs the input bookkeeping, the
fail-safe, the policy, the sequencer and the safety envelope, and returns what to publish. The
:class:`Intersection` is built here, once, and shared by the sequencer, the envelope and the policies.
The MQTT service and the SUMO harness both drive this same object.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from pydantic import ValidationError

from roadside.controller.config import ControllerConfig
from roadside.controller.engine import Decision, SignalEngine, StepResult
from roadside.controller.inputs import InputState
from roadside.controller.intersection import Intersection
from roadside.controller.policies import make_policy
from roadside.controller.policies.base import Policy, View
from roadside.controller.policies.fixed import FixedTimePolicy
from roadside.core.payloads import (SCHEMA_VERSION, AuditEvent, CountsMessage, HealthMessage, ModeRequest, PlanMessage,
                                    PresenceMessage, SignalCommand, StateMessage)

PAYLOADS = {"counts": CountsMessage, "presence": PresenceMessage, "health": HealthMessage}


@dataclass
class TickOutput:
    step: StepResult
    events: list[AuditEvent] = field(default_factory=list)
    plan_changed: bool = False


class Controller:
    def __init__(self, cfg: ControllerConfig, start: float, policy: "str | Policy | None" = None,
                 wall: Callable[[float], datetime] | None = None) -> None:
        self.cfg = cfg
        self.topics = cfg.topics
        self.start = start
        self._epoch = datetime.now(timezone.utc)
        self.wall = wall or (lambda t: self._epoch + timedelta(seconds=t - start))
        self.intersection = Intersection.of(cfg)
        self.engine = SignalEngine(self.intersection, cfg.tick_s, start)
        self.inputs = InputState(cfg, start)
        self.policy = policy if isinstance(policy, Policy) else make_policy(cfg, self.intersection, policy)
        self.fallback = FixedTimePolicy(cfg, self.intersection)
        self.mode = "normal"
        self.manual_stage: str | None = None
        self.seq = 0
        self.command_seq = 0
        self.now = start
        self.pending: list[AuditEvent] = []
        self._plan_key = ""
        self.messages_handled = 0
        self.emit("startup", {"policy": self.policy.name, "stages": list(self.intersection.sequence),
                              "failsafe_action": cfg.failsafe.action})

    # -- audit -------------------------------------------------------------------------------------
    def emit(self, kind: str, detail: dict[str, Any]) -> AuditEvent:
        ev = AuditEvent(site=self.cfg.site, ts=self.wall(self.now), seq=self.seq, type=kind,  # type: ignore[arg-type]
                        t=round(self.now - self.start, 3), detail=detail)
        self.seq += 1
        self.pending.append(ev)
        return ev

    # -- input ---------------------------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes, now: float) -> None:
        """Handle one message from ``roadside/<site>/...``; anything malformed becomes an audit event and
        puts the phases fed by that device/camera on fail-safe."""
        self.messages_handled += 1
        self.now = max(self.now, now)
        where = self.topics.parse(topic)
        if where is None:
            return
        device = where.device
        if where.from_controller:
            if where.kind == "mode":
                self._on_mode(payload)
            return
        if where.kind == "status":
            text = payload.decode("utf-8", "replace").strip().lower()
            if text not in ("online", "offline"):
                self._malformed(topic, device, None, f"status must be 'online' or 'offline', got {text[:40]!r}")
                return
            was = self.inputs.device_online.get(device)
            self.inputs.on_status(device, text == "online", now)
            if was is None or was != (text == "online"):
                self.emit("edge-status", {"device": device, "status": text})
            return
        camera, kind = where.camera, where.kind
        try:
            msg = PAYLOADS[kind].model_validate_json(payload)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "(top level)"
            self._malformed(topic, device, camera, f"{e.error_count()} problem(s), first at {where}: {first['msg']}")
            return
        if msg.schema_version != SCHEMA_VERSION:
            self._malformed(topic, device, camera, f"schema_version {msg.schema_version}, expected {SCHEMA_VERSION}")
            return
        if (msg.site, msg.device, msg.camera) != (self.cfg.site, device, camera):
            self._malformed(topic, device, camera, f"payload names {msg.site}/{msg.device}/{msg.camera}, "
                                                   f"topic says {self.cfg.site}/{device}/{camera}")
            return
        if isinstance(msg, CountsMessage):
            self.inputs.on_counts(msg, now)
        elif isinstance(msg, PresenceMessage):
            self.inputs.on_presence(msg, now)
        else:
            self.inputs.on_health(msg, now)

    def _malformed(self, topic: str, device: str, camera: str | None, error: str) -> None:
        self.inputs.on_malformed(device, camera, error, self.now)
        self.emit("malformed", {"topic": topic, "error": error})

    def _on_mode(self, payload: bytes) -> None:
        try:
            req = ModeRequest.model_validate_json(payload)
        except ValidationError as e:
            self.emit("malformed", {"topic": self.topics.controller("mode"), "error": str(e.errors()[0]["msg"])})
            return
        self.set_manual(req.stage if req.mode == "manual" else None, manual=req.mode == "manual")

    def set_manual(self, stage: str | None, manual: bool = True) -> None:
        if manual and stage not in self.intersection.stages:
            self.emit("mode", {"accepted": False, "error": f"unknown stage {stage!r}"})
            return
        self.manual_stage = stage if manual else None
        self.emit("mode", {"accepted": True, "mode": "manual" if manual else "auto", "stage": self.manual_stage})

    # -- one tick --------------------------------------------------------------------------------------
    def tick(self, now: float) -> TickOutput:
        self.now = max(self.now, now)
        for pid, ok, reasons in self.inputs.update_reliability(self.now):
            self.emit("failsafe", {"phase": pid, "state": "normal" if ok else "fail-safe",
                                   "reasons": reasons or ["data good again"],
                                   "action": None if ok else self.cfg.failsafe.action})
        inputs = self.inputs.phase_inputs(self.now)
        failing = {p: i.problems for p, i in inputs.items() if not i.reliable}
        mode = "manual" if self.manual_stage else ("fail-safe" if failing else "normal")
        if mode != self.mode:
            self.emit("mode", {"from": self.mode, "to": mode, "failsafe_phases": failing})
            self.mode = mode
        calls = frozenset(p for p, i in inputs.items() if i.call)
        self.engine.advance(self.now, calls)  # the policy sees this tick's clock
        view = View(self.now, self.engine, inputs)
        if self.manual_stage:
            decision = Decision(self.manual_stage, "manual hold", frozenset(), {})
        elif failing and self.cfg.failsafe.action == "fixed":
            decision = self.fallback.decide(view)
            if decision.target:
                decision.reason = f"fail-safe fixed plan: {decision.reason}"
        else:
            decision = self.policy.decide(view)
        step = self.engine.step(self.now, decision, calls)
        if step.change is not None:
            c = step.change
            self.emit("decision", {"from": c.from_stage, "to": c.to_stage, "reason": c.reason, "forced": c.forced,
                                   "green_s": None if c.green_s is None else round(c.green_s, 2),
                                   "mode": self.mode, "policy": self._active_policy().name,
                                   "inputs": c.inputs or self._all_inputs(inputs)})
        if step.stage_started:
            self.emit("stage-green", {"stage": step.stage_started,
                                      "walk": sorted(p for p in self.engine.walked)})
        key = json.dumps([self.mode, self._active_policy().plan(), sorted(failing)], sort_keys=True, default=str)
        plan_changed = key != self._plan_key
        if plan_changed:
            self._plan_key = key
            self.emit("plan", {"policy": self._active_policy().name, "mode": self.mode})
        events, self.pending = self.pending, []
        return TickOutput(step, events, plan_changed)

    def _active_policy(self):
        if self.mode == "fail-safe" and self.cfg.failsafe.action == "fixed":
            return self.fallback
        return self.policy

    @staticmethod
    def _all_inputs(inputs) -> dict[str, Any]:
        return {p: i.summary() for p, i in inputs.items()}

    # -- what to publish -------------------------------------------------------------------------------
    def state_message(self) -> StateMessage:
        env = self.engine.envelope
        return StateMessage(site=self.cfg.site, ts=self.wall(self.now), mode=self.mode,  # type: ignore[arg-type]
                            stage=self.engine.current, changing_to=self.engine.target,
                            time_in_stage_s=round(self.engine.stage_elapsed(), 2), signals=env.signals(),
                            time_in_signal_s={p: round(self.now - s.since, 2) for p, s in env.phases.items()})

    def plan_message(self) -> PlanMessage:
        inputs = self.inputs.phase_inputs(self.now)
        return PlanMessage(site=self.cfg.site, ts=self.wall(self.now), policy=self._active_policy().name,
                           mode=self.mode, plan=self._active_policy().plan(),  # type: ignore[arg-type]
                           failsafe_phases={p: i.problems for p, i in inputs.items() if not i.reliable})

    def command(self) -> SignalCommand:
        self.command_seq += 1
        return SignalCommand(site=self.cfg.site, ts=self.wall(self.now), seq=self.command_seq,
                             stage=self.engine.current, signals=self.engine.signals())
