"""`roadside fleet ...` bad input: one clear message naming the place, exit status 2, nothing started."""
from __future__ import annotations

import subprocess
import sys


def fleet(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", "fleet", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_a_bad_fleet_file_names_the_file_and_key(tmp_path):
    f = tmp_path / "FLEET.yaml"
    f.write_text("broker:\n  nodes: ['10.0.0.5:5672', '10.0.0.6']\n  pasword: x\n")
    r = fleet("collect", "--config", str(f))
    assert r.returncode == 2
    assert "FLEET.yaml" in r.stderr and "broker.nodes" in r.stderr and "nodes[1]" in r.stderr
    assert "broker.pasword" in r.stderr  # the typo is named too


def test_report_rejects_a_backwards_range_and_bad_times():
    r = fleet("report", "--site", "s", "--from", "2026-12-01T09:00", "--to", "2026-12-01T08:00")
    assert r.returncode == 2 and "--to" in r.stderr and "after --from" in r.stderr
    r = fleet("report", "--site", "s", "--from", "yesterday", "--to", "2026-12-01T08:00")
    assert r.returncode == 2 and "ISO-8601" in r.stderr


def test_load_is_bounded_and_loopback_only():
    r = fleet("load", "--devices", "100000")
    assert r.returncode == 2 and "--devices" in r.stderr
    r = fleet("load", "--devices", "5", "--dsn", "postgresql://db.city.example/x")
    assert r.returncode == 2 and "loopback" in r.stderr
