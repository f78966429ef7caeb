"""Test and benchmark tools that the product's own commands run too (``roadside sim run --broker auto``,
``roadside edge soak``, ``roadside demo``) besides the test suite: a private Mosquitto, one ``free_port``, ``wait_until`` and
a :class:`Recorder` that keeps every message under a prefix. Nothing of a deployed service uses them.

The private broker is a real ``mosquitto`` (found on ``PATH``, else ``/usr/sbin/mosquitto``; Debian
package ``mosquitto``) on a free loopback port, with optional password file, TLS, persistence, and
TCP_NODELAY so that small control messages are not held up by Nagle's algorithm (~40 ms each).
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from roadside.core.broker import BrokerClient, Received
from roadside.core.errors import RoadsideError
from roadside.core.mqtt import MqttConfig

T = TypeVar("T")


_PORT_LOCK = threading.Lock()
_HANDED_OUT: set[int] = set()
_LOWEST_PORT = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that this process has not handed out before.

    Drawn at random below the kernel's ephemeral range (``ip_local_port_range``) when there is room there:
    a port the kernel hands to ``bind(0)`` can be handed out again at the next call (two RabbitMQ nodes of
    one cluster once got the same distribution port), and any outgoing connection may take it as its local
    port before the caller's server binds it."""
    low, _ = _ephemeral_range()
    with _PORT_LOCK:
        if low - _LOWEST_PORT > 1000:
            rng = random.SystemRandom()
            for _ in range(200):
                port = rng.randrange(_LOWEST_PORT, low)
                if port not in _HANDED_OUT and _bindable(port):
                    _HANDED_OUT.add(port)
                    return port
        for _ in range(200):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise RuntimeError("no free TCP port on 127.0.0.1 found in 400 tries")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """The predicate's first truthy value; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def mosquitto_program() -> str:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if exe is None:
        raise RoadsideError("the mosquitto broker is not installed (apt-get install -y mosquitto)")
    return exe


class PrivateBroker:
    """A private Mosquitto on a free loopback port.

    ``users``: user name -> password (a password file; anonymous clients are refused); ``acl_file``: a
    Mosquitto ACL for those users (e.g. controller/examples/mosquitto.acl). ``tls``: the
    broker's ``cafile``, ``certfile`` and ``keyfile`` (then it speaks TLS only); ``require_certificate``:
    clients must also present a certificate signed by that CA. ``persistence``: sessions and queued
    messages survive a restart. ``workdir`` holds the configuration, the log and the persistence file
    (default: a temporary folder, removed by :meth:`close`). Use it as a context manager, or
    :meth:`start` and :meth:`close`. ``port``: listen there instead of on a free port."""

    def __init__(self, workdir: str | Path | None = None, *, users: Mapping[str, str] | None = None,
                 tls: Mapping[str, str | Path] | None = None, require_certificate: bool = False,
                 persistence: bool = False, exe: str | None = None, port: int | None = None,
                 acl_file: str | Path | None = None) -> None:
        self.exe = exe or mosquitto_program()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="roadside-mosquitto-") if workdir is None else workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls = dict(tls) if tls else None
        conf = [f"listener {self.port} {self.host}", "set_tcp_nodelay true", f"log_dest file {self.dir}/mosquitto.log"]
        if persistence:
            conf += ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1"]
        else:
            conf.append("persistence false")
        if os.geteuid() == 0:
            conf.append("user root")  # else it drops to the mosquitto user, who cannot write into our folders
        if self.tls:
            conf += [f"{k} {self.tls[k]}" for k in ("cafile", "certfile", "keyfile")]
            if require_certificate:
                conf.append("require_certificate true")
        if users:
            pw = self.dir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            pw.chmod(0o600)
            tool = shutil.which("mosquitto_passwd") or str(Path(self.exe).with_name("mosquitto_passwd"))
            subprocess.run([tool, "-U", str(pw)], check=True, capture_output=True)
            conf += [f"password_file {pw}", "allow_anonymous false"]
        else:
            conf.append("allow_anonymous true")
        if acl_file is not None:
            conf.append(f"acl_file {Path(acl_file).resolve()}")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def mqtt_config(self, **settings) -> MqttConfig:
        """An MqttConfig for this broker (host and port; ``settings`` add or override the rest)."""
        return MqttConfig(host=self.host, port=self.port, **settings)

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self) -> "PrivateBroker":
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: port_open(self.port) or self.proc.poll() is not None, 10, f"mosquitto on port {self.port}",
                       interval=0.05)
        except TimeoutError:
            self.stop()
            raise RoadsideError(f"mosquitto did not open port {self.port}: {self.log()[-500:]}") from None
        if self.proc.poll() is not None:
            raise RoadsideError(f"mosquitto exited at start: {self.log()[-500:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> "PrivateBroker":
        self.stop()
        return self.start()

    def freeze(self) -> None:
        """SIGSTOP: the broker keeps its connections open and answers nothing (a hung broker)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop it and remove its temporary folder (a given ``workdir`` stays)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PrivateBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def log(self) -> str:
        p = self.dir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""


class Recorder:
    """A subscriber that keeps every message under ``prefix`` (None: every topic), QoS 1, as
    ``(time, topic, payload, retained)``; ``mqtt``: the broker's settings, or the port of a local one.

    With a ``client_id`` its session is persistent (the broker keeps the messages for it while it is
    disconnected); without one it gets a fresh id and a clean session."""

    def __init__(self, mqtt: MqttConfig | int, prefix: str | None, client_id: str | None = None) -> None:
        cfg = mqtt if isinstance(mqtt, MqttConfig) else MqttConfig(port=mqtt, reconnect_min_s=0.2, reconnect_max_s=1.0,
                                                                  keepalive_s=10)
        self.prefix = prefix
        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = BrokerClient(cfg, client_id or f"recorder-{uuid.uuid4().hex[:12]}", clean_session=client_id is None,
                                   on_message=self._add, name="recorder")
        # a recorder outlives the broker outages of its test: its reconnect attempts are no news
        self.client.log.setLevel(logging.ERROR)
        self.client.subscribe(f"{prefix}/#" if prefix else "#", qos=1)
        self.client.start()

    def _add(self, m: Received) -> None:
        with self.lock:
            self.messages.append((time.time(), m.topic, m.payload, m.retain))

    def wait_connected(self, timeout: float = 15) -> None:
        """Connected and subscribed; TimeoutError saying why not."""
        if not self.client.wait_connected(timeout):
            raise TimeoutError(f"the subscriber could not connect to the broker: {self.client.status().last_error}")

    def payloads(self, suffix: str) -> list[dict]:
        """JSON payloads of the topics ending in ``suffix``, in arrival order."""
        with self.lock:
            return [json.loads(p) for _, t, p, _ in self.messages if t.endswith(suffix)]

    def texts(self, topic: str) -> list[str]:
        with self.lock:
            return [p.decode() for _, t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.stop(flush_timeout_s=0.5)


__all__ = ["PrivateBroker", "Recorder", "free_port", "mosquitto_program", "port_open", "wait_until"]
