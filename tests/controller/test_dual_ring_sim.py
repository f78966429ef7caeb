"""Dual ring derived from a SUMO program and run in closed loop on generated 4-leg junctions with
protected lefts: the derived rings and barriers, zero safety violations on the independent monitor (whose
conflicts come from the junction's right-of-way logic), no teleports, delay against the single ring."""
from __future__ import annotations

import json

import pytest

sumo = pytest.importorskip("libsumo", reason="SUMO is not installed (pip install 'roadside[sim]')")

import sumolib  # noqa: E402

from roadside.controller.safety import SafetyEnvelope  # noqa: E402
from roadside.controller.sim.generate import generate  # noqa: E402
from roadside.controller.sim.runner import SimSpec, run_sim  # noqa: E402
from roadside.controller.sim.tls import NetworkError, derive  # noqa: E402

#: generated 4-leg junctions with protected lefts: no crossings (near-saturation), three crossings; and one
#: whose side street has permissive lefts
PROTECTED, WITH_CROSSINGS, PERMISSIVE = 127, 6, 83
DURATION = 600


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("dual")
    return {s: generate(s, root / f"case{s}", duration_s=DURATION) for s in (PROTECTED, WITH_CROSSINGS, PERMISSIVE)}


def directions(net_file: str) -> dict[int, str]:
    """Turn direction (s, l, r, ...) of each link of the net's one traffic light, read with sumolib."""
    net = sumolib.net.readNet(net_file, withPrograms=True)
    tls = net.getTrafficLights()[0]
    out = {}
    for idx, conns in tls.getLinks().items():
        lane_in, lane_out, _ = conns[0]
        out[idx] = next(c.getDirection() for c in lane_in.getOutgoing() if c.getToLane() is lane_out)
    return out


def test_a_4_leg_program_with_protected_lefts_maps_onto_8_phases_in_2_rings(cases):
    info = cases[PROTECTED]
    d = derive(info["net"], rings="dual")
    dr = d.config.intersection.dual_ring
    assert dr is not None
    assert [len(r) for r in dr.rings] == [4, 4] and [len(b) for b in dr.barriers] == [4, 4]
    turn = directions(info["net"])
    lefts = {p for p, idx in d.phase_links.items() if all(turn[i] == "l" for i in idx)}
    approach = {p: d.links[d.phase_links[p][0]].from_edge for p in d.phase_links}
    inter = d.intersection
    for members in dr.barriers:
        assert len(lefts & set(members)) == 2  # each barrier group: two lefts and two throughs
        assert len({approach[p] for p in members}) == 2  # ... of two opposite approaches
        for ring in dr.rings:
            mine = [p for p in ring if p in members]
            # a ring runs a through and the opposing left (they cross), in the program's order: through first
            assert len(mine) == 2 and mine[0] not in lefts and mine[1] in lefts
            assert approach[mine[0]] != approach[mine[1]] and inter.conflicts(*mine)
        r1, r2 = ([p for p in ring if p in members] for ring in dr.rings)
        assert all(not inter.conflicts(a, b) for a in r1 for b in r2)
    # the fail-safe plan is the program: each ring phase gets its program stage's green
    assert set(d.config.timing.fixed.greens) == set(d.phase_links)
    for p, g in d.config.timing.fixed.greens.items():
        stage = next(st for st in d.stages if set(d.phase_links[p]) <= st.green)
        assert g == stage.duration


def test_permissive_lefts_are_not_derived_as_a_dual_ring(cases):
    with pytest.raises(NetworkError, match="yield to \\(permissive\\) in the program; dual ring not derived"):
        derive(cases[PERMISSIVE]["net"], rings="dual")


def run(info: dict, controller: str, rings: str, audit: str | None = None) -> dict:
    return run_sim(SimSpec(controller=controller, net=info["net"], routes=info["routes"], duration_s=DURATION,
                           native_baselines=True, rings=rings, audit_log=audit))


def test_dual_ring_runs_safely_in_sumo_and_beats_the_single_ring(cases, tmp_path):
    info = cases[PROTECTED]
    audit = tmp_path / "audit.jsonl"
    dual = run(info, "actuated", "dual", str(audit))
    single = run(info, "actuated", "single")
    for r in (dual, single):
        assert r["safety_violations"] == 0, r["violations_by_rule"]
        assert r["teleports"] == 0
    assert dual["throughput_veh"] >= 0.97 * single["throughput_veh"]
    assert dual["mean_time_loss_s"] < single["mean_time_loss_s"], (dual["mean_time_loss_s"], single["mean_time_loss_s"])
    # it really ran as a dual ring: a left beside the through of its own approach, which the program never shows
    d = derive(info["net"], rings="dual")
    program_sets = [frozenset(p for p, idx in d.phase_links.items() if set(idx) <= st.green) for st in d.stages]
    shown = {json.loads(line)["detail"]["to"] for line in audit.read_text().splitlines()
             if json.loads(line)["type"] == "decision"}
    inter = d.intersection
    assert any(inter.stages[s].vehicles not in program_sets and len(inter.stages[s].vehicles) == 2 for s in shown)


def test_dual_ring_with_crossings_and_its_fixed_plan_run_safely(cases):
    info = cases[WITH_CROSSINGS]
    d = derive(info["net"], rings="dual")
    assert set(d.config.intersection.dual_ring.walk_with) == {p for p, k in d.phase_kind.items() if k == "pedestrian"}
    for controller in ("actuated", "fixed"):
        r = run(info, controller, "dual")
        assert r["safety_violations"] == 0 and r["teleports"] == 0, (controller, r["violations_by_rule"])
        assert r["throughput_veh"] > 0


def test_the_monitor_catches_a_broken_interlock_on_a_dual_ring(cases, monkeypatch):
    """The monitor's dual-ring conflicts (program pairs that are right-of-way foes) can fail a run."""
    monkeypatch.setattr(SafetyEnvelope, "may_start", lambda self, pid: True)
    r = run(cases[PROTECTED], "actuated", "dual")
    assert r["violations_by_rule"].get("conflict", 0) > 0
