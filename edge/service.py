"""The edge service: cameras -> vision pipelines -> outbox / MQTT, watched by the health API.

Data flows one way: each camera's :class:`~roadside.edge.sources.LiveSource` hands its newest frame to a
:class:`CameraWorker` thread, which runs the vision pipeline (wall-clock bins, so 15-minute bins start at
:00, :15, ...), stores every closed bin as a counts message in the durable
:class:`~roadside.edge.outbox.Outbox` and sends zone changes as presence messages through the
:class:`~roadside.edge.mqtt_link.MqttLink`. A health thread publishes each camera's health. The
health API (edge/health_api.py) only reads :meth:`EdgeService.status` and :meth:`EdgeService.readiness`.

SIGTERM/SIGINT: sources stop, each camera's open bins are closed (as partial bins) into the outbox, the
link delivers what it can within a few seconds, publishes ``offline`` and disconnects; the rest stays in
the outbox for the next run.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

from roadside.edge.config import VisionConfig
from roadside.core.errors import RoadsideError
from roadside.edge.mqtt_link import MqttLink
from roadside.edge.outbox import Outbox
from roadside.core.payloads import CountsMessage, HealthMessage, PresenceMessage, ZoneState
from roadside.edge.counting import IntervalBin
from roadside.edge.pipeline import CameraPipeline, config_hash
from roadside.edge.service_config import CameraConfig, EdgeConfig, redact_url
from roadside.edge.sources import LiveSource, SourceStatus, capture_options

log = logging.getLogger("roadside.edge.service")

#: a partial bin is one whose observed time is short of its length by more than this share
_PARTIAL_TOLERANCE = 0.01


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


class _Rate:
    """Events per second over the last few seconds (bounded memory)."""

    def __init__(self, n: int = 64):
        self.t: deque[float] = deque(maxlen=n)

    def tick(self, t: float) -> None:
        self.t.append(t)

    def rate(self, now: float, stale_s: float = 5.0) -> float:
        if len(self.t) < 2 or now - self.t[-1] > stale_s:
            return 0.0
        return (len(self.t) - 1) / max(self.t[-1] - self.t[0], 1e-6)


class Coverage:
    """The spans of wall-clock time during which a camera delivered frames (for partial bins)."""

    def __init__(self, gap_s: float):
        self.gap_s = gap_s
        self.spans: list[list[float]] = []

    def frame(self, t: float) -> None:
        if self.spans and 0 <= t - self.spans[-1][1] <= self.gap_s:
            self.spans[-1][1] = t
        elif not self.spans or t > self.spans[-1][1]:
            self.spans.append([t, t])

    def observed(self, start: float, end: float) -> float:
        return sum(max(0.0, min(end, e) - max(start, s)) for s, e in self.spans)

    def forget_before(self, t: float) -> None:
        self.spans = [s for s in self.spans if s[1] >= t]


class CameraWorker:
    """One camera: newest frame -> pipeline -> counts (outbox), presence (link), snapshot and statistics."""

    def __init__(self, service: "EdgeService", cam: CameraConfig, vision: VisionConfig, detector, model_name: str):
        self.service = service
        self.cam = cam
        self.vision = vision
        self.detector = detector
        self.model_name = model_name
        self.hash = config_hash(vision)
        cfg = service.config
        self.source = LiveSource(cam.id, cam.source, cfg.sources, detector.preprocess, loop=cam.loop, realtime=cam.realtime,
                                 capture_options=capture_options(cam.rtsp_transport), assume_fps=cam.fps)
        self.pipeline: CameraPipeline | None = None
        self.coverage = Coverage(cfg.sources.stall_timeout_s)
        self.frames_processed = 0
        self.errors = 0
        self.last_error: str | None = None
        self.detector_ms = 0.0
        self.last_processed: float | None = None  # monotonic
        self.bins_emitted = 0
        self._rate = _Rate()
        self._snapshot: tuple | None = None
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts_topic = service.link.topic(f"{cam.id}/counts")

    def start(self) -> None:
        self.source.start()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.cam.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the source, then the worker, which closes its open bins into the outbox."""
        self.source.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            if self._thread.is_alive():
                log.error("camera %s: the worker did not stop", self.cam.id)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the worker thread -------------------------------------------------------------------------
    def _run(self) -> None:
        idx = 0
        while not self._stop.is_set():
            fr = self.source.get(timeout=0.25)
            now = time.time()
            try:
                if fr is None:
                    if self.pipeline is not None:
                        # no frame now: close the bins that ended before the stall window, so that a short
                        # hiccup (a file reopening) does not make a bin partial, while a dead camera's bins
                        # still come on time (observed_s tells how much of them was seen)
                        self._emit(self.pipeline.bins.close_until(now - self.coverage.gap_s))
                    continue
                if self.pipeline is None:
                    self.pipeline = CameraPipeline(self.vision, self.detector, fr.fps, bin_clock_start=fr.wall_s)
                self.coverage.frame(fr.wall_s)
                res = self.pipeline.process(idx, fr.mono_s - self._t0, fr.image, fr.tensor, fr.transform, clock_s=fr.wall_s)
                idx += 1
                self.frames_processed += 1
                self.last_processed = time.monotonic()
                self._rate.tick(self.last_processed)
                self.detector_ms = res.detector_ms if self.frames_processed == 1 else 0.9 * self.detector_ms + 0.1 * res.detector_ms
                self._snapshot = (fr.image, res.tracks, fr.wall_s)
                if res.zone_changes:
                    self._presence(fr.wall_s)
                self._emit(res.closed_bins)
            except Exception as e:  # a bug or an unexpected frame must not end the camera: report and go on
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                if self.errors <= 3 or self.errors % 100 == 0:
                    log.exception("camera %s: processing failed (%d errors so far)", self.cam.id, self.errors)
        if self.pipeline is not None:  # flush: the open bins, as partial bins
            try:
                self._emit(self.pipeline.bins.close_until(time.time(), final=True))
            except Exception:
                log.exception("camera %s: cannot store the last bins", self.cam.id)

    def _emit(self, closed: list[IntervalBin]) -> None:
        if not closed:
            return
        svc = self.service
        for b in closed:
            length = b.interval_s
            observed = min(self.coverage.observed(b.start_s, b.end_s), length)
            partial = b.partial or observed < length * (1 - _PARTIAL_TOLERANCE)

            def make(seq: int, b=b, length=length, observed=observed, partial=partial) -> bytes:
                msg = CountsMessage(
                    seq=seq, site=svc.config.site, device=svc.config.device, camera=self.cam.id,
                    interval_start=_utc(b.start_s), interval_s=length, lines=b.lines,
                    config_hash=self.hash, model=self.model_name, partial=partial,
                    observed_s=round(observed, 3),
                )
                return msg.model_dump_json().encode()

            svc.outbox.add(self.cam.id, self._counts_topic, make)
            self.bins_emitted += 1
        longest = max(self.vision.counting.bins_s)
        self.coverage.forget_before(time.time() - 2 * longest - 60)
        svc.link.notify()

    def _presence(self, wall_s: float) -> None:
        zones = {zid: ZoneState(occupied=st.occupied, count=st.count, max_dwell_s=round(st.max_dwell_s, 3))
                 for zid, st in self.pipeline.zones.status.items()}
        msg = PresenceMessage(site=self.service.config.site, device=self.service.config.device, camera=self.cam.id,
                              ts=_utc(wall_s), zones=zones)
        self.service.link.publish_now(f"{self.cam.id}/presence", msg.model_dump_json().encode())

    # -- reading -----------------------------------------------------------------------------------
    def health(self) -> tuple[str, list[str], SourceStatus]:
        src = self.source.status()
        reasons = list(src.reasons)
        if not self.alive and self._thread is not None:
            return "offline", ["the camera worker stopped"], src
        if src.state != "live":
            return "offline", reasons or [src.state], src
        if self.errors and self.last_error:
            reasons.append(f"{self.errors} processing error(s), last: {self.last_error}")
        return ("degraded" if reasons else "ok"), reasons, src

    def snapshot_jpeg(self, quality: int = 80) -> bytes | None:
        import cv2

        from roadside.edge.annotate import draw

        snap, pipe = self._snapshot, self.pipeline
        if snap is None or pipe is None:
            return None
        image, tracks, wall = snap
        occ = {z: s.count for z, s in pipe.zones.status.items()}
        img = draw(image, tracks, self.vision.lines, self.vision.zones, pipe.counter.totals_dict(), occ,
                   f"{self.cam.id}  {_utc(wall).strftime('%Y-%m-%d %H:%M:%S')} UTC")
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return buf.tobytes() if ok else None

    def status(self, now_wall: float) -> dict:
        state, reasons, src = self.health()
        link = self.service.link.status()
        last_ack = link.last_counts_ack.get(self.cam.id)
        return {
            "state": state, "reasons": reasons, "source": redact_url(self.cam.source), "source_state": src.state,
            "fps_in": round(src.fps_in, 2), "fps_processed": round(self._rate.rate(time.monotonic()), 2),
            "frames_in": src.frames_in, "frames_processed": self.frames_processed, "frames_dropped": src.frames_dropped,
            "detector_latency_ms": round(self.detector_ms, 2),
            "last_frame_age_s": None if src.last_frame_age_s is None else round(src.last_frame_age_s, 3),
            "last_publish_age_s": None if last_ack is None else round(now_wall - last_ack, 3),
            "reconnects": src.reconnects, "loops": src.loops, "last_source_error": src.last_error,
            "processing_errors": self.errors, "bins_emitted": self.bins_emitted,
            "width": src.width, "height": src.height, "source_fps": src.fps,
            "model": self.model_name, "config_hash": self.hash,
        }


