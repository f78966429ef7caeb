"""Derive the controller's intersection model from any SUMO traffic light with an ordinary
green/yellow/red program.

* **Stages** are the program's green phases: a run of phases without yellow, split where the set of green
  vehicle links changes (a phase that only turns crossings red is the pedestrian clearance of the same
  stage, as netconvert builds it).
* **Phases** (signal groups) are the links with the same green pattern across the stages, split per
  approach edge (vehicles) or per crossing (pedestrians), so that each phase has its own detectors, flow
  and saturation flow. A link protected (``G``) in one stage and yielding (``g``) in another (a
  protected-permissive left) is a phase of its own even where it is green in the same stages as the through
  movement (a T-junction's main road), or its protected stage would serve nothing new.
* A link green (``G``/``g``) in *every* phase of the program, transitions included (a free turn), is a
  **continuous green**: it is not controlled at all (no phase, no timings, no monitor rule) and always
  shows its program's green.
* Two phases are **compatible** when some stage shows both green. A phase whose links are all ``g`` in a
  stage is *permissive* there (it yields).
* A lane that feeds several phases (a shared through-and-left lane of a protected-permissive left) feeds
  each with its share of the lane's vehicles (``share`` = 1 / phases on the lane); saturation flow per lane
  is 1800 veh/h, lowered for lanes that carry a permissive-only movement (yielding to oncoming traffic or
  pedestrians): x0.5 for a lane of such movements alone, x0.75 for a lane shared with other movements.
* Change intervals come from the ITE formulas (approach lane speed, junction size), or, with
  ``clearances="program"``, from the program itself (:func:`program_intervals`: the yellow, all-red and
  pedestrian clearance the junction already runs); the fixed plan is the program's own green durations.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from roadside.controller.clearance import YELLOW_MIN_S, ite_clearance, pedestrian_clearance_s
from roadside.controller.config import ControllerConfig, parse_controller_config
from roadside.controller.intersection import Intersection
from roadside.controller.sim.program_rings import RingDerivationError, dual_ring_section, link_foes
from roadside.core.errors import RoadsideError

SIM_DEVICE = "sumo"
QUEUE_M = 100.0  # length of the queue zones the simulated camera reports (see feed.py)
MIN_GREEN_S = 5.0
MAX_GREEN_S = 60.0
#: Passage (gap) time of the derived phases: their presence zones are the last 25 m of each lane (feed.py), so
#: a zone empty for 1 s is a time headway of about 1 + (25 m + a car) / speed, 3.2 s at 50 km/h: SUMO actuated's
#: max-gap of 3 s on its detectors (programs.py), like for like. (It was 2 s, a headway of about 4.2 s: greens
#: ran on thin traffic. Tuning seeds 201-260, actuated: 45 cases better and 15 worse with the ITE intervals, 40 and
#: 17 with the program's; every shipped scenario better, perfect, degraded and outage detection.)
PASSAGE_S = 1.0
WALK_S = 7.0
#: where our change intervals come from: the ITE formulas (default) or the junction's own program
CLEARANCES = ("ite", "program")
#: saturation flow factors of lanes with permissive-only movements (yielding to oncoming traffic or
#: pedestrians): a lane of such movements alone, and one shared with other movements
PERMISSIVE_ONLY_LANE = 0.5
PERMISSIVE_SHARED_LANE = 0.75


class NetworkError(RoadsideError):
    """The SUMO network cannot be controlled (no or unusual traffic light)."""


def ident(text: str) -> str:
    """A SUMO id as a configuration identifier (letters, digits, _ . -; starts with a letter or digit)."""
    s = re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip("_.-") or "x"
    return s[:64]


@dataclass(frozen=True)
class Link:
    index: int
    from_lane: str
    from_edge: str
    crossing: str | None  # crossing edge id for pedestrian links
    length: float  # crossing length (m) for pedestrian links
    speed: float  # approach lane speed (m/s)
    lane_length: float  # approach lane length (m)
    #: length of the movement's path through the junction (m; 0 when unknown)
    crossing_m: float = 0.0


@dataclass
class Stage:
    id: str
    green: frozenset[int]  # link indices green (vehicles and crossings)
    duration: float  # program green time including its pedestrian clearance sub-phase
    chars: dict[int, str]  # 'G' or 'g' per green link


@dataclass
class DerivedTLS:
    tls_id: str
    program_id: str
    n_links: int
    links: dict[int, Link]
    stages: list[Stage]
    phase_links: dict[str, list[int]]
    phase_kind: dict[str, str]
    link_phase: dict[int, str]
    original_states: list[tuple[str, float]]
    config: ControllerConfig
    #: vehicle phase -> incoming lanes (detectors)
    phase_lanes: dict[str, list[str]] = field(default_factory=dict)
    #: pedestrian phase -> crossing edge
    phase_crossing: dict[str, str] = field(default_factory=dict)
    #: continuous greens: link index -> the green it always shows ('G' or 'g')
    continuous: dict[int, str] = field(default_factory=dict)
    #: dual ring only: pairs of link indices that are foes in the junction's right-of-way logic
    foes: set[frozenset[int]] | None = None

    @cached_property
    def intersection(self) -> Intersection:
        """The derived configuration's intersection (timings, conflicts, stages)."""
        return Intersection.of(self.config)

    def char(self, link: int, stage_ids: list[str | None]) -> str:
        for sid in stage_ids:
            for st in self.stages:
                if st.id == sid and link in st.chars:
                    return st.chars[link]
        for st in self.stages:
            if link in st.chars:
                return st.chars[link]
        return "G"

    def state_string(self, signals: dict[str, str], stages: list[str | None]) -> str:
        out = []
        for i in range(self.n_links):
            if i in self.continuous:
                out.append(self.continuous[i])
                continue
            pid = self.link_phase.get(i)
            sig = signals.get(pid, "red") if pid else "red"
            if sig == "green":
                out.append(self.char(i, stages))
            elif sig == "yellow" and self.phase_kind[pid] == "vehicle":
                out.append("y")
            else:
                out.append("r")
        return "".join(out)


