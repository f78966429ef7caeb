"""How well a quantised model agrees with its fp32 original, in detections rather than raw tensors.

Both models' outputs are decoded by the product's own decoder (all classes), suppressed per class, and
matched one-to-one (same class, IoU >= 0.5). The agreement is the F1 of that matching over all frames:
1.0 means the int8 model finds the same objects as the fp32 one; None means fp32 found nothing to compare.
"""
from __future__ import annotations

import numpy as np

from roadside.models.formats import DECODERS, ModelFormat


def _detect(outputs: list[np.ndarray], fmt: ModelFormat, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    cols = np.arange(len(fmt.class_names))
    boxes, scores = DECODERS[fmt.family](outputs, cols, threshold, fmt)
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    cls = scores.argmax(axis=1)
    conf = scores[np.arange(len(scores)), cls]
    wh = boxes[:, 2:] - boxes[:, :2]
    keep = cv2.dnn.NMSBoxesBatched(np.concatenate([boxes[:, :2], wh], 1).tolist(), conf.tolist(), cls.tolist(), threshold, 0.5)
    keep = np.asarray(keep, np.int64).reshape(-1)
    return boxes[keep].astype(np.float32), cls[keep]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def detection_agreement(reference, candidate, input_name: str, tensors: list[np.ndarray], fmt: ModelFormat,
                        threshold: float = 0.3) -> dict:
    """F1 of the candidate session's detections against the reference session's, over ``tensors``."""
    matched = n_ref = n_cand = 0
    for t in tensors:
        rb, rc = _detect(reference.run(None, {input_name: t}), fmt, threshold)
        cb, cc = _detect(candidate.run(None, {input_name: t}), fmt, threshold)
        n_ref += len(rb)
        n_cand += len(cb)
        if len(rb) and len(cb):
            iou = _iou(rb, cb) * (rc[:, None] == cc[None, :])
            used: set[int] = set()
            for i in np.argsort(-iou.max(axis=1)):
                j = int(iou[i].argmax())
                if iou[i, j] >= 0.5 and j not in used:
                    used.add(j)
                    matched += 1
    # Nothing detected by fp32 (a random-weight model, empty frames): agreement cannot be measured.
    f1 = None if n_ref == 0 else round(2 * matched / (n_ref + n_cand), 3)
    return {"f1": f1, "reference_detections": n_ref, "candidate_detections": n_cand, "matched": matched,
            "frames": len(tensors), "threshold": threshold}
