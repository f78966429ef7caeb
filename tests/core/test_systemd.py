"""sd_notify over a real datagram socket, as systemd provides it."""
from __future__ import annotations

import os
import socket
import time

import pytest

from roadside.core.systemd import Watchdog, notify, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield s
    s.close()


def test_notify_sends_the_fields(notify_socket):
    assert notify("READY=1", "STATUS=running 2 cameras")
    assert notify_socket.recv(4096).decode().split("\n") == ["READY=1", "STATUS=running 2 cameras"]


def test_outside_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval_s() is None


def test_the_watchdog_pings_only_while_alive(notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    state = {"ok": True}
    wd = Watchdog(lambda: (state["ok"], "fine" if state["ok"] else "camera worker stopped")).start()
    try:
        assert "WATCHDOG=1" in notify_socket.recv(4096).decode()
        state["ok"] = False
        time.sleep(0.25)
        while True:  # drain what was sent before the change
            msg = notify_socket.recv(4096).decode()
            if "WATCHDOG=1" not in msg:
                break
        assert msg == "STATUS=not alive: camera worker stopped"
    finally:
        wd.stop()


def test_a_watchdog_meant_for_another_process_is_ignored(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval_s() is None
