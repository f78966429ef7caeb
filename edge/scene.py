"""What the camera sees, measured per frame: brightness, dark and glare shares, and the view's motion against
the view the lines were drawn on.

The view check matches ORB features of a small grey copy of each analysed frame with those of the reference
view (the first analysed frame, where the installer's lines are) and fits a similarity (scale, rotation,
shift) with RANSAC (``cv2.estimateAffinePartial2D``). Vehicles are outliers to the fit; the static background
carries it. (Chaining frame-to-frame estimates was tried and rejected: traffic receding through a dense view
is itself a consistent "zoom out", and the error accumulates.) A frame where too few features agree (the view filled by
vehicles) is no estimate: the state holds until a reliable one.
A view that drifts a little (a swaying pole) stays within ``scene.max_shift`` / ``scene.max_scale_change``;
a zoom, a pan or a knocked camera does not, or leaves too few background features in common. After
``scene.confirm_frames`` analysed frames out of bounds the view is *changed*: the camera is degraded in
health and counting pauses (rather than counting on lines that no longer lie on the road); it resumes when
the view is back within bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from roadside.edge.config import SceneConfig

_WIDTH = 320  # analysis width (pixels)


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

    def _small(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if w > _WIDTH:
            image = cv2.resize(image, (_WIDTH, max(1, round(h * _WIDTH / w))), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image

    def update(self, image: np.ndarray) -> SceneState:
        g = self._small(image)
        luma = float(np.median(g))
        dark = float((g < 50).mean())
        glare = float((g >= 240).mean())
        shift, scale, inliers, why = float("nan"), float("nan"), 0, None
        if self.config.view_check:
            kp, des = self._orb.detectAndCompute(g, None)
            if self._ref is not None and des is not None:
                inliers, M = self._step(kp, des)
                if M is not None:  # a reliable estimate of the view against the reference
                    self._acc = M
                scale = float(np.hypot(self._acc[0, 0], self._acc[1, 0]))
                shift = float(np.hypot(self._acc[0, 2], self._acc[1, 2])) * self.factor
                c = self.config
                if abs(scale - 1.0) > c.max_scale_change:
                    why = f"the view zoomed by {scale:.2f}x against the view the lines were drawn on"
                elif shift > c.max_shift_px:
                    why = f"the view moved by {shift:.0f} px against the view the lines were drawn on"
                if M is not None:  # decisions only on reliable estimates; otherwise the state holds
                    bad = why is not None
                    self._bad = self._bad + 1 if bad else 0
                    self._good = 0 if bad else self._good + 1
                    if self.view_ok and self._bad >= c.confirm_frames:
                        self.view_ok, self.reason = False, why
                    elif not self.view_ok and self._good >= c.confirm_frames:
                        self.view_ok, self.reason = True, None
                    elif not self.view_ok and bad:
                        self.reason = why
            elif des is not None and len(kp) >= self.config.min_features:
                self._ref = (kp, des)
        self.last = SceneState(luma, dark, glare, shift, scale, inliers, self.view_ok, self.reason)
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
