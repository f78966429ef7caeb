"""Vehicles in the dark from their headlights: bright lamp cores become vehicle boxes the tracker can follow.

At night a COCO detector sees a car as two lamps and their glare, and a motorbike as one lamp: its boxes are
missing or low-score (the giant glare boxes). A lamp's core, though, is the brightest thing in a dark frame and
moves with its vehicle. This module thresholds a grey copy of the frame at ``lowlight.lamp_level``, takes the
connected components (``cv2.connectedComponentsWithStats``; 2-4 ms per frame of 898x506 to 1280x720 on the
development machine, not measured on a Pi), keeps the compact, lamp-sized, not-red ones (tail lights and brake
lights are red) and

* pairs two lamps side by side (same height, similar size, a lamp spacing a few lamp widths apart) into a
  car box: as wide as the spacing times ``car_width_per_spacing``, its bottom (the ground contact, the anchor
  counting uses) ``pair_drop`` spacings below the lamps;
* makes every remaining small lamp (``max_single_area``) a motorbike box, its bottom ``single_drop`` lamp
  heights below the lamp (larger unpaired bright areas are glare or reflections).

The boxes get the score ``lowlight.score``, below the tracker's ``new_track_threshold``: on a dark view the
pipeline lets them start weak tracks only, confirmed over ``lowlight.birth_evidence`` (edge/pipeline.py). :func:`fuse` adds them to the detector's candidates only where the
detector has no box of its own at ``lowlight.detector_score`` or more (the detector's box, where it has one, is
the better box). Whether the night path runs at all is edge/lowlight.py's choice, from the view's measured
brightness: never on a lit frame, so day counting is unchanged.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from roadside.edge.config import LowLightConfig
from roadside.edge.detections import Detections

log = logging.getLogger("roadside.headlights")


def find_lamps(image: np.ndarray, config: LowLightConfig) -> np.ndarray:
    """(N, 5) lamps of a BGR frame: centre x, centre y, width, height, area (pixels), sorted by x."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    mask = cv2.threshold(grey, config.lamp_level - 1, 1, cv2.THRESH_BINARY)[1]
    n, labels, stats, centres = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros((0, 5), np.float32)
    st = stats[1:].astype(np.float32)
    w, h, area = st[:, cv2.CC_STAT_WIDTH], st[:, cv2.CC_STAT_HEIGHT], st[:, cv2.CC_STAT_AREA]
    ok = (area >= config.min_lamp_area) & (area <= config.max_lamp_area)
    ok &= area >= config.min_fill * w * h  # compact: streaks of glare and lit kerbs are long and thin
    ok &= (w <= config.max_aspect * h) & (h <= config.max_aspect * w)
    if image.ndim == 3 and ok.any():
        # not red: a lamp's mean colour over its core (tail and brake lights are red, headlights white to amber)
        on = mask.astype(bool)
        lab = labels[on]
        red = np.bincount(lab, weights=image[..., 2][on], minlength=n)[1:]
        green = np.bincount(lab, weights=image[..., 1][on], minlength=n)[1:]
        ok &= (red - green) <= config.max_red_excess * area
    c = centres[1:][ok]
    lamps = np.stack([c[:, 0], c[:, 1], w[ok], h[ok], area[ok]], axis=1).astype(np.float32)
    return lamps[np.argsort(lamps[:, 0], kind="stable")]


def pair_lamps(lamps: np.ndarray, config: LowLightConfig) -> tuple[list[tuple[int, int]], list[int]]:
    """Headlight pairs (indices into ``lamps``), greedily by how level and alike the two are, and the rest."""
    cands = []
    for i in range(len(lamps)):
        for j in range(i + 1, len(lamps)):
            xi, yi, wi, hi, ai = lamps[i]
            xj, yj, wj, hj, aj = lamps[j]
            size = (wi + wj) / 2
            dx = xj - xi
            if dx > config.max_spacing * size:
                break  # sorted by x: every later lamp is further away
            if dx < config.min_spacing * size:
                continue
            if abs(yj - yi) > config.max_tilt * dx or max(ai, aj) > config.max_area_ratio * min(ai, aj):
                continue
            cands.append((abs(yj - yi) / dx + abs(np.log(ai / aj)), i, j))
    used: set[int] = set()
    pairs = []
    for _, i, j in sorted(cands):
        if i not in used and j not in used:
            used.update((i, j))
            pairs.append((i, j))
    return pairs, [i for i in range(len(lamps)) if i not in used]


