"""The calibration page's edits of the site file (edge/layout_store.py) keep what a person wrote: comments,
key order, quoting and indentation; a camera's settings are checked field by field; the heat map of track
paths (edge/track_paths.py) counts each track once per square, over the window asked for; a live manual
count's `counted` is the counter's difference (edge/manual_count.py)."""
from __future__ import annotations

import re

import pytest
import yaml

from helpers.data import VIDEOS
from roadside.core.errors import ConfigError
from roadside.edge.layout_store import check_camera, remove_camera, save_camera, save_layout
from roadside.edge.manual_count import counted_between
from roadside.edge.service_config import CameraConfig, load_edge_config
from roadside.edge.track_paths import TrackPaths
from test_edge_counting import tracks

SITE = """\
# Main & 5th: the box on the north pole
site: main5     # the intersection
device: 'edge-1'
mqtt:
    host: 127.0.0.1   # the broker
phases: [p1, p2]
cameras:
    -   id: cam1
        source: {clip}   # the north camera
        loop: true
        lines:
            # where cars leave northwards
            -   id: north
                a: [330, 330]
                b: [345, 95]
        zones: []
# the end
"""


def _comments(text: str) -> list[str]:
    return [m.group(0) for m in re.finditer(r"#[^\n]*", text)]


@pytest.fixture()
def site(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(clip=VIDEOS / "intersection_4way.mp4"))
    return path


def test_saving_a_layout_keeps_the_files_comments_order_quoting_and_indentation(site):
    before = site.read_text()
    cfg = load_edge_config(site)
    saved = save_layout(site, cfg, "cam1", [{"id": "south", "a": [100, 400], "b": [500, 420], "classes": ["car"]}],
                        [{"id": "box", "polygon": [[200, 110], [560, 110], [560, 235]]}], frame_size=(640, 480),
                        by="test")
    text = site.read_text()
    assert saved.backup.read_text() == before
    # every comment in its order (the one above the replaced lines stays with their key); keys in their
    # order; quotes as written
    assert _comments(text) == _comments(before)
    assert list(yaml.safe_load(text)) == list(yaml.safe_load(before))
    assert "device: 'edge-1'" in text and "    -   id: cam1" in text  # the file's own indentation
    assert "                a: [100.0, 400.0]" in text and "classes: [car]" in text  # points inline, as written
    cam = load_edge_config(site).cameras[0]
    assert [ln.id for ln in cam.lines] == ["south"] and [z.id for z in cam.zones] == ["box"] and cam.loop
    assert saved.change["previous"] == {"lines": [{"id": "north", "a": [330, 330], "b": [345, 95]}], "zones": []}


BUS_LINE = """
            # the bus lane
            -   id: bus
                a: [10, 400]   # the kerb
                b: [200, 410]
                classes: [bus]"""


def test_an_edited_item_keeps_its_comment_and_its_unchanged_values(site):
    site.write_text(site.read_text().replace("b: [345, 95]", "b: [345, 95]" + BUS_LINE))
    cfg = load_edge_config(site)
    lines = [ln.model_dump(mode="json", exclude_none=True) for ln in cfg.cameras[0].lines]
    assert [ln["id"] for ln in lines] == ["north", "bus"]
    lines[1]["b"] = [220, 415]
    save_layout(site, cfg, "cam1", lines, [], frame_size=(640, 480), by="test")
    text = site.read_text()
    assert "# the bus lane" in text and "a: [10, 400]   # the kerb" in text and "b: [220.0, 415.0]" in text
    assert "a: [330, 330]" in text  # an unchanged value as it was written
    save_layout(site, cfg, "cam1", lines[:1], [], frame_size=(640, 480), by="test")
    assert "# the bus lane" not in site.read_text() and "# the kerb" not in site.read_text()  # gone with its line


