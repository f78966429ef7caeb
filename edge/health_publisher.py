"""Each camera's health over MQTT: every ``health_interval_s``, and at once when its state changes."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Mapping

from roadside.core.payloads import MAX_FPS, HealthMessage, clip_reasons
from roadside.edge.camera_worker import utc
from roadside.edge.sinks import LiveSink

if TYPE_CHECKING:
    from roadside.edge.camera_worker import CameraWorker

log = logging.getLogger("roadside.edge.service")


class HealthPublisher:
    """Health messages through the live sink, only while it is connected; after a reconnection every camera's
    health goes out at once."""

    def __init__(self, live: LiveSink, *, site: str, device: str, interval_s: float):
        self.live = live
        self.site, self.device = site, device
        self.interval_s = interval_s
        self._last_sent: dict[str, tuple[str, float]] = {}  # camera -> (state, monotonic time sent)

    def tick(self, cameras: Mapping[str, "CameraWorker"], now_wall: float) -> None:
        if not self.live.connected:
            self._last_sent.clear()  # nothing to send to; all cameras' health goes out once connected
            return
        for cid, w in cameras.items():
            if not self.live.connected:
                break
            state = w.health()[0]
            prev = self._last_sent.get(cid)
            if prev is not None and prev[0] == state and time.monotonic() - prev[1] < self.interval_s:
                continue
            if prev is not None and prev[0] != state:
                log.info("camera %s: health %s -> %s", cid, prev[0], state)
            self._last_sent[cid] = (state, time.monotonic())
            st = w.status(now_wall)
            self.live.publish(cid, "health", HealthMessage(
                site=self.site, device=self.device, camera=cid, ts=utc(now_wall), state=st.state,
                reasons=clip_reasons(st.reasons), fps_in=min(st.fps_in, MAX_FPS),
                fps_processed=min(st.fps_processed, MAX_FPS), detector_latency_ms=st.detector_latency_ms,
                last_frame_age_s=st.last_frame_age_s))


__all__ = ["HealthPublisher"]
