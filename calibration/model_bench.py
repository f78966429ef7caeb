"""``roadside models bench``: fp32 against static int8 for each model, on this machine.

For every model: the fp32 file and its int8 copy (made with :func:`quantize_model` into a cache folder, or
reused from there). Reported per variant:

* latency of ``session.run`` alone with 1 and 2 intra-op threads on a real pre-processed frame: median and
  90th percentile of ``--runs`` runs, and the best median of 5 blocks; fp32 and int8 are timed in
  alternating blocks so that background load affects both alike;
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

from roadside.models.metadata import QUANTIZATION_KEY
from roadside.models.session import open_session


def _frame_tensor(detector, video: Path | None):
    """A real frame pre-processed for ``detector`` (the 30th frame of ``video``), else a mid-grey image."""
    if video is not None:
        from roadside.core.video import VideoReader

        with VideoReader(video, preprocess=detector.preprocess) as r:
            for fr in r:
                if fr.index == 30:
                    return np.array(fr.tensor, copy=True)
    return detector.preprocess(np.full((720, 1280, 3), 128, np.uint8))[0]


#: Latency runs are taken in this many blocks, alternating between the variants of a model, so that
#: background load on a shared machine hits fp32 and int8 alike.
BLOCKS = 5


def measure_latencies(variants: dict[str, Path], threads: list[int], runs: int, tensor_video: Path | None = None) -> dict:
    """``session.run`` latency of each variant at each thread count, measured interleaved.

    Returns {(variant, threads): {median_ms, p90_ms, best_block_median_ms, runs, threads}}. The best block
    median is the least disturbed by other processes; the median is over all runs.
    """
    from roadside.edge.config import DetectorConfig
    from roadside.edge.detector import Detector

    first = next(iter(variants.values()))
    tensor = _frame_tensor(Detector(first, DetectorConfig(classes={"any": [0]})), tensor_video)
    sessions = {(v, t): open_session(p, t) for v, p in variants.items() for t in threads}
    feeds = {k: {s.get_inputs()[0].name: tensor} for k, s in sessions.items()}
    per_block = max(1, runs // BLOCKS)
    times: dict = {k: [] for k in sessions}
    blocks: dict = {k: [] for k in sessions}
    for k, s in sessions.items():  # warm-up
        for _ in range(3):
            s.run(None, feeds[k])
    for _ in range(BLOCKS):
        for k, s in sessions.items():
            block = []
            for _ in range(per_block):
                t0 = time.perf_counter()
                s.run(None, feeds[k])
                block.append((time.perf_counter() - t0) * 1000)
            times[k] += block
            blocks[k].append(statistics.median(block))
    out = {}
    for k, ts in times.items():
        ts.sort()
        out[k] = {"median_ms": round(statistics.median(ts), 2), "p90_ms": round(ts[int(0.9 * (len(ts) - 1))], 2),
                  "best_block_median_ms": round(min(blocks[k]), 2), "runs": len(ts), "threads": k[1]}
    return out


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

        q = json.loads(describe_model(target)["metadata"].get(QUANTIZATION_KEY, "{}"))
        return target, q.get("agreement_with_fp32", {})
    if not calibration:
        from roadside.core.errors import RoadsideError

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
        variants = {"fp32": model, "int8": int8_path}
        latency = measure_latencies(variants, threads, runs, latency_video)
        for precision, path in variants.items():
            row = {"model": model.stem, "precision": precision, "file": str(path),
                   "size_mb": round(path.stat().st_size / 1e6, 2)}
            for t in threads:
                row[f"latency_{t}t"] = latency[(precision, t)]
            if precision == "int8":
                row["agreement_f1"] = agreement.get("f1")
            if gt_dir is not None and videos_dir is not None:
                row["counts"] = count_accuracy(path, gt_dir, videos_dir)
            rows.append(row)
            progress(format_row(row, threads))
    return rows


def format_header(threads: list[int], with_counts: bool) -> str:
    cols = ["model", "prec", "MB"] + [f"{t}thr med/p90/best ms" for t in threads] + ["agree F1"]
    if with_counts:
        cols += ["count acc (pooled)", "per clip"]
    return " | ".join(cols)


def format_row(row: dict, threads: list[int]) -> str:
    parts = [row["model"], row["precision"], f"{row['size_mb']:.1f}"]
    for t in threads:
        lat = row[f"latency_{t}t"]
        parts.append(f"{lat['median_ms']:.1f} / {lat['p90_ms']:.1f} / {lat['best_block_median_ms']:.1f}")
    parts.append("-" if row["precision"] == "fp32" else str(row.get("agreement_f1")))
    if "counts" in row:
        c = row["counts"]
        parts.append(f"{c['pooled_accuracy']:.3f}")
        parts.append(", ".join(f"{k} {v['accuracy']:.2f} ({v['predicted']}/{v['true']})" for k, v in c["clips"].items()))
    return " | ".join(parts)
