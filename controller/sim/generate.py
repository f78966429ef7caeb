"""A randomised junction suite: single-intersection SUMO scenarios drawn from a seed, written as plain XML
(nodes, edges, connections) and built with netconvert, with one simulated hour of demand.

Each seed draws:

* the layout: 3, 4 or 5 legs (angles jittered), 1-3 through lanes per approach (the main road wider), turn
  lanes exclusive or shared, continuous (free) kerb-side turns into an added lane, pedestrian crossings on
  some legs, turnarounds on or off, right- or left-hand traffic;
* the left-turn treatment, through netconvert's own program builder: ``permissive`` (no left phase),
  ``protected-permissive`` (netconvert's left-green phase where there are exclusive far-side lanes) or
  ``protected`` (far-side turns never move beside the opposing through traffic);
* the demand: one of :data:`PATTERNS` over one hour, in 5-minute slices, scaled to a rough capacity
  estimate of the layout so that "near-saturation" means the same on every net; a vehicle mix (cars, the
  issue's 70/30 car/motorbike, or motorbike-heavy).

netconvert's program is kept as the "city's existing timing" (SUMO's static baseline and our fail-safe
plan). Nothing here knows the controller: the suite is what a new city would bring.
"""
from __future__ import annotations

import json
import math
import random
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from roadside.controller.sim.scenarios import CITY_MIX, SLICE_S, netconvert_binary
from roadside.core.errors import RoadsideError

PATTERNS = ("balanced", "main-3to1", "minor-peak", "major-peak", "near-saturation", "oversaturated-10min",
            "motorbike-heavy")
LEFT_MODES = ("permissive", "protected-permissive", "protected")
LEG_M = 250.0
#: rough saturation flow per lane (veh/h of green) used only to scale the demand to the layout
LANE_SAT = 1800.0

MIX_7030 = {"car": (0.7, CITY_MIX["car"][1]), "motorcycle": (0.3, CITY_MIX["motorcycle"][1])}
MIXES = {"cars": {}, "car-moto-70-30": MIX_7030, "motorbike-heavy": CITY_MIX}


class GenerateError(RoadsideError):
    """A scenario could not be generated (netconvert refused the plain XML)."""


@dataclass
class Movement:
    to_leg: int
    turn: str  # "kerb" (right in right-hand traffic), "through", "far" (left in RHT), "u"
    angle: float
    lanes: list[int] = field(default_factory=list)  # from-lane indices (sidewalk excluded)
    to_lanes: list[int] = field(default_factory=list)


@dataclass
class Leg:
    index: int
    angle: float  # degrees, counter-clockwise from east
    main: bool
    through_lanes: int
    far_lane: str  # "exclusive" or "shared"
    kerb_lane: str  # "exclusive", "shared" or "free" (a continuous turn into an added lane)
    crossing: bool
    speed: float  # m/s
    movements: list[Movement] = field(default_factory=list)

    @property
    def in_edge(self) -> str:
        return f"in{self.index}"

    @property
    def out_edge(self) -> str:
        return f"out{self.index}"


@dataclass
class Case:
    seed: int
    legs: list[Leg]
    left_mode: str
    lefthand: bool
    turnarounds: bool
    pattern: str
    mix: str
    duration_s: float
    #: approach leg -> base demand (veh/h) and the turning shares
    demand_vph: dict[int, float] = field(default_factory=dict)
    shares: dict[int, dict[int, float]] = field(default_factory=dict)

    def describe(self) -> str:
        lanes = "/".join(str(lg.through_lanes) for lg in self.legs)
        free = sum(lg.kerb_lane == "free" for lg in self.legs)
        xs = sum(lg.crossing for lg in self.legs)
        return (f"seed {self.seed}: {len(self.legs)} legs, through lanes {lanes}, lefts {self.left_mode}, "
                f"{free} free turn(s), {xs} crossing(s), {'left' if self.lefthand else 'right'}-hand, "
                f"turnarounds {'on' if self.turnarounds else 'off'}, {self.pattern}, mix {self.mix}")


def _turn(angle_in: float, angle_out: float) -> float:
    """Turning angle (degrees, positive = counter-clockwise) of a vehicle arriving from a leg at
    ``angle_in`` and leaving on the leg at ``angle_out``."""
    heading = angle_in + 180.0
    return (angle_out - heading + 180.0) % 360.0 - 180.0


