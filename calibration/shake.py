"""Generated camera motion: a recorded clip of a fixed camera, re-rendered as if its pole swayed, with its
ground truth kept valid.

A pole that sways or a camera that drifts moves the road under count lines drawn on the first frame. To
measure how counting copes without footage of every pole, ``shake_clip`` moves each frame of a fixed camera's
clip by a smooth, seeded motion (a sum of sinusoids in x, y, rotation and zoom, zero at the first frame) and
writes the clip beside a copy of its truth. The vehicles cross the road's lines at the same frames as in the
original, and the first frame is unmoved, so the truth (drawn on the first frame's view) stays exact. The
unmoved clip (amplitude 0) is written through the same encoder, so both pay the same compression.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from roadside.calibration.score import read_truth
from roadside.core.errors import RoadsideError


@dataclass(frozen=True)
class Sway:
    amplitude_px: float  # largest shift in x (source pixels; y: 0.6 of it)
    period_s: float  # the slowest component's period
    rotation_deg: float = 0.0  # largest rotation
    zoom: float = 0.0  # largest zoom change (0.03: 3%)
    seed: int = 0

    def motion(self, n_frames: int, fps: float) -> np.ndarray:
        """(n, 4) per frame: dx, dy (px), rotation (degrees) and zoom change, each a sum of three sinusoids with
        seeded periods (period_s .. period_s / 3) and phases, zero at frame 0 and within its peak."""
        rng = np.random.default_rng(self.seed)
        t = np.arange(n_frames) / fps

        def wave(peak: float) -> np.ndarray:
            periods = self.period_s / rng.uniform(1.0, 3.0, 3)
            phases = rng.uniform(0, 2 * math.pi, 3)
            # each term at most peak / 3 (the frame count does not change the motion of a frame)
            return sum(np.sin(2 * math.pi * t / p + ph) - np.sin(ph) for p, ph in zip(periods, phases)) * (peak / 6)

        return np.stack([wave(self.amplitude_px), wave(self.amplitude_px * 0.6), wave(self.rotation_deg),
                         wave(self.zoom)], axis=1)


def sway_matrix(motion_row: np.ndarray, width: int, height: int) -> np.ndarray:
    """The 2x3 similarity of one frame of :meth:`Sway.motion` (rotation and zoom about the frame's centre)."""
    dx, dy, ang, zoom = (float(v) for v in motion_row)
    m = cv2.getRotationMatrix2D((width / 2, height / 2), ang, 1.0 + zoom)
    m[:, 2] += (dx, dy)
    return m


def shake_clip(video: str | Path, truth: str | Path, out_dir: str | Path, sway: Sway, name: str | None = None,
               frames: int | None = None) -> tuple[Path, Path]:
    """Write ``video`` (its first ``frames``, default all) moved by ``sway`` and its truth (lines and events
    unchanged, ``clip`` renamed, events past the end dropped) into ``out_dir``; returns (video, truth) paths."""
    video, truth, out_dir = Path(video), Path(truth), Path(out_dir)
    gt = read_truth(truth)
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise RoadsideError(f"{video}: cannot be opened as a video")
    fps = cap.get(cv2.CAP_PROP_FPS) or float(gt.get("fps") or 30.0)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or int(gt.get("decoded_frame_count") or 0)
    if n <= 0:
        raise RoadsideError(f"{video}: the frame count is unknown")
    motion = sway.motion(n + 16, fps)  # a margin: the container's count can be short
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or f"{video.stem}_sway{sway.amplitude_px:g}_s{sway.seed}"
    out_video = out_dir / f"{stem}.mp4"
    writer = None
    i = 0
    try:
        while frames is None or i < frames:
            ok, frame = cap.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            if writer is None:
                writer = cv2.VideoWriter(str(out_video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise RoadsideError(f"{out_video}: cannot be written (no mp4v encoder?)")
            m = sway_matrix(motion[min(i, len(motion) - 1)], w, h)
            writer.write(cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
            i += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if i == 0:
        raise RoadsideError(f"{video}: no frame could be decoded")
    events = [e for e in gt.get("events", []) if e["frame"] < i]
    if len(events) < len(gt.get("events", [])):  # cut short: the truth's own tallies no longer hold
        gt = {k: v for k, v in gt.items() if not k.startswith("totals")}
    gt = dict(gt, events=events, n_events=len(events), clip=out_video.name, shared_path=None, sha256=None, decoded_frame_count=i,
              generated_from={"clip": video.name, "truth": truth.name, "sway": sway.__dict__})
    out_truth = out_dir / f"{stem}.json"
    out_truth.write_text(json.dumps(gt, indent=1) + "\n")
    return out_video, out_truth
