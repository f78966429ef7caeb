"""Replay end to end: real clips, real models, counts against hand-verified ground truth, CLI behaviour."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml
from helpers.data import BAD, GT, MODELS, ROOT, VIDEOS, gt

from roadside.calibration.evaluate import gt_config
from roadside.calibration.score import score
from roadside.edge.config import VisionConfig
from roadside.edge.counts_file import CountsFile
from roadside.edge.replay import run_replay
from roadside.edge.system_metrics import child_pids

DEFAULT_MODEL = MODELS / "picodet_s_416_coco.onnx"


def roadside(*args: str, cwd=ROOT, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=env)


@pytest.mark.parametrize("clip,bar", [("freeway_test", 0.97), ("dusk_wet_vid2", 0.90)])
def test_counts_on_real_clips_meet_the_accuracy_bar(tmp_path, clip, bar):
    g = gt(clip)
    counts = run_replay(VIDEOS / g["clip"], gt_config(g, VisionConfig()), tmp_path, model=DEFAULT_MODEL, progress=False)
    assert counts.frames == g["decoded_frame_count"]
    r = score(counts, g)
    assert r["accuracy"] >= bar, f"{clip}: count accuracy {r['accuracy']:.3f} below {bar}: {r['rows']}"
    # the counter is not just getting totals right by luck: most events match a real crossing in time and place
    assert r["events"]["f1"] >= 0.85, r["events"]
    # no line in these clips has backward traffic
    assert all(row["predicted"] == 0 for row in r["rows"] if row["direction"] == "backward")
    # counts.json carries what the issue asks for
    saved = json.loads((tmp_path / "counts.json").read_text())
    assert {"video", "frames", "fps", "model", "lines", "events"} <= set(saved)
    assert CountsFile.read(tmp_path / "counts.json").to_json_data() == saved  # the model reads back what it wrote
    ev = saved["events"][0]
    assert {"line", "direction", "frame", "time_s", "class", "track_id"} <= set(ev)
    assert ev["time_s"] == pytest.approx(ev["frame"] / saved["fps"], abs=1e-3)
    # totals equal the events, per line, direction and class
    tally: dict = {}
    for e in saved["events"]:
        key = (e["line"], e["direction"], e["class"])
        tally[key] = tally.get(key, 0) + 1
    flat = {(l, d, c): n for l, dirs in saved["lines"].items() for d, cs in dirs.items() for c, n in cs.items()}
    assert tally == flat


def test_replay_cli_is_deterministic_annotates_and_paces(tmp_path):
    g = gt("dual_carriageway_cars")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"lines": g["lines"] and [{"id": l["id"], "a": l["a"], "b": l["b"]} for l in g["lines"]]}))
    outs = []
    for i, extra in enumerate([["--annotate"], ["--realtime"]]):
        out = tmp_path / f"run{i}"
        p = roadside("edge", "replay", str(VIDEOS / g["clip"]), "--config", str(site), "--out", str(out), "--model", str(DEFAULT_MODEL), *extra)
        assert p.returncode == 0, p.stderr
        summary = json.loads(p.stdout)
        assert summary["frames"] == 268
        outs.append(out)
    a, b = ((o / "counts.json").read_text() for o in outs)
    assert a == b, "two replays of the same clip with the same model and config differ"
    r = score(json.loads(a), g)
    assert r["accuracy"] >= 0.8
    cap = cv2.VideoCapture(str(outs[0] / "annotated.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 268 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 1280
    assert not (outs[1] / "annotated.mp4").exists()
    # --realtime paced the second run to the clip's own duration (268 frames at 30 fps = 8.9 s)
    run = json.loads((outs[1] / "run.json").read_text())
    assert run["realtime"] is True and run["wall_s"] >= 268 / 30 - 0.2
    # the score command reads what replay wrote
    p = roadside("calibrate", "score", str(outs[0] / "counts.json"), str(GT / "dual_carriageway_cars.json"))
    assert p.returncode == 0, p.stderr
    assert "overall count accuracy" in p.stdout


@pytest.mark.parametrize("bad", ["vehicles_no_moov.mp4", "bgslibrary_demo_48x48_raw.avi"])
def test_replay_of_a_bad_video_exits_non_zero_with_a_clear_message(tmp_path, bad):
    p = roadside("edge", "replay", str(BAD / bad), "--out", str(tmp_path / "o"), "--model", str(DEFAULT_MODEL))
    assert p.returncode == 2
    assert bad in p.stderr and "error:" in p.stderr
    assert "Traceback" not in p.stderr


def test_replay_config_errors_name_the_key(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("lines:\n  - id: north\n    a: [10, 20]\n    b: [300, 20]\n    colour: red\ndetector:\n  confidence: 1.5\n")
    p = roadside("edge", "replay", str(VIDEOS / "car_park_overhead.mp4"), "--config", str(site), "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert "lines[0].colour: unknown key" in p.stderr
    assert "detector.confidence: Input should be less than or equal to 1" in p.stderr
    site.write_text("lines: [ {id: a, a: [1, 2], b: [3, 4] ]\n")
    p = roadside("edge", "replay", str(VIDEOS / "car_park_overhead.mp4"), "--config", str(site), "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "not valid YAML" in p.stderr and "line 1" in p.stderr


def test_missing_default_model_says_how_to_get_it(tmp_path):
    p = roadside("edge", "replay", str(VIDEOS / "car_park_overhead.mp4"), "--out", str(tmp_path / "o"),
                 env_extra={"ROADSIDE_HOME": str(tmp_path / "home"), "ROADSIDE_MODELS_DIR": ""})
    assert p.returncode == 2
    assert "roadside models fetch" in p.stderr


def test_bench_prints_paired_medians_for_detector_and_pipeline():
    p = roadside("edge", "bench", str(VIDEOS / "freeway_overpass.mp4"), "--model", str(DEFAULT_MODEL),
                 "--frames", "15", "--runs", "3", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["frames"] == 15 and r["runs"] == 3 and r["model"] == "picodet_s_416_coco"
    runs = r["all"]
    assert all(len(v) == 3 and min(v) > 0 for v in runs.values())
    paired = sorted(pi / d for pi, d in zip(runs["pipeline"], runs["detector"]))
    assert r["ratio_pipeline_to_detector"] == pytest.approx(paired[1], abs=0.01)
    assert r["pipeline_fps"] == pytest.approx(sorted(runs["pipeline"])[1], abs=0.05)


def test_bench_cameras_runs_one_to_n_service_cameras_per_detection_mode():
    """The capacity benchmark: the service's camera workers on a looped clip at its real frame rate, 1..N at once."""
    small = str(MODELS / "picodet_s_320_coco.onnx")
    p = roadside("edge", "bench", str(VIDEOS / "intersection_4way.mp4"), "--model", small, "--cameras", "2",
                 "--seconds", "2", "--warmup", "1", "--modes", "default,every-frame", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [(r["mode"], r["cameras"]) for r in rows] == [("default", 1), ("default", 2), ("every-frame", 1), ("every-frame", 2)]
    for r in rows:
        assert r["model"] == "picodet_s_320_coco" and r["source_fps"] == 30.0 and not r["errors"]
        assert len(r["fps_in"]) == len(r["fps_processed"]) == len(r["frames_dropped"]) == r["cameras"]
        assert all(f > 0 for f in r["fps_in"]) and all(x > 0 for x in r["fps_processed"])  # every camera ran
        share = min(x / f for x, f in zip(r["fps_processed"], r["fps_in"]))
        assert r["processed_share_min"] == pytest.approx(share, abs=0.01)
        assert r["keeps_up"] == (share >= 0.95)
        assert r["cpu_cores_used"] > 0 and r["detector_latency_ms"] > 0
    # default: detect_fps 15 on a 30 fps clip = every 2nd frame; every-frame: every frame
    assert {r["detector_stride"] for r in rows[:2]} == {2} and {r["detector_stride"] for r in rows[2:]} == {1}

    p = roadside("edge", "bench", str(VIDEOS / "intersection_4way.mp4"), "--model", small, "--cameras", "2",
                 "--modes", "default,sometimes")
    assert p.returncode == 2 and "--modes: unknown mode 'sometimes'" in p.stderr and "detect-fps-X" in p.stderr


def _decoder_children() -> list[int]:
    """PIDs of decoder processes started by this process."""
    out = []
    for pid in child_pids(os.getpid()):
        try:
            if b"roadside.core.video" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:  # it exited meanwhile
            continue
    return out


def test_a_decoder_crash_part_way_keeps_what_was_counted(tmp_path):
    """Kill the decoder mid-replay (as a corrupt frame would): counts.json still holds every frame
    processed so far, marked incomplete with the error, and the error is raised."""
    import signal
    import threading
    import time

    from roadside.core.video import VideoError

    g = gt("freeway_test")
    result: dict = {}

    def run():
        try:
            run_replay(VIDEOS / g["clip"], gt_config(g, VisionConfig()), tmp_path, model=DEFAULT_MODEL, progress=False)
        except VideoError as e:
            result["error"] = str(e)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 120
    pids: list[int] = []
    while not pids and time.monotonic() < deadline:
        pids = _decoder_children()
        time.sleep(0.2)
    assert pids, "no decoder process found"
    time.sleep(4)  # let it count for a while
    os.kill(pids[0], signal.SIGSEGV)
    t.join(120)
    assert "decoder crashed (signal SIGSEGV)" in result.get("error", ""), result
    saved = json.loads((tmp_path / "counts.json").read_text())
    assert saved["complete"] is False and "SIGSEGV" in saved["error"]
    assert 0 < saved["frames"] < g["decoded_frame_count"]
    assert saved["events"], "nothing counted before the crash?"
    assert all(e["frame"] < saved["frames"] for e in saved["events"])


def test_replay_bench_and_evaluate_take_the_service_site_file(tmp_path):
    """An installer's one site file serves replay (and so the audit), bench and evaluate: one camera's lines and
    the shared or the camera's own settings, with relative paths relative to the file, as for the service."""
    g = gt("dual_carriageway_cars")
    small = MODELS / "picodet_s_320_coco.onnx"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / small.name).symlink_to(small)
    gt_lines = [{"id": ln["id"], "a": ln["a"], "b": ln["b"]} for ln in g["lines"]]
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({
        "site": "s1", "device": "d1", "mqtt": {"host": "10.0.0.1"},
        "detector": {"model": f"models/{small.name}", "threads": 1}, "counting": {"bins_s": [5]},
        "cameras": [
            {"id": "north", "source": "rtsp://cam-north/live", "lines": gt_lines},
            {"id": "other", "source": "clips/other.mp4", "lines": [{"id": "x", "a": [0, 300], "b": [1280, 300]}],
             "detector": {"model": str(small), "threads": 2}},
        ],
    }, sort_keys=False))
    video = str(VIDEOS / g["clip"])

    p = roadside("edge", "replay", video, "--config", str(site), "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "the site file has 2 cameras (north, other); choose one with --camera" in p.stderr
    p = roadside("edge", "replay", video, "--config", str(site), "--camera", "south", "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "no camera 'south' in the site file (cameras: north, other)" in p.stderr

    cache = str(tmp_path / "cache")  # the detector runs once; the later runs reuse its boxes (that changes nothing)
    p = roadside("edge", "replay", video, "--config", str(site), "--camera", "north", "--out", str(tmp_path / "site-run"),
                 "--cache", cache)
    assert p.returncode == 0, p.stderr
    counts = CountsFile.read(tmp_path / "site-run" / "counts.json")
    assert [ln.id for ln in counts.config.lines] == [ln["id"] for ln in g["lines"]]
    assert counts.config.counting.bins_s == [5.0] and {b.interval_s for b in counts.bins} == {5.0}
    assert counts.config.detector.model == str(tmp_path / "models" / small.name) and counts.model == "picodet_s_320_coco"
    # the same camera written as a plain vision file counts exactly the same
    vision = tmp_path / "vision.yaml"
    vision.write_text(yaml.safe_dump({"lines": gt_lines, "counting": {"bins_s": [5]},
                                      "detector": {"model": str(tmp_path / "models" / small.name), "threads": 1}}))
    p = roadside("edge", "replay", video, "--config", str(vision), "--out", str(tmp_path / "vision-run"), "--cache", cache)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "vision-run" / "counts.json").read_text() == (tmp_path / "site-run" / "counts.json").read_text()
    p = roadside("edge", "replay", video, "--config", str(vision), "--camera", "north", "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "not a site file with cameras" in p.stderr

    # bench: the other camera's own detector settings
    p = roadside("edge", "bench", video, "--config", str(site), "--camera", "other", "--model", str(small),
                 "--frames", "10", "--runs", "1", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["threads"] == 2 and r["model"] == "picodet_s_320_coco"

    # evaluate: the camera's settings (here its model), the ground truth's lines
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    (gt_dir / "dual_carriageway_cars.json").write_text((GT / "dual_carriageway_cars.json").read_text())
    p = roadside("calibrate", "evaluate", "--gt-dir", str(gt_dir), "--videos", str(VIDEOS), "--config", str(site),
                 "--camera", "north", "--out", str(tmp_path / "eval"), "--json", str(tmp_path / "eval.json"), "--cache", cache)
    assert p.returncode == 0, p.stderr
    (row,) = json.loads((tmp_path / "eval.json").read_text())
    assert row["model"] == "picodet_s_320_coco" and row["gt"] == "dual_carriageway_cars" and row["true"] > 0
