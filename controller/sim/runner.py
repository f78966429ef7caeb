"""One closed-loop simulation: SUMO <-> detectors <-> controller <-> signals, with the safety monitor and
the delay metrics.

Our policies run as the deployed controller: in ``broker`` mode the detector payloads go through a real
MQTT broker to a :class:`ControllerService` (the same class ``roadside controller run`` uses), whose MQTT
command actuator publishes the signals to a cabinet adapter that sets them in SUMO. ``inproc`` mode drives
the same controller core directly (fast sweeps). SUMO's own controllers run the network's program.
"""
from __future__ import annotations

import math
import os
import statistics
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadside.controller.policy_names import POLICY_NAMES
from roadside.controller.sim.feed import EPOCH, DetectorFeed, SensorDegradation, additional_xml
from roadside.controller.sim.monitor import SafetyMonitor
from roadside.controller.sim.programs import KINDS, program_id, program_xml
from roadside.controller.sim.scenarios import Scenario, build_net, get_scenario, write_routes
from roadside.controller.sim.tls import DerivedTLS, derive, merge_settings
from roadside.core.errors import RoadsideError

OURS = POLICY_NAMES + ("webster-true",)
TIMESERIES_BIN_S = 60.0


class SimError(RoadsideError):
    """The simulation cannot run as asked."""


@dataclass
class SimSpec:
    controller: str
    scenario: str | None = None
    net: str | None = None
    routes: str | None = None
    tls: str | None = None
    duration_s: float | None = None
    seed: int = 1
    mode: str = "inproc"
    broker: str = "auto"
    detection: str = "perfect"
    timeseries: str | None = None
    audit_log: str | None = None
    #: merged into the derived controller configuration, e.g. {"timing": {"adaptive": {"horizon_s": 180}}}
    overrides: dict | None = None
    #: SUMO's own controllers keep the network's yellow and red phases as netconvert wrote them (the
    #: junction suite); otherwise they get our ITE change intervals (the shipped scenarios)
    native_baselines: bool = False
    #: a name for the results (default: the scenario or the network file)
    label: str | None = None
    #: our controllers' change intervals: ``ite`` (the safe default) or ``program`` (the yellow, all-red and
    #: pedestrian clearance the junction's own program runs, ``tls.program_intervals``)
    clearances: str = "ite"
    #: our controllers: ``single`` (the program's stages, one ring) or ``dual`` (ring-and-barrier derived
    #: from the program, sim/program_rings.py; fixed and actuated only)
    rings: str = "single"


def sumo_module():
    try:
        import libsumo as traci  # in-process: fast
    except ImportError:  # pragma: no cover - depends on the install
        try:
            import traci  # type: ignore[no-redef]
        except ImportError:
            raise SimError("SUMO is not installed: pip install 'roadside[sim]'") from None
    return traci


def sumo_binary() -> str:
    try:
        import sumo
    except ImportError:
        raise SimError("SUMO is not installed: pip install 'roadside[sim]'") from None
    return str(Path(sumo.SUMO_HOME) / "bin" / "sumo")


def true_phase_flows(d: DerivedTLS, net, sc: Scenario, duration_s: float) -> dict[str, float]:
    """Mean demand (veh/h) of each vehicle phase, from the scenario's origin-destination flows."""
    flows: dict[str, float] = {}
    for (fr, to), q in sc.mean_flows_vph(duration_s).items():
        conns = net.getEdge(fr).getOutgoing().get(net.getEdge(to), [])
        phases = {d.link_phase[c.getTLLinkIndex()] for c in conns if c.getTLLinkIndex() in d.link_phase}
        for p in phases:
            flows[p] = flows.get(p, 0.0) + q / len(phases)
    return flows


def _resolve(spec: SimSpec) -> tuple[Path, Path, str | None, float, Scenario | None]:
    if spec.scenario:
        if spec.net or spec.routes:
            raise SimError("give either --scenario or --net/--routes, not both")
        sc = get_scenario(spec.scenario)
        duration = spec.duration_s or sc.duration_s
        net = build_net(sc)
        return net, write_routes(sc, net, duration), None, duration, sc
    if not (spec.net and spec.routes):
        raise SimError("give --scenario NAME, or --net NET.xml and --routes ROU.xml")
    for p in (spec.net, spec.routes):
        if not Path(p).is_file():
            raise SimError(f"{p}: file not found")
    return Path(spec.net), Path(spec.routes), spec.tls, spec.duration_s or 3600.0, None


