"""Line crossings, zone occupancy and interval bins, from tracked detections.

Direction convention (image pixels, x right, y down): for a line a->b, ``s(p) = cross(b-a, p-a)``;
an anchor going from ``s < 0`` to ``s > 0`` while passing between a and b is ``forward``, the opposite is
``backward``. A vehicle counts at most once per line; only confirmed tracks count, but the path a track
took while still tentative is remembered, so a vehicle that crosses during its first frames is counted
when its track is confirmed.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from roadside.core.payloads import DirectionCounts
from roadside.edge.config import CountingConfig, LineConfig, ZoneConfig
from roadside.edge.detections import Detections

FORWARD, BACKWARD = "forward", "backward"


def side_value(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """cross(b - a, p - a) for points p (..., 2): > 0 is the forward side."""
    return (b[0] - a[0]) * (p[..., 1] - a[1]) - (b[1] - a[1]) * (p[..., 0] - a[0])


@dataclass(frozen=True)
class CrossingEvent:
    line: str
    direction: str
    frame: int  # first frame at or after the moment the anchor reached the line (interpolated)
    time_s: float
    category: str
    track_id: int
    t_along_line: float  # 0 at a, 1 at b: where it crossed (identifies the lane)
    detected_frame: int  # frame at which the counter emitted it (>= frame)


@dataclass
class _TrackSide:
    side: int  # -1, +1: last trusted side of the line; 0: only seen inside the band so far (born on the line)
    point: np.ndarray  # anchor where that side was last trusted
    frame: int


@dataclass
class _Pending:
    """A side change not yet counted: it counts once the anchor is far enough past the line."""

    direction: str
    side: int  # the side it went to
    frame: int  # interpolated crossing frame
    t_along_line: float
    seen: int = 0  # observations on the new side since


@dataclass
class _Line:
    cfg: LineConfig
    a: np.ndarray
    b: np.ndarray
    length: float
    sides: dict[int, _TrackSide] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    counted: set[int] = field(default_factory=set)


class LineCounter:
    """Counts anchor crossings of straight count segments, once per track per line.

    A side change of the anchor through the segment is a *pending* crossing; it counts only once the anchor
    is ``counting.commit_fraction`` of its box height past the line (at least the hysteresis band), so
    box-bottom jitter on a vehicle standing at the line neither counts nor uses up the track's one count
    per line: if the anchor returns first, the pending crossing is dropped. A track first seen inside the
    band (born on the line) counts when it leaves the band, in the direction it leaves.
    """

    def __init__(self, lines: list[LineConfig], config: CountingConfig | None = None, fps: float = 30.0):
        self.config = config or CountingConfig()
        self.fps = fps
        self.lines = [
            _Line(ln, np.asarray(ln.a, float), np.asarray(ln.b, float), math.dist(ln.a, ln.b)) for ln in lines
        ]
        self.totals: dict[str, dict[str, dict[str, int]]] = {
            ln.id: {FORWARD: defaultdict(int), BACKWARD: defaultdict(int)} for ln in lines  # type: ignore[misc]
        }
        self._pending: dict[int, list[CrossingEvent]] = defaultdict(list)
        self._last_seen: dict[int, int] = {}
        #: line -> the categories it counts (lines with ``classes: null`` count every category)
        self._classes = {ln.id: frozenset(ln.classes) for ln in lines if ln.classes is not None}

    def _observe(self, frame: int, ids: np.ndarray, anchors: np.ndarray, cats: np.ndarray,
                 heights: np.ndarray | None = None) -> list[CrossingEvent]:
        events: list[CrossingEvent] = []
        band = self.config.hysteresis_px
        if heights is None:
            heights = np.zeros(len(ids))
        commit = np.maximum(band, self.config.commit_fraction * np.asarray(heights, float))
        for ln in self.lines:
            dist = side_value(ln.a, ln.b, anchors) / ln.length  # signed distance (px) from the infinite line
            for tid, p, d, cat, need in zip(ids, anchors, dist, cats, commit):
                tid = int(tid)
                if tid in ln.counted:
                    continue
                prev = ln.sides.get(tid)
                if abs(d) <= band:
                    if prev is None:  # first seen on the line: remember where, with no side yet
                        ln.sides[tid] = _TrackSide(0, p.copy(), frame)
                    continue  # within the jitter band: neither counts nor moves the remembered side
                side = 1 if d > 0 else -1
                ln.sides[tid] = _TrackSide(side, p.copy(), frame)
                pend = ln.pending.get(tid)
                if prev is not None and prev.side != side:
                    if pend is not None and pend.side != side:
                        del ln.pending[tid]  # back where it came from before the crossing was sure: jitter
                    elif pend is None:
                        pend = self._crossing(ln, prev, p, float(d), frame, side)
                        if pend is not None:
                            ln.pending[tid] = pend
                if pend is not None and pend.side == side:
                    pend.seen += 1
                if pend is not None and pend.side == side and tid in ln.pending and (
                        abs(d) >= need or pend.seen >= self.config.commit_frames):
                    del ln.pending[tid]
                    ln.counted.add(tid)
                    events.append(CrossingEvent(ln.cfg.id, pend.direction, pend.frame, pend.frame / self.fps, str(cat),
                                                tid, pend.t_along_line, frame))
        return events

    def _crossing(self, ln: _Line, prev: _TrackSide, p: np.ndarray, d: float, frame: int, side: int) -> _Pending | None:
        """The pending crossing from ``prev`` to ``p`` (signed distance ``d``), if it passes through the segment."""
        if prev.side == 0:  # born on the line: it crossed where it was first seen
            w, x = 0.0, prev.point
        else:
            s0 = float(side_value(ln.a, ln.b, prev.point)) / ln.length
            w = s0 / (s0 - d)  # fraction of the way from prev.point to p
            x = prev.point + w * (p - prev.point)
        ab = ln.b - ln.a
        t = float(np.dot(x - ln.a, ab) / np.dot(ab, ab))
        if not 0.0 <= t <= 1.0:
            return None  # passed beside the segment, not through it
        cross_frame = prev.frame + w * (frame - prev.frame)
        return _Pending(FORWARD if side > 0 else BACKWARD, side, int(math.ceil(cross_frame - 1e-6)), t)

    def update(self, frame: int, confirmed: Detections, tentative: Detections | None = None) -> list[CrossingEvent]:
        """Feed one frame of tracks; returns the crossings counted in this frame."""
        kind = self.config.anchor
        emitted: list[CrossingEvent] = []
        if tentative is not None and len(tentative):
            for ev in self._observe(frame, tentative.tracker_id, tentative.anchors(kind), tentative.category,
                                    tentative.xyxy[:, 3] - tentative.xyxy[:, 1]):
                self._pending[ev.track_id].append(ev)
            for tid in tentative.tracker_id:
                self._last_seen[int(tid)] = frame
        if len(confirmed):
            for tid in confirmed.tracker_id:
                tid = int(tid)
                self._last_seen[tid] = frame
                for ev in self._pending.pop(tid, []):  # crossed while tentative: counts now it is confirmed
                    emitted.append(CrossingEvent(ev.line, ev.direction, ev.frame, ev.time_s, self._category(confirmed, tid),
                                                 tid, ev.t_along_line, frame))
            emitted += self._observe(frame, confirmed.tracker_id, confirmed.anchors(kind), confirmed.category,
                                     confirmed.xyxy[:, 3] - confirmed.xyxy[:, 1])
        if self._classes:  # a vehicle of a category a line does not count crosses it uncounted
            emitted = [ev for ev in emitted if ev.category in self._classes.get(ev.line, (ev.category,))]
        for ev in emitted:
            self.totals[ev.line][ev.direction][ev.category] += 1
        self._forget(frame)
        return emitted

    @staticmethod
    def _category(dets: Detections, tid: int) -> str:
        return str(dets.category[np.flatnonzero(dets.tracker_id == tid)[0]])

    def _forget(self, frame: int, horizon_s: float = 30.0) -> None:
        """Drop the state of tracks not seen for a long time (bounded memory in a months-long run)."""
        if frame % 256:
            return
        old = [tid for tid, f in self._last_seen.items() if frame - f > horizon_s * self.fps]
        for tid in old:
            del self._last_seen[tid]
            self._pending.pop(tid, None)
            for ln in self.lines:
                ln.sides.pop(tid, None)
                ln.pending.pop(tid, None)
                ln.counted.discard(tid)

    def forget_sides(self) -> None:
        """Forget every track's remembered side and pending crossing (the view changed): nothing seen before
        counts against a line after. Tracks already counted stay counted."""
        for ln in self.lines:
            ln.sides.clear()
            ln.pending.clear()
        self._pending.clear()

    def totals_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        return {lid: {d: dict(sorted(c.items())) for d, c in dirs.items()} for lid, dirs in self.totals.items()}


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over points (N, 2) for one polygon (M, 2)."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    x1, y1 = polygon[:, 0][None, :], polygon[:, 1][None, :]
    x2, y2 = np.roll(polygon[:, 0], -1)[None, :], np.roll(polygon[:, 1], -1)[None, :]
    crosses = ((y1 > y) != (y2 > y)) & (x < (x2 - x1) * (y - y1) / np.where(y2 == y1, 1e-12, y2 - y1) + x1)
    return crosses.sum(axis=1) % 2 == 1


@dataclass
class ZoneStatus:
    occupied: bool
    count: int
    max_dwell_s: float
    track_ids: list[int]


class ZoneMonitor:
    """Occupancy (vehicles present now) and dwell times of polygon zones.

    A vehicle stays present through a short detection gap (``grace_s``) so that one missed frame does
    not flicker a presence call.
    """

    def __init__(self, zones: list[ZoneConfig], config: CountingConfig | None = None, grace_s: float = 0.5):
        self.config = config or CountingConfig()
        self.zones = {z.id: np.asarray(z.polygon, float) for z in zones}
        #: zone -> the categories whose presence it reports (zones with ``classes: null``: every category)
        self.classes = {z.id: np.asarray(sorted(z.classes)) for z in zones if z.classes is not None}
        self.grace_s = grace_s
        self._entered: dict[str, dict[int, float]] = {z: {} for z in self.zones}  # track -> entry time
        self._seen: dict[str, dict[int, float]] = {z: {} for z in self.zones}  # track -> last time inside
        self.completed_dwells: dict[str, list[float]] = {z: [] for z in self.zones}
        self.status: dict[str, ZoneStatus] = {z: ZoneStatus(False, 0, 0.0, []) for z in self.zones}

    def update(self, time_s: float, confirmed: Detections) -> dict[str, ZoneStatus]:
        """Returns the zones whose occupancy changed in this frame (empty dict when none did)."""
        anchors = confirmed.anchors(self.config.anchor) if len(confirmed) else np.zeros((0, 2))
        changed: dict[str, ZoneStatus] = {}
        for zid, poly in self.zones.items():
            mask = points_in_polygon(anchors, poly) if len(anchors) else np.zeros(0, bool)
            if zid in self.classes and len(anchors):
                mask &= np.isin(confirmed.category, self.classes[zid])
            inside = confirmed.tracker_id[mask] if len(anchors) else np.zeros(0, np.int64)
            entered, seen = self._entered[zid], self._seen[zid]
            for tid in inside:
                tid = int(tid)
                entered.setdefault(tid, time_s)
                seen[tid] = time_s
            for tid in [t for t, last in seen.items() if time_s - last > self.grace_s]:
                self.completed_dwells[zid].append(seen[tid] - entered[tid])
                del seen[tid], entered[tid]
            ids = sorted(seen)
            st = ZoneStatus(bool(ids), len(ids), max((time_s - entered[t] for t in ids), default=0.0), ids)
            if st.occupied != self.status[zid].occupied or st.count != self.status[zid].count:
                changed[zid] = st
            self.status[zid] = st
        return changed


class IntervalBin(BaseModel):
    """One closed interval bin: the vehicles per line, direction and category between ``start_s`` and ``end_s``
    on the bin clock (media time in a replay, epoch seconds in the service)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: float = Field(gt=0, description="the bin length (s), one of counting.bins_s")
    start_s: float = Field(description="start of the bin on the bin clock (s), a multiple of interval_s")
    end_s: float = Field(description="end of the bin (s): start_s + interval_s, or earlier for a partial bin")
    partial: bool = Field(description="closed before its end (the end of a replay, a service shutdown)")
    lines: dict[str, DirectionCounts] = Field(description="count line -> vehicles per direction and category; "
                                                          "every line is present, zero counts included")


