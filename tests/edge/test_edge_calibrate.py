"""The installer's calibration page and its API against a real running service (a real broker, a real clip
replayed as a live camera, the small real model), and the page in headless Debian Chromium (Playwright's
Python client, no browser download): save with the token only, validation item by item, the site file
written atomically with a backup, applied without a restart (config hash and counts change), the change
logged with who and when; track paths, line warnings and the preview on an unsaved layout."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from helpers.browser import chromium_page
from helpers.broker import Mosquitto, Recorder, free_port, wait_for
from helpers.data import ROOT
from helpers.edge_service import ServiceProcess, site_config

TOKEN = "calibrate-token-0123456789"
PREFIX = "roadside/test/edge-t"
#: screenshots of the browser test (the best are copied into calibration/docs/ for the walk-through)
SHOTS = Path(os.environ.get("ROADSIDE_TEST_OUT", ROOT / "out")) / "calibrate"


def call(port: int, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One service for the module: camera cam1 replays the 4-way intersection clip as a live camera."""
    tmp = tmp_path_factory.mktemp("calibrate")
    broker = Mosquitto(tmp / "broker").start()
    rec = Recorder(broker.port, PREFIX, "calibrate-test-recorder")
    api = free_port()
    conf = site_config(tmp, broker_port=broker.port, api_port=api, api={"token": TOKEN}, phases=["p1", "p2"])
    svc = ServiceProcess(conf, api, tmp / "service.log")
    try:
        rec.wait_connected()
        svc.start()
        wait_for(lambda: svc.status()["cameras"].get("cam1", {}).get("frames_processed", 0) > 30, 60,
                 "frames processed by cam1")
        yield svc, rec, conf
    finally:
        svc.stop()
        rec.close()
        broker.stop()


def counts_with(rec: Recorder, config_hash: str) -> list[dict]:
    return [m for m in rec.payloads("/cam1/counts") if m["config_hash"] == config_hash]


def current_hash(svc: ServiceProcess) -> str:
    return svc.status()["cameras"]["cam1"]["config_hash"]


