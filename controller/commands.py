"""`roadside controller ...` and `roadside sim ...` subcommands. Heavy imports happen inside the handlers."""
from __future__ import annotations

import argparse

from roadside.controller.policy_names import POLICY_NAMES

POLICY_CHOICES = POLICY_NAMES
SIM_CONTROLLERS = POLICY_CHOICES + ("webster-true", "sumo-static", "sumo-actuated", "sumo-delay-based")


def _controller_run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from roadside.controller.config import load_controller_config
    from roadside.controller.service import ControllerService

    cfg = load_controller_config(args.config)
    svc = ControllerService(cfg, policy=args.policy, audit_log=args.audit_log)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    svc.start(timeout_s=args.connect_timeout)
    print(f"roadside controller: site {cfg.site}, policy {svc.ctrl.policy.name}, broker "
          f"{cfg.mqtt.host}:{cfg.mqtt.port}; publishing under {cfg.topics.controller('state').rsplit('/', 1)[0]}/", flush=True)
    from roadside.core.systemd import Watchdog, notify

    watchdog = Watchdog(svc.liveness).start()  # under systemd (Type=notify, WatchdogSec=); nothing elsewhere
    notify("READY=1", f"STATUS=site {cfg.site}, policy {svc.ctrl.policy.name}")
    try:
        svc.run(stop, duration_s=args.duration)
    finally:
        notify("STOPPING=1")
        watchdog.stop()
        svc.stop()
    return 0


def _controller_check(args: argparse.Namespace) -> int:
    from roadside.controller.config import load_controller_config
    from roadside.controller.service import describe, dump

    print(dump(describe(load_controller_config(args.config))))
    return 0


def _add_clearances(parser) -> None:
    parser.add_argument("--clearances", choices=("ite", "program"), default="ite",
                        help="our controllers' change intervals: ite (default, the safe ones: ITE yellow and all-red, "
                             "pedestrian clearance at 1.07 m/s) or program (what the junction's program already runs)")


def _add_settings(parser) -> None:
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of our controllers' configuration, by its key path, e.g. "
                             "timing.adaptive.wait_weight=0.02 (repeatable; the value is read as YAML); checked "
                             "before any simulation starts")


def _sim_run(args: argparse.Namespace) -> int:
    import json

    from roadside.controller.sim.runner import run_from_args

    print(json.dumps(run_from_args(args), indent=None))
    return 0


def _sim_scenarios(args: argparse.Namespace) -> int:
    from roadside.controller.sim.scenarios import SCENARIOS

    for name, sc in SCENARIOS.items():
        print(f"{name:14s} {sc.description}")
    return 0


def _sim_generate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from roadside.controller.sim.generate import generate

    info = generate(args.seed, Path(args.out), lefthand=True if args.lefthand else None, duration_s=args.duration)
    print(json.dumps({k: info[k] for k in ("seed", "description", "net", "routes", "duration_s")}))
    return 0


def _sim_bench(args: argparse.Namespace) -> int:
    from roadside.controller.sim.bench import bench_from_args

    return bench_from_args(args)


def _sim_compare(args: argparse.Namespace) -> int:
    from roadside.controller.sim.compare import compare_from_args

    return compare_from_args(args)


def _sim_losses(args: argparse.Namespace) -> int:
    from roadside.controller.sim.losses import losses_from_args

    return losses_from_args(args)


