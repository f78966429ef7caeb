"""``roadside models benchmark``: fp32 against static int8 for each model, on this machine.

For every model: the fp32 file and its int8 copy (made with :func:`quantize_model` into a cache folder, or
reused from there). Reported per variant:

* latency of ``session.run`` alone (median and 90th percentile of ``--runs`` runs after a warm-up) with 1 and
  2 intra-op threads, on a real pre-processed frame;
* with ``--gt DIR``: count accuracy of the whole pipeline (``run_replay`` + ``score``) on every ground-truth
  clip, per clip and pooled (all clips' errors over all clips' true crossings), plus event F1;
* the int8 model's detection agreement with fp32 (from quantisation).

Numbers only; nothing is asserted. Run it on the target box for numbers that matter there.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _frame_tensor(detector, video: Path | None):
    """A real frame pre-processed for ``detector`` (the 30th frame of ``video``), else a mid-grey image."""
    if video is not None:
        from roadside.edge.video import VideoReader

        with VideoReader(video, preprocess=detector.preprocess) as r:
            for fr in r:
                if fr.index == 30:
                    return np.array(fr.tensor, copy=True)
    return detector.preprocess(np.full((720, 1280, 3), 128, np.uint8))[0]


def measure_latency(model: Path, threads: int, runs: int, tensor_video: Path | None = None) -> dict:
    import onnxruntime as ort

    from roadside.edge.config import DetectorConfig
    from roadside.edge.detector import Detector

    det = Detector(model, DetectorConfig(threads=threads, classes={"any": [0]}))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: _frame_tensor(det, tensor_video)}
    for _ in range(max(3, runs // 10)):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2),
            "runs": runs, "threads": threads}


def count_accuracy(model: Path, gt_dir: Path, videos_dir: Path, threads: int = 2) -> dict:
    """Replay every ground-truth clip with ``model`` (the lead's ``evaluate``) and score it; per clip and pooled."""
    from roadside.calibration.evaluate import evaluate
    from roadside.edge.config import DetectorConfig, VisionConfig

    base = VisionConfig(detector=DetectorConfig(threads=threads))
    with tempfile.TemporaryDirectory(prefix="roadside-bench-") as out:
        results = evaluate(gt_dir, videos_dir, [str(model)], out, base)
    clips = {r["gt"]: {"accuracy": round(r["accuracy"], 3), "errors": r["errors"], "true": r["true"],
                       "predicted": r["predicted"], "event_f1": round(r["f1"], 3), "fps": round(r["fps"], 1)}
             for r in results}
    err = sum(r["errors"] for r in results)
    true = sum(r["true"] for r in results)
    return {"clips": clips, "pooled_accuracy": round(1 - err / true, 3) if true else None}


def int8_variant(model: Path, cache: Path, calibration: list[Path] | None, frames: int) -> tuple[Path, dict]:
    """The cached int8 copy of ``model`` (made if missing) and its agreement with fp32."""
    from roadside.models.quantize import quantize_model

    target = cache / f"{model.stem}_int8.onnx"
    if target.is_file():
        from roadside.models.inspect_model import describe_model

        q = json.loads(describe_model(target)["metadata"].get("roadside.quantization", "{}"))
        return target, q.get("agreement_with_fp32", {})
    if not calibration:
        from roadside.edge.errors import RoadsideError

        raise RoadsideError(f"{target} is missing: give --calibration VIDEO to make it")
    cache.mkdir(parents=True, exist_ok=True)
    res = quantize_model(model, calibration, target, frames=frames, allow_degraded=True)
    return target, res.agreement


def run_benchmark(models: list[Path], cache: Path, calibration: list[Path] | None, frames: int, runs: int,
                  threads: list[int], gt_dir: Path | None, videos_dir: Path | None, progress=print) -> list[dict]:
    rows = []
    latency_video = None
    if videos_dir is not None and (videos_dir / "freeway_overpass.mp4").is_file():
        latency_video = videos_dir / "freeway_overpass.mp4"
    for model in models:
        int8_path, agreement = int8_variant(model, cache, calibration, frames)
        for precision, path in (("fp32", model), ("int8", int8_path)):
            row = {"model": model.stem, "precision": precision, "file": str(path),
                   "size_mb": round(path.stat().st_size / 1e6, 2)}
            for t in threads:
                row[f"latency_{t}t"] = measure_latency(path, t, runs, latency_video)
            if precision == "int8":
                row["agreement_f1"] = agreement.get("f1")
            if gt_dir is not None and videos_dir is not None:
                row["counts"] = count_accuracy(path, gt_dir, videos_dir)
            rows.append(row)
            progress(format_row(row, threads))
    return rows


def format_header(threads: list[int], with_counts: bool) -> str:
    cols = ["model", "prec", "MB"] + [f"{t}thr med/p90 ms" for t in threads] + ["agree F1"]
    if with_counts:
        cols += ["count acc (pooled)", "per clip"]
    return " | ".join(cols)


def format_row(row: dict, threads: list[int]) -> str:
    parts = [row["model"], row["precision"], f"{row['size_mb']:.1f}"]
    parts += [f"{row[f'latency_{t}t']['median_ms']:.1f} / {row[f'latency_{t}t']['p90_ms']:.1f}" for t in threads]
    parts.append("-" if row["precision"] == "fp32" else str(row.get("agreement_f1")))
    if "counts" in row:
        c = row["counts"]
        parts.append(f"{c['pooled_accuracy']:.3f}")
        parts.append(", ".join(f"{k} {v['accuracy']:.2f} ({v['predicted']}/{v['true']})" for k, v in c["clips"].items()))
    return " | ".join(parts)
