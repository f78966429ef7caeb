"""Deriving the controller's model from SUMO traffic-light programs."""
from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("libsumo", reason="SUMO is not installed (pip install 'roadside[sim]')")

from roadside.controller.sim.scenarios import build_net, get_scenario, netconvert_binary  # noqa: E402
from roadside.controller.sim.tls import NetworkError, derive  # noqa: E402


def program(net_file):
    tl = ET.parse(net_file).getroot().find("tlLogic")
    return [(p.get("state"), float(p.get("duration"))) for p in tl.findall("phase")]


def test_four_leg_with_crossings():
    net = build_net(get_scenario("pedestrians"))
    d = derive(str(net))
    inter = d.intersection
    kinds = {p.id: p.kind for p in inter.phases.values()}
    assert sorted(k for k in kinds.values()) == ["pedestrian"] * 4 + ["vehicle"] * 4
    assert not inter.conflicts("N2C", "S2C") and inter.conflicts("N2C", "E2C")
    # every stage's fixed green is the program's green time of that stage (incl. its pedestrian clearance)
    states = program(net)
    greens = [dur for s, dur in states if "y" not in s]
    assert sum(d.config.timing.fixed.greens.values()) == pytest.approx(sum(greens))
    # each pedestrian phase is compatible with exactly the vehicle phases that run beside it in the program
    for pid, idxs in d.phase_links.items():
        if kinds[pid] != "pedestrian":
            continue
        crossing = idxs[0]
        beside = {d.link_phase[i] for s, _ in states for i, c in enumerate(s)
                  if s[crossing] in "Gg" and c in "Gg" and i in d.link_phase}
        compatible = {q for q in kinds if q != pid and not inter.conflicts(pid, q)}
        assert compatible == beside - {pid}
    # the state string reproduces the program's first phase when its phases are green
    first_state = states[0][0]
    signals = {p: "green" if any(first_state[i] in "Gg" for i in d.phase_links[p]) else "red" for p in kinds}
    assert d.state_string(signals, [d.stages[0].id]) == first_state


def test_t_junction_network_of_a_user(tmp_path):
    (tmp_path / "t.nod.xml").write_text(
        '<nodes><node id="J" x="0" y="0" type="traffic_light"/><node id="A" x="-200" y="0"/>'
        '<node id="B" x="200" y="0"/><node id="C" x="0" y="-150"/></nodes>')
    (tmp_path / "t.edg.xml").write_text(
        '<edges><edge id="AJ" from="A" to="J" numLanes="1" speed="13.9"/><edge id="JA" from="J" to="A" numLanes="1" speed="13.9"/>'
        '<edge id="BJ" from="B" to="J" numLanes="1" speed="13.9"/><edge id="JB" from="J" to="B" numLanes="1" speed="13.9"/>'
        '<edge id="CJ" from="C" to="J" numLanes="1" speed="11"/><edge id="JC" from="J" to="C" numLanes="1" speed="11"/></edges>')
    net = tmp_path / "t.net.xml"
    subprocess.run([netconvert_binary(), "-n", str(tmp_path / "t.nod.xml"), "-e", str(tmp_path / "t.edg.xml"),
                    "-o", str(net), "--no-turnarounds"], check=True, capture_output=True)
    d = derive(str(net))
    assert len(d.stages) >= 2
    assert {"AJ", "BJ", "CJ"} <= {p.id for p in d.config.intersection.phases}
    with pytest.raises(NetworkError, match="no traffic light 'nope'"):
        derive(str(net), "nope")


def test_network_without_traffic_light_is_refused(tmp_path):
    (tmp_path / "n.nod.xml").write_text('<nodes><node id="a" x="0" y="0"/><node id="b" x="100" y="0"/></nodes>')
    (tmp_path / "n.edg.xml").write_text('<edges><edge id="ab" from="a" to="b"/></edges>')
    net = tmp_path / "n.net.xml"
    subprocess.run([netconvert_binary(), "-n", str(tmp_path / "n.nod.xml"), "-e", str(tmp_path / "n.edg.xml"),
                    "-o", str(net)], check=True, capture_output=True)
    with pytest.raises(NetworkError, match="0 traffic lights"):
        derive(str(net))