def test_save_needs_the_token_validates_writes_with_a_backup_and_applies_without_a_restart(service):
    svc, rec, conf = service
    port = svc.api_port
    pid = svc.proc.pid
    before_text = conf.read_text()
    old_hash = current_hash(svc)
    wait_for(lambda: counts_with(rec, old_hash), 30, "counts with the first configuration")
    code, cam = call(port, "GET", "/api/calibrate/cameras/cam1")
    assert code == 200 and (cam["width"], cam["height"]) == (640, 480) and cam["saving"] is None
    assert cam["phases"] == ["p1", "p2"] and "car" in cam["categories"] and cam["config_hash"] == old_hash
    layout = {
        "lines": [{"id": "ew", "a": [330, 330], "b": [345, 95]},
                  {"id": "north", "a": [150, 300], "b": [450, 260], "classes": ["car", "bus"], "phase": "p1",
                   "approach": "north", "movement": "through"}],
        "zones": [{"id": "stop", "polygon": [[200, 110], [560, 110], [560, 235], [200, 235]], "phase": "p2"}],
        "by": "Ana (test)",
    }

    # without the token, or with a wrong one: refused, nothing written
    assert call(port, "PUT", "/api/calibrate/cameras/cam1/layout", layout)[0] == 401
    assert call(port, "PUT", "/api/calibrate/cameras/cam1/layout", layout, token="wrong-token-0123456789")[0] == 401
    assert call(port, "POST", "/api/calibrate/cameras/cam1/preview", layout)[0] == 401
    assert conf.read_text() == before_text

    # a bad layout: every problem with its item and field, nothing written
    bad = {"lines": [layout["lines"][0], {**layout["lines"][1], "b": [700, 260], "phase": "p7"}],
           "zones": [{"id": "stop", "polygon": [[100, 100], [300, 200], [300, 100], [100, 250]]}]}
    code, body = call(port, "PUT", "/api/calibrate/cameras/cam1/layout", bad, token=TOKEN)
    assert code == 422, body
    got = {(p["kind"], p["item"], p["field"]): p for p in body["problems"]}
    assert set(got) == {("line", "north", "b"), ("line", "north", "phase"), ("zone", "stop", "polygon")}
    assert got[("line", "north", "b")]["path"] == "cameras[0].lines[1].b"
    assert "outside the 640x480 frame" in got[("line", "north", "b")]["message"]
    code, checked = call(port, "POST", "/api/calibrate/cameras/cam1/validate", bad)  # the same without saving
    assert code == 200 and not checked["ok"] and checked["problems"] == body["problems"]
    assert conf.read_text() == before_text and current_hash(svc) == old_hash

    # the preview counts an unsaved layout on the live tracks, publishing nothing
    code, body = call(port, "POST", "/api/calibrate/cameras/cam1/preview", layout, token=TOKEN)
    assert code == 200 and body["ok"], body
    wait_for(lambda: call(port, "GET", "/api/calibrate/cameras/cam1/live")[1]["preview"] is not None, 10, "the preview")
    live = call(port, "GET", "/api/calibrate/cameras/cam1/live")[1]
    assert set(live["preview"]["counts"]) == {"ew", "north"} and set(live["preview"]["zones"]) == {"stop"}
    assert set(live["counts"]) == {"ew"} and current_hash(svc) == old_hash

    # a good layout: saved, backed up, applied, logged
    saved_from = time.time()  # the switch comes after this
    code, change = call(port, "PUT", "/api/calibrate/cameras/cam1/layout", layout, token=TOKEN)
    assert code == 200, change
    assert change["applied"] and change["by"] == "Ana (test)" and change["client"] == "127.0.0.1"
    assert change["old_config_hash"] == old_hash and change["new_config_hash"] != old_hash
    new_hash = change["new_config_hash"]
    assert Path(change["backup"]).read_text() == before_text
    saved = yaml.safe_load(conf.read_text())
    assert saved["cameras"][0]["lines"][1] == {"id": "north", "a": [150.0, 300.0], "b": [450.0, 260.0],
                                               "approach": "north", "movement": "through",
                                               "classes": ["car", "bus"], "phase": "p1"}
    assert saved["api"]["token"] == TOKEN and saved["phases"] == ["p1", "p2"]  # the rest of the file stays
    assert not list(conf.parent.glob(".site.yaml.*.tmp"))
    # the running service: same process, new configuration and hash, counts on the new lines
    assert svc.proc.poll() is None and svc.proc.pid == pid
    assert current_hash(svc) == new_hash
    code, running = call(port, "GET", "/api/config")
    assert [ln["id"] for ln in running["cameras"][0]["lines"]] == ["ew", "north"]
    wait_for(lambda: counts_with(rec, new_hash), 30, "counts with the new configuration hash")
    m = counts_with(rec, new_hash)[0]
    assert set(m["lines"]) == {"ew", "north"}
    old = counts_with(rec, old_hash)
    assert old and old[-1]["partial"] and set(old[-1]["lines"]) == {"ew"}  # the open bin closed at the switch
    # the first bin on the new layout was observed only from the switch on (even when the first frame counted
    # on it was captured before the switch), so it is partial unless the switch fell within the 1% tolerance
    first_end = datetime.fromisoformat(m["interval_start"].replace("Z", "+00:00")).timestamp() + m["interval_s"]
    assert m["observed_s"] <= first_end - saved_from + 0.002, (m, saved_from)
    assert m["partial"] == (m["observed_s"] < 0.99 * m["interval_s"])
    seqs = [x["seq"] for x in rec.payloads("/cam1/counts")]
    assert seqs == list(range(len(seqs)))  # no seq lost or repeated across the switch
    code, changes = call(port, "GET", "/api/calibrate/changes")
    assert changes[-1]["by"] == "Ana (test)" and changes[-1]["new_config_hash"] == new_hash and changes[-1]["time"]
    log = (conf.parent / "state" / "layout_changes.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["previous"]["lines"] == [{"id": "ew", "a": [330, 330], "b": [345, 95]}]
    assert "layout saved by Ana (test)" in svc.log()

    # the overlay: recent track paths, and a verdict per line
    live = wait_for(lambda: (lv := call(port, "GET", "/api/calibrate/cameras/cam1/live")[1])["tracks"] and lv, 10,
                    "a frame with tracks")
    assert live["config_hash"] == new_hash and live["paths"]
    assert set(live["line_health"]) == {"ew", "north"}
    assert all(len(p["points"]) >= 2 for p in live["paths"])


def _frame_to_page(page, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#view").bounding_box()
    w = page.evaluate("document.getElementById('view').width")
    s = box["width"] / w
    return box["x"] + x * s, box["y"] + y * s


def drag(page, *points: tuple[float, float], steps: int = 8) -> None:
    """Press at the first frame point, move through the others, release (a line drawn, an end dragged)."""
    page.mouse.move(*_frame_to_page(page, *points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*_frame_to_page(page, *p), steps=steps)
    page.mouse.up()


def test_the_page_draws_flips_saves_and_shows_errors_next_to_the_item(service):
    svc, rec, conf = service
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as (page, errors):
        page.goto(f"http://127.0.0.1:{svc.api_port}/calibrate")
        page.wait_for_function("document.querySelectorAll('.item').length > 0")
        page.wait_for_timeout(1500)  # a frame and the live tracks
        n_lines = len(yaml.safe_load(conf.read_text())["cameras"][0]["lines"])
        page.screenshot(path=str(SHOTS / "01_opened.png"))

        # draw a line with the mouse (L, press, drag, release)
        page.keyboard.press("l")
        drag(page, (420, 420), (500, 330), (600, 250))
        new_line = page.locator(f"#item-line-{n_lines}")
        line_id = new_line.locator(".item-id").input_value()
        # flip it (F): a->b swaps, the arrow points to the other side
        page.keyboard.press("f")
        # drag its end a to a new place
        drag(page, (600, 250), (610, 240), steps=5)

        # draw a zone: Z, click four corners, click the first to close
        page.keyboard.press("z")
        corners = [(60, 300), (200, 300), (220, 420), (50, 430)]
        for c in corners:
            page.mouse.click(*_frame_to_page(page, *c))
        page.mouse.click(*_frame_to_page(page, *corners[0]))
        n_zones = page.locator("[id^=item-zone-]").count()
        zone = page.locator(f"#item-zone-{n_zones - 1}")
        zone_id = zone.locator(".item-id").input_value()
        # insert a corner on its first edge (drag the edge's midpoint dot), then drag the whole zone
        drag(page, (130, 300), (130, 285), steps=4)
        drag(page, (120, 380), (130, 380), steps=4)
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "02_drawn.png"))

        # a bad edit: the error shows next to the item, and the canvas marks it
        page.locator(f"#item-zone-{n_zones - 1} .item-id").fill("bad id!")
        page.locator(f"#item-zone-{n_zones - 1} .item-id").press("Tab")
        page.wait_for_selector(f"#item-zone-{n_zones - 1} .errors li")
        err = page.locator(f"#item-zone-{n_zones - 1} .errors").inner_text()
        assert err == "id: 'bad id!' is not a valid name: use letters, digits, `_`, `.` and `-` (starting with a " \
                      "letter or digit, at most 64 characters)", err
        assert "has-error" in page.locator(f"#item-zone-{n_zones - 1}").get_attribute("class")
        page.locator(f"#item-zone-{n_zones - 1}").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "03_error_next_to_item.png"))
        page.locator(f"#item-zone-{n_zones - 1} .item-id").fill(zone_id)
        page.locator(f"#item-zone-{n_zones - 1} .item-id").press("Tab")
        page.wait_for_function(f"!document.querySelector('#item-zone-{n_zones - 1} .errors')")

        # saving without the token is refused; nothing written
        before = conf.read_text()
        page.locator("#save").click()
        page.wait_for_function("document.getElementById('status').textContent.includes('refused')")
        assert conf.read_text() == before

        # with the token: saved and applied; the running service's config, hash and counts change
        old_hash = current_hash(svc)
        page.locator("#token").fill(TOKEN)
        page.locator("#by").fill("browser test")
        page.keyboard.press("Control+s")
        page.wait_for_function("document.getElementById('status').textContent.includes('saved and applied')")
        status = page.locator("#status").inner_text()
        new_hash = current_hash(svc)
        assert new_hash != old_hash and f"{old_hash} → {new_hash}" in status
        site = yaml.safe_load(conf.read_text())["cameras"][0]
        drawn = next(ln for ln in site["lines"] if ln["id"] == line_id)
        # drawn (420,420)->(600,250), flipped to a=(600,250) b=(420,420), then a dragged to (610,240)
        assert abs(drawn["a"][0] - 610) <= 3 and abs(drawn["a"][1] - 240) <= 3, drawn
        assert abs(drawn["b"][0] - 420) <= 3 and abs(drawn["b"][1] - 420) <= 3, drawn
        z = next(z for z in site["zones"] if z["id"] == zone_id)
        assert len(z["polygon"]) == 5  # four clicked corners and the inserted one
        assert abs(z["polygon"][0][0] - 70) <= 3 and abs(z["polygon"][1][1] - 285) <= 3, z  # moved by 10 px
        running = call(svc.api_port, "GET", "/api/config")[1]["cameras"][0]
        assert line_id in [ln["id"] for ln in running["lines"]] and zone_id in [z["id"] for z in running["zones"]]
        wait_for(lambda: counts_with(rec, new_hash), 30, "counts with the page's configuration hash")
        assert line_id in counts_with(rec, new_hash)[0]["lines"]
        page.wait_for_timeout(1500)
        page.screenshot(path=str(SHOTS / "04_saved.png"))
        assert not errors, errors