def lamp_boxes(lamps: np.ndarray, config: LowLightConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vehicle boxes (xyxy) from lamps, whether each is a pair (a car) or a single lamp (a motorbike), and the
    point that is its evidence (the lamp, or the middle of the pair)."""
    pairs, singles = pair_lamps(lamps, config)
    boxes, paired, points = [], [], []
    for i, j in pairs:
        s = lamps[j, 0] - lamps[i, 0]
        cx, cy = (lamps[i, 0] + lamps[j, 0]) / 2, (lamps[i, 1] + lamps[j, 1]) / 2
        w = s * config.car_width_per_spacing
        bottom = cy + config.pair_drop * s
        boxes.append((cx - w / 2, bottom - w * config.car_height_per_width, cx + w / 2, bottom))
        paired.append(True)
        points.append((cx, cy))
    for i in singles:
        cx, cy, lw, lh, area = lamps[i]
        if area > config.max_single_area:
            continue
        d = max(lw, lh)
        bottom = cy + config.single_drop * lh
        boxes.append((cx - config.bike_width_per_lamp * d / 2, cy - config.bike_rise_per_lamp * d, cx + config.bike_width_per_lamp * d / 2,
                      bottom))
        paired.append(False)
        points.append((cx, cy))
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, bool), np.zeros((0, 2), np.float32)
    return np.asarray(boxes, np.float32), np.asarray(paired, bool), np.asarray(points, np.float32)


class HeadlightDetector:
    """Vehicle candidates from lamps, as :class:`Detections` of the detector's categories and class ids."""

    def __init__(self, config: LowLightConfig, detector):
        self.config = config
        #: the model class id each lamp category is given (a category the detector does not map makes no boxes)
        self._ids = {c: i for c in (config.pair_category, config.single_category)
                     if (i := detector.class_id_of(c)) is not None}
        for key, cat in (("pair_category", config.pair_category), ("single_category", config.single_category)):
            if config.enabled and cat not in self._ids:
                log.warning("lowlight.%s: %r is not one of the detector's categories (%s): the night path makes no "
                            "boxes of it", key, cat, ", ".join(detector.categories))

    def __call__(self, image: np.ndarray) -> tuple[Detections, np.ndarray]:
        """The lamp boxes of a frame and each one's evidence point (see :func:`lamp_boxes`)."""
        return self.boxes(find_lamps(image, self.config), image.shape)

    def boxes(self, lamps: np.ndarray, shape: tuple[int, ...]) -> tuple[Detections, np.ndarray]:
        h, w = shape[:2]
        boxes, paired, points = lamp_boxes(lamps, self.config)
        cats = np.where(paired, self.config.pair_category, self.config.single_category).astype(object)
        ok = np.array([c in self._ids for c in cats], bool) if len(cats) else np.zeros(0, bool)
        boxes, cats, points = boxes[ok], cats[ok], points[ok]
        if not len(boxes):
            return Detections.empty(), points
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        return Detections(xyxy=boxes, confidence=np.full(len(boxes), self.config.score, np.float32),
                          class_id=np.array([self._ids[c] for c in cats], np.int32), category=cats), points


def fuse(detected: Detections, lamps: tuple[Detections, np.ndarray], config: LowLightConfig) -> Detections:
    """The detector's candidates plus the lamp boxes whose lamps no confident detector box (scoring
    ``detector_score`` or more) already holds: where the detector has the vehicle, its box is the better one."""
    boxes, points = lamps
    if not len(boxes):
        return detected
    strong = detected.xyxy[detected.confidence >= config.detector_score]
    if len(strong):
        x, y = points[:, 0:1], points[:, 1:2]
        held = (x >= strong[None, :, 0]) & (x <= strong[None, :, 2]) & (y >= strong[None, :, 1]) & (y <= strong[None, :, 3])
        boxes = boxes[~held.any(axis=1)]
    return Detections.merge([detected, boxes])
