"""The edge service: cameras -> vision pipelines -> outbox / MQTT, watched by the health API.

Data flows one way. Each camera's :class:`~roadside.edge.camera_worker.CameraWorker` runs its pipeline on
the newest frame of its source and has two narrow outputs (:mod:`roadside.edge.sinks`): every closed bin
becomes a counts message in the durable :class:`~roadside.edge.outbox.Outbox`, every zone change a presence
message through the :class:`~roadside.edge.mqtt_link.MqttLink`. A housekeeping thread publishes each
camera's health (:class:`~roadside.edge.health_publisher.HealthPublisher`) and prunes the outbox. The health
API (:mod:`roadside.edge.health_api`, served by :mod:`roadside.edge.api_server`) sees only an
:class:`~roadside.edge.service_view.EdgeServiceView`. This module puts the pieces together, starts them in
order and stops them in reverse.

SIGTERM/SIGINT: sources stop, each camera's open bins are closed (as partial bins) into the outbox, the
link delivers what it can within a few seconds, publishes ``offline`` and disconnects; the rest stays in
the outbox for the next run.
"""
from __future__ import annotations

import logging
import signal
import threading
import time

from roadside.core.errors import ConfigError, RoadsideError
from roadside.edge.camera_worker import CameraWorker
from roadside.edge.health_publisher import HealthPublisher
from roadside.edge.mqtt_link import MqttLink
from roadside.edge.outbox import Outbox, OutboxPruner
from roadside.edge.service_config import EdgeConfig
from roadside.edge.service_view import EdgeServiceView
from roadside.edge.sinks import LinkLive, OutboxCounts

log = logging.getLogger("roadside.edge.service")

#: how often the housekeeping thread looks at health and the outbox (s)
_HOUSEKEEPING_S = 0.5


class EdgeService:
    def __init__(self, config: EdgeConfig, model_override: str | None = None):
        self.config = config
        self.model_override = model_override
        self.started = time.time()
        self._stop = threading.Event()
        self.outbox: Outbox | None = None
        self.link: MqttLink | None = None
        self.api = None  # ApiServer
        self.view: EdgeServiceView | None = None
        self.workers: dict[str, CameraWorker] = {}
        self._housekeeping: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> "EdgeService":
        cfg = self.config
        # what would only fail later, and forever (a missing model, a camera file that does not exist):
        # one configuration error now, before the broker hears "online"
        from roadside.edge.service_config import startup_problems

        problems = startup_problems(cfg, self.model_override)
        if problems:
            raise ConfigError("; ".join(problems))
        state_dir = cfg.state_path()
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RoadsideError(f"state_dir {state_dir}: cannot create it: {e}") from None
        try:
            if cfg.api.enabled:
                from roadside.edge.api_server import ApiServer

                self.api = ApiServer(cfg.api)  # binds now: a taken port is an error before anything runs
            self.outbox = Outbox(state_dir / "outbox.sqlite", cfg.outbox.max_bytes, cfg.outbox.max_age_s)
            self.link = MqttLink(cfg.mqtt, cfg.client_id, cfg.topics, cfg.device, self.outbox)
            self.link.start()
            self.view = EdgeServiceView(cfg, self.link, self.outbox, self.started)
            if self.api is not None:
                self.api.serve(self.view, cfg.api.token)
            from roadside.edge.detector_pool import load_detectors

            detectors = load_detectors(cfg, self.model_override)
        except BaseException:
            self.shutdown()
            raise
        counts, live = OutboxCounts(self.outbox, self.link), LinkLive(self.link)
        for cam in cfg.cameras:
            self.workers[cam.id] = CameraWorker(cam, cfg.vision(cam), detectors[cam.id], cfg.sources, counts, live,
                                                site=cfg.site, device=cfg.device)
        self.view.attach(self.workers)
        for w in self.workers.values():
            w.start()
        health = HealthPublisher(live, site=cfg.site, device=cfg.device, interval_s=cfg.health_interval_s)
        self._housekeeping = threading.Thread(target=self._housekeep, args=(health, OutboxPruner(self.outbox)),
                                              name="health", daemon=True)
        self._housekeeping.start()
        log.info("edge service %s/%s running: %d camera(s), broker %s, topics %s/...", cfg.site, cfg.device,
                 len(self.workers), self.link.status().broker, cfg.topic_prefix)
        return self

    def _housekeep(self, health: HealthPublisher, pruner: OutboxPruner) -> None:
        while not self._stop.wait(_HOUSEKEEPING_S):
            health.tick(self.workers, time.time())
            pruner.tick()

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
        if self._housekeeping is not None:
            self._housekeeping.join(5)
        if self.link is not None:
            self.link.stop(flush_timeout_s=5.0)
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self.link is not None:
            self.link = None  # stopped: a second shutdown (start failed, then run's own) has nothing to do
        if self.outbox is not None:
            st = self.outbox.stats()
            if st.depth:
                log.warning("%d counts message(s) stay in the outbox for the next run", st.depth)
            self.outbox.close()
            self.outbox = None


def run_service(config: EdgeConfig, model_override: str | None = None) -> int:
    return EdgeService(config, model_override).run()


__all__ = ["EdgeService", "run_service"]
