"""Region-of-interest inference (edge/roi.py) on real frames and the real model: boxes found in a crop or in tiles
land on the same vehicles as the whole frame's, in frame pixels; the region comes from the lines and zones and a
camera can name its own; a region outside the frame is a clear error naming the camera and the setting; the
detections cache never mixes the boxes of a crop with the whole frame's."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers.data import MODELS, VIDEOS
from pydantic import ValidationError

from roadside.edge.config import DetectorConfig, LineConfig, SceneConfig, VisionConfig, ZoneConfig
from roadside.edge.detection_cache import DetectionCache, cache_extra
from roadside.edge.detections import box_intersection, box_area
from roadside.edge.detector import Detector
from roadside.edge.pipeline import CameraPipeline
from roadside.edge.roi import RoiError, detector_regions, layout_box
from roadside.edge.service_commands import frame_problems
from roadside.edge.service_config import EdgeConfig

FREEWAY = VIDEOS / "freeway_overpass.mp4"  # 640x360


def _frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(FREEWAY))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, f = cap.read()
    cap.release()
    assert ok, index
    return f


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = box_intersection(a, b)
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(MODELS / "picodet_s_416_coco.onnx")


def _kept(detector: Detector, image: np.ndarray, **roi):
    """The boxes after suppression (Detections) with the detector settings ``roi``, and the pipeline."""
    pipe = CameraPipeline(VisionConfig(detector=DetectorConfig(**roi)), detector, 30.0)
    return detector.select(pipe.candidates(image)), pipe


@pytest.mark.parametrize("frame", [120, 240])
def test_boxes_found_in_a_crop_land_on_the_whole_frames_vehicles(detector, frame):
    """The right 2/3 of the freeway frame as an explicit region (widened to the model's square input: 360x360):
    every confident vehicle the whole frame finds well inside it is found in the crop at the same place."""
    image = _frame(frame)
    full, _ = _kept(detector, image)
    crop, pipe = _kept(detector, image, roi=(280, 0, 640, 360))
    (region,) = pipe.regions(image.shape, False)
    assert (region.x0, region.y0, region.x1, region.y1) == (280, 0, 640, 360)
    inner = full.xyxy[(full.confidence >= 0.5) & (full.xyxy[:, 0] > region.x0 + 20)]
    assert len(inner) >= 3, "the frame should hold several confident vehicles in the region"
    assert len(crop), "the crop found nothing"
    best = _iou(inner, crop.xyxy).max(axis=1)
    assert np.all(best >= 0.6), best
    # nothing outside the region, and no part-box cut by its left edge (inside the frame)
    assert np.all(crop.xyxy[:, 0] > region.x0 + 1)


def test_tiles_find_each_vehicle_once_with_no_double_box_at_the_seam(detector):
    """Two tiles over the freeway frame (0..366 and 274..640): each confident whole-frame vehicle has exactly one
    box after suppression, including those on the seam."""
    image = _frame(60)  # three confident vehicles within 50 px of the seam's middle (x 320)
    full, _ = _kept(detector, image)
    tiled, pipe = _kept(detector, image, tiles=2)
    regions = pipe.regions(image.shape, False)
    assert len(regions) == 2 and regions[0].x1 > regions[1].x0  # overlapping
    strong = full.xyxy[full.confidence >= 0.5]
    assert len(strong) >= 3
    iou = _iou(strong, tiled.xyxy)
    assert np.all(iou.max(axis=1) >= 0.5), iou.max(axis=1)
    # one box that can start or hold a track (tracker.high_threshold) per vehicle: none doubled at the seam
    tracked = _iou(strong, tiled.xyxy[tiled.confidence >= 0.3])
    assert np.all((tracked >= 0.3).sum(axis=1) == 1), (tracked >= 0.3).sum(axis=1)


def test_the_region_is_the_padded_box_of_the_lines_and_zones_and_a_camera_can_name_its_own():
    line = LineConfig(id="L1", a=(700, 500), b=(900, 500))
    zone = ZoneConfig(id="Z1", polygon=[(800, 520), (950, 520), (950, 600)])
    assert layout_box([line], [zone]) == (700, 500, 950, 600)
    frame, model = (1920, 1080), (416, 416)
    (r,) = detector_regions(DetectorConfig(roi="auto", roi_padding=0.5), [line], [zone], frame, model)
    # padded by half the box's longer side (250 px -> 125 px) on each side, then squared: 500 x 500 around it
    assert (r.x0, r.x1) == (575, 1075) and r.height == 500 and r.y0 <= 500 - 125 and r.y1 >= 600 + 125
    # a box nearly as large as the frame gives the model too few extra pixels: the whole frame
    wide = LineConfig(id="W", a=(100, 540), b=(1800, 540))
    (whole,) = detector_regions(DetectorConfig(roi="auto"), [wide], [], frame, model)
    assert (whole.x0, whole.y0, whole.x1, whole.y1) == (0, 0, 1920, 1080)
    # the camera's own region, as given (square already)
    (own,) = detector_regions(DetectorConfig(roi=(100, 100, 600, 600)), [line], [zone], frame, model)
    assert (own.x0, own.y0, own.x1, own.y1) == (100, 100, 600, 600)
    # on a dark view the whole frame, unless asked
    (dark,) = detector_regions(DetectorConfig(roi="auto"), [line], [zone], frame, model, dark=True)
    assert (dark.width, dark.height) == frame
    (dark_roi,) = detector_regions(DetectorConfig(roi="auto", roi_when_dark=True), [line], [zone], frame, model, dark=True)
    assert (dark_roi.x0, dark_roi.x1) == (575, 1075)


def test_a_region_outside_the_frame_is_an_error_naming_the_camera_and_the_setting(detector, tmp_path):
    image = _frame(0)
    pipe = CameraPipeline(VisionConfig(detector=DetectorConfig(roi=(0, 0, 700, 360))), detector, 30.0)
    with pytest.raises(RoiError, match=r"detector.roi \[0.0, 0.0, 700.0, 360.0\] is outside the 640x360 frame"):
        pipe.candidates(image)
    # a running camera (whose health names the problem) runs the detector on the whole frame instead
    pipe.whole_frame_on_bad_roi = True
    whole = CameraPipeline(VisionConfig(), detector, 30.0).candidates(image)
    got = pipe.candidates(image)
    assert len(whole) > 0 and np.allclose(got.xyxy, whole.xyxy) and np.array_equal(got.class_id, whole.class_id)
    site = EdgeConfig.model_validate({"site": "s", "device": "d", "cameras": [
        {"id": "north", "source": str(FREEWAY), "detector": {"roi": [0, 0, 700, 360]}}]})
    (problem,) = frame_problems(site)
    assert "cameras[0] (camera 'north')" in problem and "detector.roi" in problem and "640x360" in problem
    with pytest.raises(ValidationError, match="x0 < x1"):
        DetectorConfig(roi=(300, 0, 200, 100))
    with pytest.raises(ValidationError, match="roi"):
        DetectorConfig(roi="half")


def test_the_detections_cache_key_differs_for_a_crop_tiles_and_moved_lines(detector):
    line = LineConfig(id="L1", a=(300, 200), b=(600, 200))
    moved = LineConfig(id="L1", a=(300, 100), b=(600, 100))
    cache = DetectionCache("unused")

    def key(follow: bool = False, **kw) -> str:
        lines = kw.pop("lines", [line])
        return cache.key(detector, FREEWAY, cache_extra(VisionConfig(
            lines=lines, detector=DetectorConfig(**kw), scene=SceneConfig(follow_view=follow))))

    full = key()
    assert key(lines=[moved]) == full  # the whole frame: the lines do not change the boxes
    assert key(follow=True) == full and key(follow=True, tiles=2) == key(tiles=2)  # the regions stay put
    keys = {full, key(roi="auto"), key(tiles=2), key(roi=(0, 0, 360, 360)), key(roi="auto", lines=[moved]),
            key(roi="auto", follow=True)}  # an `auto` region that follows the view's drift
    assert len(keys) == 6