def cpu_temperature_c() -> float | None:
    """The hottest thermal zone the OS exposes (Linux sysfs), or None."""
    temps = []
    for p in Path("/sys/class/thermal").glob("thermal_zone*/temp"):
        try:
            temps.append(int(p.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return max(temps) if temps else None


def process_rss_bytes(pid: int | None = None) -> int | None:
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class EdgeService:
    def __init__(self, config: EdgeConfig, model_override: str | None = None):
        self.config = config
        self.model_override = model_override
        self.started = time.time()
        self._stop = threading.Event()
        self.state_dir = config.state_path()
        self.outbox: Outbox | None = None
        self.link: MqttLink | None = None
        self.workers: dict[str, CameraWorker] = {}
        self.models: dict[str, str] = {}  # camera -> model name
        self.models_loaded = False
        self.api = None
        self._health_thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> "EdgeService":
        cfg = self.config
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RoadsideError(f"state_dir {self.state_dir}: cannot create it: {e}") from None
        api_sock = self._bind_api() if cfg.api.enabled else None
        self.outbox = Outbox(self.state_dir / "outbox.sqlite", cfg.outbox.max_bytes, cfg.outbox.max_age_s)
        self.link = MqttLink(cfg.mqtt, cfg.client_id, cfg.topic_prefix, self.outbox)
        try:
            self.link.start()
            if api_sock is not None:
                from roadside.edge.health_api import ApiServer

                self.api = ApiServer(self, api_sock).start()
            detectors = self._load_detectors()
        except BaseException:
            self.shutdown()
            raise
        self.models_loaded = True
        for cam in cfg.cameras:
            det = detectors[cam.id]
            self.models[cam.id] = det.name
            self.workers[cam.id] = CameraWorker(self, cam, cfg.vision(cam), det, det.name)
        for w in self.workers.values():
            w.start()
        self._health_thread = threading.Thread(target=self._health_loop, name="health", daemon=True)
        self._health_thread.start()
        log.info("edge service %s/%s running: %d camera(s), broker %s, topics %s/...", cfg.site, cfg.device,
                 len(self.workers), self.link.status().broker, cfg.topic_prefix)
        return self

    def _bind_api(self) -> socket.socket:
        a = self.config.api
        sock = socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((a.host, a.port))
        except OSError as e:
            sock.close()
            raise RoadsideError(f"api: cannot listen on {a.host}:{a.port}: {e.strerror or e} "
                                "(another service there? set api.port, or api.enabled: false)") from None
        sock.listen(64)
        sock.setblocking(False)
        return sock

    def _load_detectors(self) -> dict:
        from roadside.edge.detector import Detector
        from roadside.models.store import resolve_model

        by_key: dict[str, object] = {}
        out = {}
        for cam in self.config.cameras:
            dcfg = self.config.vision(cam).detector
            ref = self.model_override or dcfg.model
            path = resolve_model(ref)
            key = json.dumps([str(path), dcfg.model_dump(mode="json")], sort_keys=True)
            if key not in by_key:
                log.info("loading model %s", path)
                by_key[key] = Detector(path, dcfg)
            out[cam.id] = by_key[key]
        return out

    def request_stop(self, *_args) -> None:
        self._stop.set()

    def run(self) -> int:
        """Start, run until SIGTERM/SIGINT, shut down cleanly; the exit status."""
        prev = {s: signal.signal(s, self.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not self._stop.wait(1.0):
                pass
            log.info("stopping: flushing counts and disconnecting")
        finally:
            self.shutdown()
            for s, h in prev.items():
                signal.signal(s, h)
        return 0

    def shutdown(self) -> None:
        self._stop.set()
        for w in self.workers.values():
            w.stop()
        if self._health_thread is not None:
            self._health_thread.join(5)
        if self.link is not None:
            self.link.stop(flush_timeout_s=5.0)
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self.outbox is not None:
            st = self.outbox.stats()
            if st.depth:
                log.warning("%d counts message(s) stay in the outbox for the next run", st.depth)
            self.outbox.close()

    # -- health ------------------------------------------------------------------------------------
    def _health_loop(self) -> None:
        """Each camera's health every ``health_interval_s``, and at once when its state changes."""
        cfg = self.config
        last_prune = time.monotonic()
        last_sent: dict[str, tuple[str, float]] = {}  # camera -> (state, monotonic time sent)
        while not self._stop.wait(0.5):
            now = time.time()
            if not self.link.connected:
                last_sent.clear()  # nothing to send to; all cameras' health goes out once connected
            for cid, w in self.workers.items():
                if not self.link.connected:
                    break
                state = w.health()[0]
                prev = last_sent.get(cid)
                if prev is not None and prev[0] == state and time.monotonic() - prev[1] < cfg.health_interval_s:
                    continue
                if prev is not None and prev[0] != state:
                    log.info("camera %s: health %s -> %s", cid, prev[0], state)
                last_sent[cid] = (state, time.monotonic())
                st = w.status(now)
                msg = HealthMessage(site=cfg.site, device=cfg.device, camera=cid, ts=_utc(now), state=st["state"],
                                    reasons=st["reasons"], fps_in=st["fps_in"], fps_processed=st["fps_processed"],
                                    detector_latency_ms=st["detector_latency_ms"], last_frame_age_s=st["last_frame_age_s"])
                self.link.publish_now(f"{cid}/health", msg.model_dump_json().encode())
            if time.monotonic() - last_prune > 60:
                last_prune = time.monotonic()
                try:
                    if self.outbox.prune():
                        log.warning("outbox: messages older than outbox.max_age_s were dropped")
                except RoadsideError as e:
                    log.error("%s", e)

    def readiness(self) -> tuple[bool, list[str]]:
        reasons = []
        if not self.models_loaded:
            reasons.append("the model is not loaded yet")
        link = self.link.status() if self.link else None
        if link is None or not link.connected:
            why = (link.last_error or link.state) if link else "not started"
            reasons.append(f"broker not connected ({why})")
        stall = self.config.sources.stall_timeout_s
        for cid, w in self.workers.items():
            src = w.source.status()
            if src.state != "live":
                reasons.append(f"camera {cid}: {src.state}" + (f" ({src.last_error})" if src.last_error else ""))
            elif src.last_frame_age_s is None or src.last_frame_age_s > stall:
                reasons.append(f"camera {cid}: no frame for {src.last_frame_age_s or 0:.1f} s")
        if not self.workers and self.models_loaded:
            reasons.append("no camera is running")
        return not reasons, reasons

    def status(self) -> dict:
        now = time.time()
        link = self.link.status() if self.link else None
        ob = self.outbox.stats() if self.outbox else None
        try:
            disk_free = shutil.disk_usage(self.state_dir).free
        except OSError:
            disk_free = None
        return {
            "site": self.config.site, "device": self.config.device, "uptime_s": round(now - self.started, 1),
            "ready": self.readiness()[0],
            "models": sorted(set(self.models.values())), "model_loaded": self.models_loaded,
            "broker": None if link is None else {
                "address": link.broker, "state": link.state, "connected": link.connected, "last_error": link.last_error,
                "connects": link.connects, "counts_published": link.counts_published, "counts_acked": link.counts_acked,
                "late_published": link.late_published, "realtime_dropped": link.realtime_dropped,
                "last_publish_age_s": None if link.last_ack is None else round(now - link.last_ack, 3),
                "topic_prefix": self.config.topic_prefix,
            },
            "outbox": None if ob is None else {
                "depth": ob.depth, "bytes": ob.bytes, "oldest_age_s": None if ob.oldest_age_s is None else round(ob.oldest_age_s, 1),
                "dropped": ob.dropped, "dropped_total": ob.dropped_total, "max_bytes": self.config.outbox.max_bytes,
                "max_age_s": self.config.outbox.max_age_s,
                "next_seq": {cid: self.outbox.next_seq(cid) for cid in self.workers},
            },
            "cameras": {cid: w.status(now) for cid, w in self.workers.items()},
            "system": {
                "cpu_temperature_c": cpu_temperature_c(), "disk_free_bytes": disk_free, "state_dir": str(self.state_dir),
                "rss_bytes": process_rss_bytes(), "threads": threading.active_count(), "pid": os.getpid(),
            },
        }

    def snapshot(self, camera_id: str) -> bytes | None:
        return self.workers[camera_id].snapshot_jpeg()


def run_service(config: EdgeConfig, model_override: str | None = None) -> int:
    return EdgeService(config, model_override).run()


__all__ = ["CameraWorker", "Coverage", "EdgeService", "run_service"]
