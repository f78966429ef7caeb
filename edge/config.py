"""Validated configuration of the vision pipeline (pydantic models) for one camera view.

Built on the shared configuration base (:mod:`roadside.core.config`): unknown keys are errors naming their
key path, and :func:`load_config` reads a file into any of these models.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from roadside.core.config import Identifier, Strict, check_ordered

#: the largest coordinate (pixels) a line or zone may name; beyond any video frame (the frame size of a
#: source is checked once it is known)
MAX_COORD_PX = 100_000.0
Coordinate = Annotated[float, Field(ge=-MAX_COORD_PX, le=MAX_COORD_PX)]
Point = tuple[Coordinate, Coordinate]

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

    id: Identifier = Field(description="line id (letters, digits, `_.-`), unique per camera; the key of its counts")
    a: Point = Field(description="start of the segment `[x, y]`, source-frame pixels (x right, y down)")
    b: Point = Field(description="end of the segment `[x, y]`; crossing to the right-hand side of a->b (as seen on "
                                 "screen) is `forward`")
    name: str | None = Field(None, description="a human-readable name, for reports")
    approach: str | None = Field(None, description="label for the controller and reports: the approach it counts "
                                                   "(e.g. `north`)")
    movement: str | None = Field(None, description="label for the controller and reports: the movement or lane "
                                                   "(e.g. `left`)")
    classes: list[Identifier] | None = Field(None, description="vehicle categories the line counts (keys of "
                                                               "`detector.classes`); null: every category")
    phase: Identifier | None = Field(None, description="the controller phase the line feeds (one of the site's "
                                                       "`phases`)")

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

    id: Identifier = Field(description="zone id, unique per camera; the key of its presence")
    polygon: list[Point] = Field(min_length=3, description="corners `[[x, y], ...]` in source-frame pixels (at "
                                                           "least 3, with an area)")
    name: str | None = Field(None, description="a human-readable name, for reports")
    approach: str | None = Field(None, description="label for the controller and reports: the approach it watches")
    movement: str | None = Field(None, description="label for the controller and reports: the movement or lane "
                                                   "it watches")
    classes: list[Identifier] | None = Field(None, description="vehicle categories whose presence the zone reports "
                                                               "(keys of `detector.classes`); null: every category")
    phase: Identifier | None = Field(None, description="the controller phase the zone calls (one of the site's "
                                                       "`phases`)")

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
    """The ONNX vehicle detector (onnxruntime) and how its boxes are filtered."""

    model: str | None = Field(None, description="ONNX file or installed model name; null: the product's default "
                                                "model (`picodet_s_416_coco`, see `roadside models list`)")
    family: Literal["auto", "ultralytics", "yolox", "picodet", "nanodet"] = Field(
        "auto", description="model family; `auto` recognises it from the model's metadata and output shapes")
    confidence: float = Field(0.1, ge=0.0, le=1.0, description="minimum score for a detection to reach the tracker "
                                                               "(the tracker's low_threshold applies on top)")
    nms_iou: float = Field(0.5, gt=0.0, le=1.0, description="IoU above which overlapping boxes are merged; "
                                                            "suppression runs across all vehicle categories, so one "
                                                            "vehicle gets one box even when the model says both car "
                                                            "and truck")
    containment: float = Field(0.8, gt=0.0, le=1.0, description="a box lying at least this much (intersection / its "
                                                                "own area) inside a higher-scoring box is dropped: "
                                                                "detectors add part-boxes (windscreen, cab, trailer) "
                                                                "that IoU suppression keeps; 1.0 disables this")
    containment_by_class: bool = Field(True, description="drop a contained box only inside a box it can be a part "
                                                         "of: its own category, or a car inside a truck or bus (a "
                                                         "cab); a motorbike inside a bus box is kept")
    containment_max_area_ratio: float = Field(12.0, ge=0.0, le=1000.0, description="drop a contained box only "
                                                                                   "inside a box at most this many "
                                                                                   "times its area (0: any); far "
                                                                                   "larger boxes (night glare) hold "
                                                                                   "vehicles, not parts")
    classes: dict[Identifier, list[str | Annotated[int, Field(ge=0, le=100_000)]]] = Field(
        default_factory=lambda: {c: [c] for c in VEHICLE_CATEGORIES},
        description="vehicle category -> the model's class names (or integer ids) that map to it, e.g. "
                    "`{auto_rickshaw: [cng]}` for a custom model",
    )
    threads: int = Field(2, ge=0, le=64, description="onnxruntime intra-op threads; 0 lets onnxruntime decide")
    detect_fps: float = Field(15.0, ge=0.0, le=240.0, description="run the detector on about this many frames per "
                                                                  "second (every round(video fps / detect_fps)-th "
                                                                  "frame, at least every frame); between, the tracker "
                                                                  "predicts each vehicle's box and counting follows "
                                                                  "the predictions; 0: every frame")
    every_n_frames: int | None = Field(None, ge=1, le=30, description="run the detector on every Nth frame exactly "
                                                                      "(overrides detect_fps); 1: every frame")
    roi: Literal["auto", "full"] | tuple[Coordinate, Coordinate, Coordinate, Coordinate] = Field(
        "full", description="where in the frame the detector runs (edge/roi.py): `full` (the whole frame), `auto` "
                            "(the padded box of this camera's lines and zones, where they lie now with "
                            "`scene.follow_view`; used only when it gives the model "
                            "`roi_min_gain` times more pixels per vehicle), or `[x0, y0, x1, y1]` in source-frame "
                            "pixels; a region is widened to the model's input aspect, boxes map back to the frame "
                            "and boxes cut by the region's edge inside the frame are dropped (part-boxes)")
    roi_padding: float = Field(0.5, ge=0.0, le=5.0, description="`auto`: padding of the lines' and zones' box on each "
                                                               "side, as a share of its longer side (vehicles must "
                                                               "be tracked for a while before they reach a line)")
    roi_min_gain: float = Field(1.25, ge=1.0, le=10.0, description="`auto`: crop only when the region gives the model "
                                                                  "at least this many times more pixels per vehicle "
                                                                  "(linear: the square root of frame area over "
                                                                  "region area); else the whole frame")
    tiles: int = Field(1, ge=1, le=4, description="on a lit view, run the detector on this many overlapping tiles "
                                                  "along the region's longer side (each at the model's input size: "
                                                  "N session runs per detected frame), merged without double boxes "
                                                  "at the seams; on a dark view (the night path) always one")
    tile_overlap: float = Field(0.25, ge=0.0, le=0.75, description="overlap of neighbouring tiles, as a share of a "
                                                                   "tile's length (a vehicle on a seam must be "
                                                                   "whole in one of them)")
    roi_when_dark: bool = Field(False, description="on a dark view (the night path) crop to the region too; off: the "
                                                   "whole frame (a crop of the night clip lowered its event F1: "
                                                   "one more false count and one late; "
                                                   "edge/docs/hard_conditions.md)")
    spin_wait: bool = Field(False, description="let onnxruntime's threads busy-wait between runs; off: on a small "
                                               "box the decoder process and the tracker need those cycles (see "
                                               "`roadside edge bench`), and idle cores stay cool")
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"], min_length=1,
                                 description="onnxruntime execution providers, in order of preference; "
                                             "unavailable ones fall back to CPU (with a warning)")

    @field_validator("roi")
    @classmethod
    def _roi_box(cls, v):
        if isinstance(v, tuple):
            x0, y0, x1, y1 = v
            if not all(math.isfinite(c) for c in v):
                raise ValueError("coordinates must be finite numbers")
            if x0 < 0 or y0 < 0:
                raise ValueError(f"{list(v)}: x0 and y0 must not be negative (source-frame pixels)")
            if x1 - x0 < 16 or y1 - y0 < 16:
                raise ValueError(f"{list(v)}: needs x0 < x1 and y0 < y1, at least 16 pixels apart")
        return v

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

    high_threshold: float = Field(0.3, ge=0.0, le=1.0, description="detections at or above this score take part "
                                                                   "in the first association and may start tracks")
    low_threshold: float = Field(0.1, ge=0.0, le=1.0, description="detections between this and high_threshold only "
                                                                  "continue existing tracks")
    new_track_threshold: float = Field(0.4, ge=0.0, le=1.0, description="minimum score for an unmatched detection "
                                                                        "to start a new track on its own")
    birth_threshold: float = Field(1.0, ge=0.0, le=1.0, description="an unmatched detection at or above this (but "
                                                                    "below new_track_threshold) starts a weak "
                                                                    "tentative track, confirmed only by evidence over "
                                                                    "several frames (birth_evidence); 1.0 disables "
                                                                    "weak births")
    birth_evidence: float = Field(1.2, ge=0.0, le=30.0, description="a weak-born track is confirmed once it has "
                                                                    "min_hits matches and the sum of their scores "
                                                                    "reaches this (1.2: three frames at 0.4, five at "
                                                                    "0.25)")
    match_iou: float = Field(0.2, gt=0.0, le=1.0, description="minimum IoU for an association in the first, "
                                                              "high-score pass")
    second_match_iou: float = Field(0.5, gt=0.0, le=1.0, description="minimum IoU in the second, low-score pass "
                                                                     "and for unconfirmed tracks")
    min_hits: int = Field(3, ge=1, le=30, description="consecutive matched frames before a new track is confirmed "
                                                      "(unconfirmed tracks never count)")
    lost_buffer_s: float = Field(1.0, ge=0.0, le=60.0, description="seconds a lost track is kept for "
                                                                   "re-association before it is removed")
    motion_gate: float = Field(5.99, ge=0.0, le=1000.0, description="reject an association of a confirmed track "
                                                                    "whose detection's centre lies beyond this "
                                                                    "squared Mahalanobis distance of the track's "
                                                                    "Kalman prediction (2 degrees of freedom: 5.99 "
                                                                    "is the 95% gate): a box that jumps off the "
                                                                    "track's motion is a neighbour, not this "
                                                                    "vehicle; 0: no gate (IoU only)")
    lost_after_tracked: bool = Field(True, description="associate the tracks followed in the last detected frame "
                                                       "first; a lost track then takes only a box that is not "
                                                       "mostly inside a box just matched to another track (a "
                                                       "rider's or a cab's second box); off: one joint association "
                                                       "of tracked and lost tracks (ByteTrack)")


    @model_validator(mode="after")
    def _ordered(self) -> "TrackerConfig":
        check_ordered(self, ("low_threshold", "high_threshold"))
        return self


#: the interval bins' physical range (s) and how many a camera may have
MIN_BIN_S = 1.0
MAX_BIN_S = 86400.0
MAX_BINS = 8


class CountingConfig(Strict):
    """How crossings and zone presence are decided, and the interval bins of the counts."""

    anchor: Literal["bottom_center", "center", "top_center"] = Field(
        "bottom_center", description="point of a box that must cross a count line (and be inside a zone); "
                                     "bottom-centre: the vehicle's ground contact")
    hysteresis_px: float = Field(2.0, ge=0.0, le=100.0, description="distance (pixels) an anchor must be from a "
                                                                    "line before its side is trusted: jitter "
                                                                    "within this band neither counts nor changes "
                                                                    "the remembered side")
    commit_fraction: float = Field(0.15, ge=0.0, le=2.0, description="a side change counts once the anchor is this "
                                                                     "share of its box height past the line (at "
                                                                     "least hysteresis_px): jitter of a vehicle "
                                                                     "standing at the line that returns before then "
                                                                     "neither counts nor uses up its count")
    commit_frames: int = Field(5, ge=1, le=100, description="... or once it has stayed on the new side (beyond the "
                                                            "band) for this many observations")
    bins_s: list[Annotated[float, Field(ge=MIN_BIN_S, le=MAX_BIN_S)]] = Field(
                                default_factory=lambda: [60.0, 900.0], min_length=1, max_length=MAX_BINS,
                                description="interval bins (s) of the counts, each aligned to multiples of its "
                                            f"length on the clock (15-minute bins start at :00, :15, ...), e.g. "
                                            f"`[60, 900]`; each from {MIN_BIN_S:g} s to {MAX_BIN_S:g} s (a day), "
                                            f"at most {MAX_BINS}")

    @field_validator("bins_s")
    @classmethod
    def _sorted_bins(cls, v: list[float]) -> list[float]:
        return sorted(set(v))  # each one within MIN_BIN_S..MAX_BIN_S (a shorter bin only floods the outbox)


class SceneConfig(Strict):
    """Measurements of the view (edge/scene.py): brightness, glare, and whether the view is still the one the
    lines were drawn on."""

    view_check: bool = Field(True, description="match each analysed frame against the first (reference) view; a "
                                               "view that zooms, pans or moves beyond the limits below pauses "
                                               "counting and degrades the camera in health")
    max_shift_px: float = Field(150.0, ge=0.0, description="largest shift (source pixels) of the view against the "
                                                           "reference that still counts (a swaying pole)")
    max_scale_change: float = Field(0.15, ge=0.0, le=1.0, description="largest zoom against the reference that "
                                                                      "still counts (0.15: 15%)")
    min_features: int = Field(40, ge=4, le=1000, description="fewest features consistent with the reference for a "
                                                             "reliable estimate; frames with fewer (a view filled "
                                                             "by vehicles) leave the state as it was")
    every_n_frames: int = Field(6, ge=1, le=300, description="measure the view on every Nth frame (whatever the "
                                                             "detector's stride)")
    confirm_frames: int = Field(3, ge=1, le=300, description="analysed frames in a row out of (or back within) the "
                                                             "limits before the view counts as changed (or back)")
    follow_view: bool = Field(False, description="keep count lines and zones on the road while the view drifts within "
                                                "the limits: each track's anchor is mapped back into the view the "
                                                "lines were drawn on by the latest reliable estimate of the view's "
                                                "motion (off: lines stay at fixed image positions)")


class LowLightConfig(Strict):
    """The night path (edge/lowlight.py, edge/headlights.py): on a dark frame the detector sees it enhanced and
    headlights become vehicle candidates beside the detector's boxes. Chosen from the view's measured
    brightness, never on a lit frame."""

    enabled: bool = Field(True, description="take the night path on dark frames (off: the detector alone, always)")
    max_luma: float = Field(70.0, ge=0.0, le=255.0, description="a frame whose median grey level (scene "
                                                                 "measurement) is at or below this is dark")
    enhance: Literal["clahe", "none"] = Field("clahe", description="what the detector sees of a dark frame: its "
                                                                  "luminance equalised (CLAHE), or the frame as is")
    clahe_clip: float = Field(2.0, gt=0.0, le=40.0, description="CLAHE clip limit (OpenCV's clipLimit)")
    clahe_tiles: int = Field(8, ge=1, le=64, description="CLAHE tiles per side (OpenCV's tileGridSize)")
    lamp_level: int = Field(230, ge=1, le=255, description="grey level of a lamp's core")
    min_lamp_area: int = Field(12, ge=1, le=10_000, description="smallest lamp core (pixels)")
    max_lamp_area: int = Field(600, ge=1, le=100_000, description="largest lamp core (pixels); larger bright areas are glare")
    min_fill: float = Field(0.4, ge=0.0, le=1.0, description="share of its bounding rectangle a lamp core fills "
                                                             "(streaks of glare fill little)")
    max_aspect: float = Field(3.0, ge=1.0, le=20.0, description="longest side over shortest side of a lamp core")
    max_red_excess: float = Field(40.0, ge=0.0, le=255.0, description="a core whose mean red exceeds its green by "
                                                                      "more is a tail or brake light, not a headlight")
    min_spacing: float = Field(2.0, ge=0.0, le=100.0, description="closest two lamps of a pair (in lamp widths)")
    max_spacing: float = Field(8.0, ge=0.0, le=100.0, description="farthest two lamps of a pair (in lamp widths)")
    max_tilt: float = Field(0.25, ge=0.0, le=2.0, description="largest height difference of a pair's lamps over their spacing")
    max_area_ratio: float = Field(3.0, ge=1.0, le=100.0, description="largest area ratio of a pair's lamps")
    pair_category: str = Field("car", description="category of a lamp pair's box")
    single_category: str = Field("motorcycle", description="category of a single lamp's box")
    max_single_area: int = Field(60, ge=0, le=100_000, description="largest lamp core (pixels) that makes a box alone (a "
                                                        "motorbike's headlight); larger unpaired ones are glare "
                                                        "or reflections on the road")
    car_width_per_spacing: float = Field(1.4, gt=0.0, le=10.0, description="a pair's box width over its lamp spacing")
    car_height_per_width: float = Field(0.9, gt=0.0, le=10.0, description="a pair's box height over its width")
    pair_drop: float = Field(0.3, ge=0.0, le=10.0, description="ground contact below a pair's lamps, in lamp spacings")
    single_drop: float = Field(4.0, ge=0.0, le=50.0, description="ground contact below a single lamp, in lamp heights")
    bike_width_per_lamp: float = Field(4.0, gt=0.0, le=50.0, description="a single lamp's box width, in lamp sizes")
    bike_rise_per_lamp: float = Field(6.0, ge=0.0, le=50.0, description="a single lamp's box top above the lamp, in lamp sizes")
    score: float = Field(0.35, ge=0.0, le=1.0, description="score of a lamp box; below "
                                                           "tracker.new_track_threshold, a lamp box starts only a "
                                                           "weak track (on a dark view, weak births from this score "
                                                           "on are allowed)")
    birth_evidence: float = Field(3.0, ge=0.0, le=30.0, description="on a dark view, a weak track is confirmed once "
                                                                    "its scores add up to this (3.0: about nine lamp "
                                                                    "boxes); see tracker.birth_evidence")
    detector_score: float = Field(0.3, ge=0.0, le=1.0, description="a detector box at or above this score holds "
                                                                   "the lamps inside it (they make no box)")

    @model_validator(mode="after")
    def _ordered(self) -> "LowLightConfig":
        check_ordered(self, ("min_lamp_area", "max_lamp_area"), ("min_spacing", "max_spacing"))
        return self


class VisionConfig(Strict):
    """Everything from pixels to counts for one camera view."""

    lines: list[LineConfig] = Field(default_factory=list, description="count lines (needed for counting)")
    zones: list[ZoneConfig] = Field(default_factory=list, description="zones whose occupancy is reported")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="the vehicle detector")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="the ByteTrack tracker")
    counting: CountingConfig = Field(default_factory=CountingConfig, description="crossings, zones and bins")
    scene: SceneConfig = Field(default_factory=SceneConfig, description="view measurements and the view check")
    lowlight: LowLightConfig = Field(default_factory=LowLightConfig, description="the night path: headlights as "
                                                                                 "vehicles on dark frames")

    @model_validator(mode="after")
    def _unique_ids(self) -> "VisionConfig":
        for kind, items in (("line", self.lines), ("zone", self.zones)):
            seen: set[str] = set()
            for it in items:
                if it.id in seen:
                    raise ValueError(f"{kind} id {it.id!r} is used twice")
                seen.add(it.id)
        return self
