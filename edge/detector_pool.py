"""The edge service's detectors: one :class:`~roadside.edge.detector.Detector` per distinct model file and
detector settings, shared by every camera that uses them (one onnxruntime session, one copy of the weights)."""
from __future__ import annotations

import json
import logging

from roadside.edge.detector import Detector
from roadside.edge.service_config import EdgeConfig

log = logging.getLogger("roadside.edge.service")


def load_detectors(config: EdgeConfig, model_override: str | None = None) -> dict[str, Detector]:
    """Camera id -> its detector (``model_override`` replaces every camera's ``detector.model``)."""
    from roadside.models.store import resolve_model

    by_key: dict[str, Detector] = {}
    out = {}
    for cam in config.cameras:
        dcfg = config.vision(cam).detector
        path = resolve_model(model_override or dcfg.model)
        key = json.dumps([str(path), dcfg.model_dump(mode="json")], sort_keys=True)
        if key not in by_key:
            log.info("loading model %s", path)
            by_key[key] = Detector(path, dcfg)
        out[cam.id] = by_key[key]
    return out


__all__ = ["load_detectors"]
