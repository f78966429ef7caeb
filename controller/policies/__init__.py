"""Timing policies. Each one only *proposes* (stay, change to a stage, give a WALK); the stage sequencer
and the safety envelope decide what is shown. Choose one with ``timing.policy`` in the configuration.

:data:`POLICIES` is the registry, name -> class; its names are :data:`~roadside.controller.policy_names.POLICY_NAMES`
(the configuration schema and the command line read that list)."""
from __future__ import annotations

from roadside.controller.config import ControllerConfig
from roadside.controller.intersection import Intersection
from roadside.controller.policies.actuated import ActuatedPolicy
from roadside.controller.policies.adaptive import AdaptivePolicy
from roadside.controller.policies.base import Policy, View
from roadside.controller.policies.fixed import FixedTimePolicy
from roadside.controller.policies.webster import WebsterPolicy
from roadside.controller.policy_names import POLICY_NAMES

POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in
                                     (FixedTimePolicy, WebsterPolicy, ActuatedPolicy, AdaptivePolicy)}
if tuple(POLICIES) != POLICY_NAMES:
    raise ImportError(f"the policy registry {tuple(POLICIES)} and POLICY_NAMES {POLICY_NAMES} disagree")


def make_policy(cfg: ControllerConfig, inter: Intersection, name: str | None = None) -> Policy:
    name = name or cfg.timing.policy
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r} (choose from {', '.join(POLICIES)})")
    return POLICIES[name](cfg, inter)


__all__ = ["POLICIES", "Policy", "View", "make_policy"]
