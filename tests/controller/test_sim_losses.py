"""`roadside sim losses RUN`: where a controller loses, approach by approach, on a real benchmark run."""
from __future__ import annotations

import json
import re

import pytest

from helpers.controller import sim_cli

pytest.importorskip("libsumo", reason="SUMO is not installed (pip install 'roadside[sim]')")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two generated junctions (seeds 5, 6; 300 s), adaptive and SUMO's programs."""
    d = tmp_path_factory.mktemp("losses") / "run"
    r = sim_cli("bench", "--suite", "2", "--seed", "5", "--duration", "300", "--controllers", "adaptive",
             "sumo-static", "sumo-actuated", "--jobs", "2", "--out", str(d))
    assert r.returncode == 0, r.stderr
    return d


def test_the_approach_parts_add_up_to_the_difference_and_name_each_legs_layout(run):
    rows = {(x["controller"], x["scenario"]): x for x in json.loads((run / "results.json").read_text())}
    r = sim_cli("losses", str(run), "--best-ratio", "0")  # every simulation is beyond 0 x the best program
    assert r.returncode == 0, r.stderr
    blocks = re.split(r"^- ", r.stdout, flags=re.M)[1:]
    assert [b.split(",")[0] for b in blocks] == ["case5", "case6"]
    for b in blocks:
        case = b.split(",")[0]
        ours, base = rows[("adaptive", case)], rows[("sumo-actuated", case)]
        assert f"adaptive {ours['mean_time_loss_s']:.1f} s, sumo-actuated {base['mean_time_loss_s']:.1f} s" in b
        parts = {m.group(1): float(m.group(2)) for m in re.finditer(r"^  - (in\d+): ([+-][\d.]+) s of", b, re.M)}
        assert set(parts) == set(ours["vehicles_by_approach"]) | set(base["vehicles_by_approach"])
        assert sum(ours["vehicles_by_approach"].values()) == ours["vehicles"]
        # the parts add up to the difference of the means (each part rounded to 0.1 s here)
        assert sum(parts.values()) == pytest.approx(ours["mean_time_loss_s"] - base["mean_time_loss_s"],
                                                    abs=0.05 * len(parts) + 0.02)
        legs = json.loads((run / "cases" / case / "case.json").read_text())["case"]["legs"]
        for leg in legs:
            a = f"in{leg['index']}"
            if a in ours["vehicles_by_approach"]:
                line = next(ln for ln in b.splitlines() if ln.startswith(f"  - {a}:"))
                assert f"({ours['vehicles_by_approach'][a]} vehicles, {ours['mean_time_loss_by_approach'][a]} against" in line
                assert ("main road" if leg["main"] else "side road") in line
                assert f"{leg['through_lanes']} through lane(s), far turn {leg['far_lane']}" in line


def test_nothing_to_show_is_said_and_a_run_without_approach_counts_is_refused(run, tmp_path):
    r = sim_cli("losses", str(run), "--controller", "sumo-actuated", "--against", "sumo-actuated", "--best-ratio", "1e9")
    assert r.returncode == 0 and "sumo-actuated is nowhere worse than sumo-actuated" in r.stdout
    rows = json.loads((run / "results.json").read_text())
    for x in rows:
        del x["vehicles_by_approach"]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    r = sim_cli("losses", str(tmp_path), "--best-ratio", "0")
    assert r.returncode == 2 and "no vehicles_by_approach in the result" in r.stderr and "Traceback" not in r.stderr


def test_by_layout_sums_every_approachs_part_by_its_legs_turn_lanes(run):
    rows = {(x["controller"], x["scenario"]): x for x in json.loads((run / "results.json").read_text())}
    r = sim_cli("losses", str(run), "--by-layout")
    assert r.returncode == 0, r.stderr
    table = [ln.strip("|").split("|") for ln in r.stdout.splitlines() if ln.startswith("| perfect |")]
    groups = {c[1].strip(): (int(c[2]), float(c[3]), int(c[4]), int(c[5])) for c in table}
    kinds = {}
    for case in ("case5", "case6"):
        for leg in json.loads((run / "cases" / case / "case.json").read_text())["case"]["legs"]:
            if f"in{leg['index']}" in rows[("adaptive", case)]["vehicles_by_approach"]:
                k = f"far turn {leg['far_lane']}, kerb turn {leg['kerb_lane']}" + (", crossing" if leg["crossing"] else "")
                kinds[k] = kinds.get(k, 0) + 1
    assert {k: v[0] for k, v in groups.items()} == kinds  # every approach of both junctions, in its leg's group
    total = sum(rows[("adaptive", c)]["mean_time_loss_s"] - rows[("sumo-actuated", c)]["mean_time_loss_s"]
                for c in ("case5", "case6"))
    assert sum(v[1] for v in groups.values()) == pytest.approx(total, abs=0.05 * len(groups) + 0.05)
    assert all(w + b <= n for n, _, w, b in groups.values())
