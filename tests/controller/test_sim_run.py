"""Closed-loop runs in SUMO: the deployed path through a broker, SUMO's own controllers, the independent
safety monitor, degraded detection and a detector outage. Short simulated durations; the hour-long
scenarios belong to `roadside sim bench`."""
from __future__ import annotations

import json

import pytest

from helpers.controller import sim_cli

pytest.importorskip("libsumo", reason="SUMO is not installed (pip install 'roadside[sim]')")

from roadside.controller.safety import SafetyEnvelope  # noqa: E402
from roadside.controller.sim.runner import SimSpec, run_sim  # noqa: E402

KEYS = {"mean_time_loss_s", "p95_time_loss_s", "mean_waiting_s", "throughput_veh", "max_queue_veh", "teleports",
        "safety_violations"}


def test_broker_path_and_in_process_path_run_the_same_controller(tmp_path):
    """Through a real mosquitto (detectors -> MQTT -> ControllerService -> MQTT command -> SUMO) the result
    is identical to driving the controller core directly: the broker adds nothing and loses nothing."""
    log = tmp_path / "audit.jsonl"
    via_broker = run_sim(SimSpec("adaptive", scenario="balanced", duration_s=400, mode="broker", audit_log=str(log)))
    direct = run_sim(SimSpec("adaptive", scenario="balanced", duration_s=400, mode="inproc"))
    assert via_broker["mode"] == "broker"
    for k in KEYS:
        assert via_broker[k] == direct[k], k
    assert via_broker["safety_violations"] == 0 and via_broker["throughput_veh"] > 50
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(e["type"] == "decision" for e in events) > 5


@pytest.mark.parametrize("controller", ["sumo-actuated", "webster-true", "fixed"])
def test_baselines_run_safely(controller):
    res = run_sim(SimSpec(controller, scenario="unbalanced", duration_s=300))
    assert KEYS <= set(res) and res["safety_violations"] == 0 and res["throughput_veh"] > 50


def test_monitor_catches_a_sabotaged_interlock(monkeypatch):
    """The same run with the envelope's conflict interlock disabled shows conflicts in SUMO's own states."""
    monkeypatch.setattr(SafetyEnvelope, "may_start", lambda self, pid: True)
    res = run_sim(SimSpec("fixed", scenario="balanced", duration_s=200))
    assert res["safety_violations"] > 0 and "conflict" in res["violations_by_rule"]


def test_detector_outage_goes_fail_safe_and_recovers(tmp_path):
    log = tmp_path / "audit.jsonl"
    res = run_sim(SimSpec("adaptive", scenario="unbalanced", duration_s=600, detection="outage", audit_log=str(log)))
    assert res["safety_violations"] == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    failsafe = [e for e in events if e["type"] == "failsafe"]
    entered = [e for e in failsafe if e["detail"]["state"] == "fail-safe" and e["t"] > 100]
    recovered = [e for e in failsafe if e["detail"]["state"] == "normal" and entered and e["t"] > entered[0]["t"]]
    assert entered and any("stale" in r for r in entered[0]["detail"]["reasons"])
    # the outage is 200..500 s: fail-safe within the stale time, recovery after the data returns
    assert 200 <= entered[0]["t"] <= 215 and 500 <= recovered[0]["t"] <= 520
    decisions = [e for e in events if e["type"] == "decision" and 230 < e["t"] < 490]
    assert decisions and all(d["detail"]["mode"] == "fail-safe" for d in decisions)


def test_degraded_detection_still_safe():
    res = run_sim(SimSpec("actuated", scenario="city", duration_s=300, detection="degraded"))
    assert res["safety_violations"] == 0 and res["throughput_veh"] > 50


def test_cli_run_and_bench(tmp_path):
    r = sim_cli("run", "--scenario", "peak", "--controller", "sumo-delay-based", "--duration", "120", timeout=120)
    assert r.returncode == 0, r.stderr
    assert KEYS <= set(json.loads(r.stdout))
    r = sim_cli("run", "--scenario", "nope", "--controller", "fixed", timeout=60)
    assert r.returncode == 2 and "unknown scenario 'nope'" in r.stderr
    out = tmp_path / "bench"
    r = sim_cli("bench", "--scenarios", "balanced",
                "--controllers", "adaptive", "sumo-actuated", "--seeds", "1", "--duration", "120",
                "--out", str(out), "--plots", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "| balanced | ours: adaptive |" in r.stdout and (out / "balanced.png").stat().st_size > 10000


def test_set_reaches_our_controller_and_a_bad_setting_stops_before_any_simulation(tmp_path):
    """`--set KEY=VALUE` (sim run and sim bench) puts a setting into the derived configuration of our
    controllers: the audit log shows the setting at work. A misspelt key or a bad value is named, exit 2."""
    log = tmp_path / "audit.jsonl"
    base = ["run", "--scenario", "unbalanced", "--controller", "adaptive", "--duration", "300", "--mode", "inproc"]
    reasons = {}
    for wait in (None, 15):
        log = tmp_path / f"{wait}.jsonl"
        extra = ["--set", f"timing.adaptive.max_wait_s={wait}"] if wait else []
        r = sim_cli(*base, "--audit-log", str(log), *extra, timeout=300)
        assert r.returncode == 0, r.stderr
        events = [json.loads(line) for line in log.read_text().splitlines()]
        reasons[wait] = [e["detail"]["reason"] for e in events if e["type"] == "decision"]
    assert any("waited over 15s" in r for r in reasons[15])
    assert not any("waited over 15s" in r for r in reasons[None])
    for bad, said in (("timing.adaptive.wait_weigh=0.02", "timing.adaptive.wait_weigh: unknown key"),
                      ("timing.adaptive.wait_weight=abc", "timing.adaptive.wait_weight: Input should be a valid number"),
                      ("wait_weight", "expected KEY=VALUE")):
        for verb in (base, ["bench", "--suite", "1", "--out", str(tmp_path / "never")]):
            r = sim_cli(*verb, "--set", bad, timeout=60)
            assert r.returncode == 2 and said in r.stderr, (bad, r.stderr)
    assert not (tmp_path / "never").exists()  # nothing was generated or run
