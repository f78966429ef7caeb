"""Timing policies. Each one only *proposes* (stay, change to a stage, give a WALK); the stage sequencer
and the safety envelope decide what is shown. Choose one with ``timing.policy`` in the configuration."""
from __future__ import annotations

from roadside.controller.config import ControllerConfig
from roadside.controller.intersection import Intersection
from roadside.controller.policies.base import Policy, View

POLICIES = ("fixed", "webster", "actuated", "adaptive")


def make_policy(cfg: ControllerConfig, inter: Intersection, name: str | None = None) -> Policy:
    name = name or cfg.timing.policy
    if name == "fixed":
        from roadside.controller.policies.fixed import FixedTimePolicy
        return FixedTimePolicy(cfg, inter)
    if name == "webster":
        from roadside.controller.policies.webster import WebsterPolicy
        return WebsterPolicy(cfg, inter)
    if name == "actuated":
        from roadside.controller.policies.actuated import ActuatedPolicy
        return ActuatedPolicy(cfg, inter)
    if name == "adaptive":
        from roadside.controller.policies.adaptive import AdaptivePolicy
        return AdaptivePolicy(cfg, inter)
    raise ValueError(f"unknown policy {name!r} (choose from {', '.join(POLICIES)})")


__all__ = ["POLICIES", "Policy", "View", "make_policy"]