class _BrokerLoop:
    """Feed -> broker -> ControllerService -> broker -> cabinet adapter, one simulation step at a time.

    The feed (the detectors' publisher) and the cabinet adapter (subscribed to the commands) are
    clients of the product's one MQTT client class, with the controller's MQTT settings."""

    def __init__(self, cfg, policy, broker: str, now_ref: list[float], audit_log: str | None) -> None:
        import json

        from roadside.controller.service import ControllerService
        from roadside.core.broker import BrokerClient

        host, _, port = broker.partition(":")
        self.site = cfg.site
        self.now_ref = now_ref
        mqtt = cfg.mqtt.model_copy(update={"host": host, "port": int(port or 1883)})
        cfg = cfg.model_copy(update={"mqtt": mqtt.model_copy(update={"client_id": f"ctrl-{cfg.site}"})})
        self.svc = ControllerService(cfg, policy=policy, clock=lambda: now_ref[0],
                                     wall=lambda t: EPOCH + _td(t), audit_log=audit_log,
                                     input_budget_s=math.inf)  # simulated time: read every message each tick
        self.last_cmd: dict | None = None
        self.cmd_seq = 0
        self.cond = threading.Condition()

        def on_command(msg) -> None:
            data = json.loads(msg.payload)
            with self.cond:
                if data["seq"] > self.cmd_seq:
                    self.cmd_seq, self.last_cmd = data["seq"], data
                self.cond.notify_all()

        self.pub = BrokerClient(mqtt, f"feed-{cfg.site}", name="sim-feed")
        self.cabinet = BrokerClient(mqtt, f"cabinet-{cfg.site}", on_message=on_command, name="sim-cabinet")
        self.cabinet.subscribe(self.svc.topics.controller("command"), qos=1)
        for c in (self.pub, self.cabinet):
            c.start()
        for c in (self.pub, self.cabinet):
            if not c.wait_connected(10, stop_on_refusal=True):
                why = c.status().last_error or "no answer"
                self._stop_clients()
                raise SimError(f"cannot reach the MQTT broker at {broker}: {why} (use --mode inproc to skip it)")
        try:
            self.svc.start()
        except BaseException:
            self._stop_clients()
            raise
        self.published = 0

    def deliver(self, msgs, retain: bool = False) -> None:
        for topic, payload in msgs:
            self.pub.publish(topic, payload, qos=1, retain=retain)
            self.published += 1
        deadline = time.monotonic() + 10
        while self.svc.received_from.get("sumo", 0) < self.published:
            if time.monotonic() > deadline:
                raise SimError("messages to the controller were lost on the broker")
            time.sleep(0.0002)

    def tick(self, t: float):
        before = self.svc.ctrl.command_seq
        out = self.svc.process(t)
        want = self.svc.ctrl.command_seq
        if want != before:
            with self.cond:
                if not self.cond.wait_for(lambda: self.cmd_seq >= want, timeout=10):
                    raise SimError("the controller's command did not arrive through the broker")
        if self.last_cmd is None:
            return out, out.step.signals, None
        return out, self.last_cmd["signals"], self.last_cmd["stage"]

    def _stop_clients(self) -> None:
        for c in (self.pub, self.cabinet):
            c.stop(flush_timeout_s=1.0)

    def close(self) -> None:
        self.svc.stop()
        self.pub.publish(self.svc.topics.device_status("sumo"), b"", qos=1, retain=True)  # clear the retained status
        self._stop_clients()


class SumoActuator:
    """The SUMO actuator: shows the controller's phase signals on the simulated traffic light. In-process
    it is the controller's actuator; through the broker it is the cabinet adapter's output, fed with the
    :class:`SignalCommand` received over MQTT."""

    def __init__(self, traci, d: DerivedTLS) -> None:
        self.traci, self.d = traci, d

    def show(self, signals: dict[str, str], stage: str | None) -> None:
        self.traci.trafficlight.setRedYellowGreenState(self.d.tls_id, self.d.state_string(signals, [stage]))

    def apply(self, ctrl, out, now: float) -> None:
        self.show(out.step.signals, ctrl.engine.current)


def _td(t: float):
    from datetime import timedelta

    return timedelta(seconds=t)


