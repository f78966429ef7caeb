"""Issue 11, item 2: a flood on the site's topics while the controller times a green against its max.

A separate process publishes as fast as it can (valid bins, junk cameras and lines, malformed and oversized
payloads, junk devices) through a real Mosquitto to the real ControllerService, while two vehicle phases
hold continuous calls so that every green runs to its max. The controller's own signal timeline, observed at
every tick on the real clock, goes through the independent timeline checker: zero envelope violations,
greens ended at their max during the flood, and memory stays flat. A manual hold of EW (the issue's
reproduction: a green timed at the end of a manual hold) makes every EW green run to its max."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.controller import checker_for, fast_config, serving
from roadside.controller.config import parse_controller_config
from roadside.controller.intersection import Intersection
from roadside.edge.system_metrics import process_rss_bytes

FLOOD_S = 9.0
MAX_GREEN = {"ns": 6, "nsl": 5, "ew": 5}
TESTS = Path(__file__).resolve().parents[1]


class TimelineActuator:
    """Feeds every tick's signals, at the tick's own time, to the timeline checker."""

    def __init__(self, checker) -> None:
        self.checker = checker
        self.ticks: list[float] = []
        self.events: list[dict] = []

    def apply(self, ctrl, out, now: float) -> None:
        self.ticks.append(now)
        self.checker.observe(now, out.step.signals)
        self.events += [e.model_dump(mode="json") for e in out.events]


def test_a_flood_never_stretches_a_green_beyond_its_max_and_memory_stays_flat(broker):
    data = fast_config(broker.port).model_dump(mode="json")
    for p in data["intersection"]["phases"]:
        if p["id"] in MAX_GREEN:
            p["max_green"] = MAX_GREEN[p["id"]]
    cfg = parse_controller_config(data)
    checker = checker_for(Intersection.of(cfg), start=0.0)
    act = TimelineActuator(checker)
    with serving(cfg, broker.port, actuator=act) as (svc, edge, listener, th):
        edge.presence("cam1", {"ns_stop": (True, 2), "nsl_stop": (True, 1)})
        edge.presence("cam2", {"ew_stop": (True, 3)})
        edge.c.publish(svc.topics.controller("mode"), b'{"mode": "manual", "stage": "EW"}', qos=1)
        listener.wait(lambda: [e for e in act.events if e["type"] == "mode" and e["detail"].get("accepted")],
                      what="the manual hold")
        listener.wait(lambda: [e for e in act.events if e["type"] == "stage-green" and e["detail"]["stage"] == "EW"],
                      what="EW green")  # the flood starts with the green it must not stretch
        rss0 = process_rss_bytes()
        sizes0 = (len(svc.ctrl.inputs.cameras), len(svc.ctrl.inputs.zones), len(svc.ctrl.inputs.device_online))
        env = dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        t0 = svc.clock() - svc.ctrl.start
        sent, rss = 0, [rss0]
        for _ in range(2):  # twice: the second flood must not grow memory further (high-water mark, no leak)
            proc = subprocess.run(["nice", "-n", "5", sys.executable, "-c",
                                   f"from helpers.hostile import flood; flood({broker.port}, {FLOOD_S / 2})"],
                                  env=env, capture_output=True, text=True, timeout=FLOOD_S + 30)
            assert proc.returncode == 0, proc.stderr[-2000:]
            sent += int(proc.stdout.split()[-1])
            listener.wait(lambda: len(svc.inbox) == 0, timeout=30, what="the queue read to the end")
            rss.append(process_rss_bytes())
        t1 = svc.clock() - svc.ctrl.start
        assert th.is_alive()
        decisions = [e for e in act.events if e["type"] == "decision"]
    print(f"flood: {sent} messages sent, {svc.received} received, {svc.inbox.dropped} dropped, "
          f"{svc.ctrl.inputs.ignored} ignored, {svc.budget_hits} ticks hit the input budget, "
          f"rss {' -> '.join(f'{r / 1e6:.1f}' for r in rss)} MB, {len(act.ticks)} ticks, "
          f"longest tick gap {max(b - a for a, b in zip(act.ticks, act.ticks[1:])):.3f} s")
    assert sent > 10_000 and svc.received > 5_000
    assert checker.violations == []
    maxed = [d for d in decisions if d["detail"]["forced"] and t0 <= d["t"] <= t1]
    assert maxed, f"the flood must meet a green at its max: {[(d['t'], d['detail']) for d in decisions]}"
    for d in decisions:
        g = d["detail"]["green_s"]
        phases = {"NS": ["ns"], "NSL": ["ns", "nsl"], "EW": ["ew"]}[d["detail"]["from"]] if d["detail"]["from"] else []
        assert g is None or g <= min(MAX_GREEN[p] for p in phases) + 1e-6, d["detail"]
    # unknown ids were never stored; reported once, bounded
    assert (len(svc.ctrl.inputs.cameras), len(svc.ctrl.inputs.zones), len(svc.ctrl.inputs.device_online)) == sizes0
    assert len(listener.events("ignored")) <= 64
    assert rss[1] - rss[0] < 40e6, f"memory grew by {(rss[1] - rss[0]) / 1e6:.0f} MB during the first flood"
    assert rss[2] - rss[1] < 8e6, f"memory grew by {(rss[2] - rss[1]) / 1e6:.0f} MB more during the second flood"
