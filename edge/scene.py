"""What the camera sees, measured per frame: brightness, dark and glare shares, and the view's motion against
the view the lines were drawn on.

The view check matches ORB features of a small grey copy of each analysed frame with those of the reference
view (the first analysed frame, where the installer's lines are) and fits a similarity (scale, rotation,
shift) with RANSAC (``cv2.estimateAffinePartial2D``). Vehicles are outliers to the fit; the static background
carries it. (Chaining frame-to-frame estimates was tried and rejected: traffic receding through a dense view
is itself a consistent "zoom out", and the error accumulates.) A frame where too few features agree (the view filled by
vehicles) is no estimate: the state holds until a reliable one (but a view last measured out of bounds stays out
until a reliable estimate says it is back). Features on vehicles are left out (the detector's boxes of the frame):
a platoon of cars moving together is otherwise a consistent "motion of the view".
A view that drifts a little (a swaying pole) stays within ``scene.max_shift`` / ``scene.max_scale_change``;
a zoom, a pan or a knocked camera does not, or leaves too few background features in common. After
``scene.confirm_frames`` analysed frames out of bounds the view is *changed*: the camera is degraded in
health and counting pauses (rather than counting on lines that no longer lie on the road); it resumes when
the view is back within bounds. Not covered: a view that jumps (a knocked camera, a cut) to one sharing too few
features with the reference gives no estimate at all, so the last state ("within bounds") holds and counting
goes on; a walking camera likewise (measured in edge/docs/hard_conditions.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from roadside.edge.config import SceneConfig
from roadside.edge.detections import Detections

_WIDTH = 320  # analysis width (pixels)
#: candidate boxes at or above this score, and at most this share of the frame, are vehicles whose features the view
#: check leaves out (weaker or larger boxes are mostly glare and background at night)
VEHICLE_MASK_SCORE = 0.3
VEHICLE_MASK_MAX_AREA = 0.1


def vehicle_boxes(cands: Detections, shape: tuple[int, ...]) -> np.ndarray:
    """The candidate boxes the view check leaves out of its features (see VEHICLE_MASK_SCORE)."""
    b = cands.xyxy
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return b[(cands.confidence >= VEHICLE_MASK_SCORE) & (area <= VEHICLE_MASK_MAX_AREA * shape[0] * shape[1])]


@dataclass(frozen=True)
class SceneState:
    luma: float  # median grey level (0..255)
    dark: float  # share of pixels darker than 50
    glare: float  # share of pixels at 240 or brighter
    shift_px: float  # translation of the view against the reference (source pixels); nan when unknown
    scale: float  # zoom of the view against the reference (1.0: none); nan when unknown
    inliers: int  # background features consistent with the fit
    view_ok: bool  # the view is still the one the lines were drawn on (as far as counting is concerned)
    reason: str | None = None  # why not
    #: the view's motion since the reference, ``(a, b, tx, c, d, ty)`` of the 2x3 similarity mapping reference
    #: source pixels to this frame's (the latest reliable estimate); None before a reference view exists
    view: tuple[float, float, float, float, float, float] | None = None
    reliable: bool = False  # this frame gave a reliable estimate of the view (else the last one is held)


class SceneMonitor:
    def __init__(self, config: SceneConfig, width: int):
        self.config = config
        self.factor = width / _WIDTH if width > _WIDTH else 1.0
        self._orb = cv2.ORB_create(nfeatures=400, fastThreshold=10)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        self._ref = None  # the reference view's features (the first analysed frame with enough of them)
        self._acc = np.eye(3)  # the last reliable estimate of the view against the reference
        self._bad = 0
        self._good = 0
        self.view_ok = True
        self.reason: str | None = None
        self.last: SceneState | None = None
        self._small_of: tuple[np.ndarray, np.ndarray] | None = None  # (frame, its copy) from brightness()

    def _small(self, image: np.ndarray) -> np.ndarray:
        """The grey analysis copy of ``image``. :meth:`brightness` keeps it for the :meth:`update` of the same
        frame, which takes it (a source may reuse its frame buffer for the next frame)."""
        if self._small_of is not None and self._small_of[0] is image:
            return self._small_of[1]
        src = image
        h, w = image.shape[:2]
        if w > _WIDTH:
            image = cv2.resize(image, (_WIDTH, max(1, round(h * _WIDTH / w))), interpolation=cv2.INTER_AREA)
        g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        self._small_of = (src, g)
        return g

    def _background(self, shape: tuple[int, ...], vehicles: np.ndarray) -> np.ndarray:
        """A mask (255: use) of the analysis copy without the vehicles' boxes (source pixels), each grown by a
        tenth of its size."""
        mask = np.full(shape[:2], 255, np.uint8)
        for x0, y0, x1, y1 in np.asarray(vehicles, np.float64).reshape(-1, 4) / self.factor:
            gx, gy = (x1 - x0) / 10, (y1 - y0) / 10
            mask[max(0, int(y0 - gy)):max(0, int(np.ceil(y1 + gy))), max(0, int(x0 - gx)):max(0, int(np.ceil(x1 + gx)))] = 0
        return mask

    def brightness(self, image: np.ndarray) -> float:
        """The frame's median grey level (as :meth:`update` measures it)."""
        return float(np.median(self._small(image)))

    def update(self, image: np.ndarray, vehicles: np.ndarray | None = None, take_reference: bool = True) -> SceneState:
        """Measure one frame. ``vehicles``: boxes (source pixels) of the vehicles in view, left out of the view's
        features (None: all features count). ``take_reference`` False: this frame cannot be the reference view
        (its vehicles are not known yet)."""
        g = self._small(image)
        self._small_of = None
        luma = float(np.median(g))
        dark = float((g < 50).mean())
        glare = float((g >= 240).mean())
        shift, scale, inliers, why, view, reliable = float("nan"), float("nan"), 0, None, None, False
        if self.config.view_check:
            # Features on vehicles move with the traffic: the reference view is taken from the background only,
            # and a frame's features are first sought off its vehicles too (a fixed budget of features would
            # otherwise go to the cars' strong corners); if those give no fit (many boxes, little background
            # left: a night view's lamps and glare), once more with all of them, which rarely match the
            # reference's background where they lie on vehicles.
            mask = self._background(g.shape, vehicles) if vehicles is not None and len(vehicles) else None
            kp, des = self._orb.detectAndCompute(g, mask)
            if self._ref is not None and des is not None:
                inliers, M = self._step(kp, des)
                if M is None and mask is not None:
                    kp, des = self._orb.detectAndCompute(g, None)
                    if des is not None:
                        inliers, M = self._step(kp, des)
                if M is not None:  # a reliable estimate of the view against the reference
                    self._acc, reliable = M, True
                scale = float(np.hypot(self._acc[0, 0], self._acc[1, 0]))
                shift = float(np.hypot(self._acc[0, 2], self._acc[1, 2])) * self.factor
                c = self.config
                if abs(scale - 1.0) > c.max_scale_change:
                    why = f"the view zoomed by {scale:.2f}x against the view the lines were drawn on"
                elif shift > c.max_shift_px:
                    why = f"the view moved by {shift:.0f} px against the view the lines were drawn on"
                # Decisions on reliable estimates; a frame with none holds the state, except that a view last
                # seen out of bounds which no longer matches the reference at all stays out of bounds (a zoom
                # leaves few features in common)
                if M is not None or why is not None:
                    bad = why is not None
                    self._bad = self._bad + 1 if bad else 0
                    self._good = 0 if bad else self._good + 1
                    if self.view_ok and self._bad >= c.confirm_frames:
                        self.view_ok, self.reason = False, why
                    elif not self.view_ok and self._good >= c.confirm_frames:
                        self.view_ok, self.reason = True, None
                    elif not self.view_ok and bad:
                        self.reason = why
                m = self._acc[:2].copy()
                m[:, 2] *= self.factor  # the analysis copy's pixels -> source pixels
                view = tuple(float(v) for v in m.ravel())
            elif take_reference and des is not None and len(kp) >= self.config.min_features:
                self._ref = (kp, des)
        self.last = SceneState(luma, dark, glare, shift, scale, inliers, self.view_ok, self.reason, view, reliable)
        return self.last

    def _step(self, kp, des) -> tuple[int, np.ndarray | None]:
        """The similarity (3x3) from the reference view to this one, if reliably estimated, and its inlier
        count. Vehicles are outliers; a frame where too few background features agree gives None."""
        rkp, rdes = self._ref
        if len(kp) < self.config.min_features:
            return 0, None
        matches = self._matcher.match(rdes, des)
        if len(matches) < self.config.min_features:
            return len(matches), None
        src = np.float32([rkp[m.queryIdx].pt for m in matches])
        dst = np.float32([kp[m.trainIdx].pt for m in matches])
        M, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0)
        n = int(mask.sum()) if mask is not None else 0
        if M is None or n < self.config.min_features or n < 0.25 * len(matches):
            return n, None
        return n, np.vstack([M, [0.0, 0.0, 1.0]])


def to_reference(dets: Detections, view: tuple[float, ...]) -> Detections:
    """``dets`` with each box moved into the reference view (the one the lines were drawn on): its centre mapped
    by the inverse of ``view`` (SceneState.view), its size divided by the view's scale."""
    if not len(dets):
        return dets
    inv = cv2.invertAffineTransform(np.asarray(view, np.float64).reshape(2, 3))
    s = float(np.hypot(inv[0, 0], inv[1, 0]))
    b = dets.xyxy.astype(np.float64)
    c = on_view(np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1), inv.ravel())
    half = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1) * (s / 2)
    xyxy = np.concatenate([c - half, c + half], axis=1).astype(np.float32)
    return Detections(xyxy, dets.confidence, dets.class_id, dets.category, dets.tracker_id)


def on_view(points: np.ndarray, view: tuple[float, ...]) -> np.ndarray:
    """Points of the reference view (where lines and zones were drawn), as they lie in the view now."""
    m = np.asarray(view, np.float64).reshape(2, 3)
    return np.asarray(points, np.float64).reshape(-1, 2) @ m[:, :2].T + m[:, 2]
