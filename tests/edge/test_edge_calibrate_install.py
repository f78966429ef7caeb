"""A fresh box set up through the calibration page alone, in headless Debian Chromium against the real
service (a real broker, the small real model, a shared clip and then a local RTSP camera): the site file has
no camera; the installer probes a source, adds the camera (it starts without a restart), draws a line on its
live frame and saves (the operator's console follows); the heat map of the tracks shows under the line; a
manual count of the live camera is stored beside the box's own count over the same seconds; the camera moves
to an RTSP stream with a password (a source whose frame does not fit the lines is refused, with the reason
next to the form; the password is masked wherever reading needs no token), and is removed. The site file
keeps its comments and key order through every save."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from helpers.browser import chromium_page
from helpers.broker import Mosquitto, Recorder, free_port, wait_for
from helpers.data import VIDEOS
from helpers.edge_service import SMALL_MODEL, RtspCamera, ServiceProcess
from test_edge_calibrate import SHOTS, call, drag

TOKEN = "install-token-0123456789"
PREFIX = "roadside/fresh/edge-1"

#: a fresh box's site file, as an installer writes it by hand: comments, no camera yet
FRESH_SITE = """\
# Site file of a fresh box: the cameras are added on the calibration page.
site: fresh          # the intersection
device: edge-1
state_dir: {state}
mqtt:
  host: 127.0.0.1    # the broker on this box
  port: {broker}
  reconnect_min_s: 0.2
api:
  host: 127.0.0.1
  port: {api}
  token: {token}     # set here, by whoever has a shell on the box; the page cannot set it
detector:
  model: {model}
  threads: 1
counting:
  bins_s: [1]
sources: {{backoff_min_s: 0.2, backoff_max_s: 2.0}}
# the controller's phases, for lines that feed one
phases: [p1, p2]
cameras: []          # none yet
health_interval_s: 2
"""


def _comments(text: str) -> list[str]:
    return [m.group(0).strip() for m in re.finditer(r"#[^\n]*", text)]


def _top_keys(text: str) -> list[str]:
    return list(yaml.safe_load(text))


@pytest.fixture()
def fresh(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    rec = Recorder(broker.port, PREFIX, "install-test-recorder")
    api = free_port()
    conf = tmp_path / "site.yaml"
    conf.write_text(FRESH_SITE.format(state=tmp_path / "state", broker=broker.port, api=api, token=TOKEN,
                                      model=SMALL_MODEL))
    svc = ServiceProcess(conf, api, tmp_path / "service.log")
    rtsp = RtspCamera(VIDEOS / "intersection_4way.mp4", tmp_path)
    try:
        rec.wait_connected()
        svc.start()
        yield svc, rec, conf, rtsp
    finally:
        svc.stop()
        rtsp.stop()
        rec.close()
        broker.stop()


def _cam_status(page, text: str) -> str:
    """The camera form's status once it says ``text`` (what it said instead, when it does not)."""
    from playwright.sync_api import TimeoutError as PageTimeout

    try:
        page.wait_for_function(f"document.getElementById('cam-status').textContent.includes({json.dumps(text)})",
                               timeout=30000)
    except PageTimeout:
        raise AssertionError(f"the camera form never said {text!r}: {page.locator('#cam-status').inner_text()!r} "
                             f"{page.locator('#cam-errors').inner_text()!r}") from None
    return page.locator("#cam-status").inner_text()


