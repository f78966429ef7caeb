"""The controller's inputs: what the edge's detectors say, per phase, and whether it can be trusted.

Fed with the edge's parsed payloads (and the times the controller received them), it keeps per camera the
time of its last message, its health and status, and whether it lately sent something malformed; per zone
the latest occupancy; per count line the recent counts. :meth:`InputState.phase_inputs` condenses that into
one :class:`PhaseInput` per phase, with ``reliable`` False (and the reasons) when the phase must go on
fail-safe: a camera it needs is stale, degraded, offline or sending malformed payloads. A phase returns to
normal only after its data has been good for ``recover_after_s``.
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from roadside.controller.config import ControllerConfig, LineRef, ZoneRef
from roadside.core.payloads import CountsMessage, HealthMessage, PresenceMessage, ZoneState

Camera = tuple[str, str]  # (device, camera)


@dataclass
class PhaseInput:
    reliable: bool
    #: Why the phase is on fail-safe (empty when reliable).
    problems: list[str]
    #: A vehicle or pedestrian is waiting or present (presence zones), or the phase is on recall.
    call: bool
    #: Seconds since a presence zone was last occupied (0 while occupied; inf if never).
    gap_s: float
    #: Vehicles in the queue zones (None when the phase has none, or its data is unreliable).
    queue: float | None
    #: Longest current dwell in the phase's zones (s).
    max_wait_s: float
    #: Measured flow (veh/h) over the flow window (None until a counts bin arrived).
    flow_vph: float | None
    recall: str = "none"
    #: Per zone, in configuration order: (occupied, vehicles x the zone's share, longest dwell in s); None
    #: when no data yet.
    presence_zones: list[tuple[bool, float, float] | None] = field(default_factory=list)
    queue_zones: list[tuple[bool, float, float] | None] = field(default_factory=list)

    def summary(self) -> dict:
        out = {"reliable": self.reliable, "call": self.call,
               "gap_s": None if math.isinf(self.gap_s) else round(self.gap_s, 1),
               "queue": None if self.queue is None else round(self.queue, 1),
               "max_wait_s": round(self.max_wait_s, 1),
               "flow_vph": None if self.flow_vph is None else round(self.flow_vph)}
        if self.problems:
            out["problems"] = self.problems
        return out


@dataclass
class _Zone:
    state: ZoneState
    at: float
    #: controller time at which the zone last became empty (None while occupied)
    empty_since: float | None


@dataclass
class _CameraHealth:
    last_seen: float = -math.inf
    health: str = "ok"
    health_reasons: list[str] = field(default_factory=list)
    malformed_at: float = -math.inf
    malformed_error: str = ""


class InputState:
    """Only what the configuration references is kept: a camera, zone or line that no phase reads is counted
    (:attr:`ignored`) and reported once (:meth:`take_unknown`), never stored, so junk ids cannot grow memory."""

    #: bins remembered per camera for the duplicate check (a redelivery comes within seconds, an outbox
    #: replay after an outage is marked ``late`` and skipped before the check)
    SEEN_PER_CAMERA = 256
    #: distinct unknown ids remembered for reporting them once (the count goes on beyond)
    MAX_UNKNOWN_REPORTED = 64

    def __init__(self, cfg: ControllerConfig, start: float) -> None:
        self.cfg = cfg
        self.start = start
        self.device_online: dict[str, bool] = {}
        self.cameras: dict[Camera, _CameraHealth] = {}
        self.zones: dict[tuple[str, str, str], _Zone] = {}
        #: (device, camera, line) -> deque of (received, forward, backward)
        self.counts: dict[tuple[str, str, str], deque[tuple[float, int, int]]] = {}
        #: per camera, the recent bins as (seq, fingerprint of the bin) -> None, oldest first
        self._seen_bins: dict[Camera, OrderedDict[tuple[int, int], None]] = {}
        self.phase_cameras: dict[str, set[Camera]] = {}
        self.known_zones: set[tuple[str, str, str]] = set()
        self.known_lines: set[tuple[str, str, str]] = set()
        for p in cfg.intersection.phases:
            self.phase_cameras[p.id] = {(cfg.device_of(r), r.camera) for r in p.detectors.refs()}
            for cam in self.phase_cameras[p.id]:
                self.cameras.setdefault(cam, _CameraHealth())
                self._seen_bins.setdefault(cam, OrderedDict())
            for z in (*p.detectors.presence, *p.detectors.queue):
                self.known_zones.add((cfg.device_of(z), z.camera, z.zone))
            for ln in p.detectors.counts:
                self.known_lines.add((cfg.device_of(ln), ln.camera, ln.line))
        self.known_devices: set[str] = {d for d, _ in self.cameras}
        #: messages or entries with an id the configuration does not reference (ignored, never stored)
        self.ignored = 0
        self.duplicates = 0
        self._unknown_reported: set[str] = set()
        self._unknown_new: list[str] = []
        #: phase -> time since which its data has been continuously good (None while bad)
        self.good_since: dict[str, float | None] = {p.id: None for p in cfg.intersection.phases}
        self.reliable: dict[str, bool] = {p.id: False for p in cfg.intersection.phases}

    # -- what the configuration references ------------------------------------------------------------
    def knows(self, device: str, camera: str | None) -> bool:
        """A device (camera None) or camera that some phase reads."""
        return device in self.known_devices if camera is None else (device, camera) in self.cameras

    def unknown(self, what: str) -> None:
        """Count an id that no phase reads; remember it (bounded) to be reported once."""
        self.ignored += 1
        if what not in self._unknown_reported and len(self._unknown_reported) < self.MAX_UNKNOWN_REPORTED:
            self._unknown_reported.add(what)
            self._unknown_new.append(what)

    def take_unknown(self) -> list[str]:
        """Unknown ids seen for the first time since the last call."""
        out, self._unknown_new = self._unknown_new, []
        return out

    # -- feeding -----------------------------------------------------------------------------------
    def _camera(self, device: str, camera: str, now: float) -> _CameraHealth:
        cam = self.cameras[(device, camera)]  # callers check knows() first
        cam.last_seen = max(cam.last_seen, now)
        return cam

    def on_status(self, device: str, online: bool, now: float) -> None:
        self.device_online[device] = online

    def on_presence(self, msg: PresenceMessage, now: float) -> None:
        self._camera(msg.device, msg.camera, now)
        for zid, z in msg.zones.items():
            key = (msg.device, msg.camera, zid)
            if key not in self.known_zones:
                self.unknown(f"zone {msg.device}/{msg.camera}/{zid}")
                continue
            prev = self.zones.get(key)
            if z.occupied:
                empty_since = None
            elif prev is None or prev.empty_since is None:
                empty_since = now
            else:
                empty_since = prev.empty_since
            self.zones[key] = _Zone(z, now, empty_since)

    def on_counts(self, msg: CountsMessage, now: float, fingerprint: int | None = None) -> None:
        """``fingerprint``: a hash of the message as received (a redelivery is byte for byte the same);
        by default one of the bin's content."""
        self._camera(msg.device, msg.camera, now)
        if abs(msg.interval_s - self.cfg.detection.counts_interval_s) > 1e-6:
            return  # another bin length of the same vehicles
        if msg.late:
            return  # delivered from the edge's outbox after an outage: history, not the current flow
        # A redelivery is the same bin with the same counts. The key holds the bin's content, so a message
        # that only claims a seq (a spoofed future seq) cannot make the real bin with that seq a "duplicate".
        seen = self._seen_bins[(msg.device, msg.camera)]
        if fingerprint is None:
            fingerprint = hash((msg.interval_start, msg.interval_s, tuple(
                (lid, tuple(dc.forward.items()), tuple(dc.backward.items())) for lid, dc in msg.lines.items())))
        key = (msg.seq, fingerprint)
        if key in seen:
            self.duplicates += 1
            return
        seen[key] = None
        if len(seen) > self.SEEN_PER_CAMERA:
            seen.popitem(last=False)
        for lid, dc in msg.lines.items():
            lkey = (msg.device, msg.camera, lid)
            if lkey not in self.known_lines:
                self.unknown(f"line {msg.device}/{msg.camera}/{lid}")
                continue
            q = self.counts.get(lkey)
            if q is None:
                # the bins the flow window can hold, with room for a restarted edge's overlap; a flood of
                # bins only pushes the oldest out
                d = self.cfg.detection
                q = self.counts[lkey] = deque(maxlen=2 * math.ceil(d.flow_window_s / d.counts_interval_s) + 8)
            q.append((now, sum(dc.forward.values()), sum(dc.backward.values())))

    def on_health(self, msg: HealthMessage, now: float) -> None:
        cam = self._camera(msg.device, msg.camera, now)
        cam.health = msg.state
        cam.health_reasons = list(msg.reasons)

    def on_malformed(self, device: str, camera: str | None, error: str, now: float) -> None:
        cams = [c for c in self.cameras if c[0] == device and (camera is None or c[1] == camera)]
        for c in cams:
            self.cameras[c].malformed_at = now
            self.cameras[c].malformed_error = error

    # -- reading -----------------------------------------------------------------------------------
    def camera_problems(self, cam: Camera, now: float) -> list[str]:
        fs = self.cfg.failsafe
        h = self.cameras[cam]
        name = f"{cam[0]}/{cam[1]}"
        out = []
        if self.device_online.get(cam[0]) is False:
            out.append(f"{cam[0]}: edge offline")
        if now - h.last_seen > fs.stale_after_s:
            age = "no message yet" if math.isinf(h.last_seen) else f"no message for {now - h.last_seen:.0f}s"
            out.append(f"{name}: stale ({age})")
        if h.health != "ok":
            out.append(f"{name}: health {h.health}" + (f" ({', '.join(h.health_reasons)})" if h.health_reasons else ""))
        if now - h.malformed_at < fs.malformed_hold_s:
            out.append(f"{name}: malformed payload ({h.malformed_error})")
        return out

    def update_reliability(self, now: float) -> list[tuple[str, bool, list[str]]]:
        """Re-evaluate every phase; return the phases whose fail-safe state changed (phase, reliable, reasons)."""
        changes = []
        for p in self.cfg.intersection.phases:
            problems = self.phase_problems(p.id, now)
            if problems:
                self.good_since[p.id] = None
            elif self.good_since[p.id] is None:
                self.good_since[p.id] = now
            since = self.good_since[p.id]
            ok = since is not None and (now - since >= self.cfg.failsafe.recover_after_s or
                                        (self.reliable[p.id] and not problems))
            if ok != self.reliable[p.id]:
                self.reliable[p.id] = ok
                changes.append((p.id, ok, problems))
        return changes

    def phase_problems(self, pid: str, now: float) -> list[str]:
        out: list[str] = []
        for cam in sorted(self.phase_cameras[pid]):
            out += self.camera_problems(cam, now)
        return out

    def _zone(self, ref: ZoneRef) -> _Zone | None:
        return self.zones.get((self.cfg.device_of(ref), ref.camera, ref.zone))

    def _zone_view(self, ref: ZoneRef, now: float) -> tuple[bool, float, float] | None:
        z = self._zone(ref)
        if z is None:
            return None
        dwell = z.state.max_dwell_s + (now - z.at if z.state.occupied else 0.0)
        return (z.state.occupied, z.state.count * ref.share, dwell)

    def _flow(self, refs: list[LineRef], now: float) -> float | None:
        window = self.cfg.detection.flow_window_s
        total, bins = 0, 0
        for ref in refs:
            q = self.counts.get((self.cfg.device_of(ref), ref.camera, ref.line))
            if not q:
                continue
            while q and q[0][0] < now - window:
                q.popleft()
            n = 0
            for _, fwd, bwd in q:
                total += {"forward": fwd, "backward": bwd, "both": fwd + bwd}[ref.direction] * ref.share
                n += 1
            bins = max(bins, n)
        if bins == 0:
            return None
        return total * 3600.0 / (bins * self.cfg.detection.counts_interval_s)

    def phase_inputs(self, now: float) -> dict[str, PhaseInput]:
        out = {}
        for p in self.cfg.intersection.phases:
            det = p.detectors
            reliable = self.reliable[p.id]
            problems = [] if reliable else (self.phase_problems(p.id, now) or ["recovering"])
            occupied, gap, waits = False, math.inf, [0.0]
            pz = [self._zone_view(ref, now) for ref in det.presence] if reliable else []
            qz = [self._zone_view(ref, now) for ref in det.queue] if reliable else []
            for ref in det.presence:
                z = self._zone(ref)
                if z is None:
                    continue
                if z.state.occupied:
                    occupied, gap = True, 0.0
                elif z.empty_since is not None:
                    gap = min(gap, now - z.empty_since)
                waits.append(z.state.max_dwell_s + (now - z.at if z.state.occupied else 0.0))
            queue = None
            if det.queue and reliable:
                queue = 0.0
                for ref in det.queue:
                    z = self._zone(ref)
                    if z is not None:
                        queue += z.state.count * ref.share
                        waits.append(z.state.max_dwell_s + (now - z.at if z.state.occupied else 0.0))
            # no detectors at all: on recall by design (not a fail-safe)
            call = p.recall != "none" or not reliable or not self.phase_cameras[p.id] or occupied or bool(queue)
            out[p.id] = PhaseInput(reliable, problems, call, gap if reliable else math.inf, queue,
                                   max(waits) if reliable else 0.0, self._flow(det.counts, now), p.recall, pz, qz)
        return out
