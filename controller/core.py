"""The controller without any I/O: edge messages in, signals and audit records out, on a clock it is given.

``on_message`` takes an MQTT topic and its raw payload (parsed with the shared payload models, so a
malformed message is rejected exactly as the edge would); ``tick`` runs the input bookkeeping, the
fail-safe, the policy, the sequencer and the safety envelope, and returns what to publish. The
:class:`Intersection` is built here, once, and shared by the sequencer, the envelope and the policies.
The MQTT service and the SUMO harness both drive this same object.
"""
from __future__ import annotations

import json
import logging
import math
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
from roadside.core.topics import ParsedTopic
from roadside.core.ratelog import RateLimitedLog
from roadside.core.payloads import (MAX_PAYLOAD_BYTES, SCHEMA_VERSION, AuditEvent, CountsMessage, HealthMessage, ModeRequest, PlanMessage,
                                    PresenceMessage, SignalCommand, StateMessage)

log = logging.getLogger(__name__)

#: at most one ``malformed`` event per topic this often (s); the rest are counted in the next one
MALFORMED_EVENT_EVERY_S = 1.0
#: audit event types that also go to the log at WARNING (rate-limited per topic/phase)
LOGGED = frozenset({"malformed", "failsafe", "mode", "ignored", "overload"})

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
        #: unexpected errors while handling a message (each one logged, reported and put on fail-safe)
        self.input_errors = 0
        self.policy_errors = 0
        #: malformed messages (each one counts for the fail-safe; their events are rate-limited per topic)
        self.malformed_count = 0
        self._malformed_last: dict[str, tuple[float, int]] = {}
        self._held_detail: dict[str, dict[str, Any]] = {}
        self._log = RateLimitedLog(log)
        self.emit("startup", {"policy": self.policy.name, "stages": list(self.intersection.sequence),
                              "failsafe_action": cfg.failsafe.action})

    # -- audit -------------------------------------------------------------------------------------
    def emit(self, kind: str, detail: dict[str, Any]) -> AuditEvent:
        ev = AuditEvent(site=self.cfg.site, ts=self.wall(self.now), seq=self.seq, type=kind,  # type: ignore[arg-type]
                        t=round(self.now - self.start, 3), detail=detail)
        self.seq += 1
        self.pending.append(ev)
        if kind in LOGGED:
            self._log_event(kind, detail)
        return ev

    def _log_event(self, kind: str, d: dict[str, Any]) -> None:
        """What an operator tailing the journal must see (the events topic has it all, unthrottled)."""
        if kind == "malformed":
            self._log.warning(f"malformed:{d.get('topic')}", "malformed payload on %s: %s", d.get("topic"), d.get("error"))
        elif kind == "failsafe":
            if d.get("state") == "fail-safe":
                self._log.warning(f"failsafe:{d.get('phase')}", "phase %s on fail-safe (%s): %s", d.get("phase"),
                                  d.get("action"), "; ".join(d.get("reasons") or []))
            else:
                self._log.warning(f"failsafe:{d.get('phase')}", "phase %s back to normal", d.get("phase"))
        elif kind == "mode":
            if "to" in d:
                self._log.warning("mode", "mode %s -> %s%s", d.get("from"), d.get("to"),
                                  f" (fail-safe phases: {', '.join(sorted(d.get('failsafe_phases') or {}))})"
                                  if d.get("failsafe_phases") else "")
            else:
                self._log.warning("mode-request", "mode request %s: %s", "accepted" if d.get("accepted") else "refused",
                                  d.get("error") or f"{d.get('mode')} {d.get('stage') or ''}".strip())
        elif kind in ("ignored", "overload"):
            self._log.warning(kind, "%s: %s", kind, d.get("message"))

    # -- input ---------------------------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes, now: float) -> None:
        """Handle one message from ``<prefix>/...``; anything malformed becomes an audit event and puts the
        phases fed by that device/camera on fail-safe. No message can end the controller: an unexpected
        error while handling one is logged, counted (:attr:`input_errors`), reported as ``malformed`` and
        puts the phases of that device/camera on fail-safe."""
        self.messages_handled += 1
        self.now = max(self.now, now)
        try:
            self._handle(topic, payload, now)
        except Exception as e:  # noqa: BLE001 - the safety net: the loop must go on
            self.input_errors += 1
            where = self.topics.parse(topic)
            self._log.error(f"error:{topic}", "unexpected error while handling a message on %s: %s: %s",
                            topic, type(e).__name__, e, exc_info=True)
            if where is not None and not where.from_controller and self.inputs.knows(where.device, where.camera):
                self.inputs.on_malformed(where.device, where.camera, f"internal error ({type(e).__name__})", self.now)
            self._report_malformed(topic, {"topic": topic, "internal": True, "error": f"unexpected error while "
                                           f"handling it: {type(e).__name__}: {str(e)[:200]}"})

    def on_oversized(self, topic: str, size: int, now: float) -> None:
        """A message larger than :data:`MAX_PAYLOAD_BYTES`, refused unread."""
        self.messages_handled += 1
        self.now = max(self.now, now)
        where = self.topics.parse(topic)
        unknown = self.unknown_source(topic, where)
        if unknown is not None:
            self.inputs.unknown(unknown)
            return
        assert where is not None
        self._malformed(topic, where.device, where.camera,
                        f"payload of {size} bytes is larger than the limit of {MAX_PAYLOAD_BYTES}")

    def unknown_source(self, topic: str, where: ParsedTopic | None) -> str | None:
        """What is unknown about a topic (``where``: its parse) that no phase reads, or None when the
        controller reads it. Pure and cheap: the MQTT service calls it on its network thread."""
        if where is None:
            return f"topic {topic[:200]}"
        if where.from_controller:
            return None  # its own mode topic (and its own retained status, which it skips)
        if not self.inputs.knows(where.device, where.camera):
            return f"device {where.device}" if where.camera is None else f"camera {where.device}/{where.camera}"
        return None

    def _handle(self, topic: str, payload: bytes, now: float) -> None:
        where = self.topics.parse(topic)
        unknown = self.unknown_source(topic, where)
        if unknown is not None:
            # an id no phase reads: counted and reported once, never parsed or stored
            self.inputs.unknown(unknown)
            return
        assert where is not None
        device = where.device
        if where.from_controller:
            if where.kind == "mode":
                self._on_mode(payload)
            return
        if len(payload) > MAX_PAYLOAD_BYTES:
            self._malformed(topic, device, where.camera,
                            f"payload of {len(payload)} bytes is larger than the limit of {MAX_PAYLOAD_BYTES}")
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
            loc = ".".join(str(x) for x in first["loc"]) or "(top level)"
            self._malformed(topic, device, camera,
                            f"{e.error_count()} problem(s), first at {loc[:100]}: {first['msg'][:200]}")
            return
        if msg.schema_version != SCHEMA_VERSION:
            self._malformed(topic, device, camera, f"schema_version {msg.schema_version}, expected {SCHEMA_VERSION}")
            return
        if (msg.site, msg.device, msg.camera) != (self.cfg.site, device, camera):
            self._malformed(topic, device, camera, f"payload names {msg.site}/{msg.device}/{msg.camera}, "
                                                   f"topic says {self.cfg.site}/{device}/{camera}")
            return
        if isinstance(msg, CountsMessage):
            self.inputs.on_counts(msg, now, hash(payload))
        elif isinstance(msg, PresenceMessage):
            self.inputs.on_presence(msg, now)
        else:
            self.inputs.on_health(msg, now)

    def _malformed(self, topic: str, device: str, camera: str | None, error: str) -> None:
        self.inputs.on_malformed(device, camera, error, self.now)
        self._report_malformed(topic, {"topic": topic, "error": error})

    def _report_malformed(self, topic: str, detail: dict[str, Any]) -> None:
        """A ``malformed`` event, at most one per topic per :data:`MALFORMED_EVENT_EVERY_S`: a flood of junk
        must not become a flood of audit events (which would crowd out decisions and commands). The next
        event of the topic says how many were held back (``suppressed``); each one still counts for the
        fail-safe."""
        self.malformed_count += 1
        last, held = self._malformed_last.get(topic, (-math.inf, 0))
        if self.now - last < MALFORMED_EVENT_EVERY_S:
            self._malformed_last[topic] = (last, held + 1)
            return
        self._malformed_last[topic] = (self.now, 0)
        self._held_detail[topic] = detail
        self.emit("malformed", {**detail, "suppressed": held} if held else detail)

    def _flush_malformed(self) -> None:
        """Once a topic's interval has passed, report what was held back (with the last event's detail)."""
        for topic, (last, held) in self._malformed_last.items():
            if held and self.now - last >= MALFORMED_EVENT_EVERY_S:
                self._malformed_last[topic] = (self.now, 0)
                self.emit("malformed", {**self._held_detail[topic], "suppressed": held})

    def _on_mode(self, payload: bytes) -> None:
        try:
            req = ModeRequest.model_validate_json(payload)
        except ValidationError as e:
            self._report_malformed(self.topics.controller("mode"), {"topic": self.topics.controller("mode"),
                                                                    "error": str(e.errors()[0]["msg"])[:200]})
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
        self._flush_malformed()
        new = self.inputs.take_unknown()
        if new:
            self.emit("ignored", {"ids": new, "ignored_total": self.inputs.ignored,
                                  "message": f"ids no phase reads, ignored (reported once each; "
                                             f"{self.inputs.ignored} ignored so far): {', '.join(new[:8])}"
                                             + (f" and {len(new) - 8} more" if len(new) > 8 else "")})
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
            try:
                decision = self.policy.decide(view)
            except Exception as e:  # noqa: BLE001 - a policy bug must not stop the signals: run the fixed plan
                self.policy_errors += 1
                self._log.error("policy", "policy %s failed: %s: %s; this tick runs the fixed plan", self.policy.name,
                                type(e).__name__, e, exc_info=True)
                decision = self.fallback.decide(view)
                if decision.target:
                    decision.reason = f"policy error ({type(e).__name__}), fixed plan: {decision.reason}"
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