def run_sim(spec: SimSpec) -> dict[str, Any]:
    import sumolib

    if spec.controller not in OURS and spec.controller not in KINDS:
        raise SimError(f"unknown controller {spec.controller!r}")
    net_file, routes, tls_id, duration, sc = _resolve(spec)
    policy_name = "fixed" if spec.controller == "webster-true" else spec.controller
    site = f"sim-{uuid.uuid4().hex[:8]}"
    d = derive(str(net_file), tls_id, site=site, policy=policy_name if spec.controller in OURS else "fixed",
               extra=spec.overrides, clearances=spec.clearances,
               rings=spec.rings if spec.controller in OURS else "single")
    net = sumolib.net.readNet(str(net_file), withPrograms=True, withPedestrianConnections=True)
    ours = spec.controller in OURS
    work = Path(tempfile.mkdtemp(prefix="roadside-run-"))
    add = work / "add.xml"
    body = additional_xml(d, net) if ours else program_xml(d, spec.controller, native=spec.native_baselines)
    add.write_text(f'<additional>\n{body}</additional>\n')
    trip = work / "tripinfo.xml"
    traci = sumo_module()
    cmd = [sumo_binary(), "-n", str(net_file), "-r", str(routes), "-a", str(add), "--seed", str(spec.seed),
           "--step-length", "1", "--no-step-log", "true", "--no-warnings", "true", "--duration-log.disable", "true",
           "--time-to-teleport", "300", "--end", str(int(duration)), "--tripinfo-output", str(trip),
           "--tripinfo-output.write-unfinished", "true", "--device.rerouting.probability", "0"]
    traci.start(cmd)
    degradation = SensorDegradation.named(spec.detection, duration)
    # the controller learns of a call up to the sensors' latency plus one decision tick late
    monitor = SafetyMonitor(d, ours, call_lag_s=degradation.latency_s + d.config.tick_s,
                            native=spec.native_baselines)
    incoming = sorted({lk.from_lane for lk in d.links.values() if lk.crossing is None})
    queue_series: list[tuple[float, int]] = []
    teleports = arrived = continuous_off = 0
    ctrl = loop = feed = private = None
    audit = None
    now_ref = [0.0]
    try:
        if ours:
            policy: Any = policy_name
            if spec.controller == "webster-true":
                if sc is None:
                    raise SimError("webster-true needs a --scenario (its true demand is known)")
                from roadside.controller.policies.fixed import FixedTimePolicy
                from roadside.controller.policies.webster import webster_plan

                plan = webster_plan(d.intersection, true_phase_flows(d, net, sc, duration), d.config.timing.webster)
                policy = FixedTimePolicy(d.config, d.intersection, greens=plan.greens)
                policy.why = f"Webster from the true demand: C0={plan.cycle_s:.0f}s"
            feed = DetectorFeed(d, site, degradation, spec.seed)
            if spec.mode == "broker":
                address = spec.broker
                if address == "auto":
                    from roadside.core.testing import PrivateBroker

                    try:
                        private = PrivateBroker().start()
                    except RoadsideError as e:
                        raise SimError(f"--broker auto: {e}; or give --broker HOST:PORT, or use --mode inproc") from None
                    address = private.address
                loop = _BrokerLoop(d.config, policy, address, now_ref, spec.audit_log)
                for topic, payload, retain in feed.start_messages():
                    loop.deliver([(topic, payload)], retain=retain)
            else:
                from roadside.controller.core import Controller

                ctrl = Controller(d.config, 0.0, policy, wall=lambda t: EPOCH + _td(t))
                for topic, payload, _ in feed.start_messages():
                    ctrl.on_message(topic, payload, 0.0)
                audit = open(spec.audit_log, "w") if spec.audit_log else None
            traci.trafficlight.setRedYellowGreenState(d.tls_id, "r" * d.n_links)
            sumo_out = SumoActuator(traci, d)
        else:
            traci.trafficlight.setProgram(d.tls_id, program_id(spec.controller))
        for _ in range(int(duration)):
            traci.simulationStep()
            t = traci.simulation.getTime()
            now_ref[0] = t
            teleports += traci.simulation.getStartingTeleportNumber()
            arrived += traci.simulation.getArrivedNumber()
            if ours:
                msgs = feed.step(t, traci)
                if loop is not None:  # detectors -> broker -> service -> broker -> cabinet adapter -> SUMO
                    loop.deliver(msgs)
                    _, signals, stage = loop.tick(t)
                    sumo_out.show(signals, stage)
                else:
                    for topic, payload in msgs:
                        ctrl.on_message(topic, payload, t)
                    out = ctrl.tick(t)
                    sumo_out.apply(ctrl, out, t)
                    if audit:
                        for ev in out.events:
                            audit.write(ev.model_dump_json() + "\n")
            state = traci.trafficlight.getRedYellowGreenState(d.tls_id)
            monitor.observe(t, state, feed.true_calls() if feed is not None else None)
            continuous_off += any(state[i] not in "Gg" for i in d.continuous)
            queue_series.append((t, sum(traci.lane.getLastStepHaltingNumber(ln) for ln in incoming)))
        monitor.checker.finish(float(duration))
    finally:
        if loop is not None:
            loop.close()
        if private is not None:
            private.close()
        if audit is not None:
            audit.close()
        traci.close()
    trips = _tripinfo(trip)
    result = _metrics(trips, queue_series, teleports, arrived, monitor, spec, duration, d)
    result["continuous_links"] = len(d.continuous)
    result["continuous_not_green_steps"] = continuous_off
    if spec.timeseries:
        _write_timeseries(spec.timeseries, trips, queue_series, duration)
    for f in work.iterdir():
        f.unlink()
    work.rmdir()
    return result


