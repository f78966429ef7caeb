"""The benchmark: every scenario x controller x seed (x detection condition), medians per cell, the table
(markdown), the target check, and plots of queue and delay over time per policy.

Each simulation runs in its own process (libsumo allows one simulation per process at a time).
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from roadside.controller.policy_names import POLICY_NAMES
from roadside.controller.sim.scenarios import SCENARIOS

BASELINES = ("sumo-static", "webster-true", "sumo-actuated", "sumo-delay-based")
OUR_POLICIES = POLICY_NAMES
ALL = BASELINES + OUR_POLICIES
LABELS = {"sumo-static": "SUMO default fixed plan", "webster-true": "Webster (true demand)",
          "sumo-actuated": "SUMO actuated", "sumo-delay-based": "SUMO delay_based", "fixed": "ours: fixed",
          "webster": "ours: Webster (measured)", "actuated": "ours: actuated", "adaptive": "ours: adaptive"}
#: scenarios where the adaptive policy must beat SUMO actuated by 10 %
TEN_PERCENT = ("unbalanced", "peak")


def _one(job: dict[str, Any]) -> dict[str, Any]:
    from roadside.controller.sim.runner import SimSpec, run_sim

    t0 = time.monotonic()
    res = run_sim(SimSpec(**job))
    res["wall_s"] = round(time.monotonic() - t0, 1)
    return res


def run_jobs(jobs: list[dict[str, Any]], processes: int) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    out = []
    with ctx.Pool(processes=max(1, processes), maxtasksperchild=1) as pool:
        for i, res in enumerate(pool.imap_unordered(_one, jobs)):
            out.append(res)
            print(f"[{i + 1}/{len(jobs)}] {res['scenario']:12s} {res['controller']:17s} {res['detection']:9s} "
                  f"seed {res['seed']}: mean time loss {res['mean_time_loss_s']:6.1f}s, violations "
                  f"{res['safety_violations']} ({res['wall_s']}s)", file=sys.stderr, flush=True)
    return out


def medians(results: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, float]]:
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        cells.setdefault((r["scenario"], r["detection"], r["controller"]), []).append(r)
    out = {}
    for key, rs in cells.items():
        out[key] = {m: statistics.median(r[m] for r in rs) for m in
                    ("mean_time_loss_s", "p95_time_loss_s", "mean_waiting_s", "throughput_veh", "max_queue_veh",
                     "teleports")}
        out[key]["safety_violations"] = sum(r["safety_violations"] for r in rs)
        out[key]["seeds"] = len(rs)
    return out


def table(med, scenarios, controllers, detection: str) -> str:
    lines = [f"| scenario | controller | mean time loss (s) | p95 time loss (s) | mean waiting (s) | throughput (veh) "
             f"| max queue (veh) | teleports | safety violations |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for sc in scenarios:
        ref = med.get((sc, detection, "sumo-actuated"))
        for c in controllers:
            m = med.get((sc, detection, c))
            if m is None:
                continue
            rel = ""
            if ref and c != "sumo-actuated" and ref["mean_time_loss_s"] > 0:
                rel = f" ({(m['mean_time_loss_s'] / ref['mean_time_loss_s'] - 1) * 100:+.0f}%)"
            lines.append(f"| {sc} | {LABELS.get(c, c)} | {m['mean_time_loss_s']:.1f}{rel} | {m['p95_time_loss_s']:.1f} | "
                         f"{m['mean_waiting_s']:.1f} | {m['throughput_veh']:.0f} | {m['max_queue_veh']:.0f} | "
                         f"{m['teleports']:.0f} | {m['safety_violations']:.0f} |")
    return "\n".join(lines)


def target_check(med, scenarios) -> list[str]:
    out = []
    for sc in scenarios:
        a, s = med.get((sc, "perfect", "adaptive")), med.get((sc, "perfect", "sumo-actuated"))
        if not a or not s:
            continue
        need = 0.9 if sc in TEN_PERCENT else 1.0
        ok = a["mean_time_loss_s"] <= need * s["mean_time_loss_s"]
        out.append(f"{sc}: adaptive {a['mean_time_loss_s']:.1f}s vs SUMO actuated {s['mean_time_loss_s']:.1f}s "
                   f"({(a['mean_time_loss_s'] / s['mean_time_loss_s'] - 1) * 100:+.1f}%; target "
                   f"{'-10%' if need < 1 else '<= 0%'}): {'MET' if ok else 'NOT MET'}")
    viol = sum(m["safety_violations"] for m in med.values())
    out.append(f"safety violations over all runs: {viol:.0f} ({'MET' if viol == 0 else 'NOT MET'})")
    return out


def plot(out_dir: Path, scenario: str, series: dict[str, Path]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for c, path in series.items():
        rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
        t = [float(r[0]) / 60 for r in rows]
        # our adaptive policy and the reference (SUMO actuated) stand out; the others stay thin
        style = {"adaptive": {"lw": 2.4, "color": "black"}, "sumo-actuated": {"lw": 2.0, "color": "magenta"}}.get(
            c, {"lw": 0.9, "alpha": 0.8})
        ax1.plot(t, [float(r[1]) for r in rows], label=LABELS.get(c, c), **style)
        pts = [(float(r[0]) / 60, float(r[2])) for r in rows if r[2]]
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], label=LABELS.get(c, c), **style)
    ax1.set_ylabel("vehicles halted (queue)")
    ax2.set_ylabel("mean time loss of arrivals (s)")
    ax2.set_xlabel("simulated time (min)")
    ax1.set_title(f"{scenario}: queue and delay over time (seed 1, 1-min bins)")
    ax1.legend(fontsize=7, ncol=2)
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    png = out_dir / f"{scenario}.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def bench_from_args(args) -> int:
    if getattr(args, "suite", None):
        return suite_from_args(args)
    scenarios = args.scenarios or list(SCENARIOS)
    controllers = args.controllers or list(ALL)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "series").mkdir(exist_ok=True)
    from roadside.controller.sim.runner import parse_settings

    settings = parse_settings(args.settings)
    jobs = []
    for det in args.detection:
        for sc in scenarios:
            for c in controllers:
                if det != "perfect" and c in ("sumo-static", "webster-true", "sumo-actuated", "sumo-delay-based", "fixed"):
                    continue  # their detectors are SUMO's own (or none): degradation applies to ours
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    ts = None
                    if out_dir and seed == args.first_seed and det == "perfect":
                        ts = str(out_dir / "series" / f"{sc}__{c}.csv")
                    jobs.append({"controller": c, "scenario": sc, "seed": seed, "duration_s": args.duration,
                                 "mode": "inproc", "detection": det, "timeseries": ts,
                                 "clearances": args.clearances, "overrides": settings})
    t0 = time.monotonic()
    results = run_jobs(jobs, args.jobs or 2)
    med = medians(results)
    text = [f"# Benchmark: median over {args.seeds} seed(s) from {args.first_seed}, {len(results)} simulations, "
            f"{time.monotonic() - t0:.0f}s wall" + (f"; settings: {json.dumps(settings)}" if settings else ""), ""]
    for det in args.detection:
        text += [f"## detection: {det}", "", table(med, scenarios, controllers, det), ""]
    text += ["## target", ""] + [f"- {line}" for line in target_check(med, scenarios)]
    print("\n".join(text))
    if out_dir:
        (out_dir / "results.json").write_text(json.dumps(results, indent=1))
        (out_dir / "table.md").write_text("\n".join(text) + "\n")
        if args.plots:
            for sc in scenarios:
                series = {c: out_dir / "series" / f"{sc}__{c}.csv" for c in controllers
                          if (out_dir / "series" / f"{sc}__{c}.csv").exists()}
                if series:
                    print(f"plot: {plot(out_dir, sc, series)}", file=sys.stderr)
    return 0


# -- the randomised junction suite (`roadside sim bench --suite N --seed S`) ---------------------------
SUITE_CONTROLLERS = ("sumo-static", "sumo-actuated", "sumo-delay-based") + OUR_POLICIES
SUMO_BASELINES = ("sumo-static", "sumo-actuated", "sumo-delay-based")


def native_baselines(baseline_intervals: str, clearances: str) -> bool:
    """SUMO's programs keep netconvert's change intervals: asked for, or ours are the program's anyway."""
    return baseline_intervals == "program" or clearances == "program"


