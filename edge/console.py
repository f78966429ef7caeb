"""What the operator's console (``/``) shows beyond the service's status: each camera's counts of the last
hour, and the signal controller's retained state, plan and latest decisions.

* :class:`CountsHistory` keeps the closed bins of each camera's shortest interval for an hour (a counts
  sink in front of the outbox records them as they are stored; nothing is read back from the outbox).
* :class:`ControllerWatch` follows ``<prefix>/controller/status|plan|state|events`` on a connection of its
  own (QoS 0, clean session: a console that falls behind never holds up or queues anything of the counts
  link), keeping only the latest of each and the last decisions.
* :class:`Console` holds both and answers the console's one small JSON document, cached for a second, so
  that any number of open pages costs the box one status read per second, not one per page.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Callable

from roadside.core.broker import BrokerClient, Received
from roadside.core.payloads import CountsMessage
from roadside.edge.sinks import CountsSink

if TYPE_CHECKING:
    from roadside.edge.service_config import EdgeConfig
    from roadside.edge.status import ServiceStatus

log = logging.getLogger("roadside.edge.console")

HISTORY_S = 3600.0
DECISIONS_KEPT = 8
CACHE_S = 1.0


class CountsHistory:
    """Per camera, the bins of interval ``interval_s[camera]`` that closed in the last hour."""

    def __init__(self, interval_s: dict[str, float], keep_s: float = HISTORY_S) -> None:
        self.interval_s = dict(interval_s)
        self.keep_s = keep_s
        self._bins: dict[str, deque] = {cam: deque() for cam in interval_s}
        self._lock = threading.Lock()

    def add(self, m: CountsMessage) -> None:
        if m.interval_s != self.interval_s.get(m.camera):
            return
        start = m.interval_start.timestamp()
        lines = {lid: {"forward": sum(d.forward.values()), "backward": sum(d.backward.values())}
                 for lid, d in m.lines.items()}
        with self._lock:
            q = self._bins.setdefault(m.camera, deque())
            q.append({"t": start, "partial": m.partial, "lines": lines})
            while q and q[0]["t"] < start - self.keep_s:
                q.popleft()

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return {cam: {"interval_s": self.interval_s.get(cam), "bins": list(q)} for cam, q in self._bins.items()}


class HistoryCounts:
    """A counts sink that records each message into the history as it goes on to the next sink (the outbox)."""

    def __init__(self, inner: CountsSink, history: CountsHistory) -> None:
        self.inner = inner
        self.history = history

    def put(self, camera: str, message: Callable[[int], CountsMessage]) -> None:
        def build(seq: int) -> CountsMessage:
            m = message(seq)
            try:
                self.history.add(m)
            except Exception:  # the console's history must never cost a counts message
                log.exception("camera %s: cannot add a bin to the console's history", camera)
            return m

        self.inner.put(camera, build)


class ControllerWatch:
    """The controller's retained topics and its decisions, for the console; None until first heard of."""

    def __init__(self, config: "EdgeConfig") -> None:
        self.topics = config.topics
        self.status: str | None = None
        self.state: dict | None = None
        self.plan: dict | None = None
        self.decisions: deque = deque(maxlen=DECISIONS_KEPT)
        self.events: deque = deque(maxlen=DECISIONS_KEPT)
        self.heard_at: float | None = None
        self._lock = threading.Lock()
        mqtt = config.mqtt.model_copy(update={"client_id": None})
        self.client = BrokerClient(mqtt, f"{config.client_id}-console", clean_session=True, on_message=self._on_message,
                                   name="console")
        self.client.subscribe([self.topics.controller(k) for k in ("status", "plan", "state", "events")], qos=0)

    def start(self) -> "ControllerWatch":
        self.client.start()
        return self

    def stop(self) -> None:
        self.client.stop(0.5, final=False)

    def _on_message(self, m: Received) -> None:
        where = self.topics.parse(m.topic)
        if where is None or not where.from_controller:
            return
        with self._lock:
            self.heard_at = time.time()
            if where.kind == "status":
                self.status = m.payload.decode(errors="replace")[:40]
                return
            try:
                data = json.loads(m.payload)
            except ValueError:
                return
            if not isinstance(data, dict):
                return
            if where.kind == "state":
                self.state = data
            elif where.kind == "plan":
                self.plan = data
            elif where.kind == "events":
                d = data.get("detail") or {}
                if data.get("type") == "decision":
                    self.decisions.append({"ts": data.get("ts"), "from": d.get("from"), "to": d.get("to"),
                                           "reason": d.get("reason"), "forced": d.get("forced")})
                elif data.get("type") in ("failsafe", "mode", "edge-status", "malformed", "startup", "shutdown"):
                    self.events.append({"ts": data.get("ts"), "type": data.get("type"), "detail": d})

    def snapshot(self) -> dict:
        with self._lock:
            st, plan = self.state or {}, self.plan or {}
            return {
                "heard": self.heard_at is not None,
                "status": self.status,
                "mode": st.get("mode") or plan.get("mode"),
                "stage": st.get("stage"), "changing_to": st.get("changing_to"),
                "time_in_stage_s": st.get("time_in_stage_s"), "signals": st.get("signals") or {},
                "state_ts": st.get("ts"),
                "policy": plan.get("policy"), "plan": plan.get("plan") or {},
                "failsafe_phases": plan.get("failsafe_phases") or {},
                "decisions": list(reversed(self.decisions)), "events": list(reversed(self.events)),
            }


