"""onnxruntime vehicle detector: model file in, ``Detections`` in source-frame pixels out."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from roadside.edge.config import DetectorConfig
from roadside.edge.detections import Detections, box_area, box_intersection
from roadside.core.errors import RoadsideError
from roadside.models.formats import DECODERS, ModelFormat, ModelFormatError, recognise
from roadside.models.metadata import NAME_KEY
from roadside.models.session import ModelLoadError, open_session

log = logging.getLogger("roadside.detector")

class DetectorError(RoadsideError):
    """The model cannot be loaded or does not fit the configuration."""


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", " ").replace("-", " ")


def build_class_map(classes: dict[str, list[str | int]], class_names: tuple[str, ...], source: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Resolve ``detector.classes`` against the model's class names.

    Returns (categories, model class column indices, category index per column).
    """
    by_name = {_normalise_name(n): i for i, n in enumerate(class_names)}
    categories = list(classes)
    cols: list[int] = []
    col_cat: list[int] = []
    owner: dict[int, str] = {}
    for ci, (cat, refs) in enumerate(classes.items()):
        for ref in refs:
            if isinstance(ref, int):
                if not 0 <= ref < len(class_names):
                    raise DetectorError(f"detector.classes.{cat}: class id {ref} is outside the model's 0..{len(class_names) - 1} ({source})")
                idx = ref
            else:
                idx = by_name.get(_normalise_name(ref), -1)
                if idx < 0:
                    shown = ", ".join(class_names[:100])
                    raise DetectorError(f"detector.classes.{cat}: the model has no class {ref!r} ({source}); its classes are: {shown}")
            if idx in owner and owner[idx] != cat:
                raise DetectorError(f"detector.classes: model class {class_names[idx]!r} is mapped to both {owner[idx]!r} and {cat!r}")
            if idx not in owner:
                owner[idx] = cat
                cols.append(idx)
                col_cat.append(ci)
    return categories, np.asarray(cols, np.int64), np.asarray(col_cat, np.int64)


#: categories whose detectors' part-boxes show up as another category: a truck's cab or a bus's front is often
#: boxed as a car. Anything else is a part only of a box of its own category (a windscreen inside its car);
#: a motorbike or a bicycle inside a bus box is a vehicle in front of the bus, never a part of it.
PART_OF = {"car": ("car", "truck", "bus")}


def _not_contained(boxes: np.ndarray, threshold: float, categories: np.ndarray | None = None,
                   max_area_ratio: float = 0.0) -> np.ndarray:
    """Mask of boxes (sorted by descending score) not lying mostly inside an earlier, kept box.

    With ``categories``, a box is dropped only inside a box it can be a part of (PART_OF); with
    ``max_area_ratio``, only inside a box at most that many times its own area (a box far larger, such as
    glare across the bottom of a night frame, holds other vehicles, not parts of one)."""
    area = np.maximum(box_area(boxes), 1e-9)
    inside = box_intersection(boxes, boxes) / area[:, None]  # [j, i]: share of box j inside box i
    if categories is not None:
        names, idx = np.unique(np.asarray(categories, dtype=str), return_inverse=True)
        allowed = np.array([[a == b or b in PART_OF.get(a, ()) for b in names] for a in names], bool)
        can = allowed[idx[:, None], idx[None, :]]  # [j, i]: box j may be a part of box i
        inside = np.where(can, inside, 0.0)
    if max_area_ratio > 0:
        inside = np.where(area[None, :] <= max_area_ratio * area[:, None], inside, 0.0)
    keep = np.ones(len(boxes), bool)
    for j in range(1, len(boxes)):
        if np.any(keep[:j] & (inside[j, :j] >= threshold)):
            keep[j] = False
    return keep


