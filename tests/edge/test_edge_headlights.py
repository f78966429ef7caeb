"""The night path on real frames: headlights become vehicle boxes (a pair a car, a single lamp a motorbike), the
pipeline takes that path by itself on a dark view and never on a lit one, and the night clip's two motorbikes
that the detector alone never tracks are counted."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers.data import MODELS, VIDEOS, gt

from roadside.edge.config import LineConfig, LowLightConfig, VisionConfig
from roadside.edge.detector import Detector
from roadside.edge.headlights import find_lamps, lamp_boxes
from roadside.edge.lowlight import Enhancer
from roadside.edge.pipeline import CameraPipeline


def _frame(name: str, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(VIDEOS / name))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, f = cap.read()
    cap.release()
    assert ok, (name, index)
    return f


def _detect(detector: Detector, image: np.ndarray):
    tensor, transform = detector.preprocess(image)
    return detector.candidates(detector.infer(tensor), transform, image.shape)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(MODELS / "picodet_s_416_coco.onnx")


def test_a_bus_headlight_pair_is_a_car_box_and_a_motorbike_lamp_a_motorbike_box():
    """night_dhaka_flyover frame 75: the queued bus's two headlights (x ~417 and ~471, y ~385) pair up; the
    motorbike DN001's single headlight (~400, 440) is a motorbike box whose bottom (its ground contact) is below
    the lamp. Red tail lights are not lamps."""
    f = _frame("night_dhaka_flyover.mp4", 75)
    cfg = LowLightConfig()
    lamps = find_lamps(f, cfg)
    boxes, paired, points = lamp_boxes(lamps, cfg)
    pair = [(b, p) for b, pr, p in zip(boxes, paired, points) if pr and abs(p[0] - 444) < 8 and abs(p[1] - 385) < 8]
    assert len(pair) == 1, [(p, b) for b, pr, p in zip(boxes, paired, points) if pr]
    box, _ = pair[0]
    assert box[0] < 417 < 471 < box[2] and box[3] > 390  # wider than its lamps, bottom below them
    bike = [(b, p) for b, pr, p in zip(boxes, paired, points) if not pr and abs(p[0] - 400) < 6 and abs(p[1] - 440) < 6]
    assert len(bike) == 1, [p for pr, p in zip(paired, points) if not pr]
    assert bike[0][0][3] > 455  # ground contact ~4 lamp heights below the headlight
    # no lamp is red (tail and brake lights): the mean colour of each kept core
    for x, y, w, h, _ in lamps:
        b, g, r = f[int(y), int(x)].astype(int)
        assert r - g <= 60, (x, y, (b, g, r))


def test_a_dark_frame_is_enhanced_for_the_detector_and_a_disabled_enhancement_is_the_frame():
    f = _frame("night_dhaka_flyover.mp4", 75)
    grey = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
    out = Enhancer(LowLightConfig())(f)
    assert out.shape == f.shape and out.dtype == f.dtype
    assert np.median(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)) >= np.median(grey) + 5  # the dark road is spread out
    assert Enhancer(LowLightConfig(enhance="none"))(f) is f


def test_the_enhanced_tensor_maps_boxes_back_to_the_frame(detector):
    """The enhancement works on the frame shrunk to the detector's own scale; boxes found there still land on the
    source frame. Without the equalisation itself, the confident boxes are those of the frame as it is."""
    from roadside.edge.detections import box_iou

    f = _frame("night_dhaka_flyover.mp4", 75)
    plain = detector.select(_detect(detector, f))
    tensor, transform = Enhancer(LowLightConfig(enhance="none")).tensor(f, detector.preprocess)
    shrunk = detector.select(detector.candidates(detector.infer(tensor), transform, f.shape))
    plain, shrunk = plain[plain.confidence >= 0.5], shrunk[shrunk.confidence >= 0.3]
    assert len(plain) >= 2
    assert (box_iou(plain.xyxy, shrunk.xyxy).max(axis=1) >= 0.8).all()
    tensor, _ = Enhancer(LowLightConfig()).tensor(f, detector.preprocess)
    assert tensor.shape == detector.preprocess(f)[0].shape


def test_the_pipeline_takes_the_night_path_on_a_dark_view_and_the_day_path_on_a_lit_one(detector):
    night = _frame("night_dhaka_flyover.mp4", 75)
    day = _frame("freeway_overpass.mp4", 75)
    cfg = VisionConfig()
    lit = CameraPipeline(cfg, detector, 30.0)
    lit.process(0, 0.0, day)
    assert not lit.dark and lit.tracker.config == cfg.tracker
    alone = _detect(detector, day)
    assert len(lit.candidates(day)) == len(alone)  # a lit view: the detector's boxes on the frame as it is

    dark = CameraPipeline(cfg, detector, 30.0)
    dark.process(0, 0.0, night)
    assert dark.dark
    assert dark.tracker.config.birth_threshold == cfg.lowlight.score  # lamp boxes may start weak tracks
    assert dark.tracker.config.birth_evidence == cfg.lowlight.birth_evidence
    tensor, transform = Enhancer(cfg.lowlight).tensor(night, detector.preprocess)
    enhanced = detector.candidates(detector.infer(tensor), transform, night.shape)
    fused = dark.candidates(night)
    assert len(fused) > len(enhanced)  # the detector's boxes on the enhanced frame, and lamp boxes
    assert np.allclose(fused.xyxy[:len(enhanced)], enhanced.xyxy)
    assert np.any(np.isclose(fused.confidence, cfg.lowlight.score) & (fused.category == "motorcycle"))

    # switched off: a dark view is the day path too
    off = CameraPipeline(VisionConfig(lowlight={"enabled": False}), detector, 30.0)
    off.process(0, 0.0, night)
    assert not off.dark and len(off.candidates(night)) == len(_detect(detector, night))


def test_the_night_clips_two_motorbikes_are_counted(detector):
    """DN001 (frame 61) and DN003 (frame 78): the detector alone scores them 0.24-0.26 and never starts a track
    (see edge/docs/hard_conditions.md); with the night path both are counted as they cross, in their lanes."""
    truth = gt("night_dhaka_flyover")
    line = truth["lines"][0]
    cfg = VisionConfig(lines=[LineConfig(id="L1", a=tuple(line["a"]), b=tuple(line["b"]))])
    pipe = CameraPipeline(cfg, Detector(MODELS / "picodet_s_416_coco.onnx", cfg.detector), 30.0)
    cap = cv2.VideoCapture(str(VIDEOS / "night_dhaka_flyover.mp4"))
    events = []
    for i in range(100):
        ok, f = cap.read()
        assert ok
        events += pipe.process(i, i / 30, f).events
    cap.release()
    bikes = [e for e in truth["events"] if e["class"] == "motorcycle"]
    assert len(bikes) == 2
    for b in bikes:
        hit = [e for e in events if e.direction == "forward" and abs(e.frame - b["frame"]) <= truth["frame_tolerance_frames"]
               and abs(e.t_along_line - b["t_along_line"]) <= 0.1]
        assert hit, (b["id"], [(round(e.frame), e.category, round(e.t_along_line, 2)) for e in events])


def test_a_lamp_category_the_detector_does_not_map_is_said(caplog):
    """A custom class map without motorcycles: the night path says its single lamps make no boxes."""
    from roadside.edge.config import DetectorConfig
    from roadside.edge.headlights import HeadlightDetector

    det = Detector(MODELS / "picodet_s_416_coco.onnx", DetectorConfig(classes={"car": ["car"], "bus": ["bus"]}))
    with caplog.at_level("WARNING", logger="roadside.headlights"):
        lamps = HeadlightDetector(LowLightConfig(), det)
    assert "lowlight.single_category: 'motorcycle' is not one of the detector's categories (car, bus)" in caplog.text
    boxes, _ = lamps(_frame("night_dhaka_flyover.mp4", 75))
    assert len(boxes) and set(boxes.category) == {"car"}


def test_a_hot_reload_keeps_the_measured_darkness_and_the_cache_key_follows_the_night_settings(detector):
    """New lines on a dark view: the night path stays on until the next measurement says otherwise. A detections
    cache entry made with other night settings is not reused (lamp boxes are candidates too)."""
    from roadside.edge.detection_cache import DetectionCache, cache_extra

    night = _frame("night_dhaka_flyover.mp4", 75)
    cfg = VisionConfig()
    pipe = CameraPipeline(cfg, detector, 30.0)
    pipe.process(0, 0.0, night)
    assert pipe.dark
    pipe.relayout(cfg.model_copy(update={"lines": [LineConfig(id="L9", a=(265, 440), b=(600, 440))]}), 1.0)
    assert pipe.dark and pipe.tracker.config.birth_threshold == cfg.lowlight.score
    video = VIDEOS / "night_dhaka_flyover.mp4"
    cache = DetectionCache("/nonexistent")
    keys = {cache.key(detector, video, cache_extra(VisionConfig(lowlight=ll)))
            for ll in ({}, {"enabled": False}, {"enhance": "none"}, {"max_luma": 60})}
    assert len(keys) == 4
