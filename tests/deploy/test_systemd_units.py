"""The systemd units of deploy/systemd: `systemd-analyze verify` finds nothing, they ask for what a roadside box
needs (dedicated user, notify + watchdog, restart on failure, journald, read-only system but the state
directory), and their ExecStart lines, run as systemd would (NOTIFY_SOCKET, WATCHDOG_USEC, the units'
Environment), report READY, feed the watchdog from the services' own liveness and stop cleanly on SIGTERM."""
from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from helpers.broker import Mosquitto
from helpers.data import ROOT
from helpers.edge_service import site_config
from roadside.core.testing import free_port

UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/roadside/venv/bin/roadside"
ROADSIDE = str(Path(sys.executable).with_name("roadside"))


def _unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # keys are case-sensitive
    cp.read(UNITS / name)
    return cp


@pytest.mark.parametrize("name", ["roadside-edge.service", "roadside-controller.service"])
def test_the_unit_asks_for_what_a_box_needs(name):
    s = _unit(name)["Service"]
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0 and s["Restart"] == "on-failure"
    assert s["User"] == "roadside" and s["Group"] == "roadside"
    assert s["StandardOutput"] == "journal" and s["StandardError"] == "journal"
    assert s["ProtectSystem"] == "strict" and s["ProtectHome"] == "yes" and s["NoNewPrivileges"] == "yes"
    assert s["ReadWritePaths"] == f"/var/lib/{s['StateDirectory']}"  # the state directory, and only it
    assert f"ROADSIDE_HOME=/var/lib/{s['StateDirectory']}" in s["Environment"].split()
    assert s["ExecStart"].startswith(INSTALLED + " ")
    sysusers = (UNITS / "roadside.sysusers.conf").read_text()
    assert "u roadside " in sysusers


@pytest.mark.parametrize("name", ["roadside-edge.service", "roadside-controller.service"])
def test_systemd_analyze_verify_finds_nothing(name, tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = tmp_path / name  # the installed program is this checkout's (verify checks that it exists)
    unit.write_text((UNITS / name).read_text().replace(INSTALLED, ROADSIDE))
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode == 0 and not problems, problems


class NotifySocket:
    """systemd's end of sd_notify: a datagram socket that collects what the service sends."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.5)
        self.fields: list[str] = []

    def wait_for(self, field: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(f == field or f.startswith(field) for f in self.fields):
                return
            try:
                self.fields += self.sock.recv(4096).decode().split("\n")
            except socket.timeout:
                pass
        raise AssertionError(f"no {field} from the service within {timeout:.0f} s (got {self.fields})")

    def close(self) -> None:
        self.sock.close()


def _run_exec_start(name: str, config: Path, home: Path, notify: NotifySocket) -> subprocess.Popen:
    s = _unit(name)["Service"]
    argv = shlex.split(s["ExecStart"])
    assert argv[0] == INSTALLED
    argv = [ROADSIDE] + [str(config) if a.startswith("/etc/roadside/") else a for a in argv[1:]]
    env = dict(os.environ)
    env.update(dict(kv.split("=", 1) for kv in shlex.split(s["Environment"])))
    env.update(ROADSIDE_HOME=str(home), NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000")
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _ready_watchdog_and_clean_stop(proc: subprocess.Popen, notify: NotifySocket, ready_timeout: float) -> None:
    try:
        notify.wait_for("READY=1", ready_timeout)
        n = len(notify.fields)
        notify.wait_for("WATCHDOG=1", 5)  # half the 2-s watchdog period, fed while the liveness check passes
        assert any(f == "WATCHDOG=1" for f in notify.fields[n - 1:])
        assert any(f.startswith("STATUS=") for f in notify.fields)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stdout.read()
        notify.wait_for("STOPPING=1", 2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_edge_units_exec_start_runs_notifies_and_feeds_the_watchdog(tmp_path):
    with Mosquitto(tmp_path / "broker", persistence=False) as broker:
        conf = site_config(tmp_path, broker_port=broker.port, api_port=free_port())
        notify = NotifySocket(tmp_path / "notify")
        try:
            proc = _run_exec_start("roadside-edge.service", conf, tmp_path / "home", notify)
            _ready_watchdog_and_clean_stop(proc, notify, 90)
        finally:
            notify.close()


def test_the_controller_units_exec_start_runs_notifies_and_feeds_the_watchdog(tmp_path):
    from roadside.demo.runner import demo_configs

    with Mosquitto(tmp_path / "broker", persistence=False) as broker:
        _, ctrl = demo_configs()
        ctrl["mqtt"]["port"] = broker.port
        conf = tmp_path / "controller.yaml"
        conf.write_text(yaml.safe_dump(ctrl))
        notify = NotifySocket(tmp_path / "notify")
        try:
            proc = _run_exec_start("roadside-controller.service", conf, tmp_path / "home", notify)
            _ready_watchdog_and_clean_stop(proc, notify, 30)
        finally:
            notify.close()


def test_liveness_fails_when_a_loop_stops_so_the_watchdog_is_no_longer_fed(tmp_path):
    """The watchdog is fed only while the service's own loops turn: a stopped camera worker (edge) and a tick loop
    that no longer runs (controller) make the liveness check fail, naming what stopped."""
    from roadside.controller.config import parse_controller_config
    from roadside.controller.service import ControllerService
    from roadside.demo.runner import demo_configs
    from roadside.edge.service import EdgeService
    from roadside.edge.service_config import load_edge_config

    with Mosquitto(tmp_path / "broker", persistence=False) as broker:
        svc = EdgeService(load_edge_config(site_config(tmp_path, broker_port=broker.port, api_port=free_port()))).start()
        try:
            time.sleep(1.0)
            ok, why = svc.liveness()
            assert ok, why
            svc.workers["cam1"].stop()
            ok, why = svc.liveness()
            assert not ok and "camera cam1 worker stopped" in why
        finally:
            svc.shutdown()

        _, ctrl = demo_configs()
        ctrl["mqtt"]["port"] = broker.port
        c = ControllerService(parse_controller_config(ctrl))
        c.start()
        stop = threading.Event()
        loop = threading.Thread(target=c.run, args=(stop,), daemon=True)
        loop.start()
        try:
            time.sleep(1.0)
            ok, why = c.liveness(stuck_after_s=1.0)
            assert ok, why
            stop.set()  # the tick loop ends, the MQTT connection stays
            loop.join(5)
            time.sleep(1.5)
            ok, why = c.liveness(stuck_after_s=1.0)
            assert not ok and "no controller tick" in why
        finally:
            c.stop()
        ok, why = c.liveness(stuck_after_s=3600)
        assert not ok and "MQTT network thread stopped" in why
