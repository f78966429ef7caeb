"""The shipped SUMO scenarios: networks built with netconvert from the plain XML in
``controller/scenarios/``, demand written here as SUMO flows (Poisson-like arrivals, randomised by the
simulation seed) in 5-minute slices so that it can vary over time.

Each approach sends 80 % of its vehicles straight on, 10 % left and 10 % right.
"""
from __future__ import annotations

import hashlib
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from roadside.core.errors import RoadsideError

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"
APPROACHES = ("N", "E", "S", "W")
TURNS = {"through": 0.8, "left": 0.1, "right": 0.1}
SLICE_S = 300.0


def _exit(approach: str, turn: str) -> str:
    i = APPROACHES.index(approach)
    # clockwise order N, E, S, W; vehicles from N heading south: through -> S, left -> E, right -> W
    return {"through": APPROACHES[(i + 2) % 4], "left": APPROACHES[(i + 1) % 4], "right": APPROACHES[(i + 3) % 4]}[turn]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    net: str  # plain XML prefix in SCENARIO_DIR
    #: approach -> vehicles per hour at time t (s)
    demand: Callable[[str, float], float]
    duration_s: float = 3600.0
    netconvert_options: tuple[str, ...] = ()
    #: vType id -> (probability, attributes)
    vtypes: dict[str, tuple[float, dict[str, str]]] = field(default_factory=dict)
    #: pedestrians per hour over all crossings (0: none)
    pedestrians_ph: float = 0.0

    def flows_vph(self, t: float) -> dict[tuple[str, str], float]:
        """(from edge, to edge) -> vehicles per hour at time t."""
        out = {}
        for a in APPROACHES:
            q = self.demand(a, t)
            for turn, share in TURNS.items():
                out[(f"{a}2C", f"C2{_exit(a, turn)}")] = q * share
        return out

    def mean_flows_vph(self, duration_s: float | None = None) -> dict[tuple[str, str], float]:
        d = duration_s or self.duration_s
        n = max(1, int(math.ceil(d / SLICE_S)))
        acc: dict[tuple[str, str], float] = {}
        for k in range(n):
            t0 = k * SLICE_S
            w = min(SLICE_S, d - t0)
            for od, q in self.flows_vph(t0 + w / 2).items():
                acc[od] = acc.get(od, 0.0) + q * w / d
        return acc


def _const(main: float, side: float, main_axis=("N", "S")) -> Callable[[str, float], float]:
    return lambda a, t: main if a in main_axis else side


def _peak(a: str, t: float) -> float:
    # builds from 180 to 620 veh/h per main approach over 30 min and fades again (side roads at 60 %)
    shape = math.exp(-((t - 1800.0) / 700.0) ** 2)
    q = 180.0 + 440.0 * shape
    return q if a in ("N", "S") else 0.6 * q


