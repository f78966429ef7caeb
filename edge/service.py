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
from roadside.core.redact import redact
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
#: a camera loop or the housekeeping that has not turned for this long is hung (systemd's watchdog restarts us)
STUCK_AFTER_S = 30.0
#: a repeated housekeeping error is logged again after this long (s)
_REPEAT_LOG_S = 60.0


class EdgeService:
    def __init__(self, config: EdgeConfig, model_override: str | None = None, config_path: str | None = None):
        self.config = config
        #: the site file the configuration came from (the calibration page saves into it); None: built-in
        self.config_path = config_path
        self.model_override = model_override
        self.started = time.time()
        self._stop = threading.Event()
        self.outbox: Outbox | None = None
        self.link: MqttLink | None = None
        self.api = None  # ApiServer
        self.view: EdgeServiceView | None = None
        self.console = None  # Console: what the operator's console shows beyond the status
        self.workers: dict[str, CameraWorker] = {}
        self.detectors = None  # DetectorPool
        self._counts = self._live = None  # the sinks of every camera (CountsSink, LiveSink)
        self._housekeeping: threading.Thread | None = None
        self._housekept = time.monotonic()
        self.housekeeping_errors = 0  # errors in housekeeping turns (logged; the loop goes on)
        self.watchdog = None  # core.systemd.Watchdog, under systemd

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
                from roadside.edge.calibrate_view import CalibrationView
                from roadside.edge.console import Console

                self.console = Console(cfg).start()
                self.api.serve(self.view, cfg.api.token, calibration=CalibrationView(self), console=self.console)
            from roadside.edge.detector_pool import DetectorPool

            self.detectors = DetectorPool(self.model_override)
            for cam in cfg.cameras:
                self.detectors.for_camera(cfg, cam)
        except BaseException:
            self.shutdown()
            raise
        self._counts, self._live = OutboxCounts(self.outbox, self.link), LinkLive(self.link)
        if self.console is not None:
            self._counts = self.console.counts_sink(self._counts)
        self.workers = {cam.id: self._new_worker(cam) for cam in cfg.cameras}
        self.view.attach(self.workers)
        for w in self.workers.values():
            w.start()
        health = HealthPublisher(self._live, site=cfg.site, device=cfg.device, interval_s=cfg.health_interval_s)
        self._housekeeping = threading.Thread(target=self._housekeep, args=(health, OutboxPruner(self.outbox)),
                                              name="health", daemon=True)
        self._housekeeping.start()
        log.info("edge service %s/%s running: %d camera(s), broker %s, topics %s/...", cfg.site, cfg.device,
                 len(self.workers), self.link.status().broker, cfg.topic_prefix)
        if self.api is not None:
            base = f"http://{cfg.api.host if ':' not in cfg.api.host else f'[{cfg.api.host}]'}:{cfg.api.port}"
            log.info("console %s/ ; health API %s/api/status, %s/readyz, %s/metrics", base, base, base, base)
        cams = ", ".join(self.workers)
        log.info("publishing %s (retained online/offline) and, for camera(s) %s, %s/<camera>/counts (QoS 1, "
                 "from the outbox), .../presence and .../health", cfg.topics.device_status(cfg.device), cams,
                 cfg.topic_prefix)
        from roadside.core.systemd import Watchdog, notify

        self.watchdog = Watchdog(self.liveness).start()
        notify("READY=1", f"STATUS=running {len(self.workers)} camera(s), broker {self.link.status().broker}")
        return self

    def _new_worker(self, cam) -> CameraWorker:
        cfg = self.config
        return CameraWorker(cam, cfg.vision(cam), self.detectors.for_camera(cfg, cam), cfg.sources, self._counts,
                            self._live, site=cfg.site, device=cfg.device)

    def replace_config(self, config: EdgeConfig) -> None:
        """The configuration after a saved change (the cameras apply their lines and zones themselves; a camera
        added, removed or given a new source is started or stopped by :meth:`sync_cameras`)."""
        self.config = config
        if self.view is not None:
            self.view.config = config
        if self.console is not None:
            self.console.replace_config(config)

    def sync_cameras(self, changed: set[str] = frozenset()) -> None:
        """Run the cameras of the current configuration without a restart: stop those it no longer has and
        those in ``changed`` (a new source: the old worker closes its open bins into the outbox as partial
        bins, and the camera's ``seq`` goes on), start the new ones and those in ``changed``."""
        from roadside.edge.service_config import startup_problems

        cfg = self.config
        wanted = {cam.id: cam for cam in cfg.cameras}
        problems = startup_problems(cfg.model_copy(update={"cameras": [c for i, c in wanted.items()
                                                                       if i in changed or i not in self.workers]}),
                                    self.model_override)
        if problems:  # checked before the file was saved; this is a file that vanished in between
            raise ConfigError("; ".join(problems))
        workers = dict(self.workers)
        for cid in [c for c in workers if c not in wanted or c in changed]:
            workers.pop(cid).stop()
            log.info("camera %s stopped (%s)", cid, "new source" if cid in wanted else "removed from the site file")
        for cid, cam in wanted.items():
            if cid not in workers:
                w = workers[cid] = self._new_worker(cam)
                w.start()
                log.info("camera %s started without a restart (source %s)", cid, redact(cam.source))
        self.workers = workers  # one new mapping: the readers (health, API) see the old one or the new one whole
        if self.view is not None:
            self.view.attach(workers)

    def liveness(self) -> tuple[bool, str]:
        """Alive when every camera loop, the housekeeping and the MQTT network thread turn (not: when the camera
        or the broker is fine; a dead camera is reconnected by the service itself, a hung loop is not)."""
        now = time.monotonic()
        problems = [f"camera {cid} worker {'stopped' if not w.alive else f'hung for {w.stuck_for(now):.0f} s'}"
                    for cid, w in self.workers.items() if not w.alive or w.stuck_for(now) > STUCK_AFTER_S]
        if self._housekeeping is None or not self._housekeeping.is_alive() or now - self._housekept > STUCK_AFTER_S:
            problems.append("housekeeping (health, outbox pruning) stopped")
        if self.link is None or self.link.client is None or not self.link.client.running:
            problems.append("the MQTT link's network thread stopped")
        if problems:
            return False, "; ".join(problems)
        link = self.link.status()
        return True, f"{len(self.workers)} camera(s), broker {link.state}, outbox {self.outbox.stats().depth}"

    def _housekeep(self, health: HealthPublisher, pruner: OutboxPruner) -> None:
        """Health and outbox pruning every ``_HOUSEKEEPING_S``. An error in one turn is logged with its
        traceback (once per kind of error in each task, then every ``_REPEAT_LOG_S``), counted in
        ``housekeeping_errors``, and the next turn goes on: one bad reading must not silence every camera's
        health for good."""
        last_logged: dict[tuple[str, str], float] = {}  # (task, exception type) -> when last logged
        while not self._stop.wait(_HOUSEKEEPING_S):
            self._housekept = time.monotonic()
            for what, turn in (("publishing health", lambda: health.tick(self.workers, time.time())),
                               ("pruning the outbox", pruner.tick)):
                try:
                    turn()
                except Exception as e:  # noqa: BLE001 - logged, counted, and the loop goes on
                    self.housekeeping_errors += 1
                    key = (what, type(e).__name__)  # bounded: the message may differ every time
                    if time.monotonic() - last_logged.get(key, -_REPEAT_LOG_S) >= _REPEAT_LOG_S:
                        last_logged[key] = time.monotonic()
                        log.exception("housekeeping error while %s (error %d; going on)", what, self.housekeeping_errors)

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
        if self.watchdog is not None:
            from roadside.core.systemd import notify

            notify("STOPPING=1")
            self.watchdog.stop()
            self.watchdog = None
        for w in self.workers.values():
            w.stop()
        if self._housekeeping is not None:
            self._housekeeping.join(5)
        if self.link is not None:
            self.link.stop(flush_timeout_s=5.0)
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self.console is not None:
            self.console.stop()
            self.console = None
        if self.link is not None:
            self.link = None  # stopped: a second shutdown (start failed, then run's own) has nothing to do
        if self.outbox is not None:
            st = self.outbox.stats()
            if st.depth:
                log.warning("%d counts message(s) stay in the outbox for the next run", st.depth)
            self.outbox.close()
            self.outbox = None


def run_service(config: EdgeConfig, model_override: str | None = None, config_path: str | None = None) -> int:
    return EdgeService(config, model_override, config_path).run()


__all__ = ["EdgeService", "run_service"]
