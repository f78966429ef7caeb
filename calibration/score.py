"""Count accuracy of a ``counts.json`` against hand-verified ground truth (``shared/data/gt`` format).

Implements the comparison described in ``shared/data/gt/README.md``:

* per (line, direction) and per (line, direction, class): predicted P against true T, where an ambiguous
  event widens the target to the range [T, T + ambiguous] (error 0 inside it);
* overall count accuracy of a clip = 1 - sum(err over line, direction) / sum(T), backward included;
* event level: one-to-one matching on line and direction by smallest |frame difference| within the
  clip's tolerance (and |t_along_line| within 0.1 when both sides carry it): precision, recall, F1 and
  the class accuracy of matched pairs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from roadside.core.errors import RoadsideError
from roadside.edge.counts_file import CountsFile, CrossingRecord

DIRECTIONS = ("forward", "backward")


class ScoreError(RoadsideError):
    pass


def _load(path: str | Path, what: str) -> dict:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ScoreError(f"{p}: {what} file not found") from None
    except (OSError, ValueError) as e:
        raise ScoreError(f"{p}: cannot read {what} as JSON: {e}") from None
    if not isinstance(data, dict):
        raise ScoreError(f"{p}: {what} must be a JSON object")
    return data


@dataclass(frozen=True)
class Row:
    line: str
    direction: str
    category: str | None  # None: all classes
    predicted: int
    true: int
    ambiguous: int

    @property
    def error(self) -> int:
        t, a, p = self.true, self.ambiguous, self.predicted
        return 0 if t <= p <= t + a else min(abs(p - t), abs(p - t - a))


def _gt_tallies(gt: dict) -> tuple[dict, dict]:
    certain: dict[tuple, int] = {}
    ambiguous: dict[tuple, int] = {}
    for e in gt["events"]:
        target = ambiguous if e.get("ambiguous") else certain
        for key in ((e["line"], e["direction"]), (e["line"], e["direction"], e["class"])):
            target[key] = target.get(key, 0) + 1
    return certain, ambiguous


def count_rows(counts: CountsFile, gt: dict) -> tuple[list[Row], list[Row]]:
    """(per line/direction rows, per line/direction/class rows)."""
    T, A = _gt_tallies(gt)
    P: dict[tuple, int] = {}
    for line, dirs in counts.lines.items():
        for d, by_class in dirs.model_dump().items():
            for cat, n in by_class.items():
                P[(line, d)] = P.get((line, d), 0) + int(n)
                P[(line, d, cat)] = P.get((line, d, cat), 0) + int(n)
    line_ids = [ln["id"] for ln in gt["lines"]]
    totals = [Row(l, d, None, P.get((l, d), 0), T.get((l, d), 0), A.get((l, d), 0)) for l in line_ids for d in DIRECTIONS]
    keys3 = sorted({k for k in (*T, *A, *P) if len(k) == 3 and k[0] in line_ids})
    by_class = [Row(l, d, c, P.get((l, d, c), 0), T.get((l, d, c), 0), A.get((l, d, c), 0)) for l, d, c in keys3]
    return totals, by_class


def match_events(pred: list[CrossingRecord], gt: dict, tol: int | None = None) -> dict:
    tol = int(gt.get("frame_tolerance_frames", 3)) if tol is None else tol
    ev = gt["events"]
    pairs = []
    for i, p in enumerate(pred):
        for j, g in enumerate(ev):
            if p.line != g["line"] or p.direction != g["direction"]:
                continue
            df = abs(p.frame - int(g["frame"]))
            if df > tol:
                continue
            if p.t_along_line is not None and "t_along_line" in g and abs(p.t_along_line - g["t_along_line"]) > 0.1:
                continue
            pairs.append((df, i, j))
    used_p: set[int] = set()
    used_g: set[int] = set()
    matches = []
    for df, i, j in sorted(pairs):
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        matches.append((i, j))
    tp = sum(1 for _, j in matches if not ev[j].get("ambiguous"))
    fp = len(pred) - len(matches)
    fn = sum(1 for j, g in enumerate(ev) if j not in used_g and not g.get("ambiguous"))
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    wrong_class = [(i, j) for i, j in matches if pred[i].category not in (ev[j]["class"], ev[j].get("class_alt"))]
    cls_ok = len(matches) - len(wrong_class)
    return {
        "tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1,
        "class_correct": cls_ok, "class_scored": len(matches), "tolerance_frames": tol,
        "missed": [ev[j]["id"] for j, g in enumerate(ev) if j not in used_g and not g.get("ambiguous")],
        "false_positives": [pred[i].model_dump(mode="json", by_alias=True, exclude_unset=True)
                            for i in range(len(pred)) if i not in used_p],
        "class_mismatches": [{"truth": ev[j]["id"], "true_class": ev[j]["class"],
                              **pred[i].model_dump(mode="json", by_alias=True, exclude_unset=True)}
                             for i, j in wrong_class],
    }


def _within(counts: CountsFile, first: int, last: int) -> CountsFile:
    """The counts of the events between frames ``first`` and ``last`` only (truth that covers part of a clip)."""
    events = [e for e in counts.events if first <= e.frame <= last]
    lines: dict[str, dict[str, dict[str, int]]] = {lid: {d: {} for d in DIRECTIONS} for lid in counts.lines}
    for e in events:
        by_class = lines.setdefault(e.line, {d: {} for d in DIRECTIONS})[e.direction]
        by_class[e.category] = by_class.get(e.category, 0) + 1
    return counts.model_copy(update={"events": events, "lines": CountsFile.model_validate(
        {"lines": lines}).lines})


def check_truth_lines(gt: dict, counted: list[str], configured: list) -> None:
    """ScoreError unless every line of the ground truth was counted (``counted``: line ids) and, where the
    configuration is known (``configured``: LineConfig), with the same a and b (so forward means the same)."""
    for key in ("lines", "events"):
        if key not in gt:
            raise ScoreError(f"ground truth has no {key!r}: not the shared/data/gt format")
    gt_lines = {ln["id"]: ln for ln in gt["lines"]}
    cfg_lines = {ln.id: ln for ln in configured}
    for lid, ln in gt_lines.items():
        if lid not in counted:
            raise ScoreError(f"the counts have no line {lid!r} (ground truth lines: {', '.join(gt_lines)})")
        c = cfg_lines.get(lid)
        if c is not None and (list(c.a) != list(map(float, ln["a"])) or list(c.b) != list(map(float, ln["b"]))):
            raise ScoreError(f"line {lid!r} was counted with a={list(c.a)} b={list(c.b)} but the ground truth uses "
                             f"a={ln['a']} b={ln['b']}: forward would not mean the same")


def score(counts: CountsFile | dict, gt: dict) -> dict:
    """Score counts (a :class:`CountsFile`, or its JSON data) against ground truth.

    Truth with ``counted_frames: [first, last]`` covers only those frames: events outside are not scored."""
    counts = CountsFile.parse(counts, "counts")
    if "counted_frames" in gt:
        first, last = (int(v) for v in gt["counted_frames"])
        counts = _within(counts, first, last)
    check_truth_lines(gt, list(counts.lines), counts.config.lines if counts.config is not None else [])
    totals, by_class = count_rows(counts, gt)
    true_sum = sum(r.true for r in totals)
    if true_sum == 0:
        raise ScoreError("the ground truth has no certain events; accuracy is undefined")
    err_sum = sum(r.error for r in totals)
    cls_err = sum(r.error for r in by_class)
    return {
        "clip": gt.get("clip"),
        "accuracy": 1 - err_sum / true_sum,
        "class_accuracy": 1 - cls_err / true_sum,
        "errors": err_sum,
        "true_total": true_sum,
        "predicted_total": sum(r.predicted for r in totals),
        "rows": [r.__dict__ | {"error": r.error} for r in totals],
        "class_rows": [r.__dict__ | {"error": r.error} for r in by_class],
        "events": match_events(counts.events, gt),
        "complete": counts.complete,
    }


def read_truth(path: str | Path) -> dict:
    """A ground-truth (or manual count) file of the shared/data/gt format; ScoreError naming the file."""
    return _load(path, "ground truth")


def score_files(counts_path: str | Path, gt_path: str | Path) -> dict:
    return score(CountsFile.read(counts_path), read_truth(gt_path))


def format_report(result: dict) -> str:
    out = [f"clip: {result['clip']}"]
    if not result["complete"]:
        out.append("WARNING: the counts come from an incomplete run")
    out.append(f"{'line':<8}{'direction':<10}{'class':<12}{'predicted':>10}{'true':>6}{'error':>7}")
    for r in result["rows"]:
        amb = f"+{r['ambiguous']}" if r["ambiguous"] else ""
        out.append(f"{r['line']:<8}{r['direction']:<10}{'(all)':<12}{r['predicted']:>10}{str(r['true']) + amb:>6}{r['error']:>7}")
    for r in result["class_rows"]:
        amb = f"+{r['ambiguous']}" if r["ambiguous"] else ""
        out.append(f"{r['line']:<8}{r['direction']:<10}{r['category']:<12}{r['predicted']:>10}{str(r['true']) + amb:>6}{r['error']:>7}")
    ev = result["events"]
    out.append(f"overall count accuracy: {result['accuracy'] * 100:.1f}%  ({result['errors']} errors over {result['true_total']} true crossings)")
    out.append(f"per-class count accuracy: {result['class_accuracy'] * 100:.1f}%")
    out.append(f"events (±{ev['tolerance_frames']} frames): precision {ev['precision'] * 100:.1f}%  recall {ev['recall'] * 100:.1f}%  "
               f"F1 {ev['f1'] * 100:.1f}%  class correct {ev['class_correct']}/{ev['class_scored']}")
    return "\n".join(out)
