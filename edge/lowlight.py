"""The night path's choice and its image enhancement: whether a frame is dark (from the view's measured median
grey, ``SceneState.luma``), and the contrast-limited histogram equalisation (CLAHE) of its luminance that the
detector sees on a dark view. The lamps' half of the night path is edge/headlights.py.

CLAHE spreads the few grey levels of a dark road over the range, tile by tile, with a clip limit so that noise
and glare are not blown up; only the L channel of CIELAB changes, so colours keep their hue. The lamps are found
on the frame as the camera gave it (enhancement would saturate more of the road)."""
from __future__ import annotations

import cv2
import numpy as np

from roadside.edge.config import LowLightConfig


def is_dark(luma: float | None, config: LowLightConfig) -> bool:
    """Whether a frame of median grey ``luma`` takes the night path (None: not measured yet, no)."""
    return config.enabled and luma is not None and luma <= config.max_luma


class Enhancer:
    """The detector's view of a dark frame (``lowlight.enhance``): CLAHE on luminance, or the frame unchanged."""

    def __init__(self, config: LowLightConfig):
        self.config = config
        self._clahe = cv2.createCLAHE(clipLimit=config.clahe_clip, tileGridSize=(config.clahe_tiles, config.clahe_tiles))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.config.enhance == "none" or image.ndim != 3:
            return image
        lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
        lab[..., 0] = self._clahe.apply(lab[..., 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)

    def tensor(self, image: np.ndarray, preprocess) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """The detector's input tensor of the enhanced frame and its transform to ``image``'s pixels. The frame is
        first shrunk to the size the detector would shrink it to anyway (its letterbox, or per axis when it
        stretches), so that the enhancement works on the detector's hundred thousand pixels, not a full frame."""
        h, w = image.shape[:2]
        if preprocess.resize == "stretch":
            fx, fy = min(1.0, preprocess.width / w), min(1.0, preprocess.height / h)
        else:
            fx = fy = min(1.0, preprocess.width / w, preprocess.height / h)
        small = image if fx >= 1.0 and fy >= 1.0 else cv2.resize(
            image, (max(1, round(w * fx)), max(1, round(h * fy))), interpolation=cv2.INTER_AREA)
        tensor, (sx, sy, ox, oy) = preprocess(self(small))
        fx, fy = small.shape[1] / w, small.shape[0] / h
        return tensor, (sx * fx, sy * fy, ox, oy)
