"""Helpers of the edge-service tests: a private Mosquitto, a local RTSP camera, the service as a process,
an MQTT subscriber that records everything.

External programs (all from Debian packages; CI installs them, see edge/README_SERVICE.md):
``/usr/sbin/mosquitto`` (mosquitto), ``ffmpeg`` (ffmpeg), ``rtsp-server-perl`` (rtsp-server-perl).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import BAD, MODELS, ROOT, VIDEOS  # noqa: F401  (re-exported for the service tests)

MOSQUITTO = "/usr/sbin/mosquitto"
SMALL_MODEL = MODELS / "picodet_s_320_coco.onnx"


def require_program(path_or_name: str, install: str) -> str:
    """The program's path; a missing program fails the test in CI and skips it (saying how to install) elsewhere."""
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) else shutil.which(path_or_name)
    if found:
        return found
    msg = f"{path_or_name} is not installed (install it with: {install})"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_pair_base(count: int = 4) -> int:
    """An even UDP port p with p .. p + 2*count free (RTP/RTCP port pairs)."""
    import random

    for _ in range(200):
        base = random.randrange(30000, 60000, 2)
        socks = []
        try:
            for port in range(base, base + 2 * count):
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(u)
                u.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for u in socks:
                u.close()
    raise RuntimeError("no free UDP port range")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Mosquitto:
    """A private broker on a free port, with persistence (a subscriber's session survives a restart)."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None):
        self.exe = require_program(MOSQUITTO, "apt-get install -y mosquitto")
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.dir}/",
                "autosave_interval 1", f"log_dest file {self.dir}/mosquitto.log"]
        if users:
            pw = self.dir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            pw.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
            conf += [f"password_file {pw}", "allow_anonymous false"]
        else:
            conf.append("allow_anonymous true")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _port_open(self.port), 10, f"mosquitto on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        p = self.dir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""


class Recorder:
    """An MQTT subscriber with a persistent session (QoS 1) that records every message under a prefix."""

    def __init__(self, port: int, prefix: str, client_id: str, username: str | None = None, password: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[float, str, bytes, bool]] = []  # (time, topic, payload, retained)
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.prefix = prefix
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(f"{self.prefix}/#", qos=1)
            self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((time.time(), msg.topic, bytes(msg.payload), bool(msg.retain)))

    def wait_connected(self, timeout: float = 15) -> None:
        assert self.connected.wait(timeout), "the test subscriber could not connect to the broker"
        time.sleep(0.3)  # the subscription is acknowledged

    def payloads(self, suffix: str) -> list[dict]:
        with self.lock:
            return [json.loads(p) for _, t, p, _ in self.messages if t.endswith(suffix)]

    def texts(self, topic: str) -> list[str]:
        with self.lock:
            return [p.decode() for _, t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def dedup_seqs(counts: list[dict]) -> list[int]:
    """seq values in arrival order, each kept at its first arrival."""
    seen, out = set(), []
    for m in counts:
        if m["seq"] not in seen:
            seen.add(m["seq"])
            out.append(m["seq"])
    return out


def site_config(tmp_path: Path, *, broker_port: int, api_port: int, cameras: list[dict] | None = None,
                **extra) -> Path:
    """A site YAML for a fast test service: 1-s bins, the smallest model, fake live cameras from shared clips."""
    cfg = {
        "site": "test",
        "device": "edge-t",
        "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "api": {"host": "127.0.0.1", "port": api_port},
        "health_interval_s": 2,
        "detector": {"model": str(SMALL_MODEL), "threads": 1},
        "counting": {"bins_s": [1]},
        "sources": {"backoff_min_s": 0.2, "backoff_max_s": 2.0},
        "cameras": cameras or [{
            "id": "cam1", "source": str(VIDEOS / "intersection_4way.mp4"), "loop": True, "realtime": True,
            "lines": [{"id": "ew", "a": [330, 330], "b": [345, 95]}],
            "zones": [{"id": "box", "polygon": [[200, 110], [560, 110], [560, 235], [200, 235]]}],
        }],
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class ServiceProcess:
    """``roadside edge run --config PATH`` as a child process (so that it can be SIGKILLed)."""

    def __init__(self, config: Path, api_port: int, log: Path):
        self.config, self.api_port, self.log_path = config, api_port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "roadside.edge.cli", "-v", "edge", "run", "--config", str(self.config)],
                                     cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.get("/healthz")[0] == 200 or self._died(), 60, "the service's health API")
        assert self.proc.poll() is None, f"the service exited with {self.proc.returncode}:\n{self.log()}"
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def get(self, path: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}", method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0, b""

    def status(self) -> dict:
        code, body = self.get("/api/status")
        assert code == 200, (code, body)
        return json.loads(body)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the service and its decoder processes, as a power cut would
        self.proc.wait(timeout=10)
        self._log.close()

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RtspCamera:
    """A local RTSP endpoint (rtsp-server-perl) fed with a shared clip by ffmpeg: a camera that can be cut.

    rtsp-server-perl keeps a mount after its publisher dies, so restoring restarts server and publisher
    (as a camera that reboots would)."""

    def __init__(self, clip: Path, workdir: Path):
        self.ffmpeg = require_program("ffmpeg", "apt-get install -y ffmpeg")
        self.server_exe = require_program("rtsp-server-perl", "apt-get install -y rtsp-server-perl")
        self.clip = clip
        self.dir = workdir
        self.client_port, self.source_port = free_port(), free_port()
        self.server: subprocess.Popen | None = None
        self.pusher: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}/cam"

    def start(self) -> "RtspCamera":
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "RtspCamera":
        # RTP goes over UDP from rtp_start_port up (default 20000: taken if two servers run at once)
        with open(self.dir / "rtsp-server.log", "ab") as log:
            self.server = subprocess.Popen(
                [self.server_exe, "--clientport", str(self.client_port), "--serverport", str(self.source_port),
                 "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
                 "--rtp_start_port", str(free_udp_pair_base())],
                stdout=subprocess.DEVNULL, stderr=log)
        wait_for(lambda: _port_open(self.client_port) and _port_open(self.source_port), 15, "the RTSP server")
        for attempt in range(5):  # the server sometimes refuses the very first publisher (404 on RECORD)
            with open(self.dir / "ffmpeg.log", "ab") as log:
                self.pusher = subprocess.Popen(
                    [self.ffmpeg, "-nostdin", "-loglevel", "warning", "-re", "-stream_loop", "-1", "-i", str(self.clip),
                     "-c", "copy", "-f", "rtsp", f"rtsp://127.0.0.1:{self.source_port}/cam"],
                    stdout=subprocess.DEVNULL, stderr=log)
            time.sleep(1.0)
            if self.pusher.poll() is None:
                return self
        raise AssertionError("ffmpeg could not publish to the RTSP server: " + (self.dir / "ffmpeg.log").read_text())

    def cut_stream(self) -> None:
        """The publisher dies: the connection stays open, no frame comes (a stall)."""
        if self.pusher is not None:
            self.pusher.kill()
            self.pusher.wait(timeout=10)
            self.pusher = None

    def stop(self) -> None:
        self.cut_stream()
        if self.server is not None:
            self.server.kill()
            self.server.wait(timeout=10)
            self.server = None
