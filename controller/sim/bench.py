"""The benchmark: every scenario x controller x seed (x detection condition), medians per cell, the table
(markdown), the target check, and plots of queue and delay over time per policy.

Each simulation runs in its own process (libsumo allows one simulation per process at a time).
"""
from __future__ import annotations

import json
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
    scenarios = args.scenarios or list(SCENARIOS)
    controllers = args.controllers or list(ALL)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "series").mkdir(exist_ok=True)
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
                                 "mode": "inproc", "detection": det, "timeseries": ts})
    t0 = time.monotonic()
    results = run_jobs(jobs, args.jobs)
    med = medians(results)
    text = [f"# Benchmark: median over {args.seeds} seed(s) from {args.first_seed}, {len(results)} simulations, "
            f"{time.monotonic() - t0:.0f}s wall", ""]
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
