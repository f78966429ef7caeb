"""The health API of the edge service (FastAPI; served by :mod:`roadside.edge.api_server`, 127.0.0.1 by default).

It sees the service only through a :class:`ServiceView`: status, readiness, snapshots, the redacted
configuration and one action, ``reconnect(camera)``. Read-only endpoints need nothing; an endpoint that
changes state needs ``Authorization: Bearer <api.token>`` and, with no token configured, is refused (the API
is then read-only). The OpenAPI schema, with every field of the status records, is at ``/openapi.json``
(interactive documentation at ``/docs``).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import SecretStr

from roadside.edge.api_common import known_camera, token_guard
from roadside.edge.status import Readiness, ServiceStatus

log = logging.getLogger("roadside.edge.api")


class ServiceView(Protocol):
    """What the API needs of the service."""

    def status(self) -> ServiceStatus: ...

    def readiness(self) -> Readiness: ...

    def cameras(self) -> list[str]: ...

    def snapshot(self, camera: str) -> bytes | None: ...

    def config_redacted(self) -> dict: ...

    def reconnect(self, camera: str) -> None: ...


class ServiceCollector:
    """Prometheus metrics read from the service's status at scrape time."""

    def __init__(self, view: ServiceView):
        self.view = view

    def collect(self):
        st = self.view.status()
        cams = st.cameras

        def gauge(name, doc, field, scale=1.0):
            g = GaugeMetricFamily(name, doc, labels=["camera"])
            for cid, c in cams.items():
                if getattr(c, field) is not None:
                    g.add_metric([cid], float(getattr(c, field)) * scale)
            return g

        def counter(name, doc, field):
            m = CounterMetricFamily(name, doc, labels=["camera"])
            for cid, c in cams.items():
                m.add_metric([cid], float(getattr(c, field)))
            return m

        yield gauge("roadside_camera_fps_in", "Frames per second received from the source", "fps_in")
        yield gauge("roadside_camera_fps_processed", "Frames per second processed by the pipeline", "fps_processed")
        yield counter("roadside_camera_frames_in", "Frames received from the source", "frames_in")
        yield counter("roadside_camera_frames_processed", "Frames processed by the pipeline", "frames_processed")
        yield counter("roadside_camera_frames_dropped", "Frames replaced by a newer one before processing", "frames_dropped")
        yield counter("roadside_camera_reconnects", "Failed or lost source connections", "reconnects")
        yield counter("roadside_camera_processing_errors", "Frames whose processing failed", "processing_errors")
        yield gauge("roadside_camera_detector_latency_seconds", "Detector latency (moving average)", "detector_latency_ms", 1e-3)
        yield gauge("roadside_camera_last_frame_age_seconds", "Seconds since the last frame from the source", "last_frame_age_s")
        yield gauge("roadside_camera_last_publish_age_seconds", "Seconds since a counts message of the camera was acknowledged",
                    "last_publish_age_s")
        state = GaugeMetricFamily("roadside_camera_state", "1 for the camera's current health state", labels=["camera", "state"])
        for cid, c in cams.items():
            for s in ("ok", "degraded", "offline"):
                state.add_metric([cid, s], 1.0 if c.state == s else 0.0)
        yield state
        ob = st.outbox
        yield GaugeMetricFamily("roadside_outbox_depth", "Counts messages waiting for the broker's acknowledgement",
                                value=ob.depth)
        yield GaugeMetricFamily("roadside_outbox_bytes", "Bytes of the waiting counts messages", value=ob.bytes)
        if ob.oldest_age_s is not None:
            yield GaugeMetricFamily("roadside_outbox_oldest_age_seconds", "Age of the oldest waiting message",
                                    value=ob.oldest_age_s)
        dropped = CounterMetricFamily("roadside_outbox_dropped", "Counts messages dropped by the outbox bounds",
                                      labels=["camera"])
        for cid, n in ob.dropped.items():
            dropped.add_metric([cid], float(n))
        yield dropped
        br = st.broker
        yield GaugeMetricFamily("roadside_broker_connected", "1 when connected to the MQTT broker",
                                value=1.0 if br.connected else 0.0)
        yield CounterMetricFamily("roadside_counts_published", "Counts messages published (re-sends included)",
                                  value=br.counts_published)
        yield CounterMetricFamily("roadside_counts_acked", "Counts messages acknowledged by the broker",
                                  value=br.counts_acked)
        yield CounterMetricFamily("roadside_realtime_dropped", "Presence/health messages not sent (broker not connected)",
                                  value=br.realtime_dropped)
        yield GaugeMetricFamily("roadside_ready", "1 when /readyz is 200", value=1.0 if st.ready else 0.0)
        yield GaugeMetricFamily("roadside_uptime_seconds", "Seconds since the service started", value=st.uptime_s)
        sysinfo = st.system
        if sysinfo.cpu_temperature_c is not None:
            yield GaugeMetricFamily("roadside_cpu_temperature_celsius", "Hottest thermal zone",
                                    value=sysinfo.cpu_temperature_c)
        if sysinfo.disk_free_bytes is not None:
            yield GaugeMetricFamily("roadside_disk_free_bytes", "Free bytes on the state directory's file system",
                                    value=sysinfo.disk_free_bytes)
        yield GaugeMetricFamily("roadside_threads", "Python threads of the service", value=sysinfo.threads)


