"""The one object that carries boxes through every stage: detector -> tracker -> counter -> output.

Modelled on supervision's ``Detections``: parallel numpy arrays, indexable with masks or index arrays.
Boxes are ``xyxy`` in source-frame pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ANCHORS = ("bottom_center", "center", "top_center")


@dataclass(frozen=True)
class Detections:
    xyxy: np.ndarray  # (N, 4) float32
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32, the model's class index
    category: np.ndarray  # (N,) object (str), the vehicle category after mapping
    tracker_id: np.ndarray = field(default=None)  # type: ignore[assignment]  # (N,) int64, -1 = none

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.tracker_id is None:
            object.__setattr__(self, "tracker_id", np.full(n, -1, dtype=np.int64))
        for name in ("confidence", "class_id", "category", "tracker_id"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Detections.{name} has {len(getattr(self, name))} entries, xyxy has {n}")

    @classmethod
    def empty(cls) -> "Detections":
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int32),
            category=np.zeros(0, object),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, idx: np.ndarray | slice | list[int]) -> "Detections":
        return Detections(
            xyxy=self.xyxy[idx],
            confidence=self.confidence[idx],
            class_id=self.class_id[idx],
            category=self.category[idx],
            tracker_id=self.tracker_id[idx],
        )

    def with_tracker_id(self, tracker_id: np.ndarray) -> "Detections":
        return Detections(self.xyxy, self.confidence, self.class_id, self.category, tracker_id)

    def anchors(self, kind: str = "bottom_center") -> np.ndarray:
        """(N, 2) anchor points: bottom-centre is the vehicle's ground contact point."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        if kind == "bottom_center":
            y = self.xyxy[:, 3]
        elif kind == "center":
            y = (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2
        elif kind == "top_center":
            y = self.xyxy[:, 1]
        else:
            raise ValueError(f"unknown anchor {kind!r}; expected one of {', '.join(ANCHORS)}")
        return np.stack([x, y], axis=1)

    @staticmethod
    def merge(parts: list["Detections"]) -> "Detections":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Detections.empty()
        return Detections(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            class_id=np.concatenate([p.class_id for p in parts]),
            category=np.concatenate([p.category for p in parts]),
            tracker_id=np.concatenate([p.tracker_id for p in parts]),
        )


def box_area(b: np.ndarray) -> np.ndarray:
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas of (N,4) and (M,4) xyxy boxes -> (N, M)."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    return np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N,4) and (M,4) xyxy boxes -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    inter = box_intersection(a, b)
    area_a = box_area(a)
    area_b = box_area(b)
    union = area_a[:, None] + area_b[None, :] - inter
    return (inter / np.maximum(union, 1e-9)).astype(np.float32)
