"""The configuration loader: every malformed file is one clear line with the place, never a traceback, and no
value is silently reinterpreted."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roadside.core.config import MAX_CONFIG_BYTES, load_config, parse_yaml
from roadside.core.errors import ConfigError
from roadside.edge.config import VisionConfig
from roadside.edge.service_config import EdgeConfig

ROOT = Path(__file__).resolve().parents[2]
CAMERA = "cameras: [{id: c1, source: clip.mp4}]\n"


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    f = tmp_path / "site.yaml"
    f.write_text(text)
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", "edge", "check", "--config", str(f)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    f = tmp_path / "v.yaml"
    f.write_text("detector:\n  confidence: 0.2\nlines: []\ndetector:\n  confidence: 0.9\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, VisionConfig)
    msg = str(e.value)
    assert str(f) in msg and "line 4" in msg and "'detector' appears twice" in msg and "first on line 1" in msg
    # merge keys (<<) are not duplicates
    assert parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "t")["other"] == {"x": 1, "y": 2}


@pytest.mark.parametrize("text,where", [
    ("site: s\ndevice: d\nmqtt: {port: true}\n" + CAMERA, "mqtt.port"),
    ("site: s\ndevice: d\ncounting: {bins_s: [60, true]}\n" + CAMERA, "counting.bins_s: item [1]"),
    ("site: s\ndevice: d\ndetector: {confidence: false}\n" + CAMERA, "detector.confidence"),
    ("site: s\ndevice: d\nmqtt: {qos: true}\n" + CAMERA, "mqtt.qos"),
])
def test_true_or_false_is_never_read_as_a_number(tmp_path, text, where):
    r = check(tmp_path, text)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{where}: expected a number, got true/false" in r.stderr, r.stderr


def test_booleans_stay_booleans():
    cfg = EdgeConfig.model_validate({"site": "s", "device": "d", "cameras": [{"id": "c", "source": "x.mp4", "loop": True}]})
    assert cfg.cameras[0].loop is True


@pytest.mark.parametrize("text,expect", [
    ("site: s\ndevice: d\nhealth_interval_s: " + "9" * 5000 + "\n" + CAMERA, "a value cannot be read"),
    ("lines: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("site: [unclosed\n", "not valid YAML"),
])
def test_parser_limits_are_clear_errors_not_tracebacks(tmp_path, text, expect):
    r = check(tmp_path, text)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and expect in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("roadside")]) == 1


def test_an_oversized_file_is_refused_before_parsing(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError, match="too large for a configuration file"):
        load_config(f, VisionConfig)


@pytest.mark.parametrize("text,expect", [
    ("site: s\ndevice: d\ntracker: {low_threshold: 0.5, high_threshold: 0.3}\n" + CAMERA,
     "low_threshold must not exceed high_threshold"),
    ("site: s\ndevice: d\nlowlight: {min_spacing: 9}\n" + CAMERA, "min_spacing must not exceed max_spacing"),
    ("site: s\ndevice: d\nlowlight: {min_lamp_area: 700}\n" + CAMERA, "min_lamp_area must not exceed max_lamp_area"),
    ("site: s\ndevice: d\nmqtt: {reconnect_min_s: 50, reconnect_max_s: 30}\n" + CAMERA,
     "reconnect_min_s must not exceed reconnect_max_s"),
])
def test_a_range_given_upside_down_is_an_error_naming_both_ends(tmp_path, text, expect):
    r = check(tmp_path, text)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert expect in r.stderr, r.stderr