def derive(net_file: str, tls_id: str | None = None, site: str = "sim", policy: str = "actuated",
           extra: dict | None = None, clearances: str = "ite", rings: str = "single") -> DerivedTLS:
    """The controller model of a SUMO traffic light. ``clearances``: ``ite`` (the safe default: ITE yellow
    and all-red, pedestrian clearance at 1.07 m/s) or ``program`` (the intervals the junction's program
    already runs, :func:`program_intervals`; never below ITE's 3 s minimum yellow). ``rings``:
    ``single`` (the program's stages) or ``dual`` (ring-and-barrier, program_rings.py; a
    :class:`NetworkError` when the program does not allow it)."""
    if clearances not in CLEARANCES:
        raise NetworkError(f"clearances: {clearances!r} is not one of {', '.join(CLEARANCES)}")
    import sumolib

    try:
        net = sumolib.net.readNet(net_file, withPrograms=True, withPedestrianConnections=True, withInternal=True)
    except Exception as e:  # sumolib raises plain exceptions for unreadable files
        raise NetworkError(f"{net_file}: cannot read the SUMO network: {e}") from None
    all_tls = [t.getID() for t in net.getTrafficLights()]
    if tls_id is None:
        if len(all_tls) != 1:
            raise NetworkError(f"{net_file}: {len(all_tls)} traffic lights ({', '.join(all_tls) or 'none'}); "
                               "name one with --tls")
        tls_id = all_tls[0]
    if tls_id not in all_tls:
        raise NetworkError(f"{net_file}: no traffic light {tls_id!r} (there are: {', '.join(all_tls) or 'none'})")
    tls = net.getTLS(tls_id)
    programs = tls.getPrograms()
    if not programs:
        raise NetworkError(f"{net_file}: traffic light {tls_id!r} has no program")
    prog_id = sorted(programs)[0]
    states = [(ph.state, float(ph.duration)) for ph in programs[prog_id].getPhases()]
    n = len(states[0][0])
    bad = {c for s, _ in states for c in s} - set("GgyYrRu")
    if bad:
        raise NetworkError(f"traffic light {tls_id!r}: program uses signal states {sorted(bad)}; only ordinary "
                           "green/yellow/red programs can be controlled")

    links: dict[int, Link] = {}
    for idx, conns in tls.getLinks().items():
        lane_in, lane_out, _ = conns[0]
        edge = lane_in.getEdge()
        crossing = lane_out.getEdge().getID() if lane_out.getEdge().getFunction() == "crossing" else None
        via = 0.0
        if crossing is None:
            for c in lane_in.getOutgoing():
                if c.getToLane() is lane_out and c.getViaLaneID():
                    try:
                        via = net.getLane(c.getViaLaneID()).getLength()
                    except Exception:  # sumolib raises plain errors for unknown internal lanes
                        via = 0.0
        links[idx] = Link(idx, lane_in.getID(), edge.getID(), crossing,
                          lane_out.getLength() if crossing else 0.0, lane_in.getSpeed(), lane_in.getLength(), via)

    stages = _stages(states, links)
    if len(stages) < 2:
        raise NetworkError(f"traffic light {tls_id!r}: fewer than two green stages in program {prog_id!r}")
    continuous = {i: ("G" if all(s[i] == "G" for s, _ in states) else "g")
                  for i in range(n) if all(s[i] in "Gg" for s, _ in states)}
    patterns: dict[int, tuple[bool, ...]] = {}
    for i in range(n):
        pat = tuple(i in st.green for st in stages)
        if any(pat) and i in links and i not in continuous:
            patterns[i] = pat
    groups: dict[tuple, list[int]] = {}
    for i, pat in patterns.items():
        lk = links[i]
        # a link protected in one stage and yielding in another (a protected-permissive left) is its own
        # signal group even where its greens coincide with the through movement's (a T-junction's main road
        # keeps its through green in the left's protected stage): otherwise that stage serves nothing the
        # others do not, and is never chosen
        chars = tuple(st.chars.get(i) for st in stages)
        mixed = chars if "G" in chars and "g" in chars else None
        groups.setdefault((pat, mixed, lk.crossing or lk.from_edge, lk.crossing is not None), []).append(i)
    phase_links: dict[str, list[int]] = {}
    phase_kind: dict[str, str] = {}
    phase_pattern: dict[str, tuple[bool, ...]] = {}
    used: dict[str, int] = {}
    for (pat, _, owner, is_ped), idxs in sorted(groups.items(), key=lambda kv: min(kv[1])):
        base = ("ped_" if is_ped else "") + ident(owner)
        k = used.get(base, 0)
        used[base] = k + 1
        pid = base if k == 0 else f"{base}.{k}"
        phase_links[pid] = sorted(idxs)
        phase_kind[pid] = "pedestrian" if is_ped else "vehicle"
        phase_pattern[pid] = pat
    link_phase = {i: pid for pid, idxs in phase_links.items() for i in idxs}

    node = net.getNode(tls_id) if net.hasNode(tls_id) else None
    width = _junction_width(node) if node is not None else 20.0
    # lanes shared by several vehicle phases, and lanes that carry a permissive-only movement
    lane_phases: dict[str, set[str]] = {}
    for pid, idxs in phase_links.items():
        if phase_kind[pid] == "vehicle":
            for i in idxs:
                lane_phases.setdefault(links[i].from_lane, set()).add(pid)
    lane_links: dict[str, list[int]] = {}
    for i, lk in links.items():
        if lk.crossing is None and i not in continuous:
            lane_links.setdefault(lk.from_lane, []).append(i)

    def yielding(i: int) -> bool:  # 'g' wherever it is green
        return all(st.chars[i] == "g" for st in stages if i in st.chars)

    def lane_factor(lane: str) -> float:
        ys = [yielding(i) for i in lane_links.get(lane, [])]
        if not any(ys):
            return 1.0
        return PERMISSIVE_ONLY_LANE if all(ys) else PERMISSIVE_SHARED_LANE
    phases_cfg = []
    phase_lanes: dict[str, list[str]] = {}
    phase_crossing: dict[str, str] = {}
    for pid, idxs in phase_links.items():
        lks = [links[i] for i in idxs]
        if phase_kind[pid] == "pedestrian":
            crossing = lks[0].crossing or ""
            phase_crossing[pid] = crossing
            ped_clear = (pedestrian_clearance_s(max(lk.length for lk in lks)) if clearances == "ite"
                         else program_intervals(states, idxs).ped_clearance_s)
            phases_cfg.append({"id": pid, "kind": "pedestrian", "movements": [crossing], "walk": WALK_S,
                               "ped_clearance": ped_clear,
                               "detectors": {"presence": [{"camera": ident(crossing), "zone": "waiting"}]}})
            continue
        lanes = sorted({lk.from_lane for lk in lks})
        phase_lanes[pid] = lanes
        speed_kmh = max(lk.speed for lk in lks) * 3.6
        # ITE: W is the distance from the stop line to the far side of the last conflicting lane, i.e. the
        # movement's own path through the junction (the junction's size when the net has no internal lanes)
        path = max(lk.crossing_m for lk in lks)
        c = ite_clearance(min(max(speed_kmh, 10.0), 150.0), 0.0, path if path > 0 else width)
        if clearances == "program":
            prog = program_intervals(states, idxs)
            yellow, red = max(prog.yellow_s, YELLOW_MIN_S), prog.red_clearance_s
        else:
            yellow, red = c.yellow_s, c.red_clearance_s
        cam = ident(lks[0].from_edge)
        zone_m = min(QUEUE_M, min(lk.lane_length for lk in lks) - 1.0)
        share = {ln: round(1.0 / len(lane_phases[ln]), 4) for ln in lanes}
        sat = 1800.0 * sum(lane_factor(ln) for ln in lanes) / len(lanes)
        phases_cfg.append({
            "id": pid, "movements": [f"link {i}" for i in idxs], "min_green": MIN_GREEN_S, "max_green": MAX_GREEN_S,
            "passage": PASSAGE_S, "yellow": yellow,
            "red_clearance": red, "lanes": len(lanes),
            "saturation_flow_vph": round(sat, 1),
            "detectors": {"presence": [{"camera": cam, "zone": f"p_{ident(ln)}"} for ln in lanes],
                          "queue": [{"camera": cam, "zone": f"q_{ident(ln)}", "share": share[ln]} for ln in lanes],
                          "counts": [{"camera": cam, "line": f"c_{ident(ln)}", "share": share[ln]} for ln in lanes],
                          "queue_travel_s": round(zone_m / max(lks[0].speed, 1.0), 1)},
        })
    ids = list(phase_links)
    compatible = [[a, b] for i, a in enumerate(ids) for b in ids[i + 1:]
                  if any(x and y for x, y in zip(phase_pattern[a], phase_pattern[b]))]
    stage_cfg = [{"id": st.id, "phases": [p for p in ids if phase_pattern[p][k]],
                  "permissive": [p for p in ids if phase_pattern[p][k] and phase_kind[p] == "vehicle"
                                 and all(st.chars.get(i) == "g" for i in phase_links[p])]}
                 for k, st in enumerate(stages)]
    data = {
        "site": site, "device": SIM_DEVICE, "tick_s": 1.0,
        "intersection": {"phases": phases_cfg, "compatible": compatible, "stages": stage_cfg},
        "timing": {"policy": policy, "fixed": {"greens": {st.id: st.duration for st in stages}}},
        "failsafe": {"stale_after_s": 10.0, "recover_after_s": 5.0, "malformed_hold_s": 30.0},
        "detection": {"counts_interval_s": 60.0, "flow_window_s": 600.0},
        "actuator": {"kind": "mqtt"},
    }
    foes: set[frozenset[int]] | None = None
    if rings == "dual":
        try:
            foes = link_foes(net, tls)
            section, compatible, greens = dual_ring_section(tls_id, phase_links, phase_kind, phase_pattern, stages,
                                                            links, foes)
        except RingDerivationError as e:
            raise NetworkError(f"{net_file}: {e}") from None
        data["intersection"] = {"phases": phases_cfg, "compatible": compatible, "dual_ring": section}
        data["timing"]["fixed"]["greens"] = greens
    merge_settings(data, extra or {})
    cfg = parse_controller_config(data, f"derived from traffic light {tls_id!r}")
    return DerivedTLS(tls_id, prog_id, n, links, stages, phase_links, phase_kind, link_phase, states, cfg,
                      phase_lanes, phase_crossing, continuous, foes)