def _tripinfo(path: Path) -> list[dict[str, float]]:
    out = []
    for _, el in ET.iterparse(path):
        if el.tag == "tripinfo":
            out.append({"from": el.get("departLane", "").rsplit("_", 1)[0],
                        "depart": float(el.get("depart", 0)), "arrival": float(el.get("arrival", -1)),
                        "time_loss": float(el.get("timeLoss", 0)), "waiting": float(el.get("waitingTime", 0))})
        el.clear()
    return out


def _metrics(trips, queue_series, teleports, arrived, monitor, spec, duration, d) -> dict[str, Any]:
    losses = sorted(t["time_loss"] for t in trips)
    waits = [t["waiting"] for t in trips]
    p95 = losses[min(len(losses) - 1, int(math.ceil(0.95 * len(losses))) - 1)] if losses else 0.0
    by_approach: dict[str, list[float]] = {}  # approach edge -> its vehicles' time losses
    for t in sorted(trips, key=lambda t: t["from"]):
        by_approach.setdefault(t["from"], []).append(t["time_loss"])
    rules: dict[str, int] = {}
    for v in monitor.violations:
        rules[v.rule] = rules.get(v.rule, 0) + 1
    return {
        "scenario": spec.label or spec.scenario or os.path.basename(spec.net or ""), "controller": spec.controller,
        "seed": spec.seed, "duration_s": duration, "mode": spec.mode if spec.controller in OURS else "sumo",
        "detection": spec.detection,
        "mean_time_loss_s": round(statistics.fmean(losses), 2) if losses else 0.0,
        "p95_time_loss_s": round(p95, 2),
        "mean_waiting_s": round(statistics.fmean(waits), 2) if waits else 0.0,
        "throughput_veh": arrived,
        "vehicles": len(trips),
        "max_queue_veh": max((q for _, q in queue_series), default=0),
        "teleports": teleports,
        "safety_violations": len(monitor.violations),
        "mean_time_loss_by_approach": {e: round(statistics.fmean(ls), 2) for e, ls in by_approach.items()},
        "vehicles_by_approach": {e: len(ls) for e, ls in by_approach.items()},
        "violations_by_rule": rules,
        "tls": d.tls_id,
        "stages": len(d.stages),
    }


def _write_timeseries(path: str, trips, queue_series, duration: float) -> None:
    n = int(math.ceil(duration / TIMESERIES_BIN_S))
    qsum, qn = [0.0] * n, [0] * n
    for t, q in queue_series:
        k = min(n - 1, int((t - 1) // TIMESERIES_BIN_S))
        qsum[k] += q
        qn[k] += 1
    dsum, dn = [0.0] * n, [0] * n
    for tr in trips:
        if tr["arrival"] >= 0:
            k = min(n - 1, int(tr["arrival"] // TIMESERIES_BIN_S))
            dsum[k] += tr["time_loss"]
            dn[k] += 1
    with open(path, "w") as f:
        f.write("t_s,queue_veh,time_loss_s\n")
        for k in range(n):
            q = qsum[k] / qn[k] if qn[k] else 0.0
            dl = dsum[k] / dn[k] if dn[k] else ""
            f.write(f"{(k + 1) * TIMESERIES_BIN_S:.0f},{q:.2f},{dl if dl == '' else round(dl, 2)}\n")


def parse_settings(items: list[str] | None) -> dict | None:
    """``--set`` items (KEY=VALUE) as one nested dict (None when there are none), checked against the controller
    configuration's model: an unknown key or a bad value is a ConfigError naming it, before anything runs."""
    import yaml

    from roadside.controller.config import load_controller_config, parse_controller_config
    from roadside.core.errors import ConfigError

    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key path, e.g. "
                              "timing.adaptive.wait_weight=0.02")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is set to a value by another --set")
        node[path[-1]] = yaml.safe_load(value) if value.strip() else None
    if not out:
        return None
    example = load_controller_config(Path(__file__).parents[1] / "examples" / "ctrl.yaml").model_dump(mode="json")
    merge_settings(example, out)
    parse_controller_config(example, "--set")
    return out


def run_from_args(args) -> dict[str, Any]:
    spec = SimSpec(controller=args.controller, scenario=args.scenario, net=args.net, routes=args.routes, tls=args.tls,
                   duration_s=args.duration, seed=args.seed, mode=args.mode, broker=args.broker,
                   detection=args.detection, timeseries=args.timeseries, audit_log=args.audit_log,
                   clearances=args.clearances, rings=args.rings, overrides=parse_settings(args.settings))
    return run_sim(spec)
