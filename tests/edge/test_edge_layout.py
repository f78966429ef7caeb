"""The one layout validation (edge/layout.py): inside the frame, simple polygons, unique ids, references that
resolve, every problem with its item and field; the same messages from `roadside edge check`; per-item
classes honoured by the counter and the zones."""
from __future__ import annotations

import subprocess
import sys

import yaml

from helpers.data import ROOT, VIDEOS
from helpers.edge_service import SMALL_MODEL
from roadside.edge.config import CountingConfig, LineConfig, ZoneConfig
from roadside.edge.counting import LineCounter, ZoneMonitor
from roadside.edge.layout import probe_frame_size, self_intersection, validate_layout
from test_edge_counting import run_path, tracks

CATS = ["bus", "car", "truck"]


def _problems(lines=(), zones=(), **kw):
    layout = validate_layout(lines, zones, **{"frame_size": (640, 360), "categories": CATS, "phases": ["p1", "p2"], **kw})
    return {(p.kind, p.index, p.item, p.field): p for p in layout.problems}, layout


def test_a_valid_layout_has_no_problems_and_keeps_every_item():
    probs, layout = _problems(
        [{"id": "L1", "a": [10, 10], "b": [600, 300], "classes": ["car"], "phase": "p1", "approach": "north"}],
        [{"id": "Z1", "polygon": [[0, 0], [640, 0], [640, 360], [0, 360]], "phase": "p2", "movement": "left"}])
    assert probs == {} and layout.ok
    assert [ln.id for ln in layout.lines] == ["L1"] and layout.zones[0].movement == "left"


def test_each_problem_names_its_item_and_field():
    lines = [
        {"id": "L1", "a": [10, 10], "b": [700, 300]},  # b outside the 640x360 frame
        {"id": "L1", "a": [20, 20], "b": [100, 20]},  # duplicate id
        {"id": "L3", "a": [20, 20], "b": [21, 20]},  # no length
        {"id": "L4", "a": [20, 20], "b": [200, 20], "classes": ["tram"], "phase": "p9"},
        {"id": "bad id!", "a": [1, 1], "b": [50, 50]},
        {"a": [1, 1], "b": [50, 50]},  # no id at all
    ]
    zones = [
        {"id": "Z1", "polygon": [[100, 100], [300, 200], [300, 100], [100, 250]]},  # a bow tie
        {"id": "Z2", "polygon": [[10, 10], [50, 10], [50, -5]]},  # a corner above the frame
        {"id": "Z3", "polygon": [[10, 10], [50, 10], [90, 10]]},  # no area
    ]
    probs, layout = _problems(lines, zones)
    assert set(probs) == {
        ("line", 0, "L1", "b"), ("line", 1, "L1", "id"), ("line", 2, "L3", ""), ("line", 3, "L4", "classes[0]"),
        ("line", 3, "L4", "phase"), ("line", 4, "bad id!", "id"), ("line", 5, None, "id"),
        ("zone", 0, "Z1", "polygon"), ("zone", 1, "Z2", "polygon[2]"), ("zone", 2, "Z3", "polygon"),
    }
    assert "outside the 640x360 frame" in probs[("line", 0, "L1", "b")].message
    assert "already used by line #1" in probs[("line", 1, "L1", "id")].message
    assert "'tram' is not a vehicle category of the detector (bus, car, truck)" in probs[("line", 3, "L4", "classes[0]")].message
    assert "'p9' is not one of the site's phases (p1, p2)" in probs[("line", 3, "L4", "phase")].message
    assert "crosses itself: edge 0-1 meets edge 2-3" in probs[("zone", 0, "Z1", "polygon")].message
    p = probs[("zone", 1, "Z2", "polygon[2]")]
    assert p.path(0) == "cameras[0].zones[1].polygon[2]" and str(p).startswith("zone 'Z2' polygon[2]: [50.0, -5.0] is outside")
    assert p.to_json(0)["path"] == "cameras[0].zones[1].polygon[2]"
    assert [ln.id for ln in layout.lines] == []  # only the valid items are kept
    # no frame size: the frame is not checked; no phases declared: a phase is a problem that says so
    probs, _ = _problems([lines[0]], frame_size=None, phases=[])
    assert probs == {}
    probs, _ = _problems([{"id": "L", "a": [1, 1], "b": [9, 9], "phase": "p1"}], phases=[])
    assert "none are declared" in probs[("line", 0, "L", "phase")].message