def test_cameras_are_added_changed_and_removed_keeping_the_rest_of_the_file(site):
    before = site.read_text()
    cfg, change = save_camera(site, CameraConfig(id="cam2", source="rtsp://admin:cam-secret@10.0.0.9/s1",
                                                 rtsp_transport="tcp"), by="test")
    assert change["action"] == "camera added" and [c.id for c in cfg.cameras] == ["cam1", "cam2"]
    # the change log is read without the token: no password in it; the site file has it
    assert "cam-secret" not in str(change) and change["source"]["source"] == "rtsp://admin:**********@10.0.0.9/s1"
    assert cfg.cameras[1].source == "rtsp://admin:cam-secret@10.0.0.9/s1"
    assert _comments(site.read_text()) == _comments(before)
    cfg, change = save_camera(site, CameraConfig(id="cam1", source="other.mp4"), by="test")
    assert change["action"] == "camera source changed"
    assert change["previous"] == {"source": str(VIDEOS / "intersection_4way.mp4"), "loop": True}
    assert _comments(site.read_text()) == _comments(before)  # "# the north camera" stays beside the new source
    raw = yaml.safe_load(site.read_text())["cameras"][0]
    assert raw["source"] == "other.mp4" and "loop" not in raw and raw["lines"][0]["id"] == "north"
    assert cfg.cameras[0].source == str(site.parent / "other.mp4")  # relative to the site file, as loaded
    cfg, change = remove_camera(site, "cam2", by="test")
    assert change["previous"]["source"] == "rtsp://admin:cam-secret@10.0.0.9/s1" and [c.id for c in cfg.cameras] == ["cam1"]
    remove_camera(site, "cam1", by="test")
    assert yaml.safe_load(site.read_text())["cameras"] == [] and load_edge_config(site).cameras == []
    assert _comments(site.read_text()) == _comments(before)[:3]  # those inside the removed camera went with it


def test_a_file_that_no_longer_loads_is_not_overwritten(site):
    site.write_text(site.read_text() + "site: twice\n")
    before = site.read_text()
    with pytest.raises(ConfigError, match="site"):
        save_camera(site, CameraConfig(id="cam2", source="0"), by="test")
    assert site.read_text() == before and not site.with_name("site.yaml.bak").exists()


def test_camera_settings_are_checked_field_by_field():
    cam, problems = check_camera({"id": "bad id!", "source": "", "loop": "often", "colour": "red"})
    assert cam is None
    fields = {p["field"] for p in problems}
    assert fields == {"id", "source", "loop", "colour"}, problems
    assert all(p["text"].startswith(p["field"] + ": ") for p in problems)
    cam, problems = check_camera({"id": "north", "source": "rtsp://10.0.0.9/s1", "rtsp_transport": "udp"})
    assert problems == [] and cam.kind == "rtsp"


def test_the_heat_map_counts_each_track_once_per_square_over_the_window():
    paths = TrackPaths(end_after_s=1.0)
    t = 0.0
    for x in range(0, 101, 5):  # track 1: along y = 40, from x 0 to 100, and back over its own squares
        paths.update(t, tracks({1: (x, 40)}))
        t += 0.1
    for x in range(100, -1, -5):
        paths.update(t, tracks({1: (x, 40)}))
        t += 0.1
    t += 100
    for y in range(0, 101, 5):  # track 2, 100 s later: down x = 40, crossing track 1 in square (2, 2)
        paths.update(t, tracks({2: (40, y)}))
        t += 0.1
    paths.update(t + 2, tracks({}))  # both ended
    heat = paths.heatmap(600.0, cell_px=16)
    cells = {(c, r): n for c, r, n in heat["cells"]}
    assert heat["tracks"] == 2 and heat["max"] == 2 and cells[(2, 2)] == 2
    assert {c for c, r in cells if r == 2} == set(range(0, 7))  # x 0..100: columns 0..6, once each
    assert all(n == 1 for k, n in cells.items() if k != (2, 2))
    recent = paths.heatmap(60.0, cell_px=16)  # the last minute: track 2 alone
    assert recent["tracks"] == 1 and {c for c, r, n in recent["cells"]} == {2}


def test_counted_between_is_the_counters_difference_per_line_direction_and_class():
    start = {"L1": {"forward": {"car": 3}, "backward": {}}}
    end = {"L1": {"forward": {"car": 5, "bus": 1}, "backward": {"car": 1}}, "L2": {"forward": {"car": 2}}}
    assert counted_between(start, end) == {
        "L1": {"forward": {"total": 3, "by_class": {"bus": 1, "car": 2}}, "backward": {"total": 1, "by_class": {"car": 1}}},
        "L2": {"forward": {"total": 2, "by_class": {"car": 2}}}}