def merge_settings(base: dict, extra: dict) -> None:
    """``extra`` (nested settings) into ``base``, key by key."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_settings(base[k], v)
        else:
            base[k] = v


@dataclass(frozen=True)
class ProgramIntervals:
    """The change intervals of a signal group as the junction's program runs them (s)."""
    yellow_s: float
    red_clearance_s: float
    ped_clearance_s: float


def program_intervals(states: list[tuple[str, float]], idxs: list[int]) -> ProgramIntervals:
    """The change intervals of the links ``idxs`` in the program ``states`` (state string, duration), as
    the junction runs them today. After each end of these links' green: the yellow (the run of phases
    showing them ``y``), then the all-red (the phases with no green at all but the continuous ones). A
    crossing has no yellow: its clearance is the run of phases where it is red while no yellow and no new
    green has come (netconvert's pedestrian clearance). The shortest over the cycle."""
    n = len(states)
    always = {i for i in range(len(states[0][0])) if all(s[i] in "Gg" for s, _ in states)}

    def greens(s: str) -> set[int]:
        return {i for i, c in enumerate(s) if c in "Gg"} - always

    yellows, reds, peds = [], [], []
    for k in range(n):
        prev, cur = states[k - 1][0], states[k][0]
        if not any(prev[i] in "Gg" for i in idxs) or any(cur[i] in "Gg" for i in idxs):
            continue  # not the end of these links' green
        j, yellow = k, 0.0
        while j < k + n and any(states[j % n][0][i] in "yY" for i in idxs):
            yellow += states[j % n][1]
            j += 1
        if yellow > 0:
            red = 0.0
            while j < k + n and not greens(states[j % n][0]) and not any(c in "yY" for c in states[j % n][0]):
                red += states[j % n][1]
                j += 1
            yellows.append(yellow)
            reds.append(red)
            continue
        clear, was_green = 0.0, greens(prev)
        while j < k + n and greens(states[j % n][0]) <= was_green and not any(c in "yY" for c in states[j % n][0]):
            clear += states[j % n][1]
            j += 1
        peds.append(clear)
    return ProgramIntervals(min(yellows, default=0.0), min(reds, default=0.0), min(peds, default=0.0))


