"""The edge service's detectors: one :class:`~roadside.edge.detector.Detector` per distinct model file and
detector settings, shared by every camera that uses them (one onnxruntime session, one copy of the weights).
A camera added while the service runs gets the detector its settings name, loaded only if no camera has it."""
from __future__ import annotations

import json
import logging
import threading

from roadside.edge.detector import Detector
from roadside.edge.roi import ROI_FIELDS
from roadside.edge.service_config import CameraConfig, EdgeConfig

log = logging.getLogger("roadside.edge.service")


class DetectorPool:
    """Detectors by model file and settings (``model_override`` replaces every camera's ``detector.model``)."""

    def __init__(self, model_override: str | None = None):
        self.model_override = model_override
        self._by_key: dict[str, Detector] = {}
        self._lock = threading.Lock()

    def for_camera(self, config: EdgeConfig, cam: CameraConfig) -> Detector:
        from roadside.models.store import resolve_model

        dcfg = config.vision(cam).detector
        path = resolve_model(self.model_override or dcfg.model)
        # the regions a camera's detector runs on are the pipeline's business (edge/roi.py): one session for all
        key = json.dumps([str(path), dcfg.model_dump(mode="json", exclude=set(ROI_FIELDS))], sort_keys=True)
        with self._lock:
            if key not in self._by_key:
                log.info("loading model %s", path)
                self._by_key[key] = Detector(path, dcfg)
            return self._by_key[key]


__all__ = ["DetectorPool"]
