"""Ring-and-barrier (NEMA dual ring) operation derived from a SUMO traffic light (``derive(...,
rings="dual")``), where the program allows it.

Which movements may run together is read from the junction's own right-of-way logic (the ``foes`` of its
``<request>`` rows), not from the program: a dual ring shows combinations the program never does (a left
beside the through of its own approach). From that:

* two vehicle phases are **compatible** when no link of one is a foe of a link of the other; a pedestrian
  phase is compatible with another phase when they are not foes or the program shows them together
  (turning vehicles yield to the crossing);
* the **barrier groups** are the connected parts of the compatibility among vehicle phases (all phases of
  different groups conflict), ordered by the first program stage that serves them;
* within a group, the **rings** are the connected parts of the conflicts (phases of different parts are
  all compatible); two parts give the two rings, more are merged into the shorter ring, one leaves the
  other ring without a phase in that group. Each ring serves its phases in the program's order;
* a pedestrian phase runs **beside** the first vehicle phase (program order) it is green with whose group
  partners in the other ring it is compatible with;
* the **fixed plan** (the fail-safe) gives each ring phase the green its program stage has: the program
  itself, run ring by ring.

It is not possible (a :class:`NetworkError` says why) when the program shows vehicle movements together
with vehicle foes they yield to (permissive lefts), which only a stage-based plan can show, when there are fewer than two barrier groups, or when a
link's right-of-way cannot be read.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from roadside.core.errors import RoadsideError

if TYPE_CHECKING:  # annotations only
    from roadside.controller.sim.tls import Link, Stage


class RingDerivationError(RoadsideError):
    """The traffic light's program cannot be run as a dual ring."""


def link_foes(net, tls) -> set[frozenset[int]]:
    """Pairs of the traffic light's link indices that are foes in the junction's right-of-way logic."""
    by_index: dict[int, tuple[object, int]] = {}
    for idx, conns in tls.getLinks().items():
        lane_in, lane_out, _ = conns[0]
        node = lane_in.getEdge().getToNode()
        conn = next((c for c in lane_in.getOutgoing() if c.getToLane() is lane_out), None)
        j = node.getLinkIndex(conn) if conn is not None else -1
        try:
            if j < 0:
                raise KeyError(j)
            node.areFoes(j, j)  # the junction has a right-of-way row for it
        except (KeyError, IndexError):
            raise RingDerivationError(f"traffic light {tls.getID()!r}: link {idx} has no right-of-way row in the "
                                      "junction; dual ring not derived") from None
        by_index[idx] = (node, j)
    out: set[frozenset[int]] = set()
    for a, (na, ja) in by_index.items():
        for b, (nb, jb) in by_index.items():
            if a < b and na is nb and (na.areFoes(ja, jb) or na.areFoes(jb, ja)):
                out.add(frozenset((a, b)))
    return out


def _parts(nodes: list[str], linked) -> list[list[str]]:
    """Connected parts of a graph given by ``linked(a, b)``, in the order of ``nodes``."""
    parts: list[list[str]] = []
    seen: set[str] = set()
    for n in nodes:
        if n in seen:
            continue
        part, todo = [], [n]
        seen.add(n)
        while todo:
            x = todo.pop()
            part.append(x)
            for y in nodes:
                if y not in seen and linked(x, y):
                    seen.add(y)
                    todo.append(y)
        parts.append(sorted(part, key=nodes.index))
    return parts


def dual_ring_section(tls_id: str, phase_links: dict[str, list[int]], phase_kind: dict[str, str],
                      phase_pattern: dict[str, tuple[bool, ...]], stages: list[Stage], links: dict[int, Link],
                      foes: set[frozenset[int]]) -> tuple[dict, list[list[str]], dict[str, float]]:
    """``(dual_ring, compatible, fixed greens per ring phase)`` for the derived configuration."""
    vehicles = [p for p in phase_links if phase_kind[p] == "vehicle"]

    def foe(a: str, b: str) -> bool:
        return any(frozenset((i, j)) in foes for i in phase_links[a] for j in phase_links[b])

    def together(a: str, b: str) -> bool:
        return any(x and y for x, y in zip(phase_pattern[a], phase_pattern[b]))

    # a vehicle phase shown with a vehicle foe yields to it (a permissive left): only stages can show that
    permissive = sorted({a for a in vehicles for b in vehicles if a != b and together(a, b) and foe(a, b)})
    if permissive:
        raise RingDerivationError(f"traffic light {tls_id!r}: phase(s) {permissive} are green with vehicle "
                                  "movements they yield to (permissive) in the program; dual ring not derived")

    first = {p: phase_pattern[p].index(True) for p in phase_links}
    order = sorted(vehicles, key=lambda p: (first[p], vehicles.index(p)))
    groups = _parts(order, lambda a, b: not foe(a, b))
    if len(groups) < 2:
        raise RingDerivationError(f"traffic light {tls_id!r}: the vehicle phases form {len(groups)} barrier group; "
                                  "dual ring not derived")
    rings: list[list[str]] = [[], []]
    barriers: list[list[str]] = []
    for group in groups:
        parts = _parts(group, foe)
        parts.sort(key=len, reverse=True)
        two: list[list[str]] = [parts[0], parts[1] if len(parts) > 1 else []]
        for extra in parts[2:]:
            min(two, key=len).extend(extra)
        for r in (0, 1):
            rings[r].extend(sorted(two[r], key=order.index))
        barriers.append(list(group))
    compatible = [[a, b] for i, a in enumerate(vehicles) for b in vehicles[i + 1:] if not foe(a, b)]
    walk_with: dict[str, str] = {}
    group_of = {p: g for g, members in enumerate(barriers) for p in members}
    ring_of = {p: r for r, ring in enumerate(rings) for p in ring}
    peds = [p for p in phase_links if phase_kind[p] == "pedestrian"]
    compatible += [[a, b] for i, a in enumerate(peds) for b in peds[i + 1:] if together(a, b) or not foe(a, b)]
    for q in peds:
        ok = [v for v in order if together(q, v) or not foe(q, v)]
        compatible += [[q, v] for v in ok]
        host = next((v for v in order if together(q, v) and v in ok and all(
            w in ok for w in barriers[group_of[v]] if ring_of[w] != ring_of[v])), None)
        if host is None:
            raise RingDerivationError(f"traffic light {tls_id!r}: crossing phase {q!r} has no vehicle phase to run "
                                      "beside in a dual ring; dual ring not derived")
        walk_with[q] = host
    greens = {p: sum(st.duration for k, st in enumerate(stages) if phase_pattern[p][k]) for p in vehicles}
    return {"rings": rings, "barriers": barriers, "walk_with": walk_with}, compatible, greens
