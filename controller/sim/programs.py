"""SUMO's own controllers for comparison, built from the network's own phase program.

The green phases are kept as they are (durations for ``static``; ``minDur``/``maxDur`` of the controller
configuration for ``actuated`` and ``delay_based``, the min at least the WALK of the stage's crossings).
Each yellow phase gets the same ITE yellow our controller uses, followed by an all-red phase of the same
ITE red clearance, and a stage's pedestrian-clearance tail (crossings red, vehicles still green) lasts at
least our pedestrian clearance (crossing length at 1.07 m/s), so every controller in a comparison pays
the same change and clearance intervals and only the timing logic differs.
"""
from __future__ import annotations

import math

from roadside.controller.sim.tls import DerivedTLS

KINDS = {"sumo-static": "static", "sumo-actuated": "actuated", "sumo-delay-based": "delay_based"}


def program_id(controller: str) -> str:
    return f"roadside-{KINDS[controller]}"


def change_intervals(d: DerivedTLS, before: str, after: str) -> tuple[float, float]:
    """ITE yellow and red clearance of the vehicle phases whose links turn yellow between two states."""
    ending = {d.link_phase[i] for i, c in enumerate(after) if c in "yY" and i in d.link_phase}
    timings = [d.intersection.phases[p].timing for p in ending if d.phase_kind[p] == "vehicle"]
    if not timings:
        return 3.0, 0.0
    return max(t.yellow for t in timings), max(t.red_clearance for t in timings)


def program_xml(d: DerivedTLS, controller: str, native: bool = False) -> str:
    """SUMO's controller ``controller`` on the network's program. ``native``: keep the program's own
    yellow and red phases as netconvert wrote them (a city's existing timing), only adding the
    actuated limits; otherwise every change interval becomes our ITE one (same clearances for all)."""
    kind = KINDS[controller]
    phases = []
    states = d.original_states
    for k, (state, dur) in enumerate(states):
        if native and (any(c in "yY" for c in state) or not any(c in "Gg" for c in state)):
            phases.append(f'        <phase duration="{dur:.1f}" state="{state}"/>')
            continue
        if any(c in "yY" for c in state):
            prev = states[k - 1][0]
            yellow, red = change_intervals(d, prev, state)
            # SUMO switches phases on whole steps (1 s): round up, never show less than the ITE interval
            yellow, red = math.ceil(yellow - 1e-9), math.ceil(red - 1e-9)
            phases.append(f'        <phase duration="{yellow:.1f}" state="{state}"/>')
            if red > 0:
                allred = "".join("r" if c in "yY" else c for c in state)
                phases.append(f'        <phase duration="{red:.1f}" state="{allred}"/>')
            continue
        green = any(c in "Gg" for c in state)
        start = green and _is_stage_start(d, states, k)
        if green and not start and not native:
            # the pedestrian-clearance tail of a stage: as long as our pedestrian clearance
            dur = max(dur, _ped_clearance(d, states[k - 1][0], state))
        if kind != "static" and start:
            mn, mx = _limits(d, state)
            if native:
                mx = max(mx, dur)
            phases.append(f'        <phase duration="{dur:.1f}" minDur="{mn:.1f}" maxDur="{mx:.1f}" state="{state}"/>')
        else:
            phases.append(f'        <phase duration="{dur:.1f}" state="{state}"/>')
    params = ""
    if kind == "actuated":
        params = ('        <param key="max-gap" value="3.0"/>\n        <param key="detector-gap" value="2.0"/>\n'
                  '        <param key="passing-time" value="2.0"/>\n')
    return (f'    <tlLogic id="{d.tls_id}" type="{kind}" programID="{program_id(controller)}" offset="0">\n'
            + params + "\n".join(phases) + "\n    </tlLogic>\n")


def _is_stage_start(d: DerivedTLS, states, k: int) -> bool:
    """A green phase whose vehicle greens differ from the phase before (not a pedestrian-clearance tail)."""
    prev = states[k - 1][0]
    veh = lambda s: {i for i, c in enumerate(s) if c in "Gg" and i in d.links and d.links[i].crossing is None}  # noqa: E731
    return any(c in "yY" for c in prev) or not any(c in "Gg" for c in prev) or veh(prev) != veh(states[k][0])


def _limits(d: DerivedTLS, state: str) -> tuple[float, float]:
    """min/max green of a stage-start phase: the vehicle min (at least the WALK of its crossings) and max."""
    phases = {d.link_phase[i] for i, c in enumerate(state) if c in "Gg" and i in d.link_phase}
    t = [d.intersection.phases[p].timing for p in phases if d.phase_kind[p] == "vehicle"]
    walk = [d.intersection.phases[p].timing.min_green for p in phases if d.phase_kind[p] == "pedestrian"]
    # (a green phase of only continuous links and crossings has no vehicle phase: its WALK bounds it)
    mn = max([x.min_green for x in t] + walk, default=1.0)
    return mn, min((x.max_green for x in t), default=max(mn, 60.0))


def _ped_clearance(d: DerivedTLS, before: str, state: str) -> float:
    """Pedestrian clearance of the crossings that turn red between two green phases."""
    ending = {d.link_phase[i] for i, c in enumerate(state) if c in "rR" and before[i] in "Gg" and i in d.link_phase}
    return max((d.intersection.phases[p].timing.yellow for p in ending if d.phase_kind[p] == "pedestrian"),
               default=0.0)
