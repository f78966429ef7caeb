"""Detector model families: how to recognise them, pre-process their input and decode their output.

Supported families (all single-image, batch 1):

* ``ultralytics``: YOLOv8 / YOLO11 ONNX exports, one output ``[1, 4+C, N]`` (cx, cy, w, h in input
  pixels, then C sigmoid class scores). RGB, letterbox centred, pad 114, /255.
* ``yolox``: one output ``[1, N, 5+C]`` of raw grid offsets (cx, cy, log w, log h, objectness, C
  classes). BGR, 0..255, letterbox at the top-left, pad 114.
* ``picodet``: PaddleDetection PicoDet GFL head exported without post-processing: score tensors
  ``[1, N, C]`` (sigmoid applied) and box tensors ``[1, N, 4*(R+1)]`` per stride. RGB, plain resize,
  ImageNet mean/std.
* ``nanodet``: NanoDet-Plus/m GFL head, same outputs as PicoDet. BGR, letterbox centred with 0 padding,
  ImageNet mean/std in BGR order.

Recognition order: our own ``roadside.*`` metadata (written by ``roadside models export``), then
Ultralytics' own metadata, then output shapes (and the producer name to tell PicoDet from NanoDet).
"""
from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from roadside.core.errors import RoadsideError
from roadside.models.coco import COCO80
from roadside.models.metadata import CLASS_NAMES_KEY, FAMILY_KEY, PREPROCESS_KEY

FAMILIES = ("ultralytics", "yolox", "picodet", "nanodet")
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)


class ModelFormatError(RoadsideError, ValueError):
    """The ONNX model is not one of the supported detector formats."""


@dataclass(frozen=True)
class Preprocess:
    """How a frame (BGR uint8, as decoded) becomes the model's input tensor. Picklable."""

    height: int
    width: int
    color: str = "rgb"  # channel order the model expects: "rgb" or "bgr"
    resize: str = "letterbox"  # "letterbox" (centred), "letterbox_topleft" or "stretch"
    pad_value: float = 114.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in the model's channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0  # multiplies the pixel value before mean/std (1/255 for Ultralytics)

    def __post_init__(self) -> None:
        if self.color not in ("rgb", "bgr"):
            raise ModelFormatError(f"preprocess colour must be rgb or bgr, not {self.color!r}")
        if self.resize not in ("letterbox", "letterbox_topleft", "stretch"):
            raise ModelFormatError(f"preprocess resize must be letterbox, letterbox_topleft or stretch, not {self.resize!r}")

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """Return the NCHW float32 tensor and the transform (sx, sy, ox, oy): x_in = x_src*sx + ox."""
        h0, w0 = frame.shape[:2]
        if self.resize == "stretch":
            sx, sy = self.width / w0, self.height / h0
            img = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
            ox = oy = 0.0
        else:
            r = min(self.width / w0, self.height / h0)
            nw, nh = max(1, round(w0 * r)), max(1, round(h0 * r))
            resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
            if self.resize == "letterbox":
                left, top = (self.width - nw) // 2, (self.height - nh) // 2
            else:
                left, top = 0, 0
            img = np.full((self.height, self.width, 3), self.pad_value, dtype=np.uint8)
            img[top:top + nh, left:left + nw] = resized
            sx, sy, ox, oy = nw / w0, nh / h0, float(left), float(top)
        # Colour order, scaling, normalisation and the NCHW layout in one optimised OpenCV call:
        # (pixel * scale - mean) / std == (pixel - mean / scale) * (scale / std).
        params = cv2.dnn.Image2BlobParams(
            scalefactor=tuple(self.scale / s for s in self.std), size=(self.width, self.height),
            mean=tuple(m / self.scale for m in self.mean), swapRB=self.color == "rgb", ddepth=cv2.CV_32F,
        )
        return cv2.dnn.blobFromImageWithParams(img, params), (sx, sy, ox, oy)


@dataclass(frozen=True)
class ModelFormat:
    family: str
    preprocess: Preprocess
    class_names: tuple[str, ...]
    #: how the family was recognised (shown by ``roadside models info``)
    recognised_by: str
    strides: tuple[int, ...] = field(default=())


def _parse_names(value: str) -> tuple[str, ...]:
    """Ultralytics stores ``names`` as a Python dict literal; ours is a JSON list."""
    try:
        obj = json.loads(value)
    except ValueError:
        obj = ast.literal_eval(value)
    if isinstance(obj, dict):
        return tuple(str(obj[k]) for k in sorted(obj, key=int))
    return tuple(str(x) for x in obj)


def default_preprocess(family: str, height: int, width: int) -> Preprocess:
    if family == "ultralytics":
        return Preprocess(height, width, "rgb", "letterbox", 114.0, scale=1 / 255)
    if family == "yolox":
        return Preprocess(height, width, "bgr", "letterbox_topleft", 114.0)
    if family == "picodet":
        return Preprocess(height, width, "rgb", "stretch", 0.0, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)
    if family == "nanodet":
        return Preprocess(height, width, "bgr", "letterbox", 0.0, IMAGENET_MEAN_RGB[::-1], IMAGENET_STD_RGB[::-1])
    raise ModelFormatError(f"unknown model family {family!r}; supported: {', '.join(FAMILIES)}")


