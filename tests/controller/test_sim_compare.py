"""`roadside sim compare BEFORE AFTER`: two real benchmark runs on generated junctions, compared case by case."""
from __future__ import annotations

import json

import pytest

from helpers.controller import sim_cli

pytest.importorskip("libsumo", reason="SUMO is not installed (pip install 'roadside[sim]')")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same two junctions (seeds 5, 6; 150 s), adaptive with its defaults and with a very different hold rule."""
    d = tmp_path_factory.mktemp("compare")
    common = ["bench", "--suite", "2", "--seed", "5", "--duration", "150", "--controllers", "adaptive", "sumo-actuated",
              "--jobs", "2"]
    r = sim_cli(*common, "--out", str(d / "before"))
    assert r.returncode == 0, r.stderr
    r = sim_cli(*common, "--set", "timing.adaptive.hold_bias=4", "--set", "timing.adaptive.free_flow_weight=1",
             "--out", str(d / "after"))
    assert r.returncode == 0, r.stderr
    return d / "before", d / "after"


def _losses(run):
    return {(x["controller"], x["scenario"]): x["mean_time_loss_s"] for x in json.loads((run / "results.json").read_text())}


def test_compare_pairs_the_runs_case_by_case(two_runs):
    before, after = two_runs
    r = sim_cli("compare", str(before), str(after))
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
    r = sim_cli("compare", str(before), str(tmp_path / "results.json"))
    assert r.returncode == 1
    assert "MORE SAFETY VIOLATIONS: case6 0 -> 2" in r.stdout


def test_compare_says_what_is_wrong_with_a_run_it_cannot_read(two_runs, tmp_path):
    before, _ = two_runs
    r = sim_cli("compare", str(before), str(tmp_path))
    assert r.returncode == 2 and f"{tmp_path / 'results.json'}: no such file" in r.stderr
    bad = tmp_path / "truncated.json"
    bad.write_text((before / "results.json").read_text()[:200])
    r = sim_cli("compare", str(before), str(bad))
    assert r.returncode == 2 and f"{bad}: not readable as JSON" in r.stderr and "Traceback" not in r.stderr
    rows = json.loads((before / "results.json").read_text())
    del rows[1]["teleports"]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    r = sim_cli("compare", str(before), str(tmp_path))
    assert r.returncode == 2 and "result 1 lacks teleports" in r.stderr
    (tmp_path / "results.json").write_text(json.dumps([]))
    r = sim_cli("compare", str(before), str(tmp_path))
    assert r.returncode == 2 and "no simulation in common" in r.stderr


def test_compare_by_scenario_gives_the_paired_mean_change_and_its_interval_over_the_seeds(tmp_path):
    """Two real runs of a shipped scenario over three seeds (adaptive as shipped, and with a very different hold
    rule): the per-scenario table pairs them seed by seed, with the mean change, its 95 % interval (Student's t
    with 2 degrees of freedom: 4.303) and the median change, all as the two results files give them."""
    import statistics

    common = ["bench", "--scenarios", "peak", "--controllers", "adaptive", "--seeds", "3", "--duration", "240",
              "--jobs", "2"]
    assert sim_cli(*common, "--out", str(tmp_path / "before")).returncode == 0
    r = sim_cli(*common, "--set", "timing.adaptive.hold_bias=4", "--set", "timing.adaptive.free_flow_weight=1",
             "--out", str(tmp_path / "after"))
    assert r.returncode == 0, r.stderr
    r = sim_cli("compare", str(tmp_path / "before"), str(tmp_path / "after"), "--by-scenario")
    assert r.returncode == 0, r.stderr
    seeds = {}
    for run in ("before", "after"):
        for x in json.loads((tmp_path / run / "results.json").read_text()):
            seeds.setdefault(x["seed"], {})[run] = x["mean_time_loss_s"]
    assert sorted(seeds) == [1, 2, 3]
    d = [round(v["after"] - v["before"], 3) for v in seeds.values()]
    assert any(abs(x) > 0.05 for x in d), d  # the settings changed something
    mean, half = statistics.fmean(d), 4.303 * statistics.stdev(d) / 3 ** 0.5
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("| peak |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:2] == ["peak", "3"]
    assert float(cells[2]) == pytest.approx(statistics.fmean(v["before"] for v in seeds.values()), abs=0.006)
    assert float(cells[3]) == pytest.approx(statistics.fmean(v["after"] for v in seeds.values()), abs=0.006)
    assert float(cells[4]) == pytest.approx(mean, abs=0.006)
    lo, hi = (float(x) for x in cells[5].split(" .. "))
    assert lo == pytest.approx(mean - half, abs=0.006) and hi == pytest.approx(mean + half, abs=0.006)
    assert float(cells[6]) == pytest.approx(statistics.median(d), abs=0.006)
    assert cells[7:] == [str(sum(x < -0.05 for x in d)), str(sum(x > 0.05 for x in d))]
    assert "adaptive, perfect detection:" in r.stdout
