"""Slit-scan images along count lines: the pixels under a line stacked over time, one row per frame.

Every vehicle that passes through a line leaves a streak across its rows, so a missed crossing shows as a
streak without a mark and a false one as a mark without a streak. ``replay --annotate`` writes one PNG per
line (``slitscan_<line>.png``) with the pipeline's crossing events marked: a green triangle for forward,
red for backward, at the event's frame (row) and position along the line (column), with its track id.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from roadside.edge.config import LineConfig

_FORWARD, _BACKWARD = (60, 220, 60), (60, 60, 240)
_MARGIN = 56  # left margin (px) for the time scale; events' labels go right of the image


class SlitScan:
    def __init__(self, line: LineConfig, fps: float):
        self.line = line
        self.fps = fps
        a, b = np.asarray(line.a, np.float32), np.asarray(line.b, np.float32)
        n = max(2, int(math.ceil(math.dist(line.a, line.b))))
        t = np.linspace(0.0, 1.0, n, dtype=np.float32)
        pts = a[None] + t[:, None] * (b - a)[None]
        self._mx = pts[:, 0].reshape(1, -1).copy()
        self._my = pts[:, 1].reshape(1, -1).copy()
        self.rows: list[np.ndarray] = []

    def add(self, image: np.ndarray) -> None:
        self.rows.append(cv2.remap(image, self._mx, self._my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))

    def render(self, events: list) -> np.ndarray:
        """The image (BGR): time down, position along the line (a at the left) across."""
        width = self._mx.shape[1]
        strip = np.concatenate(self.rows, 0) if self.rows else np.zeros((1, width, 3), np.uint8)
        h = strip.shape[0]
        img = np.full((h, _MARGIN + width + 90, 3), 32, np.uint8)
        img[:, _MARGIN:_MARGIN + width] = strip
        step = max(1, int(round(self.fps)))
        for f in range(0, h, step):
            long_tick = (f // step) % 5 == 0
            cv2.line(img, (_MARGIN - (12 if long_tick else 5), f), (_MARGIN - 1, f), (200, 200, 200), 1)
            if long_tick:
                cv2.putText(img, f"{f / self.fps:.0f}s", (2, min(h - 2, f + 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                            (220, 220, 220), 1, cv2.LINE_AA)
        for ev in events:
            if ev.line != self.line.id:
                continue
            x = _MARGIN + int(round(ev.t_along_line * (width - 1)))
            y = int(ev.frame)
            colour = _FORWARD if ev.direction == "forward" else _BACKWARD
            tri = np.array([[x, y], [x - 6, y - 9], [x + 6, y - 9]], np.int32) if ev.direction == "forward" else \
                np.array([[x, y], [x - 6, y + 9], [x + 6, y + 9]], np.int32)
            cv2.fillPoly(img, [tri], colour)
            cv2.line(img, (_MARGIN + width, y), (_MARGIN + width + 2, y), colour, 1)
            cv2.putText(img, f"#{ev.track_id} {ev.category}", (_MARGIN + width + 3, min(h - 2, y + 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
        return img

    def write(self, path: str | Path, events: list) -> Path:
        p = Path(path)
        if not cv2.imwrite(str(p), self.render(events)):
            from roadside.core.errors import RoadsideError

            raise RoadsideError(f"{p}: cannot write the slit-scan image")
        return p