def _gfl_strides(score_shapes: list[list[int]], height: int, width: int) -> tuple[int, ...]:
    strides = []
    for shp in score_shapes:
        n = shp[1]
        for s in (8, 16, 32, 64, 128):
            if math.ceil(height / s) * math.ceil(width / s) == n:
                strides.append(s)
                break
        else:
            raise ModelFormatError(f"GFL score output with {n} anchors matches no stride for input {height}x{width}")
    return tuple(strides)


def recognise(
    input_shape: list, output_shapes: list[list], metadata: dict[str, str], producer: str, family_hint: str = "auto", source: str = "model"
) -> ModelFormat:
    """Work out the family, pre-processing and class names of a detector model."""
    if len(input_shape) != 4 or not all(isinstance(d, int) for d in input_shape[2:]):
        raise ModelFormatError(
            f"{source}: expected one image input [1, 3, H, W] with a fixed size, got {input_shape}; "
            "export the model with a fixed input size"
        )
    height, width = int(input_shape[2]), int(input_shape[3])
    family, how = None, ""
    names: tuple[str, ...] | None = None
    pre: Preprocess | None = None

    if FAMILY_KEY in metadata:
        family, how = metadata[FAMILY_KEY], "roadside metadata"
        if CLASS_NAMES_KEY in metadata:
            names = _parse_names(metadata[CLASS_NAMES_KEY])
        if PREPROCESS_KEY in metadata:
            try:
                spec = json.loads(metadata[PREPROCESS_KEY])
                pre = Preprocess(height, width, **{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
            except (ValueError, TypeError) as e:
                raise ModelFormatError(f"{source}: bad {PREPROCESS_KEY} metadata: {e}") from None
    elif metadata.get("task") == "detect" and "names" in metadata:
        family, how = "ultralytics", "Ultralytics metadata"
        names = _parse_names(metadata["names"])
    if family_hint != "auto":
        family, how = family_hint, "configuration"

    shapes = [list(s) for s in output_shapes]
    if family is None:
        if len(shapes) == 1 and len(shapes[0]) == 3:
            _, d1, d2 = shapes[0]
            if isinstance(d1, int) and isinstance(d2, int):
                if d1 > 4 and d2 > d1 and d1 < 1000:
                    family, how = "ultralytics", "output shape [1, 4+C, N]"
                elif d2 > 5 and d1 > d2:
                    family, how = "yolox", "output shape [1, N, 5+C]"
        elif len(shapes) >= 4 and len(shapes) % 2 == 0 and all(len(s) == 3 for s in shapes):
            family = "picodet" if "paddle" in producer.lower() else "nanodet"
            how = f"GFL head outputs ({len(shapes) // 2} strides), producer {producer or 'unknown'!r}"
    if family is None:
        raise ModelFormatError(
            f"{source}: not a detector this product understands (outputs {shapes}). Supported: Ultralytics "
            "YOLOv8/YOLO11 ([1,4+C,N]), YOLOX ([1,N,5+C]), PicoDet/NanoDet GFL heads (score [1,N,C] + box "
            "[1,N,4*(R+1)] per stride); set detector.family if recognition guessed wrong"
        )
    if family not in FAMILIES:
        raise ModelFormatError(f"{source}: unknown model family {family!r}; supported: {', '.join(FAMILIES)}")

    strides: tuple[int, ...] = ()
    if family == "ultralytics":
        if len(shapes) != 1 or len(shapes[0]) != 3:
            raise ModelFormatError(f"{source}: Ultralytics detector must have one [1, 4+C, N] output, got {shapes}")
        n_classes = shapes[0][1] - 4
    elif family == "yolox":
        if len(shapes) != 1 or len(shapes[0]) != 3:
            raise ModelFormatError(f"{source}: YOLOX detector must have one [1, N, 5+C] output, got {shapes}")
        n_classes = shapes[0][2] - 5
        strides = (8, 16, 32)
        expect = sum(math.ceil(height / s) * math.ceil(width / s) for s in strides)
        if shapes[0][1] != expect:
            raise ModelFormatError(f"{source}: YOLOX output has {shapes[0][1]} anchors, expected {expect} for {height}x{width}")
    else:
        half = len(shapes) // 2
        if len(shapes) < 2 or len(shapes) % 2 or any(len(s) != 3 for s in shapes):
            raise ModelFormatError(f"{source}: GFL detector needs score and box outputs per stride, got {shapes}")
        scores, boxes = shapes[:half], shapes[half:]
        n_classes = scores[0][2]
        if any(s[2] != n_classes for s in scores) or any(b[2] % 4 for b in boxes) or [s[1] for s in scores] != [b[1] for b in boxes]:
            raise ModelFormatError(f"{source}: GFL outputs do not pair up as scores/boxes per stride: {shapes}")
        strides = _gfl_strides(scores, height, width)
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ModelFormatError(f"{source}: cannot tell the number of classes from outputs {shapes}")
    if names is None:
        names = COCO80 if n_classes == 80 else tuple(f"class{i}" for i in range(n_classes))
    if len(names) != n_classes:
        raise ModelFormatError(f"{source}: metadata names {len(names)} classes but the output has {n_classes}")
    return ModelFormat(family, pre or default_preprocess(family, height, width), names, how, strides)


# ----------------------------------------------------------------------------------------------
# Output decoding. Each decoder receives the raw outputs and the model-class columns of interest and
# returns (boxes xyxy in input pixels, per-candidate score matrix over those columns) for candidates
# whose best score reaches `threshold`. Only candidates are decoded, which keeps post-processing cheap.


def decode_ultralytics(outputs: list[np.ndarray], cols: np.ndarray, threshold: float, fmt: ModelFormat):
    out = outputs[0][0]  # (4+C, N)
    scores = out[4 + cols].T  # (N, K)
    keep = scores.max(axis=1) >= threshold
    b = out[:4, keep].T
    boxes = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
    return boxes, scores[keep]


_grid_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _yolox_grid(fmt: ModelFormat) -> tuple[np.ndarray, np.ndarray]:
    key = ("yolox", fmt.preprocess.height, fmt.preprocess.width)
    if key not in _grid_cache:
        grids, strides = [], []
        for s in fmt.strides:
            h, w = math.ceil(fmt.preprocess.height / s), math.ceil(fmt.preprocess.width / s)
            yv, xv = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            grids.append(np.stack([xv, yv], 2).reshape(-1, 2))
            strides.append(np.full((h * w, 1), s))
        _grid_cache[key] = (np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32))
    return _grid_cache[key]


def decode_yolox(outputs: list[np.ndarray], cols: np.ndarray, threshold: float, fmt: ModelFormat):
    out = outputs[0][0]  # (N, 5+C)
    scores = out[:, 4:5] * out[:, 5 + cols]
    keep = scores.max(axis=1) >= threshold
    grid, stride = _yolox_grid(fmt)
    o, g, s = out[keep], grid[keep], stride[keep]
    cxy = (o[:, :2] + g) * s
    wh = np.exp(np.clip(o[:, 2:4], -10, 10)) * s
    boxes = np.concatenate([cxy - wh / 2, cxy + wh / 2], 1)
    return boxes, scores[keep]


_centre_cache: dict[tuple, list[np.ndarray]] = {}


def _gfl_centres(fmt: ModelFormat) -> list[np.ndarray]:
    key = (fmt.family, fmt.preprocess.height, fmt.preprocess.width, fmt.strides)
    if key not in _centre_cache:
        cs = []
        for s in fmt.strides:
            h, w = math.ceil(fmt.preprocess.height / s), math.ceil(fmt.preprocess.width / s)
            yv, xv = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            if fmt.family == "nanodet":  # NanoDet's anchor points: x*s + (s-1)/2
                c = np.stack([xv * s + (s - 1) / 2, yv * s + (s - 1) / 2], 2)
            else:  # PicoDet: cell centres (x + 0.5) * s
                c = np.stack([(xv + 0.5) * s, (yv + 0.5) * s], 2)
            cs.append(c.reshape(-1, 2).astype(np.float32))
        _centre_cache[key] = cs
    return _centre_cache[key]


def decode_gfl(outputs: list[np.ndarray], cols: np.ndarray, threshold: float, fmt: ModelFormat):
    half = len(outputs) // 2
    all_boxes, all_scores = [], []
    for level, (score_t, box_t, s, centres) in enumerate(zip(outputs[:half], outputs[half:], fmt.strides, _gfl_centres(fmt))):
        sc = score_t[0][:, cols]
        keep = np.flatnonzero(sc.max(axis=1) >= threshold)
        if keep.size == 0:
            continue
        bins = box_t[0][keep].reshape(len(keep), 4, -1)
        bins = np.exp(bins - bins.max(axis=2, keepdims=True))
        bins /= bins.sum(axis=2, keepdims=True)
        dist = (bins * np.arange(bins.shape[2], dtype=np.float32)).sum(axis=2) * s  # (k, 4): l, t, r, b
        c = centres[keep]
        all_boxes.append(np.concatenate([c - dist[:, :2], c + dist[:, 2:]], 1))
        all_scores.append(sc[keep])
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0, len(cols)), np.float32)
    return np.concatenate(all_boxes), np.concatenate(all_scores)


DECODERS = {"ultralytics": decode_ultralytics, "yolox": decode_yolox, "picodet": decode_gfl, "nanodet": decode_gfl}