def suite_jobs(n: int, first_seed: int, duration_s: float, controllers, cases_dir: Path,
               lefthand: bool | None = None, clearances: str = "ite",
               overrides: dict | None = None, baseline_intervals: str = "program",
               where: dict[str, set[str]] | None = None
               ) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Generate the suite's cases (seeds ``first_seed`` ...) and the simulations to run on them.
    ``baseline_intervals``: ``program``, SUMO's programs keep the yellow and red netconvert wrote (a city's
    existing timing, issue 10's comparison); ``ours``, they get our controllers' change intervals (with the ITE
    ones, what SUMO's logic would do at the same intervals: a like-for-like comparison of the timing logic).
    ``where``: only cases with these traits (:func:`~roadside.controller.sim.generate.pick_seeds`)."""
    from roadside.controller.sim.generate import generate, pick_seeds

    jobs, described = [], {}
    for seed in pick_seeds(n, first_seed, where, lefthand):
        info = generate(seed, cases_dir / f"case{seed}", lefthand=lefthand, duration_s=duration_s)
        described[seed] = info["description"]
        for c in controllers:
            jobs.append({"controller": c, "net": info["net"], "routes": info["routes"], "seed": seed,
                         "duration_s": duration_s, "mode": "inproc",
                         "native_baselines": native_baselines(baseline_intervals, clearances),
                         "label": f"case{seed}", "clearances": clearances, "overrides": overrides})
    return jobs, described


def suite_summary(results: list[dict[str, Any]], controllers) -> tuple[list[str], dict[str, Any]]:
    """Per-case table and the summary against the issue's targets."""
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        by_case.setdefault(r["scenario"], {})[r["controller"]] = r
    cases = sorted(by_case, key=lambda c: int(c[4:]) if c[4:].isdigit() else c)
    head = "| case | " + " | ".join(LABELS.get(c, c) for c in controllers) + \
           " | adaptive / SUMO actuated | adaptive / best SUMO | teleports (SUMO max / ours max) | violations |"
    lines = [head, "|---|" + "---:|" * (len(controllers) + 4)]
    ratios: dict[str, list[float]] = {b: [] for b in SUMO_BASELINES}
    worst_best, tele_bad, viol = [], [], 0
    ours_vs = {p: {b: [] for b in SUMO_BASELINES} for p in OUR_POLICIES}
    for case in cases:
        rs = by_case[case]
        viol += sum(r["safety_violations"] for r in rs.values())
        cells = [f"{rs[c]['mean_time_loss_s']:.1f}" if c in rs else "-" for c in controllers]
        a = rs.get("adaptive")
        sumo = [rs[b] for b in SUMO_BASELINES if b in rs]
        ra = rb = None
        if a is not None:
            for b in SUMO_BASELINES:
                if b in rs and rs[b]["mean_time_loss_s"] > 0:
                    ratios[b].append(a["mean_time_loss_s"] / rs[b]["mean_time_loss_s"])
            if "sumo-actuated" in rs and rs["sumo-actuated"]["mean_time_loss_s"] > 0:
                ra = a["mean_time_loss_s"] / rs["sumo-actuated"]["mean_time_loss_s"]
            if sumo:
                best = min(s["mean_time_loss_s"] for s in sumo)
                rb = a["mean_time_loss_s"] / best if best > 0 else None
                if rb is not None:
                    worst_best.append((rb, case))
        for p in OUR_POLICIES:
            for b in SUMO_BASELINES:
                if p in rs and b in rs and rs[b]["mean_time_loss_s"] > 0:
                    ours_vs[p][b].append(rs[p]["mean_time_loss_s"] / rs[b]["mean_time_loss_s"])
        t_sumo = max((s["teleports"] for s in sumo), default=0)
        t_ours = max((rs[p]["teleports"] for p in OUR_POLICIES if p in rs), default=0)
        if t_sumo == 0 and a is not None and a["teleports"] > 0:
            tele_bad.append(case)
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {'-' if ra is None else f'{ra:.2f}'} | "
                     f"{'-' if rb is None else f'{rb:.2f}'} | {t_sumo} / {t_ours} | "
                     f"{sum(r['safety_violations'] for r in rs.values())} |")
    summary: dict[str, Any] = {"cases": len(cases), "safety_violations": viol,
                               "adaptive_teleports_where_sumo_has_none": tele_bad}
    out = ["", "| adaptive / SUMO baseline | median ratio | win rate (ratio <= 1) | worst ratio |", "|---|---:|---:|---:|"]
    for b in SUMO_BASELINES:
        xs = ratios[b]
        if not xs:
            continue
        summary[b] = {"median": statistics.median(xs), "win_rate": sum(x <= 1.0 for x in xs) / len(xs),
                      "worst": max(xs)}
        out.append(f"| {LABELS.get(b, b)} | {summary[b]['median']:.2f} | {100 * summary[b]['win_rate']:.0f}% | "
                   f"{summary[b]['worst']:.2f} |")
    out += ["", "| ours / SUMO (median ratio over the cases) | " + " | ".join(LABELS[b] for b in SUMO_BASELINES) + " |",
            "|---|" + "---:|" * len(SUMO_BASELINES)]
    for p in OUR_POLICIES:
        if any(ours_vs[p][b] for b in SUMO_BASELINES):
            out.append(f"| {LABELS[p]} | " + " | ".join(f"{statistics.median(ours_vs[p][b]):.2f}" if ours_vs[p][b] else "-"
                                                      for b in SUMO_BASELINES) + " |")
            summary[p] = {b: statistics.median(ours_vs[p][b]) for b in SUMO_BASELINES if ours_vs[p][b]}
    worst = max(worst_best, default=None)
    summary["worst_vs_best_sumo"] = worst
    act = summary.get("sumo-actuated")
    checks = []
    if act:
        checks.append(f"adaptive <= SUMO actuated in {100 * act['win_rate']:.0f}% of cases (target >= 90%): "
                      f"{'MET' if act['win_rate'] >= 0.9 else 'NOT MET'}")
        checks.append(f"median ratio adaptive / SUMO actuated {act['median']:.2f} (target <= 0.85): "
                      f"{'MET' if act['median'] <= 0.85 else 'NOT MET'}")
    if worst:
        checks.append(f"worst case adaptive / best SUMO program {worst[0]:.2f} ({worst[1]}; target <= 1.10): "
                      f"{'MET' if worst[0] <= 1.10 else 'NOT MET'}")
    checks.append(f"safety violations {viol} (target 0): {'MET' if viol == 0 else 'NOT MET'}")
    checks.append(f"adaptive teleports where SUMO has none: {len(tele_bad)} case(s) {tele_bad} (target 0): "
                  f"{'MET' if not tele_bad else 'NOT MET'}")
    for p, b in (("actuated", "sumo-actuated"), ("actuated", "sumo-static"), ("webster", "sumo-actuated"),
                 ("webster", "sumo-static")):
        if p in summary and b in summary[p]:
            m = summary[p][b]
            checks.append(f"{p} median ratio to {LABELS[b]} {m:.2f} (target <= 1.00): {'MET' if m <= 1.0 else 'NOT MET'}")
    summary["checks"] = checks
    return lines + out + ["", "**Target check**", ""] + [f"- {c}" for c in checks], summary


