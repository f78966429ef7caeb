"""The edge service as its health API sees it: status, readiness, snapshots, the redacted configuration and
one action, ``reconnect(camera)``. Built from the service's parts; it changes nothing but that one thing."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Mapping

from roadside.edge.service_config import EdgeConfig
from roadside.edge.status import BrokerStatus, OutboxStatus, Readiness, ServiceStatus
from roadside.core.broker import ACK_TIMEOUT_S
from roadside.edge.system_metrics import system_status

if TYPE_CHECKING:
    from roadside.edge.camera_worker import CameraWorker
    from roadside.edge.mqtt_link import MqttLink
    from roadside.edge.outbox import Outbox


class EdgeServiceView:
    """Read-only view of a running service. The cameras are attached once their models are loaded (the API
    answers before that, and says it is not ready)."""

    def __init__(self, config: EdgeConfig, link: "MqttLink", outbox: "Outbox", started: float | None = None):
        self.config = config
        self.link = link
        self.outbox = outbox
        self.started = time.time() if started is None else started
        self._workers: Mapping[str, "CameraWorker"] = {}
        self.models_loaded = False

    def attach(self, workers: Mapping[str, "CameraWorker"]) -> None:
        self._workers = dict(workers)
        self.models_loaded = True

    # -- the view ----------------------------------------------------------------------------------
    def cameras(self) -> list[str]:
        return list(self._workers)

    def readiness(self) -> Readiness:
        reasons = []
        if not self.models_loaded:
            reasons.append("the model is not loaded yet")
        link = self.link.status()
        if not link.connected:
            reasons.append(f"broker not connected ({link.last_error or link.state})")
        elif link.unacked_since is not None and time.time() - link.unacked_since > ACK_TIMEOUT_S:
            reasons.append(f"broker not acknowledging: a message has waited {time.time() - link.unacked_since:.0f} s "
                           f"for its PUBACK (more than {ACK_TIMEOUT_S:g} s; a hung broker or a broken network)")
        stall = self.config.sources.stall_timeout_s
        for cid, w in self._workers.items():
            src = w.source.status()
            if src.state != "live":
                reasons.append(f"camera {cid}: {src.state}" + (f" ({src.last_error})" if src.last_error else ""))
            elif src.last_frame_age_s is None or src.last_frame_age_s > stall:
                reasons.append(f"camera {cid}: no frame for {src.last_frame_age_s or 0:.1f} s")
            reasons += [f"camera {cid}: {p}" for p in w.config_problems]  # a line outside the frame never counts
        if not self._workers and self.models_loaded:
            reasons.append("no camera is running")
        return Readiness(ready=not reasons, reasons=reasons)

    def status(self) -> ServiceStatus:
        now = time.time()
        cfg = self.config
        link = self.link.status()
        ob = self.outbox.stats()
        return ServiceStatus(
            site=cfg.site, device=cfg.device, uptime_s=round(now - self.started, 1), ready=self.readiness().ready,
            models=sorted({w.model_name for w in self._workers.values()}), model_loaded=self.models_loaded,
            broker=BrokerStatus(
                address=link.broker, state=link.state, connected=link.connected, last_error=link.last_error,
                connects=link.connects, counts_published=link.counts_published, counts_acked=link.counts_acked,
                late_published=link.late_published, realtime_dropped=link.realtime_dropped,
                last_publish_age_s=None if link.last_ack is None else round(now - link.last_ack, 3),
                topic_prefix=cfg.topic_prefix,
            ),
            outbox=OutboxStatus(
                depth=ob.depth, bytes=ob.bytes, oldest_age_s=None if ob.oldest_age_s is None else round(ob.oldest_age_s, 1),
                dropped=ob.dropped, dropped_total=ob.dropped_total, max_bytes=cfg.outbox.max_bytes,
                max_age_s=cfg.outbox.max_age_s, next_seq={cid: self.outbox.next_seq(cid) for cid in self._workers},
            ),
            cameras={cid: w.status(now, link.last_counts_ack.get(cid)) for cid, w in self._workers.items()},
            system=system_status(cfg.state_path()),
        )

    def snapshot(self, camera: str) -> bytes | None:
        """The camera's latest processed frame, annotated, as JPEG (None before its first frame); KeyError for
        an unknown camera."""
        return self._workers[camera].snapshot_jpeg()

    def config_redacted(self) -> dict:
        return self.config.redacted()

    # -- the one action ----------------------------------------------------------------------------
    def reconnect(self, camera: str) -> None:
        """Drop the camera's source connection and open it again; KeyError for an unknown camera."""
        self._workers[camera].source.request_reconnect()


__all__ = ["EdgeServiceView"]