def draw(seed: int, lefthand: bool | None = None, duration_s: float = 3600.0) -> Case:
    """The case of a seed (deterministic)."""
    rng = random.Random(f"roadside-junction-{seed}")
    n = rng.choice((3, 4, 4, 5))
    if lefthand is None:
        lefthand = rng.random() < 0.25
    if n == 3:
        base = [0.0, 180.0, 270.0]
    elif n == 4:
        base = [0.0, 180.0, 90.0, 270.0]  # legs 0 and 1: the main road
    else:
        base = [0.0, 70.0, 145.0, 180.0, 270.0]
    angles = [a + (rng.uniform(-8, 8) if k > 1 or n == 5 else 0.0) for k, a in enumerate(base)]
    left_mode = rng.choice(LEFT_MODES)
    main_lanes = rng.choice((1, 2, 2, 3))
    side_lanes = rng.choice((1, 1, 2)) if main_lanes > 1 else 1
    walkers = rng.random() < 0.5
    legs = []
    for k, a in enumerate(angles):
        main = k in (0, 1) if n != 5 else k in (0, 3)
        legs.append(Leg(k, a, main, main_lanes if main else side_lanes,
                        far_lane="exclusive" if (rng.random() < (0.7 if main else 0.35)) else "shared",
                        kerb_lane=rng.choice(("shared", "shared", "exclusive", "free")),
                        crossing=walkers and rng.random() < 0.6, speed=13.89 if main else rng.choice((11.11, 13.89))))
    turnarounds = rng.random() < 0.3
    pattern = rng.choice(PATTERNS)
    mix = "motorbike-heavy" if pattern == "motorbike-heavy" else rng.choice(("cars", "cars", "car-moto-70-30"))
    case = Case(seed, legs, left_mode, lefthand, turnarounds, pattern, mix, duration_s)
    _movements(case)
    _demand(case, rng)
    return case


