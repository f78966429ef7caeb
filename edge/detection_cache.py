"""A cache of the detector's candidate boxes per clip, so that tracker, counter and suppression changes can
be evaluated without running the detector again (``roadside calibrate evaluate`` uses it by default).

An entry holds, for every frame of one clip, the boxes the detector decoded above ``detector.confidence``
(before suppression, see :meth:`Detector.candidates`), and the detector's mean time per frame when it was
measured. The key covers everything that changes those boxes: the model file's bytes, the clip (path, size,
modification time), the score threshold, the class mapping, the pre-processing and the regions the
detector ran on. Anything else (suppression, tracker, counting) is applied afresh on every replay.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadside.edge.detections import Detections

#: bump when the meaning of a cached candidate changes
CACHE_VERSION = 5


@dataclass
class CachedClip:
    fps: float
    width: int
    height: int
    detector_ms: float  # mean detector time per frame when the entry was made
    frames: list[Detections]
    scenes: list  # per frame: the SceneState measured on it, or None


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_extra(config) -> dict:
    """The settings beyond the detector's own that change a frame's candidates: the view measurements (kept
    beside them), the night path (lamp boxes are candidates too) and the regions the detector runs on
    (``detector.roi``, ``detector.tiles``: boxes of a crop are not those of the whole frame)."""
    from roadside.edge.roi import roi_settings

    extra = {"scene": config.scene.model_dump(mode="json", exclude={"follow_view"}),
             "lowlight": config.lowlight.model_dump(mode="json")}
    d = config.detector
    if d.roi != "full" or d.tiles > 1:  # the regions the detector ran on (for `auto`, from the lines and zones)
        extra["roi"] = {**roi_settings(d), "layout": [[ln.a, ln.b] for ln in config.lines] + [z.polygon for z in config.zones]}
        if d.roi == "auto" and config.scene.follow_view:
            extra["roi"]["follows_view"] = True  # the region moves with the view's drift
    return extra


class DetectionCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def key(self, detector, video: str | Path, extra: dict | None = None) -> str:
        v = Path(video).resolve()
        st = v.stat()
        desc = {
            "version": CACHE_VERSION,
            "model": _file_digest(detector.path),
            "video": [str(v), st.st_size, int(st.st_mtime)],
            "confidence": detector.config.confidence,
            "classes": {k: list(map(str, vals)) for k, vals in detector.config.classes.items()},
            "preprocess": detector.describe()["preprocess"],
            "extra": extra or {},
        }
        blob = json.dumps(desc, sort_keys=True).encode()
        return f"{Path(str(video)).stem}-{detector.name}-{hashlib.sha256(blob).hexdigest()[:16]}"

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str, detector) -> CachedClip | None:
        p = self._path(key)
        if not p.is_file():
            return None
        from roadside.edge.scene import SceneState

        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            xyxy, conf, cls, offsets = z["xyxy"], z["confidence"], z["class_id"], z["offsets"]
            scene = z["scene"]
        cats = detector.category_of(cls) if len(cls) else np.zeros(0, object)
        frames = [Detections(xyxy[a:b], conf[a:b], cls[a:b], cats[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
        reasons = meta["scene_reasons"]
        scenes = [None if np.isnan(r[0]) else SceneState(float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]),
                                                         int(r[6]), bool(r[7]), reasons[i],
                                                         None if np.isnan(r[8]) else tuple(float(v) for v in r[8:14]),
                                                         bool(r[14] == 1))
                  for i, r in enumerate(scene)]
        return CachedClip(meta["fps"], meta["width"], meta["height"], meta["detector_ms"], frames, scenes)

    def save(self, key: str, clip: CachedClip) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(d) for d in clip.frames]).astype(np.int64)
        parts = [d for d in clip.frames if len(d)]
        xyxy = np.concatenate([d.xyxy for d in parts]) if parts else np.zeros((0, 4), np.float32)
        conf = np.concatenate([d.confidence for d in parts]) if parts else np.zeros(0, np.float32)
        cls = np.concatenate([d.class_id for d in parts]) if parts else np.zeros(0, np.int32)
        scene = np.full((len(clip.frames), 15), np.nan)
        for i, st in enumerate(clip.scenes):
            if st is not None:
                scene[i, :8] = [1, st.luma, st.dark, st.glare, st.shift_px, st.scale, st.inliers, st.view_ok]
                if st.view is not None:
                    scene[i, 8:14] = st.view
                scene[i, 14] = st.reliable
        meta = json.dumps({"fps": clip.fps, "width": clip.width, "height": clip.height, "detector_ms": clip.detector_ms,
                           "scene_reasons": [None if st is None else st.reason for st in clip.scenes]})
        p = self._path(key)
        tmp = p.with_name(p.name + ".tmp.npz")
        np.savez_compressed(tmp, xyxy=xyxy.astype(np.float32), confidence=conf.astype(np.float32),
                            class_id=cls.astype(np.int32), offsets=offsets, scene=scene, meta=np.asarray(meta))
        os.replace(tmp, p)
        return p
