"""What the edge service says about itself: the records behind ``/api/status``, ``/readyz`` and ``/metrics``.

The service produces them (:mod:`roadside.edge.service_view`); the health API serves them as its FastAPI
response models, so ``/openapi.json`` documents every field, and the Prometheus collector reads them by
attribute.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CameraState = Literal["ok", "degraded", "offline"]


class _Status(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraStatus(_Status):
    """One camera: its source, the pipeline's rates and latency, and its counts."""

    state: CameraState = Field(description="ok; degraded (frozen, black or blinded images, processing errors); "
                                           "offline (the source is down or ended, or the worker stopped)")
    reasons: list[str] = Field(description="why the state is not ok (empty when ok)")
    source: str = Field(description="the configured source, passwords in URLs redacted")
    source_state: str = Field(description="starting | live | reconnecting | ended | stopped")
    fps_in: float = Field(description="frames per second received from the source")
    fps_processed: float = Field(description="frames per second processed by the pipeline")
    frames_in: int = Field(description="frames received from the source since start")
    frames_processed: int = Field(description="frames processed by the pipeline since start")
    frames_dropped: int = Field(description="frames replaced by a newer one before processing (latest frame wins)")
    detector_latency_ms: float = Field(description="detector latency per frame, moving average (ms)")
    last_frame_age_s: float | None = Field(description="seconds since the last frame from the source")
    last_publish_age_s: float | None = Field(description="seconds since a counts message of this camera was "
                                                         "acknowledged by the broker")
    reconnects: int = Field(description="failed or lost source connections")
    loops: int = Field(description="times a looping file started again")
    last_source_error: str | None = Field(description="the source's last error")
    processing_errors: int = Field(description="frames whose processing failed")
    bins_emitted: int = Field(description="counts messages stored in the outbox")
    snapshots_encoded: int = Field(0, description="snapshot JPEGs encoded (at most one per frame and per "
                                                  "SNAPSHOT_EVERY_S, however many clients ask)")
    width: int | None = Field(description="frame width (pixels) of the source")
    height: int | None = Field(description="frame height (pixels) of the source")
    source_fps: float | None = Field(description="the source's own frame rate")
    model: str = Field(description="the detector's model name")
    config_hash: str = Field(description="hash of the camera's vision configuration (as in its counts messages)")


class BrokerStatus(_Status):
    """The MQTT connection."""

    address: str = Field(description="host:port of the broker")
    state: str = Field(description="connecting | connected | disconnected | refused | unreachable | stopped")
    connected: bool
    last_error: str | None = Field(description="why the last connection failed or ended")
    connects: int = Field(description="successful connections since start")
    counts_published: int = Field(description="counts messages published, re-sends included")
    counts_acked: int = Field(description="counts messages acknowledged by the broker")
    late_published: int = Field(description="counts messages published late (produced before the connection)")
    realtime_dropped: int = Field(description="presence/health messages not sent (broker not connected)")
    last_publish_age_s: float | None = Field(description="seconds since the broker acknowledged any message")
    topic_prefix: str = Field(description="this device's topics are below it")


class OutboxStatus(_Status):
    """The durable store-and-forward queue of counts messages."""

    depth: int = Field(description="counts messages waiting for the broker's acknowledgement")
    bytes: int = Field(description="bytes of the waiting messages")
    oldest_age_s: float | None = Field(description="age of the oldest waiting message (s)")
    dropped: dict[str, int] = Field(description="camera -> messages dropped by the outbox bounds (all time)")
    dropped_total: int = Field(description="all messages dropped by the outbox bounds")
    max_bytes: int = Field(description="outbox.max_bytes")
    max_age_s: float = Field(description="outbox.max_age_s")
    next_seq: dict[str, int] = Field(description="camera -> seq of its next counts message")


class SystemStatus(_Status):
    """The box the service runs on."""

    cpu_temperature_c: float | None = Field(description="hottest thermal zone (Linux sysfs), null where the OS "
                                                        "exposes none")
    disk_free_bytes: int | None = Field(description="free bytes on the state directory's file system")
    state_dir: str = Field(description="where the outbox lives")
    rss_bytes: int | None = Field(description="resident memory of the service process")
    threads: int = Field(description="Python threads of the service")
    pid: int = Field(description="process id of the service")


class ServiceStatus(_Status):
    """The whole service: ``GET /api/status``."""

    site: str
    device: str
    uptime_s: float = Field(description="seconds since the service started")
    ready: bool = Field(description="what /readyz says")
    models: list[str] = Field(description="the detectors' model names")
    model_loaded: bool = Field(description="every camera's model is loaded")
    broker: BrokerStatus
    outbox: OutboxStatus
    cameras: dict[str, CameraStatus] = Field(description="camera id -> its status")
    system: SystemStatus


class Readiness(_Status):
    """``GET /readyz``: ready when every camera delivers frames, the model is loaded and the broker is connected."""

    ready: bool
    reasons: list[str] = Field(description="why it is not ready (empty when ready)")


__all__ = ["BrokerStatus", "CameraState", "CameraStatus", "OutboxStatus", "Readiness", "ServiceStatus", "SystemStatus"]
