"""Region-of-interest inference: the detector runs on the part of the frame the camera's lines and zones need
(``detector.roi``), or on overlapping tiles over it (``detector.tiles``), each at the model's input size, so that
small and distant vehicles get more of the model's pixels.

Every region is widened to the model's input aspect (no extra distortion, no letterbox bars), kept inside the
frame. Boxes found in a region are mapped back to source-frame pixels before anything else sees them. A box
touching a region's edge where that edge lies inside the frame is a part of a vehicle cut by the crop: with one
region it is dropped; with tiles it is dropped when another tile holds the vehicle (most of it inside one of
that tile's boxes), so that a vehicle on a seam keeps its whole box only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from roadside.core.errors import RoadsideError
from roadside.edge.config import DetectorConfig, LineConfig, ZoneConfig
from roadside.edge.detections import Detections, box_area, box_intersection

#: a box edge within this many source pixels (at least; or one model-input pixel) of a region's inner edge touches it
EDGE_PX = 2.0
#: a tile's part-box is dropped when at least this share of it lies inside another tile's box
PART_INSIDE = 0.5
#: DetectorConfig's fields that choose the regions, not the model or its session
ROI_FIELDS = ("roi", "roi_padding", "roi_min_gain", "tiles", "tile_overlap", "roi_when_dark")


class RoiError(RoadsideError):
    """``detector.roi`` does not fit the frame."""


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame in whole source pixels, ``x1``/``y1`` exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0:self.y1, self.x0:self.x1]

    def to_frame(self, transform: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """The pre-processing transform of the crop (x_in = x_crop * sx + ox) as one of the frame's pixels."""
        sx, sy, ox, oy = transform
        return sx, sy, ox - self.x0 * sx, oy - self.y0 * sy


def layout_box(lines: Iterable[LineConfig], zones: Iterable[ZoneConfig]) -> tuple[float, float, float, float] | None:
    """The bounding box of every line end and zone corner (None: no lines, no zones)."""
    pts = [p for ln in lines for p in (ln.a, ln.b)] + [p for z in zones for p in z.polygon]
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def check_roi(config: DetectorConfig, frame_size: tuple[int, int]) -> str | None:
    """Why an explicit ``detector.roi`` does not fit a ``frame_size`` (width, height) frame, or None."""
    if not isinstance(config.roi, tuple):
        return None
    w, h = frame_size
    x0, y0, x1, y1 = config.roi
    if x1 > w or y1 > h:
        return (f"detector.roi {[round(v, 1) for v in config.roi]} is outside the {w}x{h} frame "
                f"(x1 <= {w}, y1 <= {h})")
    return None


