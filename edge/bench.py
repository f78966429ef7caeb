"""Pipeline throughput benchmark: is the whole pipeline keeping up with the detector?

For one model and one video it measures, several times, and prints the medians of:

* ``session fps``: onnxruntime ``session.run`` alone on a pre-made input tensor;
* ``detector fps``: the detector's own throughput on frames already in memory (pre-processing,
  inference, decoding and suppression), the "raw detector frame rate";
* ``pipeline fps``: ``roadside edge replay``'s loop (decode in the child process, detect, track, count,
  bins, zones), from the first frame to the last;
* ``ratio`` = pipeline / detector (target: >= 0.90), and pipeline / session: the median of the per-run
  ratios. Each run measures the three back to back, so a host that speeds up or slows down between runs
  (shared VMs do, by ±20%) shifts both sides of a run's ratio alike.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from roadside.edge.config import LineConfig, VisionConfig
from roadside.edge.detector import Detector
from roadside.edge.pipeline import CameraPipeline
from roadside.core.video import FILE_DECODER_NICE, VideoReader


def _load_frames(video: str, limit: int) -> list:
    frames = []
    with VideoReader(video) as r:
        for fr in r:
            frames.append(fr.image.copy())
            if len(frames) >= limit:
                break
    return frames


def measure(model: str, video: str, config: VisionConfig, frames: int = 300, runs: int = 5) -> dict:
    from roadside.models.store import resolve_model

    path = resolve_model(model)
    det = Detector(path, config.detector)
    images = _load_frames(video, frames)
    n = len(images)
    tensor, _ = det.preprocess(images[0])
    for _ in range(10):
        det.infer(tensor)
    session, detector, pipeline = [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(n):
            det.infer(tensor)
        session.append(n / (time.perf_counter() - t))

        t = time.perf_counter()
        for img in images:
            det(img)
        detector.append(n / (time.perf_counter() - t))

        with VideoReader(video, preprocess=det.preprocess, decoder_nice=FILE_DECODER_NICE) as reader:
            pipe = CameraPipeline(config, det, reader.info.fps)
            count = 0
            t = None
            for fr in reader:
                if t is None:
                    t = time.perf_counter()  # start at the first frame: process start-up is not throughput
                pipe.process(fr.index, fr.time_s, fr.image, fr.tensor, fr.transform)
                count += 1
                if count >= n:
                    break
            pipeline.append((count - 1) / (time.perf_counter() - t))
    med = statistics.median
    return {
        "model": det.name, "video": Path(video).name, "frames": n, "runs": runs, "threads": config.detector.threads,
        "session_fps": round(med(session), 1), "detector_fps": round(med(detector), 1), "pipeline_fps": round(med(pipeline), 1),
        "ratio_pipeline_to_detector": round(med([p / d for p, d in zip(pipeline, detector)]), 3),
        "ratio_pipeline_to_session": round(med([p / s for p, s in zip(pipeline, session)]), 3),
        "all": {"session": [round(x, 1) for x in session], "detector": [round(x, 1) for x in detector],
                "pipeline": [round(x, 1) for x in pipeline]},
    }


def default_lines(width: int, height: int) -> list[LineConfig]:
    """Two lines across the middle, so counting does real work during the benchmark."""
    return [LineConfig(id="h", a=(0.05 * width, 0.55 * height), b=(0.95 * width, 0.55 * height)),
            LineConfig(id="v", a=(0.5 * width, 0.05 * height), b=(0.5 * width, 0.95 * height))]


def main_bench(args) -> int:
    from roadside.edge.site_file import load_vision_config

    config = load_vision_config(args.config, args.camera)
    if args.threads is not None:
        config = config.model_copy(update={"detector": config.detector.model_copy(update={"threads": args.threads})})
    if not config.lines:
        with VideoReader(args.video) as r:
            config = config.model_copy(update={"lines": default_lines(r.info.width, r.info.height)})
    if args.cameras is not None:
        return _capacity(args, config)
    result = measure(args.model, args.video, config, args.frames, args.runs)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model {result['model']}  video {result['video']}  {result['frames']} frames x {result['runs']} runs  "
              f"threads {result['threads']}")
        print(f"  session.run only     {result['session_fps']:8.1f} frames/s")
        print(f"  detector (raw)       {result['detector_fps']:8.1f} frames/s   (pre-process + inference + decode + NMS)")
        print(f"  pipeline             {result['pipeline_fps']:8.1f} frames/s   (decode + detect + track + count)")
        print(f"  pipeline / detector  {result['ratio_pipeline_to_detector']:8.3f}")
        print(f"  pipeline / session   {result['ratio_pipeline_to_session']:8.3f}")
    return 0


def _capacity(args, config: VisionConfig) -> int:
    from roadside.core.errors import ConfigError
    from roadside.edge.capacity import run_capacity

    if not 1 <= args.cameras <= 32:
        raise ConfigError(f"--cameras: {args.cameras} is outside 1..32")
    if args.seconds <= 0 or args.warmup < 0:
        raise ConfigError("--seconds must be > 0 and --warmup >= 0")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    model = args.model or config.detector.model  # None: the product's default model
    rows = run_capacity(model, args.video, config, args.cameras, modes, args.seconds, args.warmup,
                        progress=(lambda _line: None) if args.json else print)
    if args.json:
        print(json.dumps(rows))
    return 0

