"""The I/O-free controller core: manual mode and message handling details."""
from __future__ import annotations

import json

from helpers.controller import checker_for, make_config
from roadside.controller.core import Controller
from roadside.controller.intersection import Intersection


def test_manual_hold_goes_through_the_envelope_and_back_to_auto():
    cfg = make_config(timing={"policy": "actuated"})
    ctrl = Controller(cfg, 0.0)
    checker = checker_for(Intersection.of(cfg))
    root = f"roadside/{cfg.site}/controller/mode"
    events, t = [], 0.0

    def run(seconds):
        nonlocal t
        for _ in range(int(seconds / cfg.tick_s)):
            t += cfg.tick_s
            out = ctrl.tick(t)
            events.extend(out.events)
            checker.observe(t, out.step.signals)

    run(30)
    ctrl.on_message(root, json.dumps({"mode": "manual", "stage": "EW"}).encode(), t)
    run(25)
    assert ctrl.mode == "manual" and ctrl.engine.current == "EW"
    assert [e.detail["reason"] for e in events if e.type == "decision"][-1] == "manual hold"
    assert ctrl.state_message().mode == "manual"
    ctrl.on_message(root, json.dumps({"mode": "manual", "stage": "nope"}).encode(), t)
    ctrl.on_message(root, b"{not json", t)
    run(1)
    assert [e.detail for e in events if e.type == "mode" and e.detail.get("accepted") is False][0]["error"] == \
        "unknown stage 'nope'"
    assert any(e.type == "malformed" and e.detail["topic"].endswith("/mode") for e in events)
    ctrl.on_message(root, b'{"mode": "auto"}', t)
    run(120)
    assert ctrl.mode != "manual" and checker.violations == []
    # a manual hold cannot keep a green beyond its max: the envelope ends it and the hold asks again
    greens = [e.detail for e in events if e.type == "decision"]
    assert all(g["green_s"] is None or g["green_s"] <= 40 + 1e-9 for g in greens)


def test_counts_bins_of_another_length_redeliveries_and_late_bins_do_not_inflate_the_flow():
    from datetime import datetime, timezone

    from roadside.core.payloads import CountsMessage, DirectionCounts

    cfg = make_config()
    ctrl = Controller(cfg, 0.0)
    topic = f"roadside/{cfg.site}/edge1/cam1/counts"

    def msg(seq, interval, n, late=False):
        return CountsMessage(seq=seq, site=cfg.site, device="edge1", camera="cam1",
                             interval_start=datetime(2025, 1, 1, tzinfo=timezone.utc), interval_s=interval,
                             lines={"ns_line": DirectionCounts(forward={"car": n})}, config_hash="x",
                             model="m", late=late).model_dump_json().encode()

    ctrl.on_message(topic, msg(0, 60, 30), 60.0)
    ctrl.on_message(topic, msg(0, 60, 30), 60.5)  # QoS 1 redelivery
    ctrl.on_message(topic, msg(0, 900, 400), 61.0)  # the 15-min bin of the same vehicles
    ctrl.on_message(topic, msg(1, 60, 300, late=True), 61.0)  # replayed after an outage: history
    flow = ctrl.inputs.phase_inputs(61.0)["ns"].flow_vph
    assert flow == 30 * 60


def test_failsafe_fixed_action_runs_the_fixed_plan_while_a_camera_is_silent_then_recovers():
    from helpers.queue_sim import QueueSim

    cfg = make_config(timing={"policy": "adaptive", "fixed": {"greens": {"NS": 20, "NSL": 6, "EW": 15}}},
                      failsafe={"action": "fixed", "stale_after_s": 10, "recover_after_s": 5})
    sim = QueueSim(cfg, {"ns": 600, "nsl": 100, "ew": 400, "ped_ew": 30}, seed=2)
    # cam2 (EW and its crossing) goes silent from 300 s to 600 s
    sim.tamper = lambda topic, payload, t: None if "/cam2/" in topic and 300 <= t < 600 else payload
    res = sim.run(900, record=True)
    checker = checker_for(Intersection.of(cfg))
    for (t, s), calls in zip(res.timeline, res.calls):
        checker.observe(t, s, calls)
    assert checker.violations == []
    modes = [(e.t, e.detail["to"]) for e in sim.events if e.type == "mode"]
    entered = [t for t, m in modes if m == "fail-safe" and t > 300]
    left = [t for t, m in modes if m == "normal" and entered and t > entered[0]]
    assert entered and 300 < entered[0] <= 312 and left and 600 <= left[0] <= 610
    during = [e.detail for e in sim.events if e.type == "decision" and entered[0] < e.t < 600]
    assert during and all(d["reason"].startswith("fail-safe fixed plan") and d["policy"] == "fixed" for d in during)
    after = [e.detail for e in sim.events if e.type == "decision" and e.t > left[0] + 60]
    assert after and all(d["policy"] == "adaptive" for d in after)