def _junction_width(node) -> float:
    shape = node.getShape()
    if not shape:
        return 20.0
    xs, ys = [p[0] for p in shape], [p[1] for p in shape]
    return max(max(xs) - min(xs), max(ys) - min(ys), 5.0)


def _stages(states: list[tuple[str, float]], links: dict[int, Link]) -> list[Stage]:
    def green(s: str) -> frozenset[int]:
        return frozenset(i for i, c in enumerate(s) if c in "Gg")

    def vehicles(g: frozenset[int]) -> frozenset[int]:
        return frozenset(i for i in g if i in links and links[i].crossing is None)

    # start the walk through the cycle just after a yellow (or all-red) phase, so runs are not cut in two
    start = 0
    for k, (s, _) in enumerate(states):
        if not green(s) or any(c in "yY" for c in s):
            start = (k + 1) % len(states)
    order = states[start:] + states[:start]
    stages: list[Stage] = []
    cur: Stage | None = None
    for s, dur in order:
        g = green(s)
        transitional = any(c in "yY" for c in s) or not g
        if transitional:
            cur = None
            continue
        if cur is not None and vehicles(g) == vehicles(cur.green):
            cur.green = cur.green | g
            cur.duration += dur
            continue
        cur = Stage(f"s{len(stages)}", g, dur, {i: s[i] for i in g})
        stages.append(cur)
    return stages
