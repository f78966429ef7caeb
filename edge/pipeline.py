"""One camera's vision pipeline: frame -> detections -> tracks -> crossings, zone changes and bins.

The same class serves replay (media time) and the live service (wall-clock time): it does not read
video itself; it is fed frames (with the detector's input tensor already prepared, usually by the
decoder process; see core/video.py).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np

from roadside.edge.config import VisionConfig
from roadside.edge.counting import CrossingEvent, IntervalBin, IntervalBins, LineCounter, ZoneMonitor, ZoneStatus
from roadside.edge.detections import Detections
from roadside.edge.detector import Detector
from roadside.edge.headlights import HeadlightDetector, fuse
from roadside.edge.lowlight import Enhancer, is_dark
from roadside.edge.roi import Region, RoiError, detect_regions, detector_regions
from roadside.edge.scene import SceneMonitor, SceneState, on_view, to_reference, vehicle_boxes
from roadside.edge.tracker import ByteTracker


def config_hash(config: VisionConfig) -> str:
    """Short, stable hash of everything that changes what the pipeline counts."""
    blob = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class FrameResult:
    index: int
    time_s: float
    tracks: Detections  # confirmed tracks in this frame
    events: list[CrossingEvent]
    zone_changes: dict[str, ZoneStatus]
    closed_bins: list[IntervalBin] = field(default_factory=list)
    detector_ms: float = 0.0
    candidates: Detections | None = None  # the detector's boxes before suppression (for a detections cache)
    scene: SceneState | None = None  # the view's measurements (on frames the detector ran on)
    paused: bool = False  # counting paused: the view is not the one the lines were drawn on


class CameraPipeline:
    def __init__(self, config: VisionConfig, detector: Detector, fps: float, bin_clock_start: float = 0.0):
        self.config = config
        self.detector = detector
        self.fps = fps
        self.tracker = ByteTracker(config.tracker, fps)
        self.counter = LineCounter(config.lines, config.counting, fps)
        self.zones = ZoneMonitor(config.zones, config.counting)
        self.bins = IntervalBins(config.counting.bins_s, [ln.id for ln in config.lines])
        self.bins.start(bin_clock_start)
        self.frames = 0
        #: a ``detector.roi`` that does not fit the frame: False (replay) raises RoiError; True (a running camera,
        #: whose health reports the problem) runs the detector on the whole frame instead, so counting goes on
        self.whole_frame_on_bad_roi = False
        self.scene: SceneMonitor | None = None
        self.view_ok = True
        self._view_reason: str | None = None
        self.view: tuple[float, ...] | None = None  # the view's motion since the lines were drawn (SceneState.view)
        self._vehicles: np.ndarray | None = None  # the last detected frame's boxes: kept out of the view's features
        self.last_kept: Detections | None = None  # this frame's boxes after suppression (None: the detector skipped it)
        self.last_tracks = None  # this frame's TrackerOutput
        self.dark = False  # the view measured dark: the night path runs (edge/lowlight.py)
        self._regions: dict[tuple[int, int, bool], list[Region] | None] = {}  # by frame size and darkness
        self._night_path(config)
        d = config.detector
        #: the detector runs on every ``stride``-th frame (detector.every_n_frames, else from detector.detect_fps)
        self.stride = d.every_n_frames or (max(1, round(fps / d.detect_fps)) if d.detect_fps > 0 else 1)

    def _night_path(self, config: VisionConfig) -> None:
        """The night path (edge/lowlight.py, edge/headlights.py): while the measured view is dark, the detector sees
        an enhanced frame, lamps become candidates and the tracker lets them start weak tracks (confirmed over
        ``lowlight.birth_evidence``); on a lit view none of this."""
        ll = config.lowlight
        self.headlights = HeadlightDetector(ll, self.detector) if ll.enabled else None
        self.enhance = Enhancer(ll)
        self._day_tracking = config.tracker
        self._night_tracking = config.tracker.model_copy(update={
            "birth_threshold": min(config.tracker.birth_threshold, ll.score), "birth_evidence": ll.birth_evidence})
        self.dark = ll.enabled and self.dark  # a hot reload keeps what the view measured
        self.tracker.config = self._night_tracking if self.dark else self._day_tracking

    def observe(self, scene: SceneState | None) -> None:
        """Take the night path or the day path from the view's latest measurement (held between measurements)."""
        if scene is None:
            return
        self.dark = self._is_dark(scene.luma)
        self.tracker.config = self._night_tracking if self.dark else self._day_tracking

    def _is_dark(self, luma: float) -> bool:
        return self.headlights is not None and is_dark(luma, self.config.lowlight)

    def relayout(self, config: VisionConfig, clock_s: float) -> list[IntervalBin]:
        """Count on ``config``'s lines and zones from now on (a hot reload): the open bins are closed (as partial
        bins, returned), new ones start at ``clock_s``; the tracker keeps its tracks unless its settings changed."""
        closed = self.bins.close_until(clock_s, final=True)
        if config.tracker != self.config.tracker:
            self.tracker = ByteTracker(config.tracker, self.fps)
        if (config.lines, config.zones, config.scene) != (self.config.lines, self.config.zones, self.config.scene):
            # new lines are drawn on the view as it is now: that view becomes the reference
            self.scene, self.view, self.view_ok, self._view_reason = None, None, True, None
        self.config = config
        self._regions = {}  # the lines, zones or detector.roi may have moved
        self._night_path(config)
        self.counter = LineCounter(config.lines, config.counting, self.fps)
        self.zones = ZoneMonitor(config.zones, config.counting)
        self.bins = IntervalBins(config.counting.bins_s, [ln.id for ln in config.lines])
        self.bins.start(clock_s)
        return closed

    def process(self, index: int, time_s: float, image: np.ndarray, tensor: np.ndarray | None = None,
                transform: tuple[float, float, float, float] | None = None, clock_s: float | None = None) -> FrameResult:
        """Process one frame. ``time_s`` is the frame's media time; ``clock_s`` (default ``time_s``) is
        the clock that interval bins follow (wall time in the live service)."""
        analysed = index % self.config.scene.every_n_frames == 0
        if analysed:  # the day or the night path for this frame, from its brightness
            self._monitor(image)
            self.dark = self._is_dark(self.scene.brightness(image))
        if not self.detects(index):
            return self.process_candidates(index, time_s, None, clock_s, scene=self.measure_scene(index, image))
        t0 = time.perf_counter()
        cands = self.candidates(image, tensor, transform)
        det_ms = (time.perf_counter() - t0) * 1000
        self._vehicles = vehicle_boxes(cands, image.shape)  # this frame's vehicles, left out of its view features
        return self.process_candidates(index, time_s, cands, clock_s, det_ms, self.measure_scene(index, image))

    def candidates(self, image: np.ndarray, tensor: np.ndarray | None = None,
                   transform: tuple[float, float, float, float] | None = None) -> Detections:
        """The frame's candidate boxes (what a detections cache stores): the detector's, and on a dark view the
        detector's on the enhanced frame (its tensor made here, not the decoder's) and the lamps'."""
        night = self.dark  # only ever set with the night path enabled (its headlight detector made)
        regions = self.regions(image.shape, night)
        if regions is not None:
            cands = detect_regions(image, regions, lambda region: self._detect_crop(image, region, night))
        else:
            if night and self.config.lowlight.enhance != "none":
                tensor, transform = self.enhance.tensor(image, self.detector.preprocess)
            elif tensor is None or transform is None:
                tensor, transform = self.detector.preprocess(image)
            cands = self.detector.candidates(self.detector.infer(tensor), transform, image.shape)
        if night:
            cands = fuse(cands, self.headlights(image), self.config.lowlight)
        return cands

    def regions(self, shape: tuple[int, ...], dark: bool) -> list[Region] | None:
        """The parts of the frame the detector runs on (edge/roi.py; ``detector.roi``, ``detector.tiles``), or None
        for the whole frame (the decoder's tensor is used then)."""
        key = (shape[1], shape[0], dark)
        # `auto` follows the lines and zones where they lie now when they follow the view (so not cached)
        follows = self.config.detector.roi == "auto" and self.config.scene.follow_view and self.view is not None
        if follows or key not in self._regions:
            lines, zones = self.layout_in_view() if follows else (self.config.lines, self.config.zones)
            p = self.detector.preprocess
            try:
                regions = detector_regions(self.config.detector, lines, zones, key[:2], (p.width, p.height), dark)
            except RoiError:
                if not self.whole_frame_on_bad_roi:
                    raise
                regions = [Region(0, 0, key[0], key[1])]
            whole = len(regions) == 1 and (regions[0].width, regions[0].height) == key[:2]
            if follows:
                return None if whole else regions
            self._regions[key] = None if whole else regions
        return self._regions[key]

    def _detect_crop(self, image: np.ndarray, region: Region, night: bool) -> tuple[Detections, float]:
        """The detector's candidates on one region of ``image`` (frame pixels) and the crop's scale."""
        crop = region.crop(image)
        if night and self.config.lowlight.enhance != "none":
            tensor, transform = self.enhance.tensor(crop, self.detector.preprocess)
        else:
            tensor, transform = self.detector.preprocess(crop)
        cands = self.detector.candidates(self.detector.infer(tensor), region.to_frame(transform), image.shape)
        return cands, min(transform[0], transform[1])

    def detects(self, index: int) -> bool:
        """Whether the detector runs on frame ``index`` (``detector.every_n_frames``)."""
        return index % self.stride == 0

    def measure_scene(self, index: int, image: np.ndarray) -> SceneState | None:
        """The view's measurements, on every ``scene.every_n_frames``-th frame (whatever the detector's stride,
        so a detections cache can hold them)."""
        if index % self.config.scene.every_n_frames:
            return None
        state = self._monitor(image).update(image, self._vehicles, take_reference=self._vehicles is not None)
        self.observe(state)
        return state

    def _monitor(self, image: np.ndarray) -> SceneMonitor:
        if self.scene is None:
            self.scene = SceneMonitor(self.config.scene, image.shape[1])
        return self.scene

    def on_reference_view(self, dets: Detections | None) -> Detections | None:
        """``dets`` moved into the view the lines and zones were drawn on (``scene.follow_view``): a drifting
        camera's tracks are counted where they are on the road, not where they are in the image."""
        if dets is None or self.view is None or not self.config.scene.follow_view:
            return dets
        return to_reference(dets, self.view)

    def layout_in_view(self) -> tuple[list, list]:
        """The lines and zones where they lie in the view now (for drawing): moved with the view's drift when
        ``scene.follow_view`` keeps them on the road, else as configured."""
        lines, zones = self.config.lines, self.config.zones
        if self.view is None or not self.config.scene.follow_view:
            return lines, zones
        moved = [ln.model_copy(update=dict(zip("ab", map(tuple, on_view([ln.a, ln.b], self.view))))) for ln in lines]
        return moved, [z.model_copy(update={"polygon": [tuple(p) for p in on_view(z.polygon, self.view)]}) for z in zones]

    @property
    def view_problem(self) -> str | None:
        """Why counting is paused (the view changed), or None."""
        return None if self.view_ok else (self._view_reason or "the view changed")

    def process_candidates(self, index: int, time_s: float, cands: Detections | None, clock_s: float | None = None,
                           detector_ms: float = 0.0, scene: SceneState | None = None) -> FrameResult:
        """The rest of :meth:`process` from the detector's candidate boxes (live, or from a detections cache);
        ``None`` (or a frame the detector skips) lets the tracker predict."""
        self.observe(scene)
        if cands is None or not self.detects(index):
            cands, detector_ms = None, 0.0
            self.last_kept = None
            out = self.tracker.predict()
        else:
            self.last_kept = self.detector.select(cands)
            out = self.tracker.update(self.last_kept)
        self.last_tracks = out  # for diagnosis: this frame's tracker output (confirmed and tentative)
        if scene is not None:
            if scene.view_ok and not self.view_ok:
                self.counter.forget_sides()  # positions seen in the other view say nothing about this one
            self.view_ok, self._view_reason = scene.view_ok, scene.reason
            if scene.view is not None:
                self.view = scene.view
        confirmed, tentative = self.on_reference_view(out.confirmed), out.tentative
        if self.view_ok:
            events = self.counter.update(index, confirmed, self.on_reference_view(tentative))
        else:
            events = []
            self.counter.forget_sides()
        clock = time_s if clock_s is None else clock_s
        for ev in events:
            # a crossing belongs to the bin of the moment it happened (interpolated frame), on the bin clock
            self.bins.add(clock - (index - ev.frame) / self.fps, ev.line, ev.direction, ev.category)
        changes = self.zones.update(time_s, confirmed)
        closed = self.bins.close_until(clock)
        self.frames += 1
        return FrameResult(index, time_s, out.confirmed, events, changes, closed, detector_ms, cands, scene,
                           not self.view_ok)
