"""The demo's junction in SUMO (the ``sim`` extra): a four-leg intersection whose approaches are driven by the
camera's counts and whose traffic light shows the controller's decisions.

Every counts bin of the camera becomes traffic: the vehicles that crossed a count line in one direction in a
bin enter SUMO on the matching approach, spread over the next bin (``ns_middle`` forward, top to bottom on
screen: from the north; backward: from the south; ``ew_middle`` forward, left to right: from the west;
backward: from the east), and drive straight through. The controller's actuator publishes its signal commands
(``<prefix>/controller/command``, the cabinet adapter's input); this module is that cabinet: it sets the
junction's lights from the command's phase signals (``ns`` for the north and south approaches, ``ew`` for
east and west). SUMO runs one simulated second per real second, in its own thread; the summary shows its
vehicles, halted vehicles (queues) and which phase is green.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass

from roadside.core.broker import BrokerClient, Received
from roadside.core.mqtt import MqttConfig
from roadside.core.topics import Topics

log = logging.getLogger("roadside.demo.sumo")

#: (line, direction) -> approach the vehicles come from
APPROACH_OF = {("ns_middle", "forward"): "N", ("ns_middle", "backward"): "S",
               ("ew_middle", "forward"): "W", ("ew_middle", "backward"): "E"}
OPPOSITE = {"N": "S", "S": "N", "E": "W", "W": "E"}
PHASE_OF = {"N": "ns", "S": "ns", "E": "ew", "W": "ew"}
CHAR = {"green": "G", "yellow": "y", "red": "r"}


def available() -> bool:
    try:
        import libsumo  # noqa: F401
        import sumo  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class JunctionStats:
    vehicles: int = 0
    halting: int = 0
    inserted: int = 0
    arrived: int = 0
    green: str = "-"
    sim_time: float = 0.0
    commands: int = 0


class SumoJunction:
    def __init__(self, mqtt: MqttConfig, topics: Topics, device: str, camera: str, bin_s: float) -> None:
        self.topics, self.device, self.camera, self.bin_s = topics, device, camera, bin_s
        self.stats = JunctionStats()
        self._lock = threading.Lock()
        self._pending: list[tuple[float, str]] = []  # (sim time to depart, approach)
        self._signals: dict[str, str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._rng = random.Random(1)
        self.client = BrokerClient(mqtt, f"roadside-demo-sumo-{id(self):x}", clean_session=True,
                                   on_message=self._on_message, name="sumo-cabinet")
        self.client.log.setLevel(logging.ERROR)
        self.client.subscribe([topics.controller("command"), topics.camera(device, camera, "counts")], qos=1)

    # -- MQTT (network thread) ---------------------------------------------------------------------
    def _on_message(self, m: Received) -> None:
        try:
            data = json.loads(m.payload)
        except ValueError:
            return
        where = self.topics.parse(m.topic)
        if where is None:
            return
        with self._lock:
            if where.from_controller and where.kind == "command":
                self._signals = data.get("signals") or None
                self.stats.commands += 1
            elif where.kind == "counts" and data.get("interval_s") == self.bin_s and not data.get("late"):
                now = self.stats.sim_time
                for line, dirs in (data.get("lines") or {}).items():
                    for direction in ("forward", "backward"):
                        approach = APPROACH_OF.get((line, direction))
                        n = sum((dirs.get(direction) or {}).values())
                        if approach is None or n <= 0:
                            continue
                        for _ in range(n):
                            self._pending.append((now + self._rng.uniform(0, self.bin_s), approach))

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> "SumoJunction":
        self.client.start()
        self._thread = threading.Thread(target=self._run, name="sumo", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.client.stop(0.5, final=False)

    def snapshot(self) -> JunctionStats:
        with self._lock:
            return JunctionStats(**vars(self.stats))

    # -- the simulation (its own thread: libsumo is used from this thread only) ----------------------
    def _run(self) -> None:
        try:
            import libsumo as traci

            from roadside.controller.sim.scenarios import build_net, get_scenario

            net = build_net(get_scenario("balanced"))  # the four-leg cross4 network, two lanes per leg
            traci.start(["sumo", "-n", str(net), "--no-step-log", "--no-warnings", "--step-length", "1",
                         "--time-to-teleport", "300", "--seed", "1"])
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._error = e
            self._ready.set()
            return
        try:
            tls = traci.trafficlight.getIDList()[0]
            links = traci.trafficlight.getControlledLinks(tls)
            phase_of_link = [PHASE_OF[group[0][0].split("2")[0]] if group else None for group in links]
            left = [bool(group) and traci.lane.getLinks(group[0][0]) and any(
                lk[0] == group[0][1] and lk[6] == "l" for lk in traci.lane.getLinks(group[0][0])) for group in links]
            for a in OPPOSITE:
                traci.route.add(f"r_{a}", [f"{a}2C", f"C2{OPPOSITE[a]}"])
            traci.trafficlight.setRedYellowGreenState(tls, "r" * len(links))
            self._ready.set()
            n = 0
            t0 = time.monotonic()
            while not self._stop.is_set():
                now = traci.simulation.getTime()
                with self._lock:
                    due = [p for p in self._pending if p[0] <= now]
                    self._pending = [p for p in self._pending if p[0] > now]
                    signals = dict(self._signals) if self._signals else None
                for _, a in due:
                    n += 1
                    traci.vehicle.add(f"v{n}", f"r_{a}", departLane="best", departSpeed="max")
                if signals is not None:
                    state = "".join("r" if p is None else (
                        "g" if CHAR.get(signals.get(p, "red")) == "G" and is_left else CHAR.get(signals.get(p, "red"), "r"))
                        for p, is_left in zip(phase_of_link, left))
                    traci.trafficlight.setRedYellowGreenState(tls, state)
                traci.simulationStep()
                ids = traci.vehicle.getIDList()
                with self._lock:
                    s = self.stats
                    s.sim_time = traci.simulation.getTime()
                    s.vehicles = len(ids)
                    s.halting = sum(traci.edge.getLastStepHaltingNumber(f"{a}2C") for a in OPPOSITE)
                    s.inserted = n
                    s.arrived += traci.simulation.getArrivedNumber()
                    s.green = ",".join(sorted(p for p, v in (signals or {}).items() if v == "green")) or "none"
                # one simulated second per real second
                self._stop.wait(max(0.0, t0 + s.sim_time - time.monotonic()))
        except BaseException:  # noqa: BLE001 - the demo goes on without the simulation, and says so
            log.exception("the SUMO junction stopped")
        finally:
            try:
                traci.close()
            except Exception:  # noqa: BLE001
                pass


__all__ = ["SumoJunction", "available"]
