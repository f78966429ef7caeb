"""Replay every clip that has ground truth with one or more models and print the accuracy tables.

Developers use this to tune defaults; the README's accuracy table is its output (``--readme``). The site
configuration for each clip is the ground truth's own lines (same a/b order, so forward means the same), on
top of the product's defaults or a base configuration given with ``--config``.

Truth comes from ``--gt-dir`` (``../shared/data/gt``) and any ``--truth-dir`` folders (e.g. the project's own
``tests/data/gt``). A truth file's clip is looked up beside the truth file first, then in ``--videos``.
Every result carries count accuracy *and* event F1 (a change is better only if both improve), per clip,
per line and pooled, and the detector's mean time per frame.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from roadside.calibration.score import ScoreError, match_events, score
from roadside.core.errors import RoadsideError
from roadside.edge.config import LineConfig, VisionConfig

README_BEGIN = "<!-- accuracy-table:begin (written by roadside calibrate evaluate --readme) -->"
README_END = "<!-- accuracy-table:end -->"


def gt_config(gt: dict, base: VisionConfig) -> VisionConfig:
    lines = [LineConfig(id=ln["id"], a=tuple(ln["a"]), b=tuple(ln["b"])) for ln in gt["lines"]]
    return base.model_copy(update={"lines": lines})


def find_truth(gt_dirs: list[str | Path], video_dir: str | Path) -> list[tuple[Path, dict, Path]]:
    """(truth file, its data, the clip) for every ground-truth JSON in ``gt_dirs``; a clear error for a
    truth file that is not the format or whose clip is missing."""
    found = []
    for d in gt_dirs:
        d = Path(d)
        if not d.is_dir():
            raise RoadsideError(f"{d}: no such ground-truth folder")
        for p in sorted(d.glob("*.json")):
            try:
                gt = json.loads(p.read_text())
            except (OSError, ValueError) as e:
                raise ScoreError(f"{p}: cannot read ground truth as JSON: {e}") from None
            missing = [k for k in ("clip", "lines", "events") if not isinstance(gt, dict) or k not in gt]
            if missing:
                raise ScoreError(f"{p}: not a ground-truth file (no {', '.join(repr(k) for k in missing)})")
            for video in (d / gt["clip"], Path(video_dir) / gt["clip"]):
                if video.is_file():
                    break
            else:
                raise RoadsideError(f"{p}: its clip {gt['clip']!r} is neither beside it nor in {video_dir}")
            found.append((p, gt, video))
    if not found:
        raise RoadsideError(f"{', '.join(map(str, gt_dirs))}: no ground-truth *.json files")
    return found


def _line_rows(r: dict, counts, gt: dict) -> list[dict]:
    rows = []
    for ln in gt["lines"]:
        lid = ln["id"]
        sub = {**gt, "events": [e for e in gt["events"] if e["line"] == lid]}
        ev = match_events([e for e in counts.events if e.line == lid], sub)
        by_dir = {row["direction"]: row for row in r["rows"] if row["line"] == lid}
        rows.append({"line": lid, "predicted": {d: x["predicted"] for d, x in by_dir.items()},
                     "true": {d: x["true"] for d, x in by_dir.items()}, "errors": sum(x["error"] for x in by_dir.values()),
                     "tp": ev["tp"], "fp": ev["fp"], "fn": ev["fn"], "f1": ev["f1"]})
    return rows


def evaluate(gt_dir: str | Path | list, video_dir: str | Path, models: list[str | None], out_dir: str | Path,
             base: VisionConfig | None = None, progress: bool = False, cache_dir: str | Path | None = None,
             log=None) -> list[dict]:
    from roadside.edge.replay import run_replay

    base = base or VisionConfig()
    truth = find_truth(gt_dir if isinstance(gt_dir, list) else [gt_dir], video_dir)
    results = []
    for model in models:
        for gt_path, gt, video in truth:
            run_dir = Path(out_dir) / f"{Path(str(model)).stem if model else 'default'}" / gt_path.stem
            t0 = time.perf_counter()
            counts = run_replay(video, gt_config(gt, base), run_dir, model=model, progress=progress, cache_dir=cache_dir)
            wall = time.perf_counter() - t0
            r = score(counts, gt)
            run = json.loads((run_dir / "run.json").read_text())
            ev = r["events"]
            results.append({"model": counts.model, "gt": gt_path.stem, "clip": gt["clip"], "accuracy": r["accuracy"],
                            "class_accuracy": r["class_accuracy"], "errors": r["errors"], "true": r["true_total"],
                            "predicted": r["predicted_total"], "f1": ev["f1"], "tp": ev["tp"], "fp": ev["fp"],
                            "fn": ev["fn"], "precision": ev["precision"], "recall": ev["recall"],
                            "detector_ms": run["detector_ms_mean"], "cached": run["detections_cache"],
                            "fps": counts.frames / wall, "rows": r["rows"], "lines": _line_rows(r, counts, gt),
                            "missed": ev["missed"], "false_positives": ev["false_positives"]})
            if log is not None:
                x = results[-1]
                log(f"{x['model']} {x['gt']}: {x['predicted']}/{x['true']} accuracy {x['accuracy'] * 100:.1f}% "
                    f"F1 {x['f1'] * 100:.1f}% (tp {x['tp']} fp {x['fp']} fn {x['fn']})")
    return results


def pooled(results: list[dict]) -> dict[str, dict]:
    """Per model: all clips' count errors over all true crossings, and the event F1 of all events together."""
    out: dict[str, dict] = {}
    for r in results:
        p = out.setdefault(r["model"], {"errors": 0, "true": 0, "predicted": 0, "tp": 0, "fp": 0, "fn": 0, "clips": 0})
        for k in ("errors", "true", "predicted", "tp", "fp", "fn"):
            p[k] += r[k]
        p["clips"] += 1
    for p in out.values():
        p["accuracy"] = 1 - p["errors"] / p["true"] if p["true"] else 0.0
        prec = p["tp"] / (p["tp"] + p["fp"]) if p["tp"] + p["fp"] else 1.0
        rec = p["tp"] / (p["tp"] + p["fn"]) if p["tp"] + p["fn"] else 1.0
        p["f1"] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return out