CITY_MIX = {
    "motorcycle": (0.55, {"vClass": "motorcycle", "length": "2.2", "minGap": "1.0", "accel": "3.5",
                          "decel": "6.0", "maxSpeed": "16.7", "sigma": "0.6", "tau": "1.0", "guiShape": "motorcycle"}),
    "car": (0.35, {"vClass": "passenger", "length": "4.5", "minGap": "2.0", "accel": "2.6", "decel": "4.5",
                   "sigma": "0.5"}),
    "bus": (0.05, {"vClass": "bus", "length": "12", "minGap": "2.5", "accel": "1.2", "decel": "4.0",
                   "maxSpeed": "13.9"}),
    "truck": (0.05, {"vClass": "truck", "length": "8", "minGap": "2.5", "accel": "1.3", "decel": "4.0",
                     "maxSpeed": "13.9"}),
}

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("balanced", "4-leg, 2 lanes per leg, 450 veh/h on every approach for 1 h", "cross4",
             _const(450, 450)),
    Scenario("unbalanced", "4-leg, main street 3:1 over the side street (675 vs 225 veh/h per approach), 1 h",
             "cross4", _const(675, 225)),
    Scenario("peak", "4-leg, time-varying: a peak that builds from 180 to 620 veh/h and fades (side 60 %), 1 h",
             "cross4", _peak),
    Scenario("pedestrians", "4-leg with sidewalks and crossings, 400 veh/h per approach and 1200 pedestrians/h",
             "cross4", _const(400, 400), netconvert_options=("--sidewalks.guess", "--crossings.guess"),
             pedestrians_ph=1200.0),
    Scenario("city", "motorbike-heavy mixed traffic (55 % motorcycles, buses, trucks): 2-lane main road at "
             "800 veh/h per approach, 1-lane side street at 220, 1 h", "city", _const(800, 220, ("E", "W")),
             vtypes=CITY_MIX),
)}


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise RoadsideError(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
    return SCENARIOS[name]


def cache_dir() -> Path:
    d = Path(tempfile.gettempdir()) / "roadside-sim"
    d.mkdir(parents=True, exist_ok=True)
    return d


def netconvert_binary() -> str:
    import sumo

    return str(Path(sumo.SUMO_HOME) / "bin" / "netconvert")


def build_net(sc: Scenario) -> Path:
    """Build (once) the scenario's network with netconvert; returns the .net.xml path."""
    nod, edg = SCENARIO_DIR / f"{sc.net}.nod.xml", SCENARIO_DIR / f"{sc.net}.edg.xml"
    key = hashlib.sha1(nod.read_bytes() + edg.read_bytes() + " ".join(sc.netconvert_options).encode()).hexdigest()[:10]
    out = cache_dir() / f"{sc.net}-{key}.net.xml"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp.xml")  # bench workers may build the same net at once
        r = subprocess.run([netconvert_binary(), "-n", str(nod), "-e", str(edg), "-o", str(tmp), "--no-turnarounds",
                            "--tls.default-type", "static", *sc.netconvert_options],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RoadsideError(f"netconvert failed for scenario {sc.name}: {r.stderr.strip()[-500:]}")
        tmp.replace(out)
    return out


def write_routes(sc: Scenario, net_file: Path, duration_s: float) -> Path:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<routes>"]
    vtype = None
    if sc.vtypes:
        lines.append('    <vTypeDistribution id="mix">')
        for vid, (p, attrs) in sc.vtypes.items():
            a = " ".join(f'{k}="{v}"' for k, v in attrs.items())
            lines.append(f'        <vType id="{vid}" probability="{p}" {a}/>')
        lines.append("    </vTypeDistribution>")
        vtype = "mix"
    # persons first: SUMO reads route files in departure order
    if sc.pedestrians_ph > 0:
        per = sc.pedestrians_ph / 12.0  # 12 walking relations: every leg to every other leg
        for a in APPROACHES:
            for b2 in APPROACHES:
                if a == b2:
                    continue
                lines.append(f'    <personFlow id="p_{a}_{b2}" begin="0" end="{duration_s:.0f}" '
                             f'probability="{per / 3600.0:.5f}"><walk from="{a}2C" to="C2{b2}"/></personFlow>')
    n = int(math.ceil(duration_s / SLICE_S))
    for k in range(n):
        b, e = k * SLICE_S, min((k + 1) * SLICE_S, duration_s)
        for (fr, to), q in sc.flows_vph((b + e) / 2).items():
            if q <= 0:
                continue
            t = f' type="{vtype}"' if vtype else ""
            lines.append(f'    <flow id="f_{fr}_{to}_{k}" from="{fr}" to="{to}" begin="{b:.0f}" end="{e:.0f}" '
                         f'probability="{min(q / 3600.0, 1.0):.5f}" departLane="best" departSpeed="max"{t}/>')
    lines.append("</routes>")
    text = "\n".join(lines) + "\n"
    key = hashlib.sha1(text.encode()).hexdigest()[:10]
    out = cache_dir() / f"{sc.name}-{int(duration_s)}-{key}.rou.xml"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.tmp.xml")  # never read half-written by another worker
        tmp.write_text(text)
        tmp.replace(out)
    return out
