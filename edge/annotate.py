"""Drawing boxes, track ids, count lines with running counts and zones onto frames."""
from __future__ import annotations

import cv2
import numpy as np

from roadside.edge.config import LineConfig, ZoneConfig
from roadside.edge.detections import Detections

_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
            (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
            (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203)]


def _colour(track_id: int) -> tuple[int, int, int]:
    return _PALETTE[int(track_id) % len(_PALETTE)]


def _label(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int], scale: float) -> None:
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = org
    y = max(y, h + 2)
    cv2.rectangle(img, (x, y - h - base - 1), (x + w + 2, y + 1), colour, -1)
    cv2.putText(img, text, (x + 1, y - base + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw(image: np.ndarray, tracks: Detections, lines: list[LineConfig], zones: list[ZoneConfig],
         totals: dict[str, dict[str, dict[str, int]]] | None = None,
         occupancy: dict[str, int] | None = None, header: str | None = None) -> np.ndarray:
    """Return a copy of ``image`` with zones, lines (a->b, with forward arrow and counts) and tracks."""
    img = image.copy()
    scale = max(0.4, min(img.shape[1] / 1600, 1.0))
    for z in zones:
        pts = np.asarray(z.polygon, np.int32)
        overlay = img.copy()
        cv2.fillPoly(overlay, [pts], (0, 200, 255))
        cv2.addWeighted(overlay, 0.2, img, 0.8, 0, img)
        cv2.polylines(img, [pts], True, (0, 200, 255), 2)
        n = (occupancy or {}).get(z.id, 0)
        _label(img, f"{z.id}: {n}", tuple(pts[0]), (0, 140, 200), scale)
    for ln in lines:
        a = np.asarray(ln.a, float)
        b = np.asarray(ln.b, float)
        cv2.line(img, tuple(a.astype(int)), tuple(b.astype(int)), (0, 255, 255), 2, cv2.LINE_AA)
        cv2.circle(img, tuple(a.astype(int)), 4, (0, 255, 0), -1)
        cv2.circle(img, tuple(b.astype(int)), 4, (255, 0, 0), -1)
        mid = (a + b) / 2
        d = b - a
        normal = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-6)  # points to the forward side (y down)
        cv2.arrowedLine(img, tuple(mid.astype(int)), tuple((mid + 25 * normal).astype(int)), (0, 255, 255), 2, tipLength=0.4)
        if totals is not None:
            fw = sum(totals.get(ln.id, {}).get("forward", {}).values())
            bw = sum(totals.get(ln.id, {}).get("backward", {}).values())
            _label(img, f"{ln.id} fwd {fw} bwd {bw}", tuple((mid + 30 * normal).astype(int)), (0, 120, 120), scale)
    for box, tid, cat, conf in zip(tracks.xyxy.astype(int), tracks.tracker_id, tracks.category, tracks.confidence):
        c = _colour(tid)
        cv2.rectangle(img, (box[0], box[1]), (box[2], box[3]), c, 2)
        _label(img, f"#{tid} {cat} {conf:.2f}", (box[0], box[1] - 2), c, scale * 0.8)
        cv2.circle(img, ((box[0] + box[2]) // 2, box[3]), 3, c, -1)
    if header:
        _label(img, header, (5, 5 + int(20 * scale)), (40, 40, 40), scale)
    return img
