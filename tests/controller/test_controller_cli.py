"""The `roadside controller` commands as a user runs them."""
from __future__ import annotations

import json
import subprocess
import sys

from helpers.controller import EXAMPLE

ROADSIDE = [sys.executable, "-m", "roadside.core.cli"]


def run(*args, timeout=60):
    return subprocess.run([*ROADSIDE, *args], capture_output=True, text=True, timeout=timeout)


def test_help_on_every_controller_and_sim_command():
    for cmd in (["controller"], ["controller", "run"], ["controller", "check"], ["sim"], ["sim", "run"],
                ["sim", "bench"], ["sim", "scenarios"]):
        r = run(*cmd, "--help")
        assert r.returncode == 0 and "usage: roadside" in r.stdout, cmd


def test_check_prints_derived_timings():
    r = run("controller", "check", "--config", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["phases"]["ns"]["yellow"] >= 3 and ["ew", "ns"] in out["conflicts"]


def test_bad_configuration_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text(EXAMPLE.read_text().replace("min_green: 7\n      max_green: 45", "min_green: 7\n      max_green: 4"))
    r = run("controller", "run", "--config", str(bad))
    assert r.returncode == 2
    assert "phase 'ns': max_green (4.0) must exceed min_green" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_against_the_broker_writes_an_audit_log(broker, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(EXAMPLE.read_text().replace("port: 1883", f"port: {broker.port}"))
    log = tmp_path / "audit.jsonl"
    r = run("controller", "run", "--config", str(cfg), "--duration", "2", "--audit-log", str(log))
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[0]["type"] == "startup" and events[-1]["type"] == "shutdown"
    # no edge is publishing: every phase is on fail-safe, and the reason says so
    modes = [e for e in events if e["type"] == "mode"]
    assert modes and modes[0]["detail"]["to"] == "fail-safe"
    assert "stale" in modes[0]["detail"]["failsafe_phases"]["ns"][0]