class IntervalBins:
    """Counts per line, direction and category in fixed-length bins of a clock (media or wall time).

    Bins are aligned to multiples of their length on that clock (e.g. 15-minute bins start at :00, :15,
    ...). ``add`` records an event; ``close_until(now)`` returns the bins that ended at or before ``now``.
    """

    def __init__(self, lengths_s: list[float], line_ids: list[str]):
        self.lengths = list(lengths_s)
        self.line_ids = list(line_ids)
        self._open: dict[float, tuple[float, dict]] = {}
        self._ready: list[IntervalBin] = []  # bins closed by add() (events arriving past their end)

    def _empty(self) -> dict:
        return {lid: {FORWARD: {}, BACKWARD: {}} for lid in self.line_ids}

    @staticmethod
    def _closed(length: float, start: float, end: float, partial: bool, counts: dict) -> IntervalBin:
        return IntervalBin(interval_s=length, start_s=start, end_s=end, partial=partial,
                           lines={lid: DirectionCounts(**dirs) for lid, dirs in counts.items()})

    def start(self, now: float) -> None:
        for L in self.lengths:
            self._open.setdefault(L, (math.floor(now / L) * L, self._empty()))

    def _roll(self, L: float, now: float) -> None:
        start, counts = self._open[L]
        while start + L <= now + 1e-9:
            self._ready.append(self._closed(L, start, start + L, False, counts))
            start, counts = start + L, self._empty()
        self._open[L] = (start, counts)

    def add(self, time_s: float, line: str, direction: str, category: str) -> None:
        """Count one crossing at ``time_s``. An event for a bin already closed goes into the open bin."""
        self.start(time_s)
        for L in self.lengths:
            self._roll(L, time_s)
            c = self._open[L][1][line][direction]
            c[category] = c.get(category, 0) + 1

    def close_until(self, now: float, final: bool = False) -> list[IntervalBin]:
        """Close every bin that ended at or before ``now`` (or every open bin, as partial bins, when ``final``).

        Returns the closed bins in order of length, then time; bins with no vehicles are reported too (zero
        is a measurement).
        """
        for L in list(self._open):
            self._roll(L, now)
            if final:
                start, counts = self._open.pop(L)
                if now > start + 1e-9:
                    self._ready.append(self._closed(L, start, now, True, counts))
        closed, self._ready = self._ready, []
        closed.sort(key=lambda b: (b.interval_s, b.start_s))
        return closed
