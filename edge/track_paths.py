"""Where a camera tracks vehicles well: the paths of its recent confirmed tracks (for the calibration page's
overlay), their binned heat map over the last minutes and, per count line, how many tracks cross it cleanly
against how many start or end near it.

A line placed where tracks are born or lost (at the frame's edge, behind a sign, where vehicles are too
small) counts badly: the vehicles whose tracks break there cross it half-seen or twice under two ids.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from roadside.edge.config import LineConfig
from roadside.edge.detections import Detections
from roadside.edge.layout import segments_intersect


@dataclass
class _Path:
    track_id: int
    points: list[tuple[float, float]] = field(default_factory=list)
    last_s: float = 0.0


def _dist_to_segment(p, a, b) -> float:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / max(dx * dx + dy * dy, 1e-9)))
    return math.hypot(p[0] - (ax + t * dx), p[1] - (ay + t * dy))


class TrackPaths:
    """Anchor paths of confirmed tracks: the active ones and those that ended in the last ``horizon_s``."""

    def __init__(self, anchor: str = "bottom_center", horizon_s: float = 600.0, max_paths: int = 400,
                 end_after_s: float = 2.0, step_px: float = 3.0, max_points: int = 300):
        self.anchor, self.horizon_s, self.end_after_s = anchor, horizon_s, end_after_s
        self.step_px, self.max_points = step_px, max_points
        self.active: dict[int, _Path] = {}
        self.finished: deque[_Path] = deque(maxlen=max_paths)
        self.now_s = 0.0  # the time of the last update

    def update(self, time_s: float, confirmed: Detections) -> None:
        self.now_s = time_s
        if len(confirmed):
            for tid, p in zip(confirmed.tracker_id.tolist(), confirmed.anchors(self.anchor).tolist()):
                path = self.active.get(tid)
                if path is None:
                    path = self.active[tid] = _Path(tid)
                if not path.points or math.dist(path.points[-1], p) >= self.step_px:
                    path.points.append((round(p[0], 1), round(p[1], 1)))
                    if len(path.points) > self.max_points:
                        path.points = path.points[::2]
                path.last_s = time_s
        for tid in [t for t, pa in self.active.items() if time_s - pa.last_s > self.end_after_s]:
            path = self.active.pop(tid)
            if len(path.points) >= 2:
                self.finished.append(path)
        while self.finished and time_s - self.finished[0].last_s > self.horizon_s:
            self.finished.popleft()

    def _all(self) -> list[_Path]:
        return list(self.finished) + [p for p in self.active.values() if len(p.points) >= 2]

    def recent(self, max_points: int = 60) -> list[dict]:
        """The paths (each thinned to at most ``max_points`` points, its ends kept) for the page's overlay."""
        out = []
        for p in self._all():
            pts = p.points
            if len(pts) > max_points:
                step = math.ceil(len(pts) / max_points)
                pts = pts[::step] + ([pts[-1]] if (len(pts) - 1) % step else [])
            out.append({"id": p.track_id, "points": [list(q) for q in pts], "active": p.track_id in self.active})
        return out

    def heatmap(self, window_s: float, cell_px: int = 16) -> dict:
        """Where the confirmed tracks of the last ``window_s`` (at most the horizon) went: the frame cut into ``cell_px`` squares, and
        per square the number of tracks whose anchor path passed through it (a track counts once per square,
        however long it stayed). Sparse: ``cells`` lists ``[column, row, tracks]`` of the squares with any."""
        paths = [p for p in self._all() if self.now_s - p.last_s <= window_s]
        heat: dict[tuple[int, int], int] = {}
        for p in paths:
            seen: set[tuple[int, int]] = set()
            for (x0, y0), (x1, y1) in zip(p.points, p.points[1:]):
                steps = max(1, math.ceil(2 * math.dist((x0, y0), (x1, y1)) / cell_px))  # half a cell per step
                for k in range(steps + 1):
                    t = k / steps
                    seen.add((int((x0 + t * (x1 - x0)) // cell_px), int((y0 + t * (y1 - y0)) // cell_px)))
            for c in seen:
                heat[c] = heat.get(c, 0) + 1
        return {"cell_px": cell_px, "window_s": window_s, "tracks": len(paths),
                "since": min((p.last_s for p in paths), default=None),
                "max": max(heat.values(), default=0), "cells": [[c, r, n] for (c, r), n in sorted(heat.items())]}

    def line_health(self, lines: list[LineConfig], margin_frac: float = 0.15, min_px: float = 15.0,
                    max_px: float = 60.0) -> dict:
        """Per line: tracks crossing it cleanly (begun and ended away from it), tracks begun or ended near it
        (within 15% of its length, 15 to 60 px), and a warning when the line is badly placed for tracking."""
        out = {}
        finished = list(self.finished)
        for ln in lines:
            margin = min(max(min_px, margin_frac * math.dist(ln.a, ln.b)), max_px)
            clean = broken = 0
            for p in finished:
                pts = p.points
                crosses = any(segments_intersect(pts[i], pts[i + 1], ln.a, ln.b) for i in range(len(pts) - 1))
                near_start = _dist_to_segment(pts[0], ln.a, ln.b) < margin
                near_end = _dist_to_segment(pts[-1], ln.a, ln.b) < margin
                if near_start or near_end:
                    broken += 1
                elif crosses:
                    clean += 1
            warning = None
            if clean + broken >= 5 and broken > clean:
                warning = (f"few tracks cross this line cleanly ({clean} clean, {broken} start or end near it): "
                           "move it to where vehicles are tracked well (the paths of the overlay run through)")
            elif len(finished) >= 10 and clean == 0:
                warning = f"none of the last {len(finished)} tracks crossed this line"
            out[ln.id] = {"clean": clean, "broken": broken, "warning": warning}
        return out


__all__ = ["TrackPaths"]
