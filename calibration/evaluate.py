"""Replay every clip that has ground truth with one or more models and print the accuracy table.

Developers use this to tune defaults; the README's accuracy table is its output. The site configuration
for each clip is the ground truth's own lines (same a/b order, so forward means the same), on top of
the product's defaults or a base configuration given with ``--config``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from roadside.calibration.score import score
from roadside.edge.config import LineConfig, VisionConfig
from roadside.core.errors import RoadsideError


def gt_config(gt: dict, base: VisionConfig) -> VisionConfig:
    lines = [LineConfig(id=ln["id"], a=tuple(ln["a"]), b=tuple(ln["b"])) for ln in gt["lines"]]
    return base.model_copy(update={"lines": lines})


def evaluate(gt_dir: str | Path, video_dir: str | Path, models: list[str | None], out_dir: str | Path,
             base: VisionConfig | None = None, progress: bool = False) -> list[dict]:
    from roadside.edge.replay import run_replay

    base = base or VisionConfig()
    gts = sorted(Path(gt_dir).glob("*.json"))
    if not gts:
        raise RoadsideError(f"{gt_dir}: no ground-truth *.json files")
    results = []
    for model in models:
        for gt_path in gts:
            gt = json.loads(gt_path.read_text())
            video = Path(video_dir) / gt["clip"]
            run_dir = Path(out_dir) / f"{Path(str(model)).stem if model else 'default'}" / gt_path.stem
            t0 = time.perf_counter()
            counts = run_replay(video, gt_config(gt, base), run_dir, model=model, progress=progress)
            wall = time.perf_counter() - t0
            r = score(counts, gt)
            results.append({"model": counts.model, "gt": gt_path.stem, "clip": gt["clip"], "accuracy": r["accuracy"],
                            "class_accuracy": r["class_accuracy"], "errors": r["errors"], "true": r["true_total"],
                            "predicted": r["predicted_total"], "f1": r["events"]["f1"],
                            "precision": r["events"]["precision"], "recall": r["events"]["recall"],
                            "fps": counts.frames / wall, "rows": r["rows"], "missed": r["events"]["missed"],
                            "false_positives": r["events"]["false_positives"]})
    return results


def format_table(results: list[dict]) -> str:
    out = ["| model | clip | predicted / true | count accuracy | per-class accuracy | event F1 | replay fps |",
           "|---|---|---|---|---|---|---|"]
    for r in results:
        out.append(f"| {r['model']} | {r['gt']} | {r['predicted']} / {r['true']} | {r['accuracy'] * 100:.1f}% | "
                   f"{r['class_accuracy'] * 100:.1f}% | {r['f1'] * 100:.1f}% | {r['fps']:.1f} |")
    by_model: dict[str, list[dict]] = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r)
    for m, rs in by_model.items():
        err = sum(r["errors"] for r in rs)
        true = sum(r["true"] for r in rs)
        out.append(f"| {m} | **pooled** | {sum(r['predicted'] for r in rs)} / {true} | **{(1 - err / true) * 100:.1f}%** | | | |")
    return "\n".join(out)
