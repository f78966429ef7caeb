"""`roadside calibrate check | snapshot` on a real clip: `check` gives the page's messages, item by item;
`snapshot` draws the site's lines on the camera's frame. (`audit` is tested on a manual count made in the
page: test_calibration_manual_count.py.)"""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml

from helpers.data import GT, ROOT, VIDEOS
from helpers.edge_service import SMALL_MODEL

CLIP = VIDEOS / "dual_carriageway.mp4"


def roadside(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The installer's site file: the truth's own line L1 on the dual-carriageway clip."""
    truth = json.loads((GT / "dual_carriageway_cars.json").read_text())
    line = truth["lines"][0]
    tmp = tmp_path_factory.mktemp("audit")
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump({
        "site": "s", "device": "d", "detector": {"model": str(SMALL_MODEL)}, "phases": ["p1"],
        "cameras": [{"id": "c1", "source": str(CLIP), "lines": [{"id": line["id"], "a": line["a"], "b": line["b"],
                                                                 "phase": "p1"}]}]}))
    return path, truth, tmp


def test_check_names_each_bad_item_with_the_pages_messages(site, tmp_path):
    path, _, _ = site
    assert roadside("calibrate", "check", "--config", str(path)).returncode == 0
    cfg = yaml.safe_load(path.read_text())
    cfg["cameras"][0]["lines"] += [{"id": "L1", "a": [10, 10], "b": [1300, 10]}, {"id": "x y", "a": [1, 1], "b": [9, 9]}]
    cfg["cameras"][0]["zones"] = [{"id": "Z", "polygon": [[100, 100], [300, 200], [300, 100], [100, 250]],
                                   "phase": "p9", "classes": ["car", "tram"]}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    r = roadside("calibrate", "check", "--config", str(bad))
    assert r.returncode == 2
    err = r.stderr
    assert "cameras[0].lines[1].id (line 'L1'): the id 'L1' is already used by line #1; ids must be unique" in err
    assert "cameras[0].lines[1].b (line 'L1'): [1300.0, 10.0] is outside the 1280x720 frame" in err
    assert "cameras[0].lines[2].id (line 'x y'): 'x y' is not a valid name" in err
    assert "cameras[0].zones[0].polygon (zone 'Z'): the polygon crosses itself" in err
    assert "cameras[0].zones[0].classes[1] (zone 'Z'): 'tram' is not a vehicle category" in err
    assert "cameras[0].zones[0].phase (zone 'Z'): 'p9' is not one of the site's phases (p1)" in err
    assert "6 problem(s) in the lines and zones" in err
    # a stream has no file to measure: --frame gives the size
    cfg["cameras"][0]["source"] = "rtsp://127.0.0.1:1/none"
    cfg["cameras"][0]["lines"] = [{"id": "L1", "a": [10, 10], "b": [700, 10]}]
    cfg["cameras"][0]["zones"] = []
    bad.write_text(yaml.safe_dump(cfg))
    r = roadside("calibrate", "check", "--config", str(bad), "--frame", "640x360")
    assert r.returncode == 2 and "cameras[0].lines[0].b (line 'L1'): [700.0, 10.0] is outside the 640x360 frame" in r.stderr


def test_snapshot_draws_the_lines_on_the_cameras_frame(site):
    path, truth, tmp = site
    out = tmp / "snap.jpg"
    r = roadside("calibrate", "snapshot", "--config", str(path), "--out", str(out), "--frames", "20")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["frame"] == 19 and (info["width"], info["height"]) == (1280, 720)
    img = cv2.imread(str(out))
    raw = None
    cap = cv2.VideoCapture(str(CLIP))
    for _ in range(20):
        ok, raw = cap.read()
    cap.release()
    a, b = truth["lines"][0]["a"], truth["lines"][0]["b"]
    ys = a[1]
    xs = np.arange(int(a[0]) + 40, int(b[0]) - 40, 25)
    # the count line is drawn in yellow (BGR 0,255,255) where the camera's frame is not yellow
    drawn = img[ys, xs].astype(int)
    assert (drawn[:, 2] > 200).mean() > 0.8 and (drawn[:, 1] > 200).mean() > 0.8 and (drawn[:, 0] < 90).mean() > 0.8
    assert np.abs(raw[ys, xs].astype(int) - drawn).mean() > 40
