"""The metrics reference is generated from the collectors of /metrics, and the alert rules and the Grafana
dashboard under deploy/ use only metrics that exist, with the structure Prometheus and Grafana expect
(`promtool check rules` too where promtool is installed)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from helpers.broker import _missing
from helpers.data import ROOT
from roadside.edge.metrics_reference import metric_names, metric_rows

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "roadside-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "roadside-edge.json"
METRIC = re.compile(r"\b((?:roadside|process)_[a-z_]+)\b")


def _used(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def test_every_metric_is_documented_with_its_labels_and_meaning():
    rows = metric_rows()
    assert len(rows) >= 30
    for name, kind, labels, doc in rows:
        assert doc.strip(), name
        assert kind in ("gauge", "counter"), name
        assert not kind == "counter" or name.endswith("_total"), name
    text = (ROOT / "edge" / "README_SERVICE.md").read_text()
    block = text.split("<!-- reference:metrics -->")[1].split("<!-- /reference:metrics -->")[0]
    for name, *_ in rows:
        assert f"| `{name}` |" in block, f"{name} is not in the metrics table: roadside edge schema --update-doc ..."
    assert {"roadside_camera_state", "roadside_controller_up", "roadside_controller_mode"} <= metric_names()


def test_alert_rules_cover_the_failures_and_use_only_real_metrics():
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    needed = {"RoadsideCameraDown", "RoadsideDetectorLagging", "RoadsideOutboxGrowing", "RoadsideBrokerUnacknowledged",
              "RoadsideControllerFailSafe", "RoadsideControllerOffline"}
    assert needed <= set(alerts)
    known = metric_names()
    for name, r in alerts.items():
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["annotations"]["summary"] and r["annotations"]["description"], name
        if "for" in r:
            assert re.fullmatch(r"\d+[smh]", r["for"]), name
        used = _used(r["expr"])
        assert used or "up{" in r["expr"], name
        assert used <= known, f"{name} uses unknown metrics {used - known}"
        assert r["expr"].count("(") == r["expr"].count(")"), name


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        _missing("promtool is not installed (apt-get install prometheus); the schema checks above still ran")
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_grafana_dashboard_is_valid_and_plots_only_real_metrics():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance"} <= names
    known = metric_names()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    seen: set[str] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        assert p["type"] in ("timeseries", "stat") and p["targets"], p["title"]
        for t in p["targets"]:
            used = _used(t["expr"])
            assert used and used <= known, (p["title"], used - known)
            seen |= used
    # what an operator needs at a glance is on it
    assert {"roadside_camera_fps_processed", "roadside_camera_detector_latency_seconds", "roadside_outbox_depth",
            "roadside_broker_connected", "roadside_controller_mode"} <= seen