def test_a_fresh_box_is_set_up_through_the_page_alone(fresh):
    svc, rec, conf, rtsp = fresh
    port = svc.api_port
    original = conf.read_text()
    pid = svc.proc.pid
    assert svc.status()["cameras"] == {}
    clip = str(VIDEOS / "intersection_4way.mp4")
    body = {"id": "north", "source": clip, "loop": True}
    # nothing about the cameras changes without the token
    assert call(port, "POST", "/api/calibrate/cameras", body)[0] == 401
    assert call(port, "POST", "/api/calibrate/probe", body)[0] == 401
    assert conf.read_text() == original
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as (page, errors):
        page.on("dialog", lambda d: d.accept())
        page.goto(f"http://127.0.0.1:{port}/calibrate")
        page.wait_for_function("document.getElementById('status').textContent.includes('no camera yet')")
        assert page.locator("#camera-panel").get_attribute("open") is not None

        page.locator("#token").fill(TOKEN)
        page.locator("#by").fill("installer test")
        # a source that does not exist: the reason next to the form, nothing saved
        page.locator("#cam-id").fill("north")
        page.locator("#cam-source").fill(str(VIDEOS / "no_such_clip.mp4"))
        page.locator("#cam-add").click()
        _cam_status(page, "not done")
        assert "source: no such file" in page.locator("#cam-errors").inner_text()
        assert conf.read_text() == original
        # the clip: probed, then added; the camera starts without a restart and its frame shows
        page.locator("#cam-source").fill(clip)
        page.locator("#cam-loop").check()
        page.locator("#cam-probe").click()
        assert "640x480" in _cam_status(page, "the source opens")
        page.screenshot(path=str(SHOTS / "09_fresh_box_probed.png"))
        page.locator("#cam-add").click()
        _cam_status(page, "added and started")
        page.wait_for_function("state.camera === 'north' && state.frameOk", timeout=30000)
        assert svc.proc.pid == pid and svc.proc.poll() is None
        assert "north" in svc.status()["cameras"]
        page.screenshot(path=str(SHOTS / "10_camera_added.png"))

        # draw a line on its live frame and save
        page.keyboard.press("l")
        drag(page, (420, 420), (600, 250), steps=10)
        page.keyboard.press("Control+s")
        page.wait_for_function("document.getElementById('status').textContent.includes('saved and applied')")
        saved = conf.read_text()
        site = yaml.safe_load(saved)
        assert site["cameras"][0]["id"] == "north" and site["cameras"][0]["source"] == clip
        assert [ln["id"] for ln in site["cameras"][0]["lines"]] == ["L1"]
        # the file keeps every comment, and its keys their order
        assert _comments(saved) == _comments(original), saved
        assert _top_keys(saved) == _top_keys(original)
        wait_for(lambda: any("L1" in m["lines"] for m in rec.payloads("/north/counts")), 30,
                 "counts of the new camera on the drawn line")
        # the operator's console follows: the new camera, its line, its bins of the last hour
        console = wait_for(lambda: (doc := call(port, "GET", "/api/console")[1])["counts"].get("north", {})
                           .get("bins") and doc, 10, "the new camera's bins on the console")
        assert console["cameras"]["north"]["lines"] == ["L1"] and console["counts"]["north"]["interval_s"] == 1

        # the heat map of the tracks, under the line
        page.locator("#heat").check()
        live = wait_for(lambda: (lv := call(port, "GET", "/api/calibrate/cameras/north/live?heat_minutes=5")[1])
                        ["heatmap"]["tracks"] >= 3 and lv, 60, "tracks in the heat map")
        heat = live["heatmap"]
        cells = {(c, r): n for c, r, n in heat["cells"]}
        assert heat["max"] == max(cells.values()) <= heat["tracks"]
        for p in live["paths"]:  # every point of every recent path lies in a square of the map
            for x, y in p["points"]:
                assert (int(x // heat["cell_px"]), int(y // heat["cell_px"])) in cells
        page.wait_for_timeout(2500)  # the page's next poll with the paths
        page.screenshot(path=str(SHOTS / "11_heat_map.png"))

        # a manual count of the live camera for a few seconds, beside what the box counted meanwhile
        def running_total(direction: str) -> int:
            got = call(port, "GET", "/api/calibrate/cameras/north/live?paths=false")[1]["counts"].get("L1", {})
            return sum(got.get(direction, {}).values())

        before = {d: running_total(d) for d in ("forward", "backward")}
        page.goto(f"http://127.0.0.1:{port}/calibrate/count?camera=north")
        page.wait_for_function("document.getElementById('camera').value === 'north'")
        page.locator("#token").fill(TOKEN)
        page.locator("#by").fill("installer test")
        page.locator("#live-minutes").fill("0.15")  # 9 s
        page.locator("#live-start").click()
        page.wait_for_function("document.getElementById('status').textContent.includes('counting the live camera')")
        page.locator("#view").click()  # keys go to the page, not to an input
        for key in ("1", "1", "s", "q"):  # L1 forward twice (car), then a bus, backward
            page.keyboard.press(key)
            page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / "12_live_count.png"))
        page.wait_for_function("document.getElementById('status').textContent.includes('counted live')",
                               timeout=30000)
        after = {d: running_total(d) for d in ("forward", "backward")}
        (doc_path,) = (conf.parent / "state" / "manual_counts").glob("live-north-*.json")
        doc = json.loads(doc_path.read_text())
        assert doc["complete"] and 8.5 <= doc["duration_s"] <= 15 and doc["camera"] == "north"
        assert doc["totals"] == {"L1": {"forward": {"total": 2, "by_class": {"car": 2}},
                                        "backward": {"total": 1, "by_class": {"bus": 1}}}}
        assert [e["class"] for e in doc["events"]] == ["car", "car", "bus"]
        for d in ("forward", "backward"):  # the box's own count over the same seconds
            assert 0 <= doc["counted"]["L1"][d]["total"] <= after[d] - before[d]
        assert page.locator("#live-L1-forward .you").inner_text() == "2"
        assert page.locator("#live-L1-forward .box").inner_text() == str(doc["counted"]["L1"]["forward"]["total"])
        page.screenshot(path=str(SHOTS / "13_live_count_saved.png"))
        page.goto(f"http://127.0.0.1:{port}/calibrate?camera=north")
        page.wait_for_function("state.camera === 'north' && state.frameOk", timeout=30000)
        page.locator("#token").fill(TOKEN)
        page.locator("#by").fill("installer test")
        page.locator("#camera-panel summary").click()  # closed once the box has a camera
        assert page.locator("#cam-source").input_value() == clip  # the camera's settings, as saved

        # a source whose frame does not fit the line: refused, with the reason
        page.locator("#cam-source").fill(str(VIDEOS / "freeway_overpass.mp4"))
        page.locator("#cam-change").click()
        _cam_status(page, "not done")
        assert "outside the 640x360 frame" in page.locator("#cam-errors").inner_text()
        assert yaml.safe_load(conf.read_text())["cameras"][0]["source"] == clip
        # a real stream: the camera restarts on it; its lines stay; its counts' seq goes on
        rtsp.start()
        url = rtsp.url.replace("rtsp://", "rtsp://installer:cam-secret@")  # a camera with a password
        page.locator("#cam-source").fill(url)
        page.locator("#cam-loop").uncheck()
        page.locator("#cam-transport").select_option("udp")  # rtsp-server-perl: RTP over UDP only
        page.locator("#cam-change").click()
        _cam_status(page, "restarted on its new source")
        cam = yaml.safe_load(conf.read_text())["cameras"][0]
        assert cam["source"] == url and cam["rtsp_transport"] == "udp" and "loop" not in cam
        # read without the token, the password is masked: in the camera's settings and in the change log
        shown = call(port, "GET", "/api/calibrate/cameras/north")[1]["source"]["source"]
        assert shown == url.replace("cam-secret", "**********")
        assert "cam-secret" not in json.dumps(call(port, "GET", "/api/calibrate/changes")[1])
        page.wait_for_function(f"document.getElementById('cam-source').value === {json.dumps(shown)}")
        page.locator("#cam-change").click()  # the masked source sent back: the camera keeps its real one
        _cam_status(page, "restarted on its new source")
        assert yaml.safe_load(conf.read_text())["cameras"][0]["source"] == url
        assert [ln["id"] for ln in cam["lines"]] == ["L1"]
        wait_for(lambda: svc.status()["cameras"]["north"]["source_state"] == "live", 30, "the RTSP camera live")
        n_before = len(rec.payloads("/north/counts"))
        wait_for(lambda: len(rec.payloads("/north/counts")) > n_before + 1, 30, "counts from the stream")
        seqs = [m["seq"] for m in rec.payloads("/north/counts")]
        assert seqs == list(range(len(seqs)))  # no seq lost or repeated across the restart
        assert _comments(conf.read_text()) == _comments(original)

        # removed: stopped, out of the file, the page back to "no camera yet"
        page.locator("#cam-remove").click()
        _cam_status(page, "removed and stopped")
        page.wait_for_function("document.getElementById('status').textContent.includes('no camera yet')")
        assert yaml.safe_load(conf.read_text())["cameras"] == []
        assert svc.status()["cameras"] == {} and svc.proc.pid == pid
        assert not errors, errors
    actions = [c["action"] for c in call(port, "GET", "/api/calibrate/changes")[1]]
    assert actions == ["camera added", "layout", "camera source changed", "camera source changed", "camera removed"]
    assert _comments(conf.read_text()) == _comments(original)
