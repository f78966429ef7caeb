"""Detector: family recognition, decoding and box mapping for every family, class mapping, suppression."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from helpers.data import IMAGES, MODELS, REAL_MODELS, make_constant_model

from roadside.edge.config import DetectorConfig
from roadside.edge.detections import box_iou
from roadside.edge.detector import Detector, DetectorError
from roadside.models.session import choose_providers

FRAME_W, FRAME_H = 640, 360  # a 16:9 source frame, so letterboxing matters
TRUCK = 7
CAR = 2
COCO_N = 80


def _frame() -> np.ndarray:
    return np.zeros((FRAME_H, FRAME_W, 3), np.uint8)


def _letterbox(box, size, top_left=False):
    r = min(size / FRAME_W, size / FRAME_H)
    nw, nh = round(FRAME_W * r), round(FRAME_H * r)
    ox, oy = (0, 0) if top_left else ((size - nw) // 2, (size - nh) // 2)
    x1, y1, x2, y2 = box
    return (x1 * nw / FRAME_W + ox, y1 * nh / FRAME_H + oy, x2 * nw / FRAME_W + ox, y2 * nh / FRAME_H + oy)


def _stretch(box, size):
    x1, y1, x2, y2 = box
    return (x1 * size / FRAME_W, y1 * size / FRAME_H, x2 * size / FRAME_W, y2 * size / FRAME_H)


SOURCE_BOX = (96.0, 64.0, 288.0, 160.0)  # where the vehicle really is, in source pixels


def ultralytics_outputs(size: int, box_in: tuple, cls: int, score: float = 0.9) -> list[np.ndarray]:
    n = sum((size // s) ** 2 for s in (8, 16, 32))
    out = np.zeros((1, 4 + COCO_N, n), np.float32)
    x1, y1, x2, y2 = box_in
    out[0, :4, 17] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
    out[0, 4 + cls, 17] = score
    return [out]


def test_ultralytics_family_by_shape_decodes_to_source_pixels(tmp_path):
    size = 320
    path = make_constant_model(tmp_path / "u.onnx", (size, size), ultralytics_outputs(size, _letterbox(SOURCE_BOX, size), TRUCK))
    det = Detector(path, DetectorConfig(confidence=0.3))
    assert det.family == "ultralytics"
    assert det.format.recognised_by.startswith("output shape")
    d = det(_frame())
    assert len(d) == 1
    np.testing.assert_allclose(d.xyxy[0], SOURCE_BOX, atol=1.0)
    assert d.category[0] == "truck"
    assert d.confidence[0] == pytest.approx(0.9)


def test_ultralytics_metadata_gives_class_names_for_a_custom_model(tmp_path):
    """A fine-tuned model with its own classes (an auto-rickshaw) maps through detector.classes."""
    size = 320
    names = {0: "car", 1: "auto_rickshaw", 2: "bus"}
    n = sum((size // s) ** 2 for s in (8, 16, 32))
    out = np.zeros((1, 4 + 3, n), np.float32)
    x1, y1, x2, y2 = _letterbox(SOURCE_BOX, size)
    out[0, :4, 5] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
    out[0, 4 + 1, 5] = 0.8
    meta = {"task": "detect", "names": str(names), "imgsz": f"[{size}, {size}]"}
    path = make_constant_model(tmp_path / "custom.onnx", (size, size), [out], metadata=meta)
    cfg = DetectorConfig(confidence=0.3, classes={"car": ["car"], "autorickshaw": ["auto_rickshaw"], "bus": [2]})
    det = Detector(path, cfg)
    assert det.format.recognised_by == "Ultralytics metadata"
    assert det.format.class_names == ("car", "auto_rickshaw", "bus")
    d = det(_frame())
    assert list(d.category) == ["autorickshaw"]
    np.testing.assert_allclose(d.xyxy[0], SOURCE_BOX, atol=1.0)
    # the default COCO mapping names classes this model does not have: a clear error naming the key
    with pytest.raises(DetectorError, match=r"detector\.classes\.truck: the model has no class 'truck'"):
        Detector(path, DetectorConfig())


def test_yolox_raw_grid_outputs_decode_with_top_left_letterbox(tmp_path):
    size = 416
    strides = (8, 16, 32)
    n = sum(math.ceil(size / s) ** 2 for s in strides)
    out = np.zeros((1, n, 5 + COCO_N), np.float32)
    x1, y1, x2, y2 = _letterbox(SOURCE_BOX, size, top_left=True)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    # put it on stride 16: index = level-0 cells + gy * 26 + gx
    s, g = 16, size // 16
    gx, gy = int(cx // s), int(cy // s)
    idx = (size // 8) ** 2 + gy * g + gx
    out[0, idx, :4] = [cx / s - gx, cy / s - gy, math.log(w / s), math.log(h / s)]
    out[0, idx, 4] = 0.95  # objectness
    out[0, idx, 5 + CAR] = 0.9
    path = make_constant_model(tmp_path / "x.onnx", (size, size), [out])
    det = Detector(path, DetectorConfig(confidence=0.3))
    assert det.family == "yolox"
    assert det.preprocess.resize == "letterbox_topleft" and det.preprocess.color == "bgr"
    d = det(_frame())
    assert len(d) == 1
    np.testing.assert_allclose(d.xyxy[0], SOURCE_BOX, atol=1.0)
    assert d.confidence[0] == pytest.approx(0.95 * 0.9, rel=1e-5)
    assert d.category[0] == "car"


def _gfl_outputs(size: int, strides: tuple[int, ...], box_in: tuple, centre_fn, level: int, cls: int) -> list[np.ndarray]:
    scores, boxes = [], []
    for s in strides:
        n = math.ceil(size / s) ** 2
        scores.append(np.zeros((1, n, COCO_N), np.float32))
        boxes.append(np.zeros((1, n, 32), np.float32))
    s = strides[level]
    g = math.ceil(size / s)
    x1, y1, x2, y2 = box_in
    gx, gy = int(((x1 + x2) / 2) // s), int(((y1 + y2) / 2) // s)
    cx, cy = centre_fn(gx, gy, s)
    # distances as an expectation over 8 bins: split mass between two neighbouring bins
    logits = np.full((4, 8), -30.0, np.float32)
    for side, dist in enumerate((cx - x1, cy - y1, x2 - cx, y2 - cy)):
        v = dist / s
        lo = int(math.floor(v))
        frac = v - lo
        assert 0 <= lo < 7, "test box must fit the 8-bin range"
        p = np.array([1 - frac, frac]) + 1e-12
        logits[side, lo:lo + 2] = np.log(p)
    idx = gy * g + gx
    boxes[level][0, idx] = logits.reshape(-1)
    scores[level][0, idx, cls] = 0.85
    return scores + boxes


def test_picodet_gfl_outputs_decode_with_plain_resize(tmp_path):
    size, strides = 416, (8, 16, 32, 64)
    outs = _gfl_outputs(size, strides, _stretch(SOURCE_BOX, size), lambda gx, gy, s: ((gx + 0.5) * s, (gy + 0.5) * s), 2, TRUCK)
    path = make_constant_model(tmp_path / "p.onnx", (size, size), outs, producer="PaddlePaddle", input_name="image")
    det = Detector(path, DetectorConfig(confidence=0.3))
    assert det.family == "picodet" and det.format.strides == strides
    assert det.preprocess.resize == "stretch" and det.preprocess.color == "rgb"
    d = det(_frame())
    assert len(d) == 1
    np.testing.assert_allclose(d.xyxy[0], SOURCE_BOX, atol=1.0)
    assert d.category[0] == "truck"


def test_nanodet_gfl_outputs_decode_with_centred_letterbox(tmp_path):
    size, strides = 416, (8, 16, 32)
    outs = _gfl_outputs(size, strides, _letterbox(SOURCE_BOX, size),
                        lambda gx, gy, s: (gx * s + (s - 1) / 2, gy * s + (s - 1) / 2), 2, CAR)
    path = make_constant_model(tmp_path / "n.onnx", (size, size), outs, producer="pytorch", input_name="input.1")
    det = Detector(path, DetectorConfig(confidence=0.3))
    assert det.family == "nanodet"
    assert det.preprocess.resize == "letterbox" and det.preprocess.pad_value == 0 and det.preprocess.color == "bgr"
    d = det(_frame())
    np.testing.assert_allclose(d.xyxy[0], SOURCE_BOX, atol=1.0)


def test_one_vehicle_gets_one_box_across_classes_and_part_boxes_are_dropped(tmp_path):
    size = 320
    n = sum((size // s) ** 2 for s in (8, 16, 32))
    out = np.zeros((1, 4 + COCO_N, n), np.float32)

    def put(i, box, cls, score):
        x1, y1, x2, y2 = _letterbox(box, size)
        out[0, :4, i] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        out[0, 4 + cls, i] = score

    put(1, SOURCE_BOX, CAR, 0.7)
    put(2, (98, 66, 290, 162), TRUCK, 0.6)  # same vehicle called a truck: suppressed across classes
    put(3, (150, 70, 230, 110), CAR, 0.5)  # the windscreen, inside the car box: dropped by containment
    put(4, (400, 200, 500, 300), 5, 0.6)  # a bus elsewhere: kept
    put(5, (10, 10, 40, 40), 0, 0.99)  # a person: not a vehicle category, ignored
    path = make_constant_model(tmp_path / "m.onnx", (size, size), [out])
    d = Detector(path, DetectorConfig(confidence=0.3))(_frame())
    assert sorted(d.category) == ["bus", "car"]
    d_all = Detector(path, DetectorConfig(confidence=0.3, containment=1.0))(_frame())
    assert sorted(d_all.category) == ["bus", "car", "car"]


def test_not_a_detector_is_a_clear_error(tmp_path):
    path = make_constant_model(tmp_path / "cls.onnx", (224, 224), [np.zeros((1, 1000), np.float32)])
    with pytest.raises(DetectorError, match="not a detector this product understands"):
        Detector(path)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx file")
    with pytest.raises(DetectorError, match="cannot load as an ONNX model"):
        Detector(junk)
    with pytest.raises(DetectorError, match="model file not found"):
        Detector(tmp_path / "missing.onnx")


def test_unavailable_provider_falls_back_to_cpu_with_a_warning(caplog):
    caplog.set_level("WARNING")
    assert choose_providers(["tensorrt", "cuda"]) == ["CPUExecutionProvider"]
    assert "TensorrtExecutionProvider is not available" in caplog.text


# ---------------------------------------------------------------------------------------------
# Real models on real street photos


@pytest.fixture(scope="module")
def street() -> np.ndarray:
    img = cv2.imread(str(IMAGES / "dense_traffic_stock.jpg"))
    assert img is not None
    return img


@pytest.fixture(scope="module")
def real_detections(street):
    return {m: Detector(MODELS / f"{m}.onnx", DetectorConfig(confidence=0.35))(street) for m in REAL_MODELS}


@pytest.mark.parametrize("model", REAL_MODELS)
def test_real_model_finds_cars_on_a_street_photo(real_detections, street, model):
    d = real_detections[model]
    h, w = street.shape[:2]
    assert len(d) >= 5, f"{model} found only {len(d)} vehicles in a photo of a packed road"
    assert set(d.category) <= {"car", "truck", "bus", "motorcycle", "bicycle"}
    assert (d.xyxy[:, 0] >= 0).all() and (d.xyxy[:, 2] <= w).all() and (d.xyxy[:, 3] <= h).all()


@pytest.mark.parametrize("model", REAL_MODELS)
def test_real_models_agree_on_where_the_vehicles_are(real_detections, model):
    """Boxes are mapped back to source pixels correctly: every model's confident boxes coincide with
    boxes the other families found (a wrong resize, letterbox offset or colour order breaks this)."""
    d = real_detections[model]
    others = [real_detections[m] for m in REAL_MODELS if m != model]
    confident = d.xyxy[d.confidence >= 0.5]
    assert len(confident) >= 2
    for box in confident:
        best = max(box_iou(box[None], o.xyxy).max(initial=0.0) for o in others)
        assert best >= 0.6, f"{model} box {box.round()} matches no other model's box (best IoU {best:.2f})"


@pytest.mark.parametrize("model", REAL_MODELS)
def test_real_model_boxes_mirror_with_the_image(street, model):
    det = Detector(MODELS / f"{model}.onnx", DetectorConfig(confidence=0.5))
    a = det(street)
    b = det(street[:, ::-1].copy())
    w = street.shape[1]
    mirrored = np.stack([w - b.xyxy[:, 2], b.xyxy[:, 1], w - b.xyxy[:, 0], b.xyxy[:, 3]], 1)
    top = a.xyxy[np.argsort(-a.confidence)[:3]]
    iou = box_iou(top, mirrored)
    assert (iou.max(axis=1) >= 0.7).all(), f"{model}: mirrored image gave boxes that do not mirror ({iou.max(axis=1)})"
