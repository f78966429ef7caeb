"""One camera of the edge service: newest frame -> vision pipeline -> counts, presence, snapshot, statistics.

A :class:`CameraWorker` thread takes its :class:`~roadside.edge.sources.LiveSource`'s newest frame, runs the
:class:`~roadside.edge.pipeline.CameraPipeline` on wall-clock bins (15-minute bins start at :00, :15, ...),
hands every closed bin to its counts sink (the durable outbox) and every zone change to its live sink
(the MQTT link). It knows nothing else of the service.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

from roadside.core.payloads import CountsMessage, PresenceMessage, ZoneState
from roadside.core.redact import redact
from roadside.edge.config import LineConfig, VisionConfig, ZoneConfig
from roadside.edge.counting import IntervalBin, IntervalBins, LineCounter, ZoneMonitor
from roadside.edge.detector import Detector
from roadside.edge.pipeline import CameraPipeline, config_hash
from roadside.edge.service_config import CameraConfig, SourceSettings
from roadside.edge.rates import RecentRate
from roadside.edge.sinks import CountsSink, LiveSink
from roadside.edge.sources import LiveSource, SourceStatus, capture_options
from roadside.edge.status import CameraState, CameraStatus
from roadside.edge.track_paths import TrackPaths

log = logging.getLogger("roadside.edge.service")

#: a partial bin is one whose observed time is short of its length by more than this share
_PARTIAL_TOLERANCE = 0.01


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


class Coverage:
    """The spans of wall-clock time during which a camera delivered frames (for partial bins), from ``since``
    on: after a layout switch, a frame captured before the switch but counted after it covers nothing earlier."""

    def __init__(self, gap_s: float, since: float | None = None):
        self.gap_s = gap_s
        self.since = since
        self.spans: list[list[float]] = []

    def frame(self, t: float) -> None:
        if self.since is not None:
            t = max(t, self.since)
        if self.spans and 0 <= t - self.spans[-1][1] <= self.gap_s:
            self.spans[-1][1] = t
        elif not self.spans or t > self.spans[-1][1]:
            self.spans.append([t, t])

    def observed(self, start: float, end: float) -> float:
        return sum(max(0.0, min(end, e) - max(start, s)) for s, e in self.spans)

    def forget_before(self, t: float) -> None:
        self.spans = [s for s in self.spans if s[1] >= t]


#: a camera's snapshot is encoded at most this often (s); requests in between get the cached JPEG
SNAPSHOT_EVERY_S = 0.5


class CameraWorker:
    """One camera: newest frame -> pipeline -> counts (counts sink), presence (live sink), snapshot, statistics."""

    def __init__(self, cam: CameraConfig, vision: VisionConfig, detector: Detector, sources: SourceSettings,
                 counts: CountsSink, live: LiveSink, *, site: str, device: str):
        self.cam = cam
        self.vision = vision
        self.detector = detector
        self.model_name = detector.name
        self.hash = config_hash(vision)
        self.counts = counts
        self.live = live
        self.site, self.device = site, device
        self.source = LiveSource(cam.id, cam.source, sources, detector.preprocess, loop=cam.loop, realtime=cam.realtime,
                                 capture_options=capture_options(cam.rtsp_transport), assume_fps=cam.fps)
        self.pipeline: CameraPipeline | None = None
        self.coverage = Coverage(sources.stall_timeout_s)
        self.frames_processed = 0
        self.errors = 0
        self.last_error: str | None = None
        self.detector_ms = 0.0
        self.last_processed: float | None = None  # monotonic
        self.bins_emitted = 0
        self._rate = RecentRate()
        self._snapshot: tuple | None = None
        self.heartbeat: float | None = None  # monotonic time of the worker loop's last turn
        self._jpeg: tuple | None = None  # (the snapshot it shows, when encoded (monotonic), JPEG bytes)
        self._jpeg_lock = threading.Lock()
        self.snapshots_encoded = 0
        #: lines or zones outside the source's frame (found once its size is known): the camera is degraded
        self.config_problems: list[str] = []
        self._frame_size: tuple[int, int] | None = None
        #: the bins before the first frame (the pipeline takes them over, and owns them from then on)
        self._bins: IntervalBins | None = None
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._relayout: tuple[VisionConfig, threading.Event] | None = None
        self._relayout_lock = threading.Lock()
        #: recent track paths, for the calibration page's overlay and its line warnings
        self.paths = TrackPaths(vision.counting.anchor)
        #: an unsaved layout counted on the live tracks beside the real one (the calibration page's preview)
        self._preview: tuple[LineCounter, ZoneMonitor, float] | None = None

    def set_preview(self, lines: list[LineConfig], zones: list[ZoneConfig]) -> None:
        """Count ``lines`` and ``zones`` on this camera's tracks from now on, beside its real layout (nothing is
        published); empty lists end the preview."""
        if not lines and not zones:
            self._preview = None
            return
        fps = self.pipeline.fps if self.pipeline is not None else 30.0
        self._preview = (LineCounter(lines, self.vision.counting, fps), ZoneMonitor(zones, self.vision.counting),
                         time.time())

    def preview_status(self) -> dict | None:
        pv = self._preview
        if pv is None:
            return None
        counter, zones, since = pv
        return {"since": since, "counts": counter.totals_dict(),
                "zones": {z: {"occupied": s.occupied, "count": s.count} for z, s in zones.status.items()}}

    def apply(self, vision: VisionConfig) -> threading.Event:
        """Count on ``vision`` (new lines and zones) without a restart: the worker thread switches before its
        next frame, closing the open bins (partial, with the old config hash); the event is set once it has."""
        done = threading.Event()
        with self._relayout_lock:
            self._relayout = (vision, done)
        if not self.alive:  # nothing to switch in flight: take it now
            self._take_relayout(time.time())
        return done

    def _take_relayout(self, now: float) -> None:
        with self._relayout_lock:
            pending, self._relayout = self._relayout, None
        if pending is None:
            return
        vision, done = pending
        if self.pipeline is not None:
            self._emit(self.pipeline.relayout(vision, now))
            # the new configuration was observed from now on: its first bins are partial
            self.coverage = Coverage(self.coverage.gap_s, since=now)
        elif self._bins is not None:  # no frame yet: the open (empty) bins close, new ones have the new lines
            self._emit(self._bins.close_until(now, final=True))
            self._bins = IntervalBins(vision.counting.bins_s, [ln.id for ln in vision.lines])
            self._bins.start(now)
        old, self.vision, self.hash = self.hash, vision, config_hash(vision)
        log.info("camera %s: lines and zones applied without a restart (config hash %s -> %s)", self.cam.id, old,
                 self.hash)
        if self.pipeline is not None:
            self._presence(now)
        done.set()

    def start(self) -> None:
        self.source.start()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.cam.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the source, then the worker, which closes its open bins into the counts sink."""
        self.source.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            if self._thread.is_alive():
                log.error("camera %s: the worker did not stop", self.cam.id)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stuck_for(self, now_mono: float) -> float:
        """Seconds since the worker's loop last turned (0 before it started)."""
        return max(0.0, now_mono - self.heartbeat) if self.heartbeat is not None else 0.0

    # -- the worker thread -------------------------------------------------------------------------
    def _run(self) -> None:
        idx = 0
        # The bin clock runs from the start, frames or not: a camera that never opens still reports its bins
        # (with observed_s 0); the pipeline takes this clock over at the first frame.
        self._bins = IntervalBins(self.vision.counting.bins_s, [ln.id for ln in self.vision.lines])
        self._bins.start(time.time())
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()  # the loop turns at least every 0.25 s: the watchdog's liveness
            fr = self.source.get(timeout=0.25)
            now = time.time()
            try:
                if self._relayout is not None:
                    self._take_relayout(now)
                if fr is None:
                    # no frame now: close the bins that ended before the stall window, so that a short hiccup
                    # (a file reopening) does not make a bin partial, while a dead camera's bins still come on
                    # time (observed_s tells how much of them was seen)
                    self._emit(self._open_bins().close_until(now - self.coverage.gap_s))
                    continue
                size = (fr.image.shape[1], fr.image.shape[0])
                if size != self._frame_size:
                    self._check_frame(size)
                if self.pipeline is None:
                    self.pipeline = CameraPipeline(self.vision, self.detector, fr.fps, bin_clock_start=fr.wall_s)
                    self.pipeline.bins = self._bins
                    self.pipeline.whole_frame_on_bad_roi = True  # reported in config_problems; counting goes on
                self.coverage.frame(fr.wall_s)
                res = self.pipeline.process(idx, fr.mono_s - self._t0, fr.image, fr.tensor, fr.transform, clock_s=fr.wall_s)
                idx += 1
                self.frames_processed += 1
                self.last_processed = time.monotonic()
                self._rate.tick(self.last_processed)
                if res.candidates is not None:  # the detector ran on this frame (detector.detect_fps skips some)
                    self.detector_ms = res.detector_ms if not self.detector_ms else 0.9 * self.detector_ms + 0.1 * res.detector_ms
                self._snapshot = (fr.image, res.tracks, fr.wall_s)
                self.paths.update(fr.wall_s, res.tracks)
                pv = self._preview
                if pv is not None:
                    pv[0].update(idx, res.tracks)
                    pv[1].update(fr.wall_s, res.tracks)
                if res.zone_changes:
                    self._presence(fr.wall_s)
                self._emit(res.closed_bins)
            except Exception as e:  # a bug or an unexpected frame must not end the camera: report and go on
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                if self.errors <= 3 or self.errors % 100 == 0:
                    log.exception("camera %s: processing failed (%d errors so far)", self.cam.id, self.errors)
        try:  # flush: the open bins, as partial bins
            self._emit(self._open_bins().close_until(time.time(), final=True))
        except Exception:
            log.exception("camera %s: cannot store the last bins", self.cam.id)

    def _open_bins(self) -> IntervalBins:
        """The bins being filled: the pipeline's once there is one, before that the worker's own."""
        return self.pipeline.bins if self.pipeline is not None else self._bins

    def _check_frame(self, size: tuple[int, int]) -> None:
        """The source's frame size is known (or changed): lines and zones outside it are a configuration error."""
        self._frame_size = size
        from roadside.edge.layout import validate_layout

        layout = validate_layout(self.vision.lines, self.vision.zones, frame_size=size)
        from roadside.edge.roi import check_roi

        roi = check_roi(self.vision.detector, size)
        if roi:
            roi += ": the detector runs on the whole frame until it is fixed"
        self.config_problems = [f"configuration: camera {self.cam.id}: {p}" for p in layout.problems + ([roi] if roi else [])]
        for p in self.config_problems:
            log.error("camera %s: %s", self.cam.id, p)

    def _emit(self, closed: list[IntervalBin]) -> None:
        if not closed:
            return
        for b in closed:
            length = b.interval_s
            observed = min(self.coverage.observed(b.start_s, b.end_s), length)
            partial = b.partial or observed < length * (1 - _PARTIAL_TOLERANCE)

            def message(seq: int, b=b, observed=observed, partial=partial, counted_on=self.hash) -> CountsMessage:
                return CountsMessage(
                    seq=seq, site=self.site, device=self.device, camera=self.cam.id,
                    interval_start=utc(b.start_s), interval_s=b.interval_s, lines=b.lines,
                    config_hash=counted_on, model=self.model_name, partial=partial, observed_s=round(observed, 3),
                )

            self.counts.put(self.cam.id, message)
            self.bins_emitted += 1
        longest = max(self.vision.counting.bins_s)
        self.coverage.forget_before(time.time() - 2 * longest - 60)

    def _presence(self, wall_s: float) -> None:
        zones = {zid: ZoneState(occupied=st.occupied, count=st.count, max_dwell_s=round(st.max_dwell_s, 3))
                 for zid, st in self.pipeline.zones.status.items()}
        self.live.publish(self.cam.id, "presence", PresenceMessage(site=self.site, device=self.device, camera=self.cam.id,
                                                                   ts=utc(wall_s), zones=zones))

    # -- reading -----------------------------------------------------------------------------------
    def health(self) -> tuple[CameraState, list[str], SourceStatus]:
        src = self.source.status()
        reasons = list(src.reasons)
        if not self.alive and self._thread is not None:
            return "offline", ["the camera worker stopped"], src
        if src.state != "live":
            return "offline", reasons or [src.state], src
        reasons += self.config_problems
        if self.errors and self.last_error:
            reasons.append(f"{self.errors} processing error(s), last: {self.last_error}")
        if self.pipeline is not None and self.pipeline.view_problem:
            reasons.append(f"counting paused: {self.pipeline.view_problem} (lines drawn on another view)")
        return ("degraded" if reasons else "ok"), reasons, src

    def snapshot_jpeg(self, quality: int = 80) -> bytes | None:
        """The latest processed frame, annotated, as JPEG. Encoded at most once per frame and at most every
        SNAPSHOT_EVERY_S (clients in between get the cached image), so snapshot clients, however many,
        cost the camera's pipeline a bounded amount of CPU."""
        snap = self._snapshot
        if snap is None or self.pipeline is None:
            return None
        with self._jpeg_lock:
            cached = self._jpeg
            if cached is not None and (cached[0] is snap or time.monotonic() - cached[1] < SNAPSHOT_EVERY_S):
                return cached[2]
            jpeg = self._encode(snap, quality)
            if jpeg is not None:
                self._jpeg = (snap, time.monotonic(), jpeg)
                self.snapshots_encoded += 1
            return jpeg

    def _encode(self, snap: tuple, quality: int) -> bytes | None:
        import cv2

        from roadside.edge.annotate import draw

        pipe = self.pipeline
        image, tracks, wall = snap
        occ = {z: s.count for z, s in pipe.zones.status.items()}
        img = draw(image, tracks, *pipe.layout_in_view(), pipe.counter.totals_dict(), occ,
                   f"{self.cam.id}  {utc(wall).strftime('%Y-%m-%d %H:%M:%S')} UTC")
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return buf.tobytes() if ok else None

    def status(self, now_wall: float, last_counts_ack: float | None = None) -> CameraStatus:
        """The camera's status; ``last_counts_ack``: when the broker last acknowledged one of its counts (epoch)."""
        state, reasons, src = self.health()
        return CameraStatus(
            state=state, reasons=reasons, source=redact(self.cam.source), source_state=src.state,
            fps_in=round(src.fps_in, 2), fps_processed=round(self._rate.rate(time.monotonic()), 2),
            frames_in=src.frames_in, frames_processed=self.frames_processed, frames_dropped=src.frames_dropped,
            detector_latency_ms=round(self.detector_ms, 2),
            last_frame_age_s=None if src.last_frame_age_s is None else round(src.last_frame_age_s, 3),
            last_publish_age_s=None if last_counts_ack is None else round(now_wall - last_counts_ack, 3),
            reconnects=src.reconnects, loops=src.loops, last_source_error=src.last_error,
            processing_errors=self.errors, bins_emitted=self.bins_emitted, snapshots_encoded=self.snapshots_encoded,
            width=src.width, height=src.height, source_fps=src.fps,
            model=self.model_name, config_hash=self.hash,
        )


__all__ = ["CameraWorker", "Coverage", "utc"]
