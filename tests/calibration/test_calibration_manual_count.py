"""The manual count in the page (headless Debian chromium): play a shared clip, step to each crossing of the
hand-verified truth and press the line's key, store the count with the token (refused without), and audit
that manual count against the pipeline with `roadside calibrate audit`; then a hurried version of that count
(one car missed, one called a truck) is flagged with its causes and an HTML report of annotated frames, on
the same replay (reused)."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from helpers.broker import Mosquitto, free_port, wait_for
from helpers.browser import chromium_page
from helpers.data import GT, ROOT, VIDEOS
from helpers.edge_service import ServiceProcess, site_config

TOKEN = "count-token-0123456789"
CLIP = "dual_carriageway.mp4"
SHOTS = Path(os.environ.get("ROADSIDE_TEST_OUT", ROOT / "out")) / "calibrate"


def seek(page, frame: int, shown: bool = True) -> None:
    """Type a frame number into the frame box and wait until the page shows that frame (a timeout says what
    the page showed instead)."""
    page.locator("#seek").fill(str(frame))
    page.locator("#seek").press("Enter")
    if not shown:
        return
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(f"document.getElementById('view').dataset.frame == '{frame}'")
    except PlaywrightTimeout:
        raise AssertionError(f"frame {frame} was not shown: the page shows frame "
                             f"{page.locator('#view').get_attribute('data-frame')}, status "
                             f"{page.locator('#status').inner_text()!r}") from None


def test_a_manual_count_made_in_the_page_audits_against_the_pipeline(tmp_path):
    truth = json.loads((GT / "dual_carriageway_cars.json").read_text())
    line = truth["lines"][0]
    broker = Mosquitto(tmp_path / "broker").start()
    api = free_port()
    conf = site_config(tmp_path, broker_port=broker.port, api_port=api, api={"token": TOKEN}, cameras=[{
        "id": "cam1", "source": str(VIDEOS / CLIP), "loop": True, "realtime": True,
        "lines": [{"id": line["id"], "a": line["a"], "b": line["b"]}]}])
    svc = ServiceProcess(conf, api, tmp_path / "service.log")
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        svc.start()
        wait_for(lambda: svc.status()["cameras"].get("cam1"), 60, "camera cam1")
        with chromium_page() as (page, errors):
            page.goto(f"http://127.0.0.1:{api}/calibrate/count?clip={CLIP}")
            page.wait_for_function("document.getElementById('status').textContent.includes('1280x720')")
            # playing advances the frames; Space pauses
            page.locator("#speed").select_option("2")
            page.keyboard.press(" ")
            page.wait_for_function("parseInt(document.getElementById('view').dataset.frame) >= 20", timeout=20000)
            page.keyboard.press(" ")
            played_to = int(page.locator("#seek").input_value())
            assert played_to >= 20
            page.locator("#speed").select_option("0.5")
            # step to each certain crossing of the truth (a little late, as a person presses) and press L1's
            # forward key; the last car, which the truth calls ambiguous (it reaches the line on the clip's last
            # frame), is left out
            pressed = [e["frame"] + 2 for e in truth["events"] if not e.get("ambiguous")]
            for f in pressed:
                seek(page, f)
                page.locator("#view").click()  # the keys go to the page, not the frame box
                page.keyboard.press("1")
            # past the end: the page learns the clip's length from the box, and a frame before it still shows
            seek(page, 100000, shown=False)
            page.wait_for_function("document.getElementById('status').textContent.includes('end of the clip')")
            assert page.locator("#status").inner_text() == f"end of the clip ({truth['decoded_frame_count']} frames)"
            seek(page, pressed[-1])
            page.locator("#view").click()
            page.keyboard.press("ArrowRight")
            page.keyboard.press("1")  # a slip ...
            page.keyboard.press("Backspace")  # ... undone
            assert page.locator(f"#keys-{line['id']} .n-forward").inner_text() == str(len(pressed))
            page.screenshot(path=str(SHOTS / "05_manual_count.png"))
            # storing needs the token
            page.keyboard.press("Control+s")
            page.wait_for_function("document.getElementById('status').textContent.includes('not saved')")
            assert not (tmp_path / "state" / "manual_counts").exists()
            page.locator("#token").fill(TOKEN)
            page.locator("#by").fill("count test")
            page.locator("#save").click()
            page.wait_for_function("document.getElementById('status').textContent.includes('saved 6 vehicles')")
            assert not errors, errors
        files = list((tmp_path / "state" / "manual_counts").glob("dual_carriageway-*.json"))
        assert len(files) == 1
        manual = json.loads(files[0].read_text())
    finally:
        svc.stop()
        broker.stop()

    # the ground-truth format: the camera's line, one event per key press at the frame shown
    assert manual["clip"] == CLIP and manual["fps"] == 30.0 and manual["frame_size"] == [1280, 720]
    assert manual["lines"] == [{"id": "L1", "a": [330.0, 450.0], "b": [1230.0, 450.0]}]
    assert [e["frame"] for e in manual["events"]] == pressed
    assert {(e["line"], e["direction"], e["class"]) for e in manual["events"]} == {("L1", "forward", "car")}
    assert manual["frame_tolerance_frames"] >= 3 and manual["totals"]["L1"]["forward"]["total"] == 6

    # ... which audits against the pipeline
    def audit(truth_file: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
        out = tmp_path / f"{truth_file.stem}.audit.json"
        r = subprocess.run([sys.executable, "-m", "roadside.core.cli", "calibrate", "audit", "--config", str(conf),
                            "--video", str(VIDEOS / CLIP), "--truth", str(truth_file), "--out", str(tmp_path / "run"),
                            "--json", str(out), *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert out.exists(), r.stdout + r.stderr
        return r, json.loads(out.read_text())

    r, report = audit(files[0])
    assert r.returncode == 0, r.stdout + r.stderr
    assert report["flagged"] == [] and report["lines"]["L1"]["accuracy"] >= 0.95, report["lines"]
    assert report["lines"]["L1"]["true"] == 6 and not report["replay"].endswith("(reused)")
    assert "line L1: count" in r.stdout and ": ok" in r.stdout
    # the totals agree; event by event the audit would still show where the two differ: at most one each way
    kinds = [d["kind"] for d in report["disagreements"]]
    assert kinds.count("missed") <= 1 and kinds.count("extra") <= 1, report["disagreements"]

    # a hurried installer's count: missed one car and called another a truck
    hurried = json.loads(json.dumps(manual))
    dropped, relabelled = hurried["events"][1], hurried["events"][3]
    hurried["events"] = [e for e in hurried["events"] if e is not dropped]
    relabelled["class"] = "truck"
    (tmp_path / "hurried.json").write_text(json.dumps(hurried))
    r, bad = audit(tmp_path / "hurried.json", "--html", str(tmp_path / "audit.html"))
    assert r.returncode == 1, r.stdout + r.stderr  # a line is flagged
    assert bad["replay"].endswith("(reused)")  # the same clip, configuration and model: not counted again
    line = bad["lines"]["L1"]
    assert bad["flagged"] == ["L1"] and line["accuracy"] < 0.95 and line["class_accuracy"] < 0.95
    causes = " | ".join(line["causes"])
    assert "class confusion: truck counted as car ×1" in causes, causes
    assert "extra count(s)" in causes, causes
    assert "BELOW THRESHOLD" in r.stdout and "likely cause: class confusion" in r.stdout
    assert ("class", relabelled["id"]) in {(d["kind"], d.get("truth")) for d in bad["disagreements"]}
    assert any(d["kind"] == "extra" and abs(d["frame"] - dropped["frame"]) <= 9 for d in bad["disagreements"])
    # the HTML report: one annotated frame per disagreement
    html = (tmp_path / "audit.html").read_text()
    assert html.count("<figure") == len(bad["disagreements"]) == html.count("<img")
    b64 = html.split("data:image/jpeg;base64,", 1)[1].split("'", 1)[0]
    img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (540, 960)
