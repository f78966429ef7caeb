"""`roadside sim compare BEFORE AFTER`: two real benchmark runs on generated junctions, compared case by case."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("libsumo", reason="SUMO is not installed (pip install 'roadside[sim]')")


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", "sim", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same two junctions (seeds 5, 6; 150 s), adaptive with its defaults and with a very different hold rule."""
    d = tmp_path_factory.mktemp("compare")
    common = ["bench", "--suite", "2", "--seed", "5", "--duration", "150", "--controllers", "adaptive", "sumo-actuated",
              "--jobs", "2"]
    r = _cli(*common, "--out", str(d / "before"))
    assert r.returncode == 0, r.stderr
    r = _cli(*common, "--set", "timing.adaptive.hold_bias=4", "--set", "timing.adaptive.free_flow_weight=1",
             "--out", str(d / "after"))
    assert r.returncode == 0, r.stderr
    return d / "before", d / "after"


def _losses(run):
    return {(x["controller"], x["scenario"]): x["mean_time_loss_s"] for x in json.loads((run / "results.json").read_text())}


def test_compare_pairs_the_runs_case_by_case(two_runs):
    before, after = two_runs
    r = _cli("compare", str(before), str(after))
    assert r.returncode == 0, r.stderr
    lines = {ln.split(",")[0][2:]: ln for ln in r.stdout.splitlines()}
    assert set(lines) == {"adaptive", "sumo-actuated"}
    b, a = _losses(before), _losses(after)
    # SUMO's program does not read our settings: the same in both runs
    assert "0 better, 0 worse, 2 the same to 0.05 s (summed +0.0 s over 2)" in lines["sumo-actuated"]
    d = {sc: a[("adaptive", sc)] - b[("adaptive", sc)] for sc in ("case5", "case6")}
    assert any(abs(x) > 0.05 for x in d.values()), d  # the settings changed adaptive somewhere
    better = sum(x < -0.05 for x in d.values())
    worse = sum(x > 0.05 for x in d.values())
    assert f"{better} better, {worse} worse, {2 - better - worse} the same" in lines["adaptive"]
    assert f"summed {sum(d.values()):+.1f} s over 2" in lines["adaptive"]
    for sc, x in d.items():
        if abs(x) > 0.05:
            assert f"{sc} {b[('adaptive', sc)]:.1f} -> {a[('adaptive', sc)]:.1f}" in lines["adaptive"]


def test_compare_fails_on_new_safety_violations_and_names_the_case(two_runs, tmp_path):
    before, after = two_runs
    rows = json.loads((after / "results.json").read_text())
    for x in rows:
        if x["controller"] == "adaptive" and x["scenario"] == "case6":
            x["safety_violations"] += 2
    (tmp_path / "results.json").write_text(json.dumps(rows))
    r = _cli("compare", str(before), str(tmp_path / "results.json"))
    assert r.returncode == 1
    assert "MORE SAFETY VIOLATIONS: case6 0 -> 2" in r.stdout


def test_compare_says_what_is_wrong_with_a_run_it_cannot_read(two_runs, tmp_path):
    before, _ = two_runs
    r = _cli("compare", str(before), str(tmp_path))
    assert r.returncode == 2 and f"{tmp_path / 'results.json'}: no such file" in r.stderr
    bad = tmp_path / "truncated.json"
    bad.write_text((before / "results.json").read_text()[:200])
    r = _cli("compare", str(before), str(bad))
    assert r.returncode == 2 and f"{bad}: not readable as JSON" in r.stderr and "Traceback" not in r.stderr
    rows = json.loads((before / "results.json").read_text())
    del rows[1]["teleports"]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    r = _cli("compare", str(before), str(tmp_path))
    assert r.returncode == 2 and "result 1 lacks teleports" in r.stderr
    (tmp_path / "results.json").write_text(json.dumps([]))
    r = _cli("compare", str(before), str(tmp_path))
    assert r.returncode == 2 and "no simulation in common" in r.stderr