def _fit(box: tuple[float, float, float, float], aspect: float, w: int, h: int) -> Region:
    """``box`` grown on its shorter side to ``aspect`` (width / height), centred, moved inside the frame."""
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    if bw / bh < aspect:
        bw = min(bh * aspect, w)
    else:
        bh = min(bw / aspect, h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    nx0 = min(max(cx - bw / 2, 0.0), w - bw)
    ny0 = min(max(cy - bh / 2, 0.0), h - bh)
    return Region(max(0, math.floor(nx0)), max(0, math.floor(ny0)), min(w, math.ceil(nx0 + bw)), min(h, math.ceil(ny0 + bh)))


def _split(box: tuple[float, float, float, float], n: int, overlap: float) -> list[tuple[float, float, float, float]]:
    """``n`` boxes along ``box``'s longer side, neighbours overlapping by ``overlap`` of a tile's length."""
    x0, y0, x1, y1 = box
    along_x = (x1 - x0) >= (y1 - y0)
    length = (x1 - x0) if along_x else (y1 - y0)
    t = length / (n - (n - 1) * overlap)
    step = t * (1 - overlap)
    starts = [(x0 if along_x else y0) + k * step for k in range(n)]
    return [(s, y0, s + t, y1) if along_x else (x0, s, x1, s + t) for s in starts]


def gain(regions: list[Region], frame_size: tuple[int, int]) -> float:
    """How many times more model pixels per vehicle (linear) the smallest region gives than the whole frame."""
    w, h = frame_size
    return min(math.sqrt(w * h / max(r.width * r.height, 1)) for r in regions)


def detector_regions(config: DetectorConfig, lines: Iterable[LineConfig], zones: Iterable[ZoneConfig],
                     frame_size: tuple[int, int], input_size: tuple[int, int], dark: bool = False) -> list[Region]:
    """The regions the detector runs on, in source pixels; one region covering the frame means the whole frame.

    ``input_size`` (width, height) is the model's; ``dark``: the view takes the night path (one region, and
    the whole frame unless ``roi_when_dark``)."""
    w, h = frame_size
    full = [Region(0, 0, w, h)]
    if dark and not config.roi_when_dark:
        return full
    if isinstance(config.roi, tuple):
        why = check_roi(config, frame_size)
        if why:
            raise RoiError(why)
        base = config.roi
    elif config.roi == "auto":
        box = layout_box(lines, zones)
        if box is None:
            base = (0.0, 0.0, float(w), float(h))
        else:
            pad = config.roi_padding * max(box[2] - box[0], box[3] - box[1])
            base = (max(0.0, box[0] - pad), max(0.0, box[1] - pad), min(float(w), box[2] + pad), min(float(h), box[3] + pad))
    else:
        base = (0.0, 0.0, float(w), float(h))
    aspect = input_size[0] / input_size[1]
    n = 1 if dark else config.tiles
    if n == 1:
        region = _fit(base, aspect, w, h)
        if config.roi == "auto" and gain([region], frame_size) < config.roi_min_gain:
            return full
        return [region]
    return [_fit(b, aspect, w, h) for b in _split(base, n, config.tile_overlap)]


def _touching(boxes: np.ndarray, region: Region, frame_size: tuple[int, int], margin: float) -> np.ndarray:
    """Mask of boxes touching one of ``region``'s edges that lie inside the frame (cut by the crop)."""
    w, h = frame_size
    cut = np.zeros(len(boxes), bool)
    if region.x0 > 0:
        cut |= boxes[:, 0] <= region.x0 + margin
    if region.y0 > 0:
        cut |= boxes[:, 1] <= region.y0 + margin
    if region.x1 < w:
        cut |= boxes[:, 2] >= region.x1 - margin
    if region.y1 < h:
        cut |= boxes[:, 3] >= region.y1 - margin
    return cut


def detect_regions(image: np.ndarray, regions: list[Region], run: Callable[[np.ndarray], tuple[Detections, float]]
                   ) -> Detections:
    """The candidates of every region, in frame pixels, without part-boxes cut by a region's inner edge.

    ``run(crop)`` returns the crop's candidates already in frame pixels (see :meth:`Region.to_frame`) and the
    crop's scale (model pixels per source pixel)."""
    frame_size = (image.shape[1], image.shape[0])
    found: list[tuple[Detections, np.ndarray]] = []
    for region in regions:
        cands, scale = run(region)
        found.append((cands, _touching(cands.xyxy, region, frame_size, max(EDGE_PX, 1.0 / scale))))
    if len(found) == 1:
        cands, cut = found[0]
        return cands[~cut]
    kept = []
    for i, (cands, cut) in enumerate(found):
        others = [c.xyxy for j, (c, _) in enumerate(found) if j != i and len(c)]
        if cut.any() and others:
            other = np.concatenate(others)
            part = cands.xyxy[cut]
            inside = box_intersection(part, other) / np.maximum(box_area(part), 1e-9)[:, None]
            held = (inside >= PART_INSIDE) & (box_area(other)[None, :] > box_area(part)[:, None])
            drop = np.zeros(len(cands), bool)
            drop[np.flatnonzero(cut)] = held.any(axis=1)
            cands = cands[~drop]
        kept.append(cands)
    return Detections.merge(kept)


def roi_settings(config: DetectorConfig) -> dict:
    """The detector settings of this module (for cache keys; not a reason for another onnxruntime session)."""
    return {k: getattr(config, k) for k in ROI_FIELDS}

__all__ = ["ROI_FIELDS", "Region", "RoiError", "check_roi", "detect_regions", "detector_regions", "gain", "layout_box",
           "roi_settings"]