class ControllerCollector:
    """Prometheus metrics of the signal controller as this box sees it on the broker (its retained topics), so
    that one scrape of the edge box also tells whether its controller is up and in which mode."""

    MODES = ("normal", "fail-safe", "manual")

    def __init__(self, watch: "ControllerWatch") -> None:
        self.watch = watch

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        snap = self.watch.snapshot()
        up = snap["heard"] and snap["status"] != "offline" and snap["mode"] is not None
        yield GaugeMetricFamily("roadside_controller_up", "1 while the site's signal controller is online on the broker "
                                "(its retained status and state, as this box receives them)", value=1.0 if up else 0.0)
        mode = GaugeMetricFamily("roadside_controller_mode", "1 for the controller's current mode (normal, fail-safe, "
                                 "manual); all 0 when it is offline", labels=["mode"])
        for m in self.MODES:
            mode.add_metric([m], 1.0 if up and snap["mode"] == m else 0.0)
        yield mode
        yield GaugeMetricFamily("roadside_controller_failsafe_phases", "Phases the controller runs in fail-safe "
                                "(recall or fixed plan) because their detector data is missing, stale or malformed",
                                value=float(len(snap["failsafe_phases"])))
        age = _age(snap["state_ts"], time.time())
        if age is not None:
            yield GaugeMetricFamily("roadside_controller_state_age_seconds", "Seconds since the controller's last "
                                    "state message (it sends one every few seconds)", value=max(age, 0.0))


def _age(ts: str | None, now: float) -> float | None:
    if not ts:
        return None
    try:
        return round(now - datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp(), 1)
    except ValueError:
        return None


def _layout_ids(config: "EdgeConfig", camera: str) -> dict:
    """The camera's line and zone ids (none while a camera just removed from the configuration still runs)."""
    try:
        cam = config.camera(camera)
    except KeyError:
        return {"lines": [], "zones": []}
    return {"lines": [ln.id for ln in cam.lines], "zones": [z.id for z in cam.zones]}


class Console:
    """The console's data: the service's status (through ``status()``), the history and the controller."""

    def __init__(self, config: "EdgeConfig") -> None:
        self.config = config
        self.history = CountsHistory({c.id: min(config.vision(c).counting.bins_s) for c in config.cameras})
        self.controller = ControllerWatch(config)
        self._cache: tuple[float, dict] | None = None
        self._snaps: dict[str, tuple[float, bytes | None]] = {}
        self._lock = threading.Lock()

    def replace_config(self, config: "EdgeConfig") -> None:
        """The configuration after a saved change: new lines, a camera added or removed."""
        self.config = config
        self.history.interval_s = {c.id: min(config.vision(c).counting.bins_s) for c in config.cameras}

    def collector(self) -> ControllerCollector:
        return ControllerCollector(self.controller)

    def counts_sink(self, inner: CountsSink) -> HistoryCounts:
        return HistoryCounts(inner, self.history)

    def start(self) -> "Console":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def document(self, status: Callable[[], "ServiceStatus"]) -> dict:
        """The console's JSON (at most one fresh one per second, whoever asks)."""
        now = time.time()
        with self._lock:
            if self._cache is not None and now - self._cache[0] < CACHE_S:
                return self._cache[1]
        st = status()
        ctrl = self.controller.snapshot()
        ctrl["state_age_s"] = _age(ctrl.pop("state_ts"), now)
        doc = {
            "ts": now, "site": st.site, "device": st.device, "uptime_s": st.uptime_s, "ready": st.ready,
            "models": st.models, "topic_prefix": st.broker.topic_prefix,
            "broker": {"address": st.broker.address, "state": st.broker.state, "connected": st.broker.connected,
                       "last_error": st.broker.last_error, "counts_published": st.broker.counts_published,
                       "counts_acked": st.broker.counts_acked},
            "outbox": {"depth": st.outbox.depth, "bytes": st.outbox.bytes, "oldest_age_s": st.outbox.oldest_age_s,
                       "dropped_total": st.outbox.dropped_total},
            "cameras": {cid: {k: getattr(c, k) for k in (
                "state", "reasons", "source_state", "fps_in", "fps_processed", "detector_latency_ms", "frames_in",
                "frames_processed", "frames_dropped", "last_frame_age_s", "last_publish_age_s", "model", "width",
                "height")} | _layout_ids(self.config, cid) for cid, c in st.cameras.items()},
            "counts": self.history.snapshot(),
            "controller": ctrl,
        }
        with self._lock:
            self._cache = (now, doc)
        return doc

    def snapshot(self, camera: str, render: Callable[[str], bytes | None]) -> bytes | None:
        """The camera's annotated JPEG, rendered at most once a second whoever asks."""
        now = time.monotonic()
        with self._lock:
            hit = self._snaps.get(camera)
            if hit is not None and now - hit[0] < CACHE_S and hit[1] is not None:
                return hit[1]
        jpeg = render(camera)
        with self._lock:
            self._snaps[camera] = (now, jpeg)
        return jpeg


__all__ = ["Console", "ControllerCollector", "ControllerWatch", "CountsHistory", "HistoryCounts"]
