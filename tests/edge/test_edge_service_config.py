"""The service configuration: built-in default, per-camera settings, clear errors, redaction, CLI checks."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from helpers.data import BAD, ROOT, VIDEOS
from helpers.edge_service import SMALL_MODEL

from roadside.core.errors import ConfigError
from roadside.core.payloads import CountsMessage
from roadside.edge.service_config import EdgeConfig, load_edge_config


def roadside(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, ROADSIDE_MODELS_DIR=str(ROOT / "no-such-store")))


def _write(tmp_path, data) -> str:
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(p)


def test_builtin_default_is_a_looping_real_time_camera_with_lines_and_a_zone(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_edge_config(None)
    (cam,) = cfg.cameras
    assert os.path.samefile(cam.source, VIDEOS / "intersection_4way.mp4")  # ../shared relative to the checkout
    assert cam.loop and cam.realtime and len(cam.lines) >= 2 and len(cam.zones) >= 1
    assert (cfg.mqtt.host, cfg.mqtt.port) == ("127.0.0.1", 1883) and cfg.api.host == "127.0.0.1"
    assert cfg.topic_prefix == f"roadside/{cfg.site}/{cfg.device}"
    assert cfg.api.token is None  # read-only API unless configured


def test_per_camera_settings_and_paths_relative_to_the_file(tmp_path):
    (tmp_path / "clips").mkdir()
    path = _write(tmp_path, {
        "site": "s1", "device": "d1", "state_dir": "state", "mqtt": {"prefix": "/city/x/"},
        "detector": {"model": "models/m.onnx", "confidence": 0.2},
        "counting": {"bins_s": [900, 60]},
        "cameras": [
            {"id": "north", "source": "clips/a.mp4", "lines": [{"id": "l1", "a": [0, 0], "b": [10, 0]}]},
            {"id": "south", "source": "rtsp://u:secret@10.1.2.3/s1", "counting": {"bins_s": [1]},
             "detector": {"model": "picodet_s_320_coco"}, "rtsp_transport": "tcp"},
        ],
    })
    cfg = load_edge_config(path)
    north, south = cfg.cameras
    assert north.source == str(tmp_path / "clips" / "a.mp4") and north.kind == "file"
    assert south.source == "rtsp://u:secret@10.1.2.3/s1" and south.kind == "rtsp"
    assert cfg.state_path() == tmp_path / "state"
    # mqtt.prefix is the site prefix, shared with the controller; each device publishes below it
    assert cfg.topics.prefix == "city/x" and cfg.topic_prefix == "city/x/d1"
    vn, vs = cfg.vision(north), cfg.vision(south)
    assert vn.detector.model == str(tmp_path / "models" / "m.onnx") and vn.counting.bins_s == [60, 900]
    assert vs.detector.model == "picodet_s_320_coco" and vs.counting.bins_s == [1]  # an installed-model name stays a name
    assert [ln.id for ln in vn.lines] == ["l1"] and vs.lines == []


@pytest.mark.parametrize("change,where,what", [
    (lambda d: d["cameras"][0].update(sourc="x"), "cameras[0].sourc", "unknown key"),
    (lambda d: d["cameras"].append(dict(d["cameras"][0])), "cameras", "camera id 'c1' is used twice"),
    (lambda d: d["mqtt"].update(password="p"), "mqtt", "a password needs a username"),
    (lambda d: d.update(api={"token": "short"}), "api.token", "at least 16 characters"),
    (lambda d: d["cameras"][0].update(lines=[{"id": "a", "a": [0, 0], "b": [9, 9]}] * 2), "cameras[0]",
     "camera 'c1': line id 'a' is used twice"),
    (lambda d: d.update(cameras={"id": "c1"}), "cameras", "list"),
    (lambda d: d["mqtt"].update(tls={"cert_file": "c.pem"}), "mqtt.tls", "cert_file and key_file go together"),
])
def test_malformed_configuration_names_the_key_and_the_problem(tmp_path, change, where, what):
    data = {"site": "s", "device": "d", "mqtt": {}, "cameras": [{"id": "c1", "source": "a.mp4"}]}
    change(data)
    with pytest.raises(ConfigError) as e:
        load_edge_config(_write(tmp_path, data))
    msg = str(e.value)
    assert f"  - {where}: " in msg and what in msg, msg


def test_redacted_configuration_hides_every_secret(tmp_path):
    cfg = EdgeConfig.model_validate({
        "site": "s", "device": "d", "mqtt": {"username": "edge", "password": "hunter2-mqtt"},
        "api": {"token": "tok-0123456789abcdef"},
        "cameras": [{"id": "c", "source": "rtsp://admin:cam-secret@10.0.0.9:554/live"}],
    })
    text = json.dumps(cfg.redacted())
    for secret in ("hunter2-mqtt", "tok-0123456789abcdef", "cam-secret"):
        assert secret not in text
    red = cfg.redacted()
    assert red["mqtt"]["username"] == "edge" and red["mqtt"]["password"] == "**********"
    assert red["cameras"][0]["source"] == "rtsp://admin:**********@10.0.0.9:554/live"


def test_cli_rejects_a_malformed_config_with_one_clear_line(tmp_path):
    path = _write(tmp_path, {"site": "s", "device": "d", "cameras": [{"id": "c", "source": "a.mp4", "loop": "often"}]})
    r = roadside("edge", "run", "--config", path)
    assert r.returncode == 2
    assert f"roadside edge run: error: {path}: invalid configuration" in r.stderr
    assert "cameras[0].loop: Input should be a valid boolean" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_config_names_missing_files_and_an_uninstalled_model(tmp_path):
    path = _write(tmp_path, {"site": "s", "device": "d", "cameras": [
        {"id": "gone", "source": "missing.mp4"},
        {"id": "ok", "source": str(VIDEOS / "car_park_overhead.mp4"), "detector": {"model": str(SMALL_MODEL)}},
    ]})
    r = roadside("edge", "check", "--config", path)
    assert r.returncode == 2, r.stderr
    assert f"cameras[gone].source: no such file: {tmp_path / 'missing.mp4'}" in r.stderr
    assert "cameras[gone] detector.model: model 'picodet_s_416_coco' is not installed" in r.stderr
    assert "cameras[ok]" not in r.stderr  # the camera with a model file and a real clip is fine
    summary = json.loads(r.stdout)
    assert summary["cameras"]["ok"] == {"source": "file", "lines": [], "zones": [], "bins_s": [60.0, 900.0]}
    # a bad video is not a configuration problem: the service reports it at run time
    ok = _write(tmp_path, {"site": "s", "device": "d", "detector": {"model": str(SMALL_MODEL)},
                           "cameras": [{"id": "bad", "source": str(BAD / "vehicles_no_moov.mp4")}]})
    assert roadside("edge", "check", "--config", ok).returncode == 0


def test_schema_command_prints_the_shared_payload_schemas():
    r = roadside("edge", "schema")
    assert r.returncode == 0, r.stderr
    schemas = json.loads(r.stdout)
    assert set(schemas) == {"counts", "presence", "health", "config"}
    assert schemas["counts"] == CountsMessage.model_json_schema()
    assert {"seq", "interval_start", "interval_s", "lines", "config_hash", "model", "late", "partial"} <= set(
        schemas["counts"]["properties"])
    assert roadside("edge", "default-config").stdout.startswith("# Built-in configuration")


def test_operator_documentation_holds_the_current_payload_schemas():
    from roadside.edge.service_commands import fill_schema_blocks

    text = (ROOT / "edge" / "README_SERVICE.md").read_text()
    assert text.count("<!-- schema:") == 3
    assert fill_schema_blocks(text) == text, "run `roadside edge schema --update-doc edge/README_SERVICE.md`"


def test_every_configuration_field_is_described_and_the_reference_is_generated_from_them():
    from roadside.edge.config import VisionConfig
    from roadside.edge.config_reference import config_schema, reference_rows

    schema = config_schema()
    models = [("EdgeConfig", schema), ("VisionConfig", VisionConfig.model_json_schema()), *schema["$defs"].items()]
    undescribed = [f"{name}.{field}" for name, model in models for field, spec in model.get("properties", {}).items()
                   if not spec.get("description")]
    assert not undescribed, f"give these fields Field(description=...): {undescribed}"
    text = (ROOT / "edge" / "README_SERVICE.md").read_text()
    assert text.count("<!-- reference:config -->") == 1 and text.count("<!-- /reference:config -->") == 1
    rows = reference_rows(schema)
    assert len(rows) > 60
    for key, _values, _default, meaning in rows:
        assert f"| {key} |" in text and meaning, key
    # defaults and ranges come from the models themselves (including default factories)
    assert "| `sources.stall_timeout_s` | number > 0, ≤ 120 | `2` |" in text
    assert "| `counting.bins_s` | list of number ≥ 1, ≤ 86400 (1 or more) | `[60.0, 900.0]` |" in text
    assert "| `cameras[].detector` | mapping | none |" in text


def test_a_site_file_with_one_camera_is_a_vision_configuration_without_choosing(monkeypatch):
    from roadside.edge.site_file import load_vision_config

    monkeypatch.chdir(ROOT)
    site = load_edge_config(ROOT / "edge" / "defaults" / "edge.yaml")
    vision = load_vision_config(ROOT / "edge" / "defaults" / "edge.yaml")
    assert vision == site.vision(site.cameras[0]) and [ln.id for ln in vision.lines] == ["ew_middle", "ns_middle"]
    with pytest.raises(ConfigError, match="--camera cam1: cameras are chosen in a site file; give it with --config"):
        load_vision_config(None, "cam1")
