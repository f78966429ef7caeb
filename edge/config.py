"""Validated configuration of the vision pipeline (pydantic models) for one camera view.

Built on the shared configuration base (:mod:`roadside.core.config`): unknown keys are errors naming their
key path, and :func:`load_config` reads a file into any of these models.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from roadside.core.config import Identifier, Strict

Point = tuple[float, float]

#: Vehicle categories of the product. Custom models may add their own (see DetectorConfig.classes).
VEHICLE_CATEGORIES = ("car", "bus", "truck", "motorcycle", "bicycle")


def _finite_point(p: Point) -> Point:
    if not all(math.isfinite(v) for v in p):
        raise ValueError("coordinates must be finite numbers")
    return p


class LineConfig(Strict):
    """A count line: the straight segment from ``a`` to ``b`` in source-frame pixels.

    Crossing from the side where cross(b-a, p-a) < 0 to the side where it is > 0 is ``forward``.
    """

    id: Identifier
    a: Point
    b: Point
    name: str | None = None
    #: Optional labels used by the controller and reports (approach, lane, movement).
    approach: str | None = None
    movement: str | None = None

    @field_validator("a", "b")
    @classmethod
    def _finite(cls, v: Point) -> Point:
        return _finite_point(v)

    @model_validator(mode="after")
    def _not_degenerate(self) -> "LineConfig":
        if math.dist(self.a, self.b) < 2:
            raise ValueError(f"line {self.id!r}: a and b are the same point (a segment needs length)")
        return self


class ZoneConfig(Strict):
    """A polygon (source-frame pixels) whose occupancy and dwell times are reported."""

    id: Identifier
    polygon: list[Point] = Field(min_length=3)
    name: str | None = None
    approach: str | None = None

    @field_validator("polygon")
    @classmethod
    def _finite(cls, v: list[Point]) -> list[Point]:
        for p in v:
            _finite_point(p)
        return v

    @model_validator(mode="after")
    def _has_area(self) -> "ZoneConfig":
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
        if area < 1:
            raise ValueError(f"zone {self.id!r}: the polygon has no area")
        return self


class DetectorConfig(Strict):
    #: Path to an ONNX file. None: the product's default model (see roadside.models).
    model: str | None = None
    #: Model family; ``auto`` recognises it from the model's metadata and output shapes.
    family: Literal["auto", "ultralytics", "yolox", "picodet", "nanodet"] = "auto"
    #: Minimum score for a detection to reach the tracker (the tracker's low threshold applies on top).
    confidence: float = Field(0.1, ge=0.0, le=1.0)
    #: IoU above which overlapping boxes are merged. Suppression runs across all vehicle categories,
    #: so one vehicle gets one box even when the model says both "car" and "truck".
    nms_iou: float = Field(0.5, gt=0.0, le=1.0)
    #: A box lying at least this much (intersection / its own area) inside a higher-scoring box is dropped:
    #: detectors often add a second, smaller box on part of a vehicle (windscreen, cab, trailer), which
    #: ordinary IoU suppression keeps. 1.0 disables this.
    containment: float = Field(0.8, gt=0.0, le=1.0)
    #: Vehicle category -> the model's class names (or integer ids) that map to it.
    classes: dict[Identifier, list[str | int]] = Field(
        default_factory=lambda: {c: [c] for c in VEHICLE_CATEGORIES}
    )
    #: onnxruntime intra-op threads; 0 lets onnxruntime decide.
    threads: int = Field(2, ge=0, le=64)
    #: Let onnxruntime's worker threads busy-wait between runs. Off by default: on a small box the
    #: decoder process and the tracker need those cycles (see ``roadside edge bench``), and idle cores stay cool.
    spin_wait: bool = False
    #: onnxruntime execution providers, in order of preference; unavailable ones fall back to CPU.
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"], min_length=1)

    @field_validator("classes")
    @classmethod
    def _non_empty(cls, v: dict[str, list[str | int]]) -> dict[str, list[str | int]]:
        if not v:
            raise ValueError("at least one vehicle category is needed")
        for cat, names in v.items():
            if not names:
                raise ValueError(f"category {cat!r} maps to no model class")
        return v


class TrackerConfig(Strict):
    """ByteTrack parameters (see edge/tracker.py)."""

    #: Detections at or above this score take part in the first association and may start tracks.
    high_threshold: float = Field(0.3, ge=0.0, le=1.0)
    #: Detections between this and high_threshold are only used to continue existing tracks.
    low_threshold: float = Field(0.1, ge=0.0, le=1.0)
    #: Minimum score for an unmatched detection to start a new track.
    new_track_threshold: float = Field(0.4, ge=0.0, le=1.0)
    #: Minimum IoU for an association (first, high-score pass).
    match_iou: float = Field(0.2, gt=0.0, le=1.0)
    #: Minimum IoU for the second, low-score pass and for unconfirmed tracks.
    second_match_iou: float = Field(0.5, gt=0.0, le=1.0)
    #: Consecutive matched frames before a new track is confirmed (unconfirmed tracks never count).
    min_hits: int = Field(3, ge=1, le=30)
    #: Seconds a lost track is kept for re-association before it is removed.
    lost_buffer_s: float = Field(1.0, ge=0.0, le=60.0)

    @model_validator(mode="after")
    def _ordered(self) -> "TrackerConfig":
        if self.low_threshold > self.high_threshold:
            raise ValueError("low_threshold must not exceed high_threshold")
        return self


class CountingConfig(Strict):
    #: Point of a box that must cross a count line: bottom-centre by default (the vehicle's ground contact).
    anchor: Literal["bottom_center", "center", "top_center"] = "bottom_center"
    #: Distance (pixels) an anchor must be from a line before its side is trusted. Jitter around the
    #: line within this band neither counts nor changes the remembered side.
    hysteresis_px: float = Field(2.0, ge=0.0, le=100.0)
    #: Interval bins (seconds) reported alongside the totals, e.g. [1, 900].
    bins_s: list[float] = Field(default_factory=lambda: [60.0, 900.0])

    @field_validator("bins_s")
    @classmethod
    def _positive_bins(cls, v: list[float]) -> list[float]:
        for s in v:
            if not (s > 0 and math.isfinite(s)):
                raise ValueError(f"bin length {s} must be a positive number of seconds")
        return sorted(set(v))


class VisionConfig(Strict):
    """Everything from pixels to counts for one camera view."""

    lines: list[LineConfig] = Field(default_factory=list)
    zones: list[ZoneConfig] = Field(default_factory=list)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    counting: CountingConfig = Field(default_factory=CountingConfig)

    @model_validator(mode="after")
    def _unique_ids(self) -> "VisionConfig":
        for kind, items in (("line", self.lines), ("zone", self.zones)):
            seen: set[str] = set()
            for it in items:
                if it.id in seen:
                    raise ValueError(f"{kind} id {it.id!r} is used twice")
                seen.add(it.id)
        return self
