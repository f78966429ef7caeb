"""Helpers of the edge-service tests: the service as a process, site configurations, a local RTSP camera
and an HTTP stream (broker and subscriber: helpers.broker)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from helpers.broker import require_program, wait_for
from helpers.data import MODELS, ROOT, VIDEOS
from roadside.core.testing import free_port, port_open

SMALL_MODEL = MODELS / "picodet_s_320_coco.onnx"


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
        self.proc = subprocess.Popen([sys.executable, "-m", "roadside.core.cli", "-v", "edge", "run", "--config", str(self.config)],
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
        wait_for(lambda: port_open(self.client_port) and port_open(self.source_port), 15, "the RTSP server")
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


class HttpCamera:
    """An HTTP MPEG-TS stream of a shared clip served by ffmpeg itself (one client per ffmpeg run)."""

    def __init__(self, clip: Path, workdir: Path):
        self.ffmpeg = require_program("ffmpeg", "apt-get install -y ffmpeg")
        self.clip, self.dir, self.port = clip, workdir, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam.ts"

    def start(self) -> "HttpCamera":
        with open(self.dir / "ffmpeg-http.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.ffmpeg, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
                 "-c", "copy", "-f", "mpegts", "-listen", "1", self.url], stdout=subprocess.DEVNULL, stderr=log)
        wait_for(lambda: _port_open_quiet(self.port) or self.proc.poll() is not None, 10, "ffmpeg's HTTP server")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def _port_open_quiet(port: int) -> bool:
    """Is something listening on the port, found without connecting to it (ffmpeg -listen 1 serves only its
    first client)? Reads the kernel's socket table."""
    try:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows)  # 0A: LISTEN