def format_table(results: list[dict]) -> str:
    """The clip table (with pooled rows per model)."""
    out = ["| model | clip | predicted / true | count accuracy | per-class accuracy | event F1 (tp / fp / fn) | detector ms/frame |",
           "|---|---|---|---|---|---|---|"]
    for r in results:
        ms = f"{r['detector_ms']:.1f}" if r.get("detector_ms") is not None else ""
        out.append(f"| {r['model']} | {r['gt']} | {r['predicted']} / {r['true']} | {r['accuracy'] * 100:.1f}% | "
                   f"{r['class_accuracy'] * 100:.1f}% | {r['f1'] * 100:.1f}% ({r['tp']} / {r['fp']} / {r['fn']}) | {ms} |")
    for m, p in pooled(results).items():
        out.append(f"| {m} | **pooled** ({p['clips']} clips) | {p['predicted']} / {p['true']} | **{p['accuracy'] * 100:.1f}%** | | "
                   f"**{p['f1'] * 100:.1f}%** ({p['tp']} / {p['fp']} / {p['fn']}) | |")
    return "\n".join(out)


def format_lines(results: list[dict]) -> str:
    """Per line: forward and backward counts against the truth, and the line's event F1."""
    out = ["| model | clip | line | forward predicted / true | backward predicted / true | errors | event F1 (tp / fp / fn) |",
           "|---|---|---|---|---|---|---|"]
    for r in results:
        for ln in r["lines"]:
            p, t = ln["predicted"], ln["true"]
            out.append(f"| {r['model']} | {r['gt']} | {ln['line']} | {p.get('forward', 0)} / {t.get('forward', 0)} | "
                       f"{p.get('backward', 0)} / {t.get('backward', 0)} | {ln['errors']} | {ln['f1'] * 100:.1f}% "
                       f"({ln['tp']} / {ln['fp']} / {ln['fn']}) |")
    return "\n".join(out)


def write_readme(path: str | Path, results: list[dict]) -> None:
    """Replace the accuracy table between the README's markers with this evaluation's table."""
    p = Path(path)
    text = p.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise RoadsideError(f"{p}: no accuracy-table markers ({README_BEGIN!r} ... {README_END!r}) to write between")
    block = f"{README_BEGIN}\n{format_table(results)}\n{README_END}"
    text = re.sub(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), lambda _: block, text, count=1, flags=re.S)
    p.write_text(text)