def test_the_page_works_by_touch_on_a_tablet_screen(service):
    """A tablet (touch screen, 1024x768 in portrait: the list goes below the frame): tap the zone tool, tap the
    corners, tap the first to close; the zone is validated like any edit (nothing is saved here)."""
    svc, _, _ = service
    with chromium_page(768, 1024, touch=True) as (page, errors):
        page.goto(f"http://127.0.0.1:{svc.api_port}/calibrate")
        page.wait_for_function("document.querySelectorAll('.item').length > 0")
        n = page.locator("[id^=item-zone-]").count()
        page.locator("#tool-zone").tap()
        corners = [(380, 300), (520, 300), (540, 420), (380, 430)]
        for c in corners:
            page.touchscreen.tap(*_frame_to_page(page, *c))
        page.touchscreen.tap(*_frame_to_page(page, *corners[0]))
        page.wait_for_function(f"document.querySelectorAll('[id^=item-zone-]').length == {n + 1}")
        items, frame = page.locator("#items").bounding_box(), page.locator("#view").bounding_box()
        assert items["y"] >= frame["y"] + frame["height"]  # below the frame on a narrow screen
        # the new zone was checked by the service: a clean one has no errors
        page.wait_for_timeout(600)
        assert page.locator(f"#item-zone-{n} .errors").count() == 0
        page.screenshot(path=str(SHOTS / "06_tablet.png"))
        assert not errors, errors