def _movements(case: Case) -> None:
    """Classify every movement of every approach and give it its lanes (kerb lane is index 0)."""
    for leg in case.legs:
        leg.movements = []
        for other in case.legs:
            if other.index == leg.index:
                if case.turnarounds:
                    leg.movements.append(Movement(other.index, "u", 180.0))
                continue
            t = _turn(leg.angle, other.angle)
            if case.lefthand:
                t = -t  # mirror: the far side is the right
            kind = "through" if abs(t) < 40 else ("far" if t > 0 else "kerb")
            leg.movements.append(Movement(other.index, kind, t))
        if not any(m.turn == "through" for m in leg.movements):
            # a side road of a T: no through movement, its lanes are shared by the turns
            leg.far_lane = "shared" if leg.through_lanes == 1 else leg.far_lane
        if not any(m.turn == "kerb" for m in leg.movements):
            leg.kerb_lane = "shared"
        if not any(m.turn == "far" for m in leg.movements):
            leg.far_lane = "shared"
        th = leg.through_lanes
        kerb_extra = leg.kerb_lane in ("exclusive", "free")
        lo = 1 if kerb_extra else 0
        through = list(range(lo, lo + th))
        far_lanes = [lo + th] if leg.far_lane == "exclusive" else [through[-1]]
        kerb_lanes = [0] if kerb_extra else [through[0]]
        has_through = any(m.turn == "through" for m in leg.movements)
        throughs = sorted((m for m in leg.movements if m.turn == "through"), key=lambda m: m.angle)
        for m in leg.movements:
            if m.turn == "far":
                m.lanes = list(far_lanes)
            elif m.turn == "u":
                m.lanes = [max(far_lanes)]
            elif m.turn == "kerb":
                m.lanes = list(kerb_lanes)
            else:
                if len(throughs) == 1:
                    m.lanes = list(through)
                else:  # several through-ish movements (5 legs): split the through lanes between them
                    i = throughs.index(m)
                    k = max(1, len(through) // len(throughs))
                    m.lanes = through[min(i * k, len(through) - 1): min(i * k, len(through) - 1) + k] or [through[-1]]
        if not has_through:  # T side road: the far turn takes the far lanes, the kerb turn the kerb lanes
            if th == 1 and not kerb_extra and leg.far_lane == "shared":
                for m in leg.movements:
                    m.lanes = [0]


def n_lanes(leg: Leg) -> int:
    """Vehicle lanes of the approach."""
    return leg.through_lanes + (leg.kerb_lane in ("exclusive", "free")) + (leg.far_lane == "exclusive")


def out_lanes(case: Case, leg: Leg) -> int:
    """Vehicle lanes leaving on this leg: as many as it brings in through, plus one for each free turn
    that ends here (its own lane: the free turn merges with nothing)."""
    free_in = sum(1 for lg in case.legs for m in lg.movements if m.to_leg == leg.index and m.turn == "kerb"
                  and lg.kerb_lane == "free")
    return max(leg.through_lanes, 1) + free_in


def _capacity_scale(case: Case) -> float:
    """Rough per-lane demand (veh/h) at degree of saturation 1: green share of a critical approach."""
    groups = 2 + (1 if len(case.legs) == 5 else 0) + (1 if case.left_mode != "permissive" else 0)
    lost = 0.25 if groups <= 2 else 0.3
    return LANE_SAT * (1.0 - lost) / groups


def _demand(case: Case, rng: random.Random) -> None:
    cap = _capacity_scale(case)
    x_main, x_side = {"balanced": (0.5, 0.5), "main-3to1": (0.6, 0.2), "minor-peak": (0.45, 0.35),
                      "major-peak": (0.35, 0.35), "near-saturation": (0.85, 0.8),
                      "oversaturated-10min": (0.6, 0.55), "motorbike-heavy": (0.55, 0.45)}[case.pattern]
    for leg in case.legs:
        x = (x_main if leg.main else x_side) * rng.uniform(0.85, 1.15)
        case.demand_vph[leg.index] = round(x * cap * leg.through_lanes, 1)
        shares: dict[int, float] = {}
        far = [m for m in leg.movements if m.turn == "far"]
        kerb = [m for m in leg.movements if m.turn == "kerb"]
        thr = [m for m in leg.movements if m.turn == "through"]
        u = [m for m in leg.movements if m.turn == "u"]
        p_far = rng.uniform(0.1, 0.25) if far else 0.0
        p_kerb = rng.uniform(0.1, 0.25) if kerb else 0.0
        p_u = 0.02 if u else 0.0
        if not thr:  # a side road of a T: everything turns
            p_far, p_kerb = (1.0 - p_u) * p_far / (p_far + p_kerb), (1.0 - p_u) * p_kerb / (p_far + p_kerb)
        p_thr = max(0.0, 1.0 - p_far - p_kerb - p_u)
        for group, p in ((far, p_far), (kerb, p_kerb), (thr, p_thr), (u, p_u)):
            for m in group:
                shares[m.to_leg] = shares.get(m.to_leg, 0.0) + p / len(group)
        case.shares[leg.index] = shares


def demand_factor(case: Case, leg: Leg, t: float) -> float:
    """Multiplier of a leg's base demand at time t (s) for the case's pattern."""
    h = case.duration_s
    if case.pattern == "minor-peak" and not leg.main:
        return 1.0 + 1.4 * (0.3 * h <= t < 0.3 * h + 1500.0)  # the side road peaks for 25 minutes
    if case.pattern == "major-peak" and leg.main:
        return 1.0 + 1.3 * math.exp(-((t - 0.5 * h) / (0.18 * h)) ** 2)
    if case.pattern == "oversaturated-10min":
        return 1.0 + 1.0 * (0.4 * h <= t < 0.4 * h + 600.0)
    return 1.0


# -- writing ------------------------------------------------------------------------------------------
def plain_xml(case: Case) -> dict[str, str]:
    """The plain XML files (nodes, edges, connections) of a case."""
    nodes = ['<nodes>', '    <node id="C" x="0.00" y="0.00" type="traffic_light"/>']
    for leg in case.legs:
        a = math.radians(leg.angle)
        nodes.append(f'    <node id="L{leg.index}" x="{LEG_M * math.cos(a):.2f}" y="{LEG_M * math.sin(a):.2f}"/>')
    nodes.append('</nodes>')
    edges = ['<edges>']
    walk = any(lg.crossing for lg in case.legs)  # sidewalks on every leg when anybody walks
    for leg in case.legs:
        for eid, frm, to, lanes in ((leg.in_edge, f"L{leg.index}", "C", n_lanes(leg)),
                                    (leg.out_edge, "C", f"L{leg.index}", out_lanes(case, leg))):
            side = 1 if walk else 0
            edges.append(f'    <edge id="{eid}" from="{frm}" to="{to}" priority="{2 if leg.main else 1}" '
                         f'numLanes="{lanes + side}" speed="{leg.speed:.2f}">')
            if side:
                edges.append('        <lane index="0" allow="pedestrian" width="2.00"/>')
                for i in range(1, lanes + 1):
                    edges.append(f'        <lane index="{i}" disallow="pedestrian"/>')
            edges.append('    </edge>')
    edges.append('</edges>')
    conns = ['<connections>']
    for leg in case.legs:
        off_in = 1 if walk else 0
        for m in leg.movements:
            dest = case.legs[m.to_leg]
            off_out = 1 if walk else 0
            if m.turn == "kerb" and leg.kerb_lane == "free":
                # the free turn has its own lane on the leg it enters: the outermost added lane
                to_lanes = _free_target(case, dest, leg)
            else:
                to_lanes = _targets(m, dest)
            for k, fl in enumerate(m.lanes):
                tl = to_lanes[min(k, len(to_lanes) - 1)]
                conns.append(f'    <connection from="{leg.in_edge}" to="{dest.out_edge}" fromLane="{fl + off_in}" '
                             f'toLane="{tl + off_out}"/>')
    for leg in case.legs:
        if leg.crossing:
            conns.append(f'    <crossing node="C" edges="{leg.in_edge} {leg.out_edge}" priority="false"/>')
    conns.append('</connections>')
    return {"nod": "\n".join(nodes) + "\n", "edg": "\n".join(edges) + "\n", "con": "\n".join(conns) + "\n"}


def _free_target(case: Case, dest: Leg, source: Leg) -> list[int]:
    """The out-lane (kerb side, index 0...) a free turn enters: the added lanes are the kerb-most ones, so
    the ordinary traffic keeps the lanes beside the median."""
    frees = [lg.index for lg in case.legs for m in lg.movements
             if m.to_leg == dest.index and m.turn == "kerb" and lg.kerb_lane == "free"]
    return [frees.index(source.index)]


def _targets(m: Movement, dest: Leg) -> list[int]:
    """Out-lanes a movement enters: kerb turns the kerb-most ordinary lane, far turns and turnarounds the
    median-most, through traffic lane by lane; the lanes added for free turns are skipped."""
    first = out_free_lanes(dest)
    ordinary = list(range(first, first + max(dest.through_lanes, 1)))
    if m.turn == "kerb":
        return [ordinary[0]]
    if m.turn in ("far", "u"):
        return [ordinary[-1]]
    if len(m.lanes) <= len(ordinary):
        return ordinary[-len(m.lanes):] if len(m.lanes) > 0 else ordinary
    return ordinary


def out_free_lanes(dest: Leg) -> int:
    return getattr(dest, "_free_in", 0)


def netconvert_options(case: Case) -> list[str]:
    opts = ["--tls.default-type", "static", "--junctions.join", "false", "--offset.disable-normalization", "true"]
    if not case.turnarounds:
        opts.append("--no-turnarounds")
    if case.lefthand:
        opts.append("--lefthand")
    if case.left_mode == "permissive":
        opts += ["--tls.left-green.time", "0"]
    elif case.left_mode == "protected":
        opts += ["--tls.minor-left.max-speed", "0.5"]
    if any(lg.crossing for lg in case.legs):
        opts += ["--walkingareas", "true"]
    return opts


def routes_xml(case: Case) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<routes>"]
    vtype = None
    mix = MIXES[case.mix]
    if mix:
        lines.append('    <vTypeDistribution id="mix">')
        for vid, (p, attrs) in mix.items():
            a = " ".join(f'{k}="{v}"' for k, v in attrs.items())
            lines.append(f'        <vType id="{vid}" probability="{p}" {a}/>')
        lines.append("    </vTypeDistribution>")
        vtype = "mix"
    walkers = [lg for lg in case.legs if lg.crossing]
    if walkers:
        # persons cross each leg that has a crossing, both ways: from one kerb of the leg to the other
        for lg in walkers:
            per_h = 60.0
            for a, b in ((lg.in_edge, lg.out_edge), (lg.out_edge, lg.in_edge)):
                lines.append(f'    <personFlow id="p{lg.index}_{a}" begin="0" end="{case.duration_s:.0f}" '
                             f'probability="{per_h / 3600.0:.5f}"><walk from="{a}" to="{b}"/></personFlow>')
    n = int(math.ceil(case.duration_s / SLICE_S))
    for k in range(n):
        b, e = k * SLICE_S, min((k + 1) * SLICE_S, case.duration_s)
        for leg in case.legs:
            q = case.demand_vph[leg.index] * demand_factor(case, leg, (b + e) / 2)
            for to, share in sorted(case.shares[leg.index].items()):
                rate = q * share / 3600.0
                if rate <= 0:
                    continue
                t = f' type="{vtype}"' if vtype else ""
                lines.append(f'    <flow id="f{leg.index}_{to}_{k}" from="{leg.in_edge}" to="{case.legs[to].out_edge}" '
                             f'begin="{b:.0f}" end="{e:.0f}" probability="{min(rate, 1.0):.5f}" departLane="best" '
                             f'departSpeed="max"{t}/>')
    lines.append("</routes>")
    return "\n".join(lines) + "\n"


def generate(seed: int, out: Path, lefthand: bool | None = None, duration_s: float = 3600.0) -> dict:
    """Write the case of ``seed`` into ``out``: plain XML, ``net.net.xml`` (netconvert), ``routes.rou.xml``
    and ``case.json``. Returns the case description."""
    case = draw(seed, lefthand, duration_s)
    for leg in case.legs:
        leg._free_in = sum(1 for lg in case.legs for m in lg.movements  # type: ignore[attr-defined]
                           if m.to_leg == leg.index and m.turn == "kerb" and lg.kerb_lane == "free")
    out.mkdir(parents=True, exist_ok=True)
    files = plain_xml(case)
    for ext, text in files.items():
        (out / f"junction.{ext}.xml").write_text(text)
    net = out / "net.net.xml"
    cmd = [netconvert_binary(), "-n", str(out / "junction.nod.xml"), "-e", str(out / "junction.edg.xml"),
           "-x", str(out / "junction.con.xml"), "-o", str(net), *netconvert_options(case)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not net.exists():
        raise GenerateError(f"seed {seed}: netconvert failed: {(r.stderr or r.stdout).strip()[-600:]}")
    (out / "routes.rou.xml").write_text(routes_xml(case))
    info = {"seed": seed, "description": case.describe(), "net": str(net), "routes": str(out / "routes.rou.xml"),
            "duration_s": duration_s, "netconvert": cmd[1:], "case": _jsonable(case)}
    (out / "case.json").write_text(json.dumps(info, indent=1))
    return info


def traits(case: Case) -> dict[str, str]:
    """What ``--where`` can select a case by (``roadside sim bench --suite N --where KEY=VALUE``)."""
    def lane_kind(main: bool) -> str:
        kinds = {lg.far_lane for lg in case.legs if lg.main == main}
        return "shared" if "shared" in kinds else "exclusive"
    return {"legs": str(len(case.legs)), "lefts": case.left_mode, "hand": "left" if case.lefthand else "right",
            "turnarounds": "on" if case.turnarounds else "off", "pattern": case.pattern, "mix": case.mix,
            "main_lanes": str(next(lg.through_lanes for lg in case.legs if lg.main)),
            "main_far_lane": lane_kind(True), "side_far_lane": lane_kind(False),
            "free_turns": str(sum(lg.kerb_lane == "free" for lg in case.legs)),
            "crossings": str(sum(lg.crossing for lg in case.legs))}


TRAITS = ("legs", "lefts", "hand", "turnarounds", "pattern", "mix", "main_lanes", "main_far_lane", "side_far_lane",
          "free_turns", "crossings")


def parse_where(items: list[str] | None) -> dict[str, set[str]]:
    """``KEY=VALUE[,VALUE...]`` conditions (all must hold; a condition's values are alternatives)."""
    where: dict[str, set[str]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise GenerateError(f"--where {item!r}: expected KEY=VALUE[,VALUE...] (keys: {', '.join(TRAITS)})")
        if key not in TRAITS:
            raise GenerateError(f"--where {item!r}: unknown key {key!r} (keys: {', '.join(TRAITS)})")
        where.setdefault(key, set()).update(v.strip() for v in value.split(",") if v.strip())
    return where


def describe_where(where: dict[str, set[str]]) -> str:
    return " ".join(f"{k}={','.join(sorted(v))}" for k, v in where.items())


def pick_seeds(n: int, first_seed: int, where: dict[str, set[str]] | None = None, lefthand: bool | None = None,
               search: int | None = None) -> list[int]:
    """The first ``n`` seeds from ``first_seed`` on whose case matches ``where`` (all of them without it). A case
    is drawn without building it, so this is cheap; at most ``search`` seeds (default 200 per case, at least
    2000) are looked at."""
    if not where:
        return list(range(first_seed, first_seed + n))
    limit = search if search is not None else max(2000, 200 * n)
    seeds = []
    for seed in range(first_seed, first_seed + limit):
        t = traits(draw(seed, lefthand))
        if all(t[k] in vs for k, vs in where.items()):
            seeds.append(seed)
            if len(seeds) == n:
                return seeds
    raise GenerateError(f"--where {describe_where(where)}: only {len(seeds)} of {n} case(s) match in seeds {first_seed}-"
                        f"{first_seed + limit - 1}")


def _jsonable(case: Case) -> dict:
    d = asdict(case)
    d["demand_vph"] = {str(k): v for k, v in case.demand_vph.items()}
    d["shares"] = {str(k): {str(a): round(b, 3) for a, b in v.items()} for k, v in case.shares.items()}
    return d