def suite_from_args(args) -> int:
    import os
    import tempfile

    controllers = args.controllers or list(SUITE_CONTROLLERS)
    duration = args.duration or 3600.0
    out_dir = Path(args.out) if args.out else None
    cases_dir = (out_dir / "cases") if out_dir else Path(tempfile.mkdtemp(prefix="roadside-suite-"))
    lefthand = True if args.lefthand else None
    clearances = args.clearances
    from roadside.controller.sim.generate import describe_where, parse_where
    from roadside.controller.sim.runner import parse_settings

    settings = parse_settings(args.settings)
    where = parse_where(args.where)
    baselines = args.baseline_intervals
    jobs, described = suite_jobs(args.suite, args.seed, duration, controllers, cases_dir, lefthand, clearances,
                                 settings, baselines, where)
    processes = args.jobs or os.cpu_count() or 1
    t0 = time.monotonic()
    results = run_jobs(jobs, processes)
    lines, summary = suite_summary(results, controllers)
    text = [f"# Junction suite: {args.suite} case(s) from seed {args.seed}, {duration:.0f} s each, "
            f"{len(results)} simulations on {processes} process(es), {time.monotonic() - t0:.0f}s wall; our change "
            f"intervals: {clearances}; SUMO's programs' intervals: "
            + ("the program's" if native_baselines(baselines, clearances) else "ours (ITE)")
            + (f"; settings: {json.dumps(settings)}" if settings else "")
            + (f"; where {describe_where(where)}" if where else ""), ""]
    text += [f"- case{s}: {d}" for s, d in described.items()] + [""] + lines
    print("\n".join(text))
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=1))
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        (out_dir / "table.md").write_text("\n".join(text) + "\n")
        if args.plots:
            print(f"plot: {suite_plot(out_dir, results)}", file=sys.stderr)
    return 0


