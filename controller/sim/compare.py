"""What changed between two benchmark runs (`roadside sim compare BEFORE AFTER`): per detection condition and
controller, the simulations of both runs paired by scenario and seed, how many got better or worse by more
than a tolerance, the summed change and the largest ones, and any new teleports or safety violations.

It reads the ``results.json`` that ``roadside sim bench --out DIR`` writes (shipped scenarios or ``--suite``),
so a change to a policy is judged on every case, not on a median: "better in median" can hide one junction that
got much worse. ``--by-scenario`` adds, per shipped scenario, the paired mean and median change over its seeds:
with a few seeds a median moves by chance (seeds 1-3 against 1-13, controller README), a paired mean over many
seeds much less.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadside.core.errors import RoadsideError

#: the fields a bench result must have to be compared
NEEDED = ("scenario", "controller", "seed", "detection", "mean_time_loss_s", "teleports", "safety_violations")


class CompareError(RoadsideError):
    """A benchmark run that cannot be compared (missing, unreadable, or not a bench result)."""


def load_results(path: Path) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """(detection, controller, scenario, seed) -> result, from a bench output directory or its results.json."""
    f = path / "results.json" if path.is_dir() else path
    if not f.exists():
        raise CompareError(f"{f}: no such file (give a `roadside sim bench --out` directory or its results.json)")
    try:
        rows = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CompareError(f"{f}: not readable as JSON ({e})") from e
    if not isinstance(rows, list):
        raise CompareError(f"{f}: expected a list of simulation results, got {type(rows).__name__}")
    out = {}
    for i, r in enumerate(rows):
        missing = [k for k in NEEDED if not isinstance(r, dict) or k not in r]
        if missing:
            raise CompareError(f"{f}: result {i} lacks {', '.join(missing)}")
        key = (r["detection"], r["controller"], r["scenario"], int(r["seed"]))
        if key in out:
            raise CompareError(f"{f}: result {i} repeats {key[2]} seed {key[3]} ({key[1]}, {key[0]} detection)")
        out[key] = r
    return out


def run_name(scenario: str, seed: int) -> str:
    """A suite case (its seed is in its name) or a shipped scenario and its seed."""
    return scenario if scenario.startswith("case") else f"{scenario} seed {seed}"


@dataclass
class Change:
    detection: str
    controller: str
    #: (after - before, scenario, seed, before, after) per simulation both runs have
    pairs: list[tuple[float, str, int, float, float]] = field(default_factory=list)
    only_before: int = 0
    only_after: int = 0
    new_teleports: list[str] = field(default_factory=list)
    new_violations: list[str] = field(default_factory=list)

    def better(self, tol: float) -> list[tuple[float, str, int, float, float]]:
        return sorted(p for p in self.pairs if p[0] < -tol)

    def worse(self, tol: float) -> list[tuple[float, str, int, float, float]]:
        return sorted((p for p in self.pairs if p[0] > tol), reverse=True)

    @property
    def summed(self) -> float:
        return sum(p[0] for p in self.pairs)


def compare(before: dict, after: dict) -> list[Change]:
    """One :class:`Change` per (detection, controller) that either run has, in a stable order."""
    groups: dict[tuple[str, str], Change] = {}
    for key in sorted(set(before) | set(after)):
        det, ctrl, sc, seed = key
        ch = groups.setdefault((det, ctrl), Change(det, ctrl))
        b, a = before.get(key), after.get(key)
        if b is None:
            ch.only_after += 1
            continue
        if a is None:
            ch.only_before += 1
            continue
        tb, ta = float(b["mean_time_loss_s"]), float(a["mean_time_loss_s"])
        ch.pairs.append((round(ta - tb, 3), sc, seed, tb, ta))
        name = run_name(sc, seed)
        if a["teleports"] > b["teleports"]:
            ch.new_teleports.append(f"{name} {b['teleports']} -> {a['teleports']}")
        if a["safety_violations"] > b["safety_violations"]:
            ch.new_violations.append(f"{name} {b['safety_violations']} -> {a['safety_violations']}")
    return list(groups.values())


def report(changes: list[Change], tol: float = 0.05, top: int = 4) -> str:
    """Markdown: one line per (detection, controller)."""
    def fmt(ps):
        return ", ".join(f"{run_name(sc, seed)} {b:.1f} -> {a:.1f}" for _, sc, seed, b, a in ps[:top]) or "-"
    lines = []
    for ch in changes:
        better, worse = ch.better(tol), ch.worse(tol)
        same = len(ch.pairs) - len(better) - len(worse)
        line = (f"- {ch.controller}, {ch.detection} detection: {len(better)} better, {len(worse)} worse, {same} the "
                f"same to {tol:g} s (summed {ch.summed:+.1f} s over {len(ch.pairs)}); largest better: {fmt(better)}; "
                f"largest worse: {fmt(worse)}")
        if ch.new_teleports:
            line += f"; MORE TELEPORTS: {', '.join(ch.new_teleports)}"
        if ch.new_violations:
            line += f"; MORE SAFETY VIOLATIONS: {', '.join(ch.new_violations)}"
        if ch.only_before or ch.only_after:
            line += f"; not compared: {ch.only_before} only before, {ch.only_after} only after"
        lines.append(line)
    return "\n".join(lines)


#: Student's t two-sided 95 % quantiles for 1-30 degrees of freedom (any statistics table)
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(dof: int) -> float:
    """Student's t two-sided 95 % quantile: the table to 30 degrees of freedom, beyond it the Cornish-Fisher
    expansion around the normal's 1.96 (within 0.01 % there)."""
    if dof <= len(T95):
        return T95[dof - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)


def by_scenario(changes: list[Change], tol: float = 0.05) -> str:
    """Markdown: per (detection, controller), one row per scenario with the mean loss before and after over the
    seeds both runs have, the paired mean change and its 95 % confidence interval (Student's t over the seeds), the
    median change, and how many seeds got better or worse."""
    out = []
    for ch in changes:
        scenarios: dict[str, list[tuple[float, str, int, float, float]]] = {}
        for p in ch.pairs:
            scenarios.setdefault(p[1], []).append(p)
        if not scenarios:
            continue
        out += ["", f"{ch.controller}, {ch.detection} detection:", "",
                "| scenario | seeds | mean before (s) | mean after (s) | mean change (s) | 95% interval (s) "
                "| median change (s) | better | worse |",
                "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
        for sc, ps in scenarios.items():
            d = [p[0] for p in ps]
            mean = statistics.fmean(d)
            if len(d) > 1:
                half = t95(len(d) - 1) * statistics.stdev(d) / len(d) ** 0.5
                interval = f"{mean - half:+.2f} .. {mean + half:+.2f}"
            else:
                interval = "-"
            out.append(f"| {sc} | {len(ps)} | {statistics.fmean(p[3] for p in ps):.2f} | "
                       f"{statistics.fmean(p[4] for p in ps):.2f} | {mean:+.2f} | {interval} | "
                       f"{statistics.median(d):+.2f} | {sum(x < -tol for x in d)} | {sum(x > tol for x in d)} |")
    return "\n".join(out)


def compare_from_args(args) -> int:
    changes = compare(load_results(Path(args.before)), load_results(Path(args.after)))
    if not any(ch.pairs for ch in changes):
        raise CompareError(f"{args.before} and {args.after} have no simulation in common (same scenarios, seeds, "
                           "controllers and detection conditions are needed)")
    print(report(changes, args.tolerance, args.top))
    if args.by_scenario:
        print(by_scenario(changes, args.tolerance))
    worse = any(ch.new_violations for ch in changes)
    return 1 if worse else 0