def test_self_intersection_cases():
    assert self_intersection([(0, 0), (10, 0), (10, 10), (0, 10)]) is None
    assert self_intersection([(0, 0), (10, 0), (5, 5), (10, 10), (0, 10)]) is None  # concave is fine
    assert "same point" in self_intersection([(0, 0), (10, 0), (10, 10), (10, 0)])
    assert "crosses itself" in self_intersection([(0, 0), (10, 0), (0, 10), (10, 10)])
    # an edge touching a non-adjacent corner
    assert "crosses itself" in self_intersection([(0, 0), (10, 0), (10, 10), (5, 0), (0, 10)])


def test_the_site_file_refuses_unresolved_references_with_their_key_paths(tmp_path):
    from roadside.core.errors import ConfigError
    from roadside.edge.service_config import load_edge_config

    cfg = {"site": "s", "device": "d", "phases": ["ns"],
           "cameras": [{"id": "c", "source": "x.mp4", "lines": [{"id": "L", "a": [1, 1], "b": [9, 9], "phase": "ew"}],
                        "zones": [{"id": "Z", "polygon": [[0, 0], [9, 0], [9, 9]], "classes": ["lorry"]}]}]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    try:
        load_edge_config(path)
    except ConfigError as e:
        msg = str(e)
    else:
        raise AssertionError("an unknown phase and class were accepted")
    assert "cameras[0].lines[0].phase (line 'L'): 'ew' is not one of the site's phases (ns)" in msg
    assert "cameras[0].zones[0].classes[0] (zone 'Z'): 'lorry' is not a vehicle category" in msg


def test_edge_check_names_an_item_outside_the_real_clip_frame(tmp_path):
    clip = VIDEOS / "freeway_overpass.mp4"
    assert probe_frame_size(str(clip)) == (640, 360)
    cfg = {"site": "s", "device": "d", "detector": {"model": str(SMALL_MODEL)},
           "cameras": [{"id": "c", "source": str(clip), "lines": [{"id": "L1", "a": [600, 200], "b": [95, 400]}]}]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "roadside.core.cli", "edge", "check", "--config", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "cameras[0].lines[0].b (line 'L1'): [95.0, 400.0] is outside the 640x360 frame" in r.stderr


def test_per_item_classes_filter_counts_and_presence():
    counting = CountingConfig(hysteresis_px=0)
    trucks_only = LineConfig(id="T", a=(100, 100), b=(300, 100), classes=["truck"])
    every = LineConfig(id="A", a=(100, 100), b=(300, 100))
    down = [(200, y) for y in range(60, 141, 10)]
    counter = LineCounter([trucks_only, every], counting)
    car = run_path(counter, down, track_id=1)
    assert [(e.line, e.category) for e in car] == [("A", "car")]  # the car crossed T uncounted
    truck = []
    for f, p in enumerate(down):
        truck += counter.update(100 + f, tracks({2: p}, category="truck"))
    assert sorted((e.line, e.category) for e in truck) == [("A", "truck"), ("T", "truck")]
    assert counter.totals_dict()["T"]["forward"] == {"truck": 1}

    zones = ZoneMonitor([ZoneConfig(id="buses", polygon=[(0, 0), (400, 0), (400, 400), (0, 400)], classes=["bus"]),
                         ZoneConfig(id="all", polygon=[(0, 0), (400, 0), (400, 400), (0, 400)])], counting)
    zones.update(0.0, tracks({1: (200, 200)}, category="car"))
    assert zones.status["buses"].count == 0 and zones.status["all"].count == 1
    zones.update(0.1, tracks({1: (200, 200), 2: (100, 100)}, category="bus"))
    assert zones.status["buses"].count == 2  # both tracks are buses in this frame