#: the snapshot endpoint answers at most this many requests per second (all clients), bursts of SNAPSHOT_BURST;
#: beyond, 429 with Retry-After (snapshots are unauthenticated, and each one could cost the camera CPU)
SNAPSHOTS_PER_S = 10.0
SNAPSHOT_BURST = 20


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; :meth:`take` is False when none is left (thread-safe)."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._tokens, self._at = float(burst), clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


def create_app(view: ServiceView, token: SecretStr | None = None, collectors: tuple = ()) -> FastAPI:
    """The API of ``view``; ``token`` (api.token) unlocks the endpoints that change state; ``collectors``: more
    Prometheus collectors for ``/metrics``."""
    app = FastAPI(
        title="roadside edge service",
        description="Health, status, metrics and snapshots of one roadside edge box. Read-only unless an API "
                    "token is configured; state-changing endpoints need `Authorization: Bearer <token>`.",
        version="1",
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(view))
    for c in collectors:
        registry.register(c)
    ProcessCollector(registry=registry)
    require_token = token_guard(token)
    snapshot_bucket = TokenBucket(SNAPSHOTS_PER_S, SNAPSHOT_BURST)

    def known(camera_id: str) -> str:
        return known_camera(view.cameras(), camera_id)

    @app.get("/healthz", summary="The process is alive")
    def healthz() -> dict:
        return {"status": "alive"}

    @app.get("/readyz", summary="200 when every camera delivers frames, the model is loaded and the broker is connected",
             response_model=Readiness,
             responses={503: {"model": Readiness, "description": "not ready; `reasons` says why"}})
    def readyz(response: Response) -> Readiness:
        r = view.readiness()
        response.status_code = 200 if r.ready else 503
        return r

    @app.get("/api/status", summary="Per camera rates, latency and ages; outbox, broker, model, uptime, system",
             response_model=ServiceStatus)
    def status() -> ServiceStatus:
        return view.status()

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/cameras/{camera_id}/snapshot.jpg", summary="The latest processed frame with boxes, lines and zones",
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}, 404: {}, 503: {}})
    def snapshot(camera_id: str) -> Response:
        if not snapshot_bucket.take():
            raise HTTPException(429, f"too many snapshot requests: at most {SNAPSHOTS_PER_S:g} per second "
                                     f"(bursts of {SNAPSHOT_BURST}), all clients together",
                                headers={"Retry-After": "1"})
        jpeg = view.snapshot(known(camera_id))
        if jpeg is None:
            raise HTTPException(503, f"camera {camera_id!r} has not processed a frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/config", summary="The running configuration, secrets redacted")
    def config() -> dict:
        return view.config_redacted()

    @app.post("/api/cameras/{camera_id}/reconnect", status_code=202, dependencies=[Depends(require_token)],
              summary="Drop the camera's connection and open its source again (needs the bearer token)")
    def reconnect(camera_id: str) -> dict:
        view.reconnect(known(camera_id))
        log.info("camera %s: reconnect requested through the API", camera_id)
        return {"camera": camera_id, "reconnect": "requested"}

    return app


__all__ = ["ServiceCollector", "ServiceView", "create_app"]
