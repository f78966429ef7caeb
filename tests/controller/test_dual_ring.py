"""Ring-and-barrier (NEMA dual ring) operation: the configuration and its errors, the rings ending
independently and crossing the barrier together, and property tests that no input breaks the dual-ring
rules, judged by the timeline checker with the conflicts worked out here from the rings and barriers (not
from the controller's own conflict sets)."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helpers.controller import NEMA_BARRIERS, NEMA_RINGS, dual_ring_dict, make_config
from helpers.queue_sim import QueueSim
from roadside.controller.config import ControllerConfig, parse_controller_config
from roadside.controller.engine import Decision, SignalEngine
from roadside.controller.inputs import PhaseInput
from roadside.controller.intersection import Intersection
from roadside.controller.policies import make_policy
from roadside.controller.policies.base import View
from roadside.controller.sim.signal_check import SignalRules, SignalTimelineChecker
from roadside.core.errors import ConfigError

TICK = 0.5
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


def ring_checker(cfg: ControllerConfig, start: float = 0.0) -> SignalTimelineChecker:
    """The timeline checker with the dual-ring conflicts derived here from the configuration as written:
    two phases of one ring, phases of different barrier groups (a pedestrian phase as its vehicle phase),
    and every pair not listed as compatible."""
    inter_cfg = cfg.intersection
    dr = inter_cfg.dual_ring
    assert dr is not None
    host = {p.id: dr.walk_with.get(p.id, p.id) for p in inter_cfg.phases}
    ring = {p: r for r, phases in enumerate(dr.rings) for p in phases}
    group = {p: g for g, phases in enumerate(dr.barriers) for p in phases}
    listed = {frozenset((a, b)) for grp in inter_cfg.compatible for a in grp for b in grp if a != b}
    ids = list(host)
    conflicts = set()
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            ha, hb = host[a], host[b]
            apart = ha != hb and (ring[ha] == ring[hb] or group[ha] != group[hb])
            if apart or frozenset((a, b)) not in listed:
                conflicts.add(frozenset((a, b)))
    inter = Intersection.of(cfg)  # only the four numbers per phase (ITE arithmetic is tested elsewhere)
    rules = {p.id: SignalRules(p.timing.min_green, p.timing.max_green, p.timing.yellow, p.timing.red_clearance)
             for p in inter.phases.values()}
    return SignalTimelineChecker(rules, conflicts, start=start)


def nema_config(policy: str = "actuated", **over) -> ControllerConfig:
    return make_config(intersection=dual_ring_dict(), timing={"policy": policy}, **over)


# -- configuration ------------------------------------------------------------------------------

def test_the_rings_give_every_combination_of_a_barrier_group_as_a_stage():
    inter = Intersection.of(nema_config())
    assert inter.rings is not None
    stages = {frozenset(s.phases) for s in inter.stages.values()}
    for group in NEMA_BARRIERS:
        r1 = [p for p in NEMA_RINGS[0] if p in group]
        r2 = [p for p in NEMA_RINGS[1] if p in group]
        for a in r1:
            for b in r2:
                assert frozenset({a, b}) | ({"ped4"} if "p4" in (a, b) else set()) in stages
    assert len(inter.stages) == 2 * (4 + 4)
    # the rings and barriers are conflicts, even where the compatibility lists would allow them
    assert inter.conflicts("p1", "p2") and inter.conflicts("p2", "p4") and inter.conflicts("p6", "p8")
    assert not inter.conflicts("p1", "p6") and not inter.conflicts("ped4", "p8")


def test_the_example_dual_ring_configuration_checks_from_the_command_line():
    import json
    import subprocess
    import sys

    from helpers.controller import EXAMPLE

    path = EXAMPLE.parent / "nema.yaml"
    out = subprocess.run([sys.executable, "-m", "roadside.core.cli", "controller", "check", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["dual_ring"]["rings"] == NEMA_RINGS
    assert got["dual_ring"]["barrier_groups"] == [[["p1", "p2"], ["p5", "p6"]], [["p3", "p4"], ["p7", "p8"]]]
    assert {"p1.p6", "p4.p7", "p2"} <= set(got["stages"]) and ["p2", "p4"] in got["conflicts"]
    assert "ped_w" in got["stages"]["p4.p7"]["phases"]


def _mutated(mutate) -> dict:
    inter = dual_ring_dict()
    mutate(inter)
    return inter


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["dual_ring"]["rings"][1].append("p2"),
     "intersection.dual_ring: rings[1][4]: phase 'p2' is already in rings[0]"),
    (lambda d: d["compatible"].remove(["p1", "p6"]),
     "dual_ring.barriers[0]: 'p1' (ring 1) and 'p6' (ring 2) would be green together but conflict"),
    (lambda d: d["dual_ring"].update(barriers=[["p1", "p2", "p7", "p8"], ["p3", "p4", "p5", "p6"]]),
     "rings[1][2]: phase 'p7' (barriers[0]) comes after a phase of barriers[1]: the barrier groups do not align"),
    (lambda d: d["dual_ring"].update(barriers=[["p1", "p3", "p5", "p6"], ["p2", "p4", "p7", "p8"]]),
     "rings[0][2]: phase 'p3' (barriers[0]) comes after a phase of barriers[1]"),
    (lambda d: d["dual_ring"]["barriers"][1].remove("p8"), "rings[1][3]: phase 'p8' is in no barrier group"),
    (lambda d: d["dual_ring"]["barriers"][1].append("p9"), "barriers[1][4]: phase 'p9' is in no ring"),
    (lambda d: (d["dual_ring"]["rings"][0].append("ped4"), d["dual_ring"]["barriers"][1].append("ped4")),
     "intersection: dual_ring.rings[0][4]: 'ped4' is a pedestrian phase; put it in dual_ring.walk_with"),
    (lambda d: d["dual_ring"].update(walk_with={}), "phase(s) ['ped4'] are in no ring"),
    (lambda d: d["compatible"].remove(["ped4", "p7"]),
     "dual_ring.walk_with.ped4: runs beside 'p4', so with 'p7' (ring 2, barriers[1]), but conflicts with it"),
    (lambda d: d.update(stages=[{"id": "a", "phases": ["p1"]}, {"id": "b", "phases": ["p2"]}]),
     "stages: leave them out with dual_ring"),
    (lambda d: d["dual_ring"].update(rings=[NEMA_RINGS[0]]), "intersection.dual_ring.rings: List should have at least 2 items"),
])
def test_bad_rings_are_rejected_with_the_key_path(mutate, message):
    with pytest.raises(ConfigError) as e:
        make_config(intersection=_mutated(mutate))
    assert message in str(e.value)


def test_policies_without_ring_operation_and_stage_greens_are_rejected():
    with pytest.raises(ConfigError, match="timing.policy: 'adaptive' does not run ring-and-barrier"):
        nema_config("adaptive")
    with pytest.raises(ConfigError, match="timing.fixed.greens: 'p1.p5' is not a phase of the rings"):
        make_config(intersection=dual_ring_dict(), timing={"policy": "fixed", "fixed": {"greens": {"p1.p5": 10}}})
    with pytest.raises(ConfigError, match="stages: give at least two stages"):
        make_config(intersection=_mutated(lambda d: d.pop("dual_ring")))


# -- operation ----------------------------------------------------------------------------------

DEMAND = {"p1": 250, "p2": 650, "p3": 90, "p4": 450, "p5": 60, "p6": 700, "p7": 200, "p8": 400, "ped4": 40}


def run_sim(cfg: ControllerConfig, demand: dict, duration: float = 1800, seed: int = 2):
    sim = QueueSim(cfg, demand, seed=seed)
    res = sim.run(duration, record=True)
    return res, sim


def test_rings_end_independently_and_cross_the_barrier_together():
    cfg = nema_config()
    res, sim = run_sim(cfg, DEMAND)
    checker = ring_checker(cfg)
    for (t, s), calls in zip(res.timeline, res.calls):
        checker.observe(t, s, calls)
    assert checker.violations == []
    greens = [{p for p, sig in s.items() if sig == "green"} for _, s in res.timeline]
    # a heavy left beside a light one: the light one ends first and its ring's through starts beside it
    assert any({"p1", "p6"} <= g for g in greens)  # ring 2 moved on while ring 1's left ran on
    assert any({"p3", "p7"} <= g for g in greens) and any({"p4", "p7"} <= g for g in greens)
    decisions = [e.detail for e in sim.events if e.type == "decision"]
    reasons = [d["reason"] for d in decisions]
    # a ring that finished during the other ring's change retargeted that change (same 'from' twice)
    assert any(a["from"] == b["from"] and a["to"] != b["to"] for a, b in zip(decisions, decisions[1:]))
    assert any(r.startswith("ring 2: p5 gap-out, next p6") for r in reasons)
    assert any(r.startswith("barrier: both rings done") for r in reasons)
    # the barrier: no phase of one group is ever green (or yellow) with one of the other
    group = {p: g for g, ps in enumerate(NEMA_BARRIERS) for p in ps}
    for _, s in res.timeline:
        assert len({group[p] for p, sig in s.items() if sig != "red" and p in group}) <= 1
    assert res.served > 0.9 * sum(v for k, v in DEMAND.items() if k != "ped4") * 1800 / 3600


def single_ring_equivalent() -> dict:
    """The same intersection as one ring of the four paired stages a single-ring controller would run."""
    d = dual_ring_dict()
    d.pop("dual_ring")
    d["compatible"] = [c for c in d["compatible"] if {"p1", "p5"} == set(c) or {"p2", "p6"} == set(c)
                       or {"p3", "p7"} == set(c) or {"p4", "p8"} == set(c) or "ped4" in c and "p7" not in c]
    d["stages"] = [{"id": "L_ew", "phases": ["p1", "p5"]}, {"id": "T_ew", "phases": ["p2", "p6"]},
                   {"id": "L_ns", "phases": ["p3", "p7"]}, {"id": "T_ns", "phases": ["p4", "p8", "ped4"]}]
    return d


def test_dual_ring_has_less_delay_than_the_single_ring_of_paired_stages_on_uneven_lefts():
    """Measured on the point-queue simulation over three seeds: the single ring runs both lefts (and both
    throughs) together for as long as the busier one needs; the dual ring lets the other move on."""
    dual, single = [], []
    for seed in (1, 2, 3):
        dual.append(run_sim(nema_config(), DEMAND, 1800, seed)[0].mean_delay_s)
        single.append(run_sim(make_config(intersection=single_ring_equivalent(), timing={"policy": "actuated"}),
                              DEMAND, 1800, seed)[0].mean_delay_s)
    assert sum(dual) < 0.95 * sum(single), (dual, single)


def test_fixed_plan_runs_each_ring_with_its_phase_greens():
    greens = {"p1": 8, "p2": 20, "p3": 6, "p4": 18, "p5": 12, "p6": 16, "p7": 6, "p8": 18}
    cfg = make_config(intersection=dual_ring_dict(), timing={"policy": "fixed", "fixed": {"greens": greens}})
    res, _ = run_sim(cfg, DEMAND, 600)
    checker = ring_checker(cfg)
    for (t, s), calls in zip(res.timeline, res.calls):
        checker.observe(t, s, calls)
    assert checker.violations == []
    starts: dict[str, list[float]] = {p: [] for p in greens}
    ends: dict[str, list[float]] = {p: [] for p in greens}
    for (t0, a), (t1, b) in zip(res.timeline, res.timeline[1:]):
        for p in greens:
            if a[p] != "green" and b[p] == "green":
                starts[p].append(t1)
            if a[p] == "green" and b[p] != "green" and starts[p]:
                ends[p].append(t1)
    for p, g in greens.items():
        durations = [e - s for s, e in zip(starts[p], ends[p])]
        assert durations, p
        # each phase runs its own green, except the one that waits at the barrier for the other ring
        rest = {"p1": 0, "p5": 0, "p2": 4, "p6": 0, "p3": 0, "p7": 0, "p4": 0, "p8": 0}
        assert all(g - 1e-6 <= d <= g + rest[p] + TICK + 1e-6 for d in durations), (p, durations)


# -- properties ---------------------------------------------------------------------------------

@st.composite
def dual_ring_configs(draw) -> ControllerConfig:
    n_groups = draw(st.integers(2, 3))
    rings: list[list[str]] = [[], []]
    barriers: list[list[str]] = []
    phases = []
    k = 0
    for _ in range(n_groups):
        members = []
        for r in (0, 1):
            for _ in range(draw(st.integers(1 if r == 0 else 0, 3))):
                k += 1
                pid = f"v{k}"
                mn = draw(st.integers(1, 10))
                phases.append({"id": pid, "min_green": mn, "max_green": mn + draw(st.integers(1, 30)),
                               "yellow": draw(st.sampled_from([3, 3.5, 4.5])),
                               "red_clearance": draw(st.sampled_from([0, 0.5, 1, 2.5])),
                               "passage": draw(st.sampled_from([1, 2, 3]))})
                rings[r].append(pid)
                members.append(pid)
        barriers.append(members)
    if not rings[1]:  # a ring needs a phase somewhere
        k += 1
        phases.append({"id": f"v{k}", "min_green": 3, "max_green": 9, "yellow": 3, "red_clearance": 1})
        rings[1].append(f"v{k}")
        barriers[-1].append(f"v{k}")
    compatible = []
    for members in barriers:
        r1 = [p for p in rings[0] if p in members]
        r2 = [p for p in rings[1] if p in members]
        compatible += [[a, b] for a in r1 for b in r2]
    # junk compatibilities across rings and barriers: the rings and barriers still keep them apart
    ids = [p["id"] for p in phases]
    compatible += [[a, b] for a in ids for b in ids if a < b and draw(st.integers(0, 9)) == 0]
    walk_with = {}
    if draw(st.booleans()):
        host = draw(st.sampled_from(rings[0]))
        g = next(i for i, m in enumerate(barriers) if host in m)
        phases.append({"id": "ped", "kind": "pedestrian", "walk": draw(st.integers(1, 8)),
                       "ped_clearance": draw(st.integers(0, 12)), "red_clearance": draw(st.integers(0, 2))})
        compatible += [["ped", host]] + [["ped", b] for b in rings[1] if b in barriers[g]]
        walk_with = {"ped": host}
    data = {"site": "prop", "device": "edge1", "tick_s": TICK,
            "intersection": {"phases": phases, "compatible": compatible,
                             "dual_ring": {"rings": rings, "barriers": barriers, "walk_with": walk_with}},
            "timing": {"policy": draw(st.sampled_from(["actuated", "fixed"]))}}
    return parse_controller_config(data)


def random_inputs(draw, ids: list[str]) -> dict[str, PhaseInput]:
    out = {}
    for p in ids:
        call = draw(st.booleans())
        gap = draw(st.sampled_from([0.0, 0.5, 1.5, 3.0, 10.0, math.inf]))
        out[p] = PhaseInput(reliable=draw(st.integers(0, 19)) > 0, problems=[], call=call, gap_s=gap,
                            queue=None, max_wait_s=0.0, flow_vph=None)
    return out


@settings(max_examples=50, deadline=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_ring_policies_on_random_detector_inputs_never_break_the_rules(data):
    """The actuated or fixed ring operation on random calls, gaps and fail-safe flags, ticks of random
    length: no conflicting greens (rings, barriers), min and max green (against the calls), full
    yellows and red clearances; and every phase is served at some point when its calls persist."""
    cfg = data.draw(dual_ring_configs())
    inter = Intersection.of(cfg)
    policy = make_policy(cfg, inter)
    engine = SignalEngine(inter, TICK, 0.0)
    checker = ring_checker(cfg)
    ids = list(inter.phases)
    t = 0.0
    held = random_inputs(data.draw, ids)
    for _ in range(data.draw(st.integers(100, 500))):
        t += data.draw(st.sampled_from([0.1, 0.25, TICK]))
        if data.draw(st.integers(0, 9)) == 0:
            held = random_inputs(data.draw, ids)
        calls = frozenset(p for p, i in held.items() if i.call)
        engine.advance(t, calls)
        decision = policy.decide(View(t, engine, held))
        res = engine.step(t, decision, calls)
        checker.observe(t, res.signals, set(calls))
    checker.finish(t)
    assert checker.violations == []


@settings(max_examples=30, deadline=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_and_junk_decisions_with_retargeting_never_break_the_dual_ring_rules(data):
    """The sequencer and the envelope alone, fed any stage (changes while a change runs included), junk,
    NaN and time going backwards."""
    cfg = data.draw(dual_ring_configs())
    inter = Intersection.of(cfg)
    engine = SignalEngine(inter, TICK, 100.0)
    checker = ring_checker(cfg, start=100.0)
    stage_ids = list(inter.stages)
    t = 100.0
    for _ in range(data.draw(st.integers(50, 500))):
        t += data.draw(st.sampled_from([0.1, 0.25, TICK]))
        kind = data.draw(st.integers(0, 9))
        if kind == 0:
            decision = data.draw(st.sampled_from([None, "p1", 3, math.nan, object()]))
        else:
            decision = Decision(target=data.draw(st.one_of(st.none(), st.sampled_from(stage_ids + ["nope"]))),
                                walk=frozenset(data.draw(st.sampled_from([[], ["ped"], ["v1"]]))),
                                while_changing=data.draw(st.booleans()))
        if data.draw(st.integers(0, 19)) == 0:
            engine.step(math.nan if kind % 2 else t - 30.0, decision)
            checker.observe(engine.now, engine.signals())
        engine.step(t, decision)
        checker.observe(engine.now, engine.signals())
    checker.finish(engine.now)
    assert checker.violations == []


def test_the_ring_checker_catches_a_barrier_crossed_early(monkeypatch):
    """The properties can fail: with the rings and barriers left out of the conflicts (the interlock
    then only knows the junk compatibilities), the checker sees phases of two groups green together."""
    from roadside.controller.rings import RingBarrier

    d = dual_ring_dict()
    d["compatible"].append(["p2", "p4"])  # junk, across the barrier
    cfg = make_config(intersection=d, timing={"policy": "actuated"})
    monkeypatch.setattr(RingBarrier, "separates", lambda self, a, b: False)
    inter = Intersection.of(cfg)
    engine = SignalEngine(inter, TICK, 0.0)
    checker = ring_checker(cfg)
    t = 0.0
    for sid in ["p2", "p4", "p2.p6", "p4.p8"] * 20:
        for _ in range(30):
            t += TICK
            res = engine.step(t, Decision(target=sid))
            checker.observe(t, res.signals)
    assert "conflict" in {v.rule for v in checker.violations}