def _add_sim_target(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("network (a shipped scenario, or your own SUMO files)")
    src.add_argument("--scenario", help="shipped scenario name (see `roadside sim scenarios`)")
    src.add_argument("--net", help="SUMO network (.net.xml) with one traffic light")
    src.add_argument("--routes", help="SUMO routes (.rou.xml) for --net")
    src.add_argument("--tls", help="traffic light id in --net (default: the only one)")


def register(cli) -> None:
    """Add the ``controller`` and ``sim`` groups."""
    cli.group("controller", help="the signal controller service",
              description="The signal controller: reads the edge's MQTT counts and presence, decides "
                          "phase timings through a safety envelope, publishes plan/state/events.")
    run = cli.verb("controller", "run", _controller_run, help="run the controller service against an MQTT broker",
                          description="Subscribe to the edge topics of the site (<prefix>/..., default prefix roadside/<site>), run the configured policy and "
                                      "publish under <prefix>/controller/ until interrupted.")
    run.add_argument("--config", required=True, help="controller configuration (YAML)")
    run.add_argument("--policy", choices=POLICY_CHOICES, help="override timing.policy of the configuration")
    run.add_argument("--audit-log", help="append every audit event as a JSON line to this file")
    run.add_argument("--duration", type=float, help="stop after this many seconds (default: run until stopped)")
    run.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the broker (10)")
    chk = cli.verb("controller", "check", _controller_check, help="validate a configuration and print the derived timings",
                          description="Validate CTRL.yaml and print phases (with ITE clearances), stages and "
                                      "conflicts as JSON.")
    chk.add_argument("--config", required=True, help="controller configuration (YAML)")

    cli.group("sim", help="closed-loop evaluation of the controller in SUMO (needs the 'sim' extra)",
              description="Run the controller against the SUMO traffic simulator.")
    srun = cli.verb("sim", "run", _sim_run, help="simulate one network with one controller; print metrics as JSON",
                           description="Simulate and print one JSON object: mean_time_loss_s, p95_time_loss_s, "
                                       "mean_waiting_s, throughput_veh, max_queue_veh, teleports, safety_violations.")
    _add_sim_target(srun)
    srun.add_argument("--controller", required=True, choices=SIM_CONTROLLERS, help="policy to evaluate")
    srun.add_argument("--duration", type=float, help="simulated seconds (default: the scenario's length, or 3600)")
    srun.add_argument("--seed", type=int, default=1, help="random seed of SUMO and the demand (1)")
    srun.add_argument("--mode", choices=("broker", "inproc"), default="broker",
                      help="broker: detectors -> MQTT broker -> controller service -> MQTT commands -> SUMO "
                           "(the deployed path); inproc: skip the broker (fast sweeps)")
    srun.add_argument("--broker", default="auto",
                      help="MQTT broker host:port for --mode broker; auto (default): a private mosquitto on a free port")
    srun.add_argument("--detection", choices=("perfect", "degraded", "outage"), default="perfect",
                      help="degraded: 10%% missed vehicles, 5%% phantom calls, 1 s latency; outage: 5 min with no "
                           "detector data")
    _add_clearances(srun)
    _add_settings(srun)
    srun.add_argument("--timeseries", help="write queue and delay over time (CSV) to this file")
    srun.add_argument("--audit-log", help="write the controller's audit events (JSON lines) to this file")
    srun.add_argument("--rings", choices=("single", "dual"), default="single",
                      help="our controller: the program's stages in one ring, or ring-and-barrier (NEMA dual ring) "
                           "derived from the program (fixed and actuated)")
    gen = cli.verb("sim", "generate", _sim_generate, help="write a random single-intersection SUMO scenario",
                   description="Draw a junction from a seed (3-5 legs, lanes, turn lanes, left-turn treatment, free "
                               "turns, crossings, turnarounds, demand pattern), write its plain XML, build it with "
                               "netconvert (whose program is the existing timing) and write one hour of demand.")
    gen.add_argument("--seed", type=int, required=True, help="the junction's seed")
    gen.add_argument("--out", required=True, help="directory to write (created)")
    gen.add_argument("--lefthand", action="store_true", help="left-hand traffic (default: drawn from the seed)")
    gen.add_argument("--duration", type=float, default=3600.0, help="simulated seconds of demand (3600)")
    cli.verb("sim", "scenarios", _sim_scenarios, help="list the shipped scenarios",
             description="List the shipped scenarios.")
    bench = cli.verb("sim", "bench", _sim_bench, help="benchmark all controllers on the scenarios (median over seeds)",
                            description="Run every scenario with every controller over several seeds and print "
                                        "the table of medians (and optionally plots).")
    bench.add_argument("--scenarios", nargs="*", help="scenario names (default: all)")
    bench.add_argument("--controllers", nargs="*", choices=SIM_CONTROLLERS, help="controllers (default: all)")
    bench.add_argument("--seeds", type=int, default=3, help="seeds per cell (3)")
    bench.add_argument("--first-seed", type=int, default=1, help="first seed (1); e.g. 4 for a held-out check")
    bench.add_argument("--duration", type=float, help="simulated seconds (default: each scenario's length)")
    bench.add_argument("--detection", nargs="*", choices=("perfect", "degraded", "outage"), default=["perfect"],
                       help="detection conditions to run (perfect)")
    bench.add_argument("--jobs", type=int, help="parallel simulations (default: 2; with --suite: the CPU count)")
    bench.add_argument("--suite", type=int, metavar="N",
                       help="instead of the shipped scenarios: N generated junctions (`roadside sim generate`), "
                            "seeds --seed ... --seed+N-1, against SUMO's static, actuated and delay_based on each "
                            "net's own program")
    bench.add_argument("--seed", type=int, default=1, help="with --suite: the first junction seed (1)")
    bench.add_argument("--lefthand", action="store_true", help="with --suite: every junction left-hand traffic")
    bench.add_argument("--where", action="append", metavar="KEY=VALUE",
                       help="with --suite: only junctions with this trait, the first N from --seed on (repeatable, all "
                            "must hold; VALUE may list alternatives: legs=4,5). Keys: legs, lefts (permissive, "
                            "protected-permissive, protected), hand (left, right), turnarounds (on, off), pattern, mix, "
                            "main_lanes, main_far_lane and side_far_lane (shared, exclusive), free_turns, crossings. "
                            "For checking a change on fresh junctions of the layout it was found on")
    bench.add_argument("--baseline-intervals", choices=("program", "ours"), default="program",
                       help="with --suite: SUMO's programs keep the change intervals netconvert wrote (program, the "
                            "default: a city's existing timing) or get our controllers' (ours: with the ITE "
                            "intervals, a like-for-like comparison of the timing logic)")
    _add_clearances(bench)
    _add_settings(bench)
    bench.add_argument("--out", help="directory for results.json, the markdown table and the plots")
    bench.add_argument("--plots", action="store_true", help="also draw queue/delay over time per scenario (PNG)")
    cmp = cli.verb("sim", "compare", _sim_compare, help="what changed between two benchmark runs, case by case",
                   description="Pair the simulations of two `roadside sim bench --out` runs by scenario and seed and "
                               "print, per detection condition and controller, how many got better or worse in mean "
                               "time loss, the summed change, the largest changes, and any new teleports or safety "
                               "violations. Exit status 1 when the second run has more safety violations anywhere.")
    cmp.add_argument("before", help="the first run's --out directory (or its results.json)")
    cmp.add_argument("after", help="the second run's --out directory (or its results.json)")
    cmp.add_argument("--tolerance", type=float, default=0.05,
                     help="a change of at most this much mean time loss counts as the same (0.05 s)")
    cmp.add_argument("--top", type=int, default=4, help="largest changes listed each way (4)")
    cmp.add_argument("--by-scenario", action="store_true",
                     help="also a table per scenario: mean loss before and after over the paired seeds, the mean and "
                          "median change, seeds better and worse (for the shipped scenarios over many seeds)")
    losses = cli.verb("sim", "losses", _sim_losses, help="where a controller loses, approach by approach",
                      description="For each simulation of a `roadside sim bench --out` run in which the controller is "
                                  "worse than the baseline, or beyond --best-ratio times the best SUMO program: each "
                                  "approach's part of the difference (they add up to it), with its leg's layout on a "
                                  "generated junction.")
    losses.add_argument("run", help="a `sim bench --out` directory (or its results.json)")
    losses.add_argument("--controller", default="adaptive", help="the controller to look at (adaptive)")
    losses.add_argument("--against", default="sumo-actuated", help="the baseline (sumo-actuated)")
    losses.add_argument("--best-ratio", type=float, default=1.10,
                        help="also list simulations beyond this times the best SUMO program (1.10, the target)")
    losses.add_argument("--by-layout", action="store_true",
                        help="instead: the parts summed over every simulation by the approach's leg layout (its far "
                             "and kerb turn lanes and crossing), with the approaches worse and better")