def suite_plot(out_dir: Path, results: list[dict[str, Any]]) -> Path:
    """Adaptive's mean time loss against each SUMO baseline, case by case (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_case: dict[str, dict[str, float]] = {}
    for r in results:
        by_case.setdefault(r["scenario"], {})[r["controller"]] = r["mean_time_loss_s"]
    fig, ax = plt.subplots(figsize=(6.5, 6))
    lo, hi = math.inf, 0.0
    for b, colour in zip(SUMO_BASELINES, ("tab:blue", "magenta", "tab:green")):
        pts = [(v[b], v["adaptive"]) for v in by_case.values() if b in v and "adaptive" in v and v[b] > 0]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, label=LABELS[b], color=colour, alpha=0.8)
            lo = min(lo, *[min(p) for p in pts])
            hi = max(hi, *[max(p) for p in pts])
    if hi > 0:
        xs = [max(lo * 0.8, 0.5), hi * 1.2]
        ax.plot(xs, xs, "k-", lw=1, label="equal")
        ax.plot(xs, [0.85 * x for x in xs], "k--", lw=0.8, label="0.85 x")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("SUMO program: mean time loss (s)")
    ax.set_ylabel("ours, adaptive: mean time loss (s)")
    ax.set_title("junction suite: below the line, ours is better")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    png = out_dir / "suite.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