class Detector:
    """Runs one ONNX detector and returns vehicle detections (one box per vehicle)."""

    def __init__(self, model_path: str | Path, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig()
        self.path = Path(model_path)
        if not self.path.is_file():
            raise DetectorError(f"model file not found: {self.path}")
        try:
            self.session = open_session(self.path, self.config.threads, self.config.spin_wait, self.config.providers)
        except ModelLoadError as e:
            raise DetectorError(str(e)) from None
        self.providers = self.session.get_providers()
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise DetectorError(f"{self.path}: expected one image input, the model has {len(inputs)}: {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        meta = self.session.get_modelmeta()
        self.metadata = dict(meta.custom_metadata_map)
        try:
            self.format: ModelFormat = recognise(
                inputs[0].shape,
                [o.shape for o in self.session.get_outputs()],
                self.metadata,
                meta.producer_name or "",
                self.config.family,
                str(self.path),
            )
        except ModelFormatError as e:
            raise DetectorError(str(e)) from None
        self.family = self.format.family
        self.preprocess = self.format.preprocess
        self.categories, self._cols, self._col_cat = build_class_map(self.config.classes, self.format.class_names, str(self.path))
        self._decode = DECODERS[self.family]
        self.name = self.metadata.get(NAME_KEY) or self.path.stem

    # The three stages are public so that a pipeline can run pre-processing elsewhere (a decoder process).
    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: tensor})

    def candidates(self, outputs: list[np.ndarray], transform: tuple[float, float, float, float],
                   frame_shape: tuple[int, ...]) -> Detections:
        """Every decoded vehicle box above ``confidence``, in source pixels, before suppression.

        This is what a detections cache stores: suppression (:meth:`select`) can then be re-run cheaply."""
        boxes, scores = self._decode(outputs, self._cols, self.config.confidence, self.format)
        if len(boxes) == 0:
            return Detections.empty()
        best = scores.argmax(axis=1)
        conf = scores[np.arange(len(scores)), best].astype(np.float32)
        sx, sy, ox, oy = transform
        h, w = frame_shape[:2]
        boxes = boxes.astype(np.float32)
        boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - ox) / sx, 0, w)
        boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - oy) / sy, 0, h)
        wh = boxes[:, 2:] - boxes[:, :2]
        ok = (wh[:, 0] >= 2) & (wh[:, 1] >= 2)
        boxes, conf, best = boxes[ok], conf[ok], best[ok]
        return Detections(xyxy=boxes, confidence=conf, class_id=self._cols[best].astype(np.int32),
                          category=self.category_of(self._cols[best]))

    def class_id_of(self, category: str) -> int | None:
        """The first model class id mapped to ``category`` (None: the category is not configured)."""
        if category not in self.categories:
            return None
        ci = self.categories.index(category)
        return int(next(c for c, k in zip(self._cols, self._col_cat) if k == ci))

    def category_of(self, class_ids: np.ndarray) -> np.ndarray:
        """The vehicle category (object array of str) of each of the model's class ids."""
        lut = {int(c): self.categories[int(ci)] for c, ci in zip(self._cols, self._col_cat)}
        return np.asarray([lut[int(c)] for c in class_ids], dtype=object)

    def select(self, cands: Detections) -> Detections:
        """One box per vehicle: suppression across all vehicle categories together, then the part-box filter."""
        if len(cands) == 0:
            return cands
        boxes, conf = cands.xyxy, cands.confidence
        wh = boxes[:, 2:] - boxes[:, :2]
        keep = cv2.dnn.NMSBoxes(
            np.concatenate([boxes[:, :2], wh], 1).tolist(), conf.tolist(), self.config.confidence, self.config.nms_iou
        )
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        keep = keep[np.argsort(-conf[keep], kind="stable")]
        if self.config.containment < 1.0 and len(keep) > 1:
            c = self.config
            keep = keep[_not_contained(boxes[keep], c.containment, cands.category[keep] if c.containment_by_class else None,
                                       c.containment_max_area_ratio)]
        return cands[keep]

    def postprocess(self, outputs: list[np.ndarray], transform: tuple[float, float, float, float], frame_shape: tuple[int, ...]) -> Detections:
        return self.select(self.candidates(outputs, transform, frame_shape))

    def __call__(self, frame: np.ndarray) -> Detections:
        tensor, transform = self.preprocess(frame)
        return self.postprocess(self.infer(tensor), transform, frame.shape)

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "name": self.name,
            "family": self.family,
            "recognised_by": self.format.recognised_by,
            "input": {"name": self.input_name, "height": self.preprocess.height, "width": self.preprocess.width},
            "preprocess": {
                "color": self.preprocess.color, "resize": self.preprocess.resize, "pad_value": self.preprocess.pad_value,
                "mean": list(self.preprocess.mean), "std": list(self.preprocess.std), "scale": self.preprocess.scale,
            },
            "outputs": [{"name": o.name, "shape": o.shape} for o in self.session.get_outputs()],
            "classes": len(self.format.class_names),
            "categories": {c: [self.format.class_names[int(i)] for i, ci in zip(self._cols, self._col_cat) if self.categories[ci] == c] for c in self.categories},
            "providers": self.providers,
            "metadata": self.metadata,
        }
