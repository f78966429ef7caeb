"""Live camera sources for the service: "latest frame wins", stall detection, reconnection, image checks.

:class:`LiveSource` runs one :class:`~roadside.core.video.VideoReader` (crash-isolated decoding) in a
thread of its own and keeps only the newest frame for the consumer: when inference is slower than the
camera, older frames are dropped and counted, so the service always works on the present. It also

* detects a dead or stalled stream (no new frame for ``stall_timeout_s``, 2 s by default), reports it and
  reconnects with exponential backoff and random jitter, forever, with one thread and one decoder
  process at a time (nothing accumulates across reconnects);
* paces video files at their frame rate and loops them (a fake live camera), or delivers every frame
  with back-pressure when ``realtime`` is off;
* flags degraded images: frozen (identical images), black and blinded (mean brightness), each lasting
  longer than the configured time.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from roadside.models.formats import Preprocess
from roadside.edge.rates import RecentRate
from roadside.edge.service_config import SourceSettings, is_device, is_url
from roadside.core.redact import redact
from roadside.core.video import VideoError, VideoReader

log = logging.getLogger("roadside.edge.sources")

#: a connection that delivered frames this long resets the reconnect backoff
_HEALTHY_AFTER_S = 5.0


@dataclass
class SourceFrame:
    number: int  # frames received from this source since it started (across reconnects and loops)
    wall_s: float  # epoch seconds when it was received
    mono_s: float  # time.monotonic() when it was received
    image: np.ndarray  # BGR uint8, owned by the receiver
    tensor: np.ndarray | None
    transform: tuple[float, float, float, float] | None
    fps: float  # the source's frame rate


@dataclass
class SourceStatus:
    #: starting | live | reconnecting | ended | stopped
    state: str
    reasons: list[str] = field(default_factory=list)  # why it is not ok (empty when ok)
    frames_in: int = 0
    frames_dropped: int = 0  # received but replaced by a newer frame before being taken
    fps_in: float = 0.0
    last_frame_age_s: float | None = None
    reconnects: int = 0
    loops: int = 0
    last_error: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None

    @property
    def degraded(self) -> bool:
        return self.state == "live" and bool(self.reasons)


class _ImageCheck:
    """Frozen / black / blinded image detection, one frame at a time."""

    def __init__(self, settings: SourceSettings):
        self.s = settings
        self._crc: int | None = None
        self._same_since: float | None = None
        self._dark_since: float | None = None
        self._bright_since: float | None = None
        self.brightness = 0.0

    def reset(self) -> None:
        self._crc = None
        self._same_since = self._dark_since = self._bright_since = None

    def update(self, image: np.ndarray, now: float) -> None:
        crc = zlib.crc32(np.ascontiguousarray(image))
        if crc == self._crc:
            if self._same_since is None:
                self._same_since = now
        else:
            self._same_since = None
        self._crc = crc
        self.brightness = float(image[::8, ::8].mean())
        self._dark_since = (self._dark_since or now) if self.brightness < self.s.dark_level else None
        self._bright_since = (self._bright_since or now) if self.brightness > self.s.bright_level else None

    def reasons(self, now: float) -> list[str]:
        # Read each field once: the source thread updates them while the health thread reads them here, and
        # a field checked and then read again could have become None in between.
        same, dark, bright, brightness = self._same_since, self._dark_since, self._bright_since, self.brightness
        out = []
        if same is not None and now - same >= self.s.frozen_after_s:
            out.append(f"frozen: identical images for {now - same:.1f} s")
        if dark is not None and now - dark >= self.s.bad_image_after_s:
            out.append(f"black image: mean brightness {brightness:.0f} for {now - dark:.1f} s")
        if bright is not None and now - bright >= self.s.bad_image_after_s:
            out.append(f"blinded image: mean brightness {brightness:.0f} for {now - bright:.1f} s")
        return out


class LiveSource:
    """One camera's frames, newest first, from a file, a stream or a device, kept alive forever."""

    def __init__(self, camera_id: str, source: str, settings: SourceSettings | None = None,
                 preprocess: Preprocess | None = None, *, loop: bool = False, realtime: bool = True,
                 capture_options: str | None = None, assume_fps: float | None = None, seed: int | None = None):
        self.camera_id = camera_id
        self.source = source
        self.settings = settings or SourceSettings()
        self.preprocess = preprocess
        self.is_file = not (is_url(source) or is_device(source))
        self.loop = loop and self.is_file
        self.realtime = realtime or not self.is_file  # a live stream is always real time
        self.capture_options = capture_options
        self.assume_fps = assume_fps
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._latest: SourceFrame | None = None
        self._stop = threading.Event()
        self._cancel = threading.Event()  # stop or reconnect request: interrupts a pending open/read
        self._reconnect = threading.Event()
        self._thread: threading.Thread | None = None
        self._check = _ImageCheck(self.settings)
        self._recent = RecentRate()  # frames delivered
        self._status = SourceStatus("starting")
        self._last_frame_mono: float | None = None
        self._number = 0
        self._finished = False  # the source thread has returned (stopped, or a file ended)

    # -- control -----------------------------------------------------------------------------------
    def start(self) -> "LiveSource":
        self._thread = threading.Thread(target=self._run, name=f"source-{self.camera_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._cancel.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("camera %s: the source thread did not stop within %.0f s", self.camera_id, timeout)
        self._status.state = "stopped"

    def request_reconnect(self) -> None:
        """Drop the current connection and open the source again (an operator's action)."""
        self._reconnect.set()
        self._cancel.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- consuming ---------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> SourceFrame | None:
        """The newest frame not yet taken; waits up to ``timeout`` s for one (None when none came)."""
        with self._cond:
            if self._latest is None:
                self._cond.wait_for(lambda: self._latest is not None or self._stop.is_set() or self._finished, timeout)
            frame, self._latest = self._latest, None
            self._cond.notify_all()
            return frame

    def status(self) -> SourceStatus:
        now = time.monotonic()
        st = self._status
        last_frame = self._last_frame_mono  # read once (the source thread writes it)
        age = None if last_frame is None else now - last_frame
        reasons = list(st.reasons)
        if st.state == "live":
            reasons = self._check.reasons(now)
            if age is not None and age > self.settings.stall_timeout_s:
                reasons.insert(0, f"no new frame for {age:.1f} s")
        fps = self._recent.rate(now, stale_s=2 * self.settings.stall_timeout_s)
        return SourceStatus(
            state=st.state, reasons=reasons, frames_in=st.frames_in, frames_dropped=st.frames_dropped, fps_in=fps,
            last_frame_age_s=age,
            reconnects=st.reconnects, loops=st.loops, last_error=st.last_error, width=st.width, height=st.height,
            fps=st.fps,
        )

    # -- the source thread -------------------------------------------------------------------------
    def _deliver(self, fr, fps: float) -> None:
        now_mono, now_wall = time.monotonic(), time.time()
        image = fr.image.copy()
        tensor = None if fr.tensor is None else fr.tensor.copy()
        self._check.update(image, now_mono)
        frame = SourceFrame(self._number, now_wall, now_mono, image, tensor, fr.transform, fps)
        self._number += 1
        with self._cond:
            if not self.realtime:  # a file as fast as it is processed: every frame, with back-pressure
                self._cond.wait_for(lambda: self._latest is None or self._stop.is_set())
            if self._latest is not None:
                self._status.frames_dropped += 1
            self._latest = frame
            self._status.frames_in += 1
            self._last_frame_mono = now_mono
            self._recent.tick(now_mono)
            self._cond.notify_all()

    def _set_down(self, state: str, reason: str) -> None:
        first = self._status.state != state or self._status.last_error != reason
        self._status.state = state
        self._status.reasons = [reason]
        self._status.last_error = reason
        if first:
            log.warning("camera %s: %s", self.camera_id, reason)

    def _wait(self, seconds: float) -> None:
        """Sleep, but wake at once for stop or a reconnect request."""
        self._cancel.wait(seconds)

    def _run(self) -> None:
        backoff = self.settings.backoff_min_s
        s = self.settings
        while not self._stop.is_set():
            if self._reconnect.is_set():
                self._reconnect.clear()
                if not self._stop.is_set():
                    self._cancel.clear()
            try:
                reader = VideoReader(self.source, preprocess=self.preprocess, open_timeout_s=s.open_timeout_s,
                                     stall_timeout_s=s.stall_timeout_s, capture_options=self.capture_options,
                                     assume_fps=self.assume_fps, cancel=self._cancel)
            except VideoError as e:
                if self._stop.is_set():
                    break
                self._status.reconnects += 1
                wait = self._rng.uniform(0.5, 1.0) * backoff  # jitter: devices do not retry in step
                self._set_down("reconnecting", f"cannot open the source ({e}); retrying in {wait:.1f} s")
                self._wait(wait)
                backoff = min(backoff * 2, s.backoff_max_s)
                continue
            info = reader.info
            st = self._status
            st.width, st.height, st.fps = info.width, info.height, info.fps
            if st.state != "live":
                log.info("camera %s: receiving %dx%d at %.2f fps from %s", self.camera_id, info.width, info.height,
                         info.fps, redact(self.source))
            st.state, st.reasons = "live", []
            self._check.reset()
            opened = time.monotonic()
            pace_t0: float | None = None
            problem: str | None = None
            ended = False
            try:
                for fr in reader:
                    if self._cancel.is_set():
                        break
                    if self.is_file and self.realtime:
                        now = time.monotonic()
                        if pace_t0 is None or now - (pace_t0 + fr.time_s) > 1.0:
                            pace_t0 = now - fr.time_s  # start (or fell behind by > 1 s: do not burst)
                        delay = pace_t0 + fr.time_s - now
                        if delay > 0 and self._cancel.wait(delay):
                            break
                    self._deliver(fr, info.fps)
                    if time.monotonic() - opened > _HEALTHY_AFTER_S:
                        backoff = s.backoff_min_s
                else:
                    ended = True
            except VideoError as e:
                problem = str(e)
            finally:
                reader.close(wait_s=0.5)
            if self._stop.is_set():
                break
            if self._reconnect.is_set():
                log.info("camera %s: reconnecting on request", self.camera_id)
                continue
            if ended and self.is_file:
                if self.loop:
                    st.loops += 1
                    continue  # immediately from the start again
                self._status.state = "ended"
                self._status.reasons = ["the video file ended"]
                log.info("camera %s: the video file ended (%d frames)", self.camera_id, st.frames_in)
                break
            if ended:
                problem = "the stream ended (the camera or server closed it)"
            if time.monotonic() - opened > _HEALTHY_AFTER_S:
                backoff = s.backoff_min_s
            self._status.reconnects += 1
            wait = self._rng.uniform(0.5, 1.0) * backoff
            self._set_down("reconnecting", f"{problem}; reconnecting in {wait:.1f} s")
            self._wait(wait)
            backoff = min(backoff * 2, s.backoff_max_s)
        with self._cond:
            self._finished = True
            self._cond.notify_all()


def capture_options(rtsp_transport: str | None) -> str | None:
    """OpenCV FFmpeg capture options for a camera's settings (None: the decoder's defaults)."""
    return None if rtsp_transport is None else f"rtsp_transport;{rtsp_transport}"
