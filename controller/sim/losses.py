"""Where a controller loses (`roadside sim losses DIR`): for each simulation of a `roadside sim bench --out` run in
which it is worse than a baseline, or more than ``--best-ratio`` times the best SUMO program, the approaches that
make up the difference.

An approach's part of the difference is its vehicles' share of the controller's mean time loss minus the same for
the baseline, ``n_a x m_a / N - n'_a x m'_a / N'``, so the parts add up to the difference of the two means (to the
rounding of the per-approach means). On a generated junction (``--suite``) each approach is described by its leg's
layout from the case's ``case.json``: main or side road, through lanes, whether its far and kerb turns have their
own lanes, and a crossing. A loss concentrated on one kind of approach points at one mechanism; ``--by-layout``
sums the parts over every simulation of the run by the layout of the approach's leg (its far and kerb turns and
crossing), to see whether it is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from roadside.controller.sim.bench import SUMO_BASELINES
from roadside.controller.sim.compare import CompareError, load_results, run_name


def approach_parts(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """Approach -> its part of ``ours``' mean time loss minus ``base``'s (they add up to the difference)."""
    for r in (ours, base):
        if "vehicles_by_approach" not in r:
            raise CompareError(f"{run_name(r['scenario'], r['seed'])} ({r['controller']}): no vehicles_by_approach in "
                               "the result (a run from before it was recorded: rerun `roadside sim bench`)")

    def shares(r):
        n = sum(r["vehicles_by_approach"].values()) or 1
        return {a: r["vehicles_by_approach"][a] * m / n for a, m in r["mean_time_loss_by_approach"].items()}
    a, b = shares(ours), shares(base)
    return {k: round(a.get(k, 0.0) - b.get(k, 0.0), 2) for k in sorted(set(a) | set(b))}


def leg_layout(run_dir: Path, scenario: str, kind_only: bool = False) -> dict[str, str]:
    """Approach edge (``in<leg>``) -> a description of its leg, for a generated case; {} for a shipped scenario.
    ``kind_only``: only its turn lanes and crossing (the groups of ``--by-layout``)."""
    f = run_dir / "cases" / scenario / "case.json"
    if not f.exists():
        return {}
    try:
        legs = json.loads(f.read_text())["case"]["legs"]
        out = {}
        for leg in legs:
            kind = f"far turn {leg['far_lane']}, kerb turn {leg['kerb_lane']}{', crossing' if leg.get('crossing') else ''}"
            out[f"in{leg['index']}"] = kind if kind_only else \
                f"{'main' if leg['main'] else 'side'} road, {leg['through_lanes']} through lane(s), {kind}"
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CompareError(f"{f}: not a generated case description ({e})") from e
    return out


def _paired(results: dict, controller: str, against: str):
    """(detection, scenario, seed, the controller's result, the baseline's, every result of that simulation)."""
    runs: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for (det, ctrl, sc, seed), r in results.items():
        runs.setdefault((det, sc, seed), {})[ctrl] = r
    for (det, sc, seed), by in sorted(runs.items()):
        if controller in by and against in by:
            yield det, sc, seed, by[controller], by[against], by


def by_layout(run_dir: Path, controller: str, against: str, tol: float = 0.05) -> str:
    """Markdown: the approaches' parts summed over every simulation of the run, by their leg's turn lanes and
    crossing, with how many approaches got more (worse) or less (better) loss than the baseline."""
    groups: dict[tuple[str, str], list[float]] = {}
    for det, sc, _, ours, base, _ in _paired(load_results(run_dir), controller, against):
        kinds = leg_layout(run_dir, sc, kind_only=True)
        for a, part in approach_parts(ours, base).items():
            groups.setdefault((det, kinds.get(a, "(no layout: a shipped scenario)")), []).append(part)
    if not groups:
        return f"no simulation has both {controller} and {against}"
    out = [f"{controller} against {against}, each approach's part of the difference, by its leg's layout:", "",
           "| detection | layout | approaches | summed part (s) | worse | better |", "|---|---|---:|---:|---:|---:|"]
    for (det, kind), parts in sorted(groups.items()):
        out.append(f"| {det} | {kind} | {len(parts)} | {sum(parts):+.1f} | {sum(p > tol for p in parts)} | "
                   f"{sum(p < -tol for p in parts)} |")
    return "\n".join(out)


def report(run_dir: Path, controller: str, against: str, best_ratio: float) -> str:
    lines = []
    for det, sc, seed, ours, base, by in _paired(load_results(run_dir), controller, against):
        best = min((by[p]["mean_time_loss_s"] for p in SUMO_BASELINES if p in by), default=None)
        m, mb = ours["mean_time_loss_s"], base["mean_time_loss_s"]
        beyond_best = best is not None and best > 0 and m > best_ratio * best
        if m <= mb and not beyond_best:
            continue
        layout = leg_layout(run_dir, sc)
        best_txt = f", best SUMO program {best:.1f} s ({m / best:.2f})" if best else ""
        lines.append(f"- {run_name(sc, seed)}, {det} detection: {controller} {m:.1f} s, {against} {mb:.1f} s "
                     f"({m / mb:.2f}){best_txt}")
        parts = approach_parts(ours, base)
        for a, part in sorted(parts.items(), key=lambda kv: -kv[1]):
            mine = ours["mean_time_loss_by_approach"].get(a)
            theirs = base["mean_time_loss_by_approach"].get(a)
            lines.append(f"  - {a}: {part:+.1f} s of the difference ({ours['vehicles_by_approach'].get(a, 0)} "
                         f"vehicles, {mine if mine is not None else '-'} against {theirs if theirs is not None else '-'}"
                         f" s each){': ' + layout[a] if a in layout else ''}")
    if not lines:
        return f"{controller} is nowhere worse than {against} or beyond {best_ratio:g} x the best SUMO program"
    return "\n".join(lines)


def losses_from_args(args) -> int:
    if args.by_layout:
        print(by_layout(Path(args.run), args.controller, args.against))
    else:
        print(report(Path(args.run), args.controller, args.against, args.best_ratio))
    return 0
