"""Capacity benchmark (``roadside edge bench VIDEO --cameras N``): how many cameras this box keeps up with.

For 1..N cameras it runs the service's own camera workers (:class:`~roadside.edge.camera_worker.CameraWorker`:
live source at the clip's real frame rate, looping, newest frame first, one shared detector per model as in
the service) for a warm-up and then a measured stretch, and reports per camera the frames delivered and
processed per second, the frames dropped (the camera was faster than the box), the detector's latency and the
CPU cores used (this process and its decoder processes),
for each detection mode asked for (``default``: the configuration's ``detector.detect_fps`` /
``every_n_frames``; ``every-frame``; ``detect-fps-X``). Nothing is published: counts bins are only counted.

A camera *keeps up* when it processes at least ``KEEPS_UP`` of the frames its source delivers. Run it on an
otherwise idle box; it is a measurement, not a test.
"""
from __future__ import annotations

import os
import re
import statistics
import time
from dataclasses import dataclass
from typing import Callable

from roadside.core.errors import ConfigError
from roadside.edge.config import VisionConfig

#: a camera that processes at least this share of its delivered frames keeps up
KEEPS_UP = 0.95


class _CountedBins:
    """Counts sink that only counts (the benchmark publishes nothing)."""

    def __init__(self) -> None:
        self.bins = 0

    def put(self, camera, message: Callable) -> None:
        self.bins += 1


class _NoLive:
    """Live sink that is never connected (presence and health are not sent)."""

    connected = False

    def publish(self, camera, kind, message) -> None:
        pass


def mode_config(vision: VisionConfig, mode: str) -> VisionConfig:
    """``vision`` with the detection mode ``mode`` applied: ``default``, ``every-frame`` or ``detect-fps-X``."""
    det = vision.detector
    if mode == "default":
        return vision
    if mode == "every-frame":
        det = det.model_copy(update={"every_n_frames": 1})
    elif m := re.fullmatch(r"detect-fps-(\d+(?:\.\d+)?)", mode):
        det = det.model_copy(update={"detect_fps": float(m.group(1)), "every_n_frames": None})
    else:
        raise ConfigError(f"--modes: unknown mode {mode!r} (known: default, every-frame, detect-fps-X such as detect-fps-10)")
    return vision.model_copy(update={"detector": det})


@dataclass
class _Reading:
    t: float
    cpu: float
    frames_in: list[int]
    processed: list[int]
    dropped: list[int]


def _cpu_seconds() -> float:
    """CPU time of this process and its children (the decoders run in child processes)."""
    from roadside.edge.system_metrics import child_pids, process_cpu_seconds

    return sum(process_cpu_seconds(p) or 0.0 for p in [os.getpid(), *child_pids(os.getpid())])


def _read(workers) -> _Reading:
    st = [w.source.status() for w in workers]
    return _Reading(time.monotonic(), _cpu_seconds(), [s.frames_in for s in st],
                    [w.frames_processed for w in workers], [s.frames_dropped for s in st])


def measure_cameras(model: str, video: str, vision: VisionConfig, cameras: int, *, seconds: float = 20.0,
                    warmup_s: float = 5.0) -> list[dict]:
    """One row per camera count 1..``cameras`` (see the module's docstring)."""
    from roadside.edge.camera_worker import CameraWorker
    from roadside.edge.detector import Detector
    from roadside.edge.service_config import CameraConfig, SourceSettings
    from roadside.models.store import resolve_model

    detector = Detector(resolve_model(model), vision.detector)  # one session shared by every camera
    rows = []
    for n in range(1, cameras + 1):
        sink = _CountedBins()
        workers = [CameraWorker(CameraConfig(id=f"cam{i + 1}", source=video, loop=True, realtime=True), vision, detector,
                                SourceSettings(), sink, _NoLive(), site="bench", device="bench") for i in range(n)]
        for w in workers:
            w.start()
        try:
            time.sleep(warmup_s)
            a = _read(workers)
            time.sleep(seconds)
            b = _read(workers)
            errors = [w.last_error for w in workers if w.errors]
            latency = statistics.median(w.detector_ms for w in workers)
            src_fps = workers[0].source.status().fps
            stride = workers[0].pipeline.stride if workers[0].pipeline is not None else None
        finally:
            for w in workers:
                w.stop()
        dt = b.t - a.t
        fin = [(y - x) / dt for x, y in zip(a.frames_in, b.frames_in)]
        proc = [(y - x) / dt for x, y in zip(a.processed, b.processed)]
        drop = [y - x for x, y in zip(a.dropped, b.dropped)]
        share = [p / f if f > 0 else 0.0 for p, f in zip(proc, fin)]
        rows.append({
            "cameras": n, "model": detector.name, "video": os.path.basename(video), "source_fps": round(src_fps or 0.0, 2),
            "detector_stride": stride,  # the detector runs on every stride-th frame
            "fps_in": [round(x, 2) for x in fin], "fps_processed": [round(x, 2) for x in proc],
            "frames_dropped": drop, "processed_share_min": round(min(share), 3),
            "keeps_up": all(s >= KEEPS_UP for s in share) and all(f > 0 for f in fin),
            "detector_latency_ms": round(latency, 2), "cpu_cores_used": round((b.cpu - a.cpu) / dt, 2),
            "errors": errors, "seconds": round(dt, 1),
        })
    return rows


def run_capacity(model: str, video: str, vision: VisionConfig, cameras: int, modes: list[str], seconds: float,
                 warmup_s: float, progress: Callable[[str], None] = print) -> list[dict]:
    """Every mode's rows (each row also names its mode); ``progress`` gets one line per row."""
    configs = {mode: mode_config(vision, mode) for mode in modes}  # every mode checked before anything runs
    out = []
    for mode, cfg in configs.items():
        for row in measure_cameras(model, video, cfg, cameras, seconds=seconds, warmup_s=warmup_s):
            row = {"mode": mode, **row}
            out.append(row)
            progress(format_row(row))
    return out


def format_row(r: dict) -> str:
    per_cam = " ".join(f"{p:.1f}/{f:.1f}" for p, f in zip(r["fps_processed"], r["fps_in"]))
    return (f"{r['mode']:<14} {r['cameras']:>2} camera(s)  detector every {r['detector_stride']} frame(s)  processed/delivered fps per camera: {per_cam}  "
            f"dropped {sum(r['frames_dropped'])}  detector {r['detector_latency_ms']:.1f} ms  "
            f"cpu {r['cpu_cores_used']:.2f} cores  {'keeps up' if r['keeps_up'] else 'FALLS BEHIND'}"
            + (f"  errors: {r['errors']}" if r["errors"] else ""))


__all__ = ["KEEPS_UP", "format_row", "measure_cameras", "mode_config", "run_capacity"]
