"""``roadside calibrate audit``: an installer's proof that a camera's counts agree with a manual count.

The site's own lines count the clip (the same pipeline as the service, through ``roadside edge replay``'s
:func:`~roadside.edge.replay.run_replay`), the result is scored against the manual count (the shared/data/gt
format; :mod:`roadside.calibration.score`, the same comparison as ``roadside calibrate score``), and each line
is judged on its own: count accuracy and class accuracy per line, with every line below the threshold
(default 95%) flagged with its likely causes:

* **few clean tracks**: many tracks start or end near the line (the same verdict as the calibration page's
  track overlay, :class:`~roadside.edge.track_paths.TrackPaths`, over the whole clip);
* **crossings near the line's ends**: the disagreements sit within 10% of an end (the line is too short or
  an end cuts a lane);
* **class confusion**: the vehicles were counted, under another class;
* and which way the count is off (vehicles missed, or counted twice / counted when none crossed).

``--html`` writes a self-contained report (images inline) with an annotated frame for every disagreement:
the line, the tracks of that frame with their ids, and where the manual count saw the vehicle.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np

from roadside.calibration.score import check_truth_lines, read_truth, score
from roadside.edge.config import VisionConfig
from roadside.edge.detections import Detections
from roadside.edge.track_paths import TrackPaths

#: a disagreement this close (share of the line's length) to an end is "near the line's end"
END_SHARE = 0.1


def _line_accuracy(rows: list[dict], line: str) -> tuple[int, int]:
    mine = [r for r in rows if r["line"] == line]
    return sum(r["error"] for r in mine), sum(r["true"] for r in mine)


def _disagreements(result: dict, gt: dict) -> list[dict]:
    ev = result["events"]
    by_id = {e["id"]: e for e in gt["events"]}
    out = []
    for eid in ev["missed"]:
        g = by_id[eid]
        out.append({"kind": "missed", "line": g["line"], "direction": g["direction"], "frame": int(g["frame"]),
                    "class": g["class"], "t_along_line": g.get("t_along_line"), "anchor_xy": g.get("anchor_xy"),
                    "truth": eid, "text": f"the manual count has {eid} ({g['class']}, {g['direction']}) at frame "
                                          f"{g['frame']}; the pipeline counted nothing there"})
    for p in ev["false_positives"]:
        out.append({"kind": "extra", "line": p["line"], "direction": p["direction"], "frame": p["frame"],
                    "class": p["class"], "t_along_line": p.get("t_along_line"), "track_id": p.get("track_id"),
                    "text": f"the pipeline counted track #{p.get('track_id')} ({p['class']}, {p['direction']}) at "
                            f"frame {p['frame']}; the manual count has no crossing within "
                            f"±{ev['tolerance_frames']} frames"})
    for m in ev["class_mismatches"]:
        out.append({"kind": "class", "line": m["line"], "direction": m["direction"], "frame": m["frame"],
                    "class": m["class"], "true_class": m["true_class"], "t_along_line": m.get("t_along_line"),
                    "track_id": m.get("track_id"), "truth": m["truth"],
                    "anchor_xy": by_id[m["truth"]].get("anchor_xy"),
                    "text": f"{m['truth']}: the manual count says {m['true_class']}, the pipeline counted track "
                            f"#{m.get('track_id')} as {m['class']}"})
    return sorted(out, key=lambda d: (d["frame"], d["line"]))


def _causes(line: str, dis: list[dict], health: dict, count_err: int, class_err: int) -> list[str]:
    causes = []
    mine = [d for d in dis if d["line"] == line and d["kind"] != "class"]
    missed = sum(1 for d in mine if d["kind"] == "missed")
    extra = len(mine) - missed
    h = health.get(line)
    if h is not None and (h["warning"] or h["broken"] > h["clean"] / 2):
        causes.append(f"few clean tracks: {h['clean']} tracks crossed it cleanly, {h['broken']} started or ended "
                      "near it (move it to where the overlay's paths run through, away from where vehicles appear, "
                      "disappear or are hidden)")
    near_end = [d for d in mine if d["t_along_line"] is not None
                and min(d["t_along_line"], 1 - d["t_along_line"]) < END_SHARE]
    if mine and len(near_end) * 3 >= len(mine):
        causes.append(f"crossings near the line's ends: {len(near_end)} of {len(mine)} disagreements are within "
                      f"{END_SHARE:.0%} of an end (lengthen the line across every lane, or move an end off a lane)")
    if class_err > count_err:  # beyond what the totals' own errors explain
        swaps: dict[str, int] = {}
        for d in dis:
            if d["line"] == line and d["kind"] == "class":
                k = f"{d['true_class']} counted as {d['class']}"
                swaps[k] = swaps.get(k, 0) + 1
        what = ", ".join(f"{k} ×{n}" for k, n in sorted(swaps.items(), key=lambda kv: -kv[1])) or \
            "per-class totals differ"
        causes.append(f"class confusion: {what} (a model trained on local classes, or `detector.classes`, "
                      "is the remedy; check the manual count's classes too)")
    if missed > extra:
        causes.append(f"{missed} vehicle(s) missed: the detector does not see them there or their tracks break")
    elif extra > missed:
        causes.append(f"{extra} extra count(s): a vehicle counted twice (a broken track) or counted where the "
                      "manual count saw none")
    return causes or ["no single cause stands out: look at the disagreements' frames (--html)"]


def _replay_key(video: str | Path, config: VisionConfig, model: str | None) -> dict:
    from roadside.edge.pipeline import config_hash
    from roadside.models.store import resolve_model

    st = Path(video).stat()
    return {"video": str(Path(video).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "config_hash": config_hash(config), "model": str(resolve_model(model or config.detector.model))}


def _save_tracks(path: Path, tracks: dict[int, Detections]) -> None:
    idx = sorted(tracks)
    frames = np.concatenate([np.full(len(tracks[i]), i, np.int64) for i in idx]) if idx else np.zeros(0, np.int64)

    def cat(name, empty):
        parts = [getattr(tracks[i], name) for i in idx]
        return np.concatenate(parts) if parts else empty

    np.savez_compressed(path, frames=frames, n=np.asarray(idx, np.int64), xyxy=cat("xyxy", np.zeros((0, 4), np.float32)),
                        confidence=cat("confidence", np.zeros(0, np.float32)), class_id=cat("class_id", np.zeros(0, np.int32)),
                        category=cat("category", np.zeros(0, object)).astype(str), tracker_id=cat("tracker_id", np.zeros(0, np.int64)))


def _load_tracks(path: Path) -> dict[int, Detections]:
    z = np.load(path)
    out = {}
    for i in z["n"].tolist():
        m = z["frames"] == i
        out[i] = Detections(z["xyxy"][m], z["confidence"][m], z["class_id"][m], z["category"][m].astype(object),
                            z["tracker_id"][m])
    return out


def run_audit(config: VisionConfig, video: str | Path, truth_path: str | Path, out_dir: str | Path,
              model: str | None = None, threshold: float = 0.95,
              fresh: bool = False) -> tuple[dict, dict[int, Detections]]:
    """Count ``video`` with ``config``, score it against the manual count and judge each line: the report
    (JSON data) and the tracks of every frame (for :func:`write_html`).

    The replay (counts and tracks) is kept in ``out_dir`` and reused by the next audit of the same clip
    (unchanged file), configuration and model, so correcting a manual count does not cost a recount
    (``fresh``: replay anyway)."""
    import json

    from roadside.edge.counts_file import CountsFile
    from roadside.edge.replay import run_replay

    gt = read_truth(truth_path)
    check_truth_lines(gt, [ln.id for ln in config.lines], config.lines)  # before a replay, not after
    out = Path(out_dir)
    key = _replay_key(video, config, model)
    key_file, tracks_file, counts_file = out / "audit_replay.json", out / "audit_tracks.npz", out / "counts.json"
    reused = (not fresh and key_file.exists() and tracks_file.exists() and counts_file.exists()
              and json.loads(key_file.read_text()) == key)
    if reused:
        counts = CountsFile.read(counts_file)
        tracks = _load_tracks(tracks_file)
    else:
        tracks = {}

        def on_frame(fr, res) -> None:
            tracks[fr.index] = res.tracks

        key_file.unlink(missing_ok=True)
        counts = run_replay(video, config, out, model=model, progress=False, on_frame=on_frame)
        _save_tracks(tracks_file, tracks)
        key_file.write_text(json.dumps(key) + "\n")
    paths = TrackPaths(config.counting.anchor, horizon_s=math.inf, max_paths=1_000_000, end_after_s=1.0)
    for i in sorted(tracks):
        paths.update(i / counts.fps, tracks[i])
    paths.update(math.inf, Detections.empty())  # every track has ended
    result = score(counts, gt)
    dis = _disagreements(result, gt)
    health = paths.line_health([ln for ln in config.lines if ln.id in {g["id"] for g in gt["lines"]}])
    lines = {}
    for g in gt["lines"]:
        lid = g["id"]
        err, true = _line_accuracy(result["rows"], lid)
        cerr, _ = _line_accuracy(result["class_rows"], lid)
        acc = 1 - err / true if true else (1.0 if err == 0 else 0.0)
        cacc = 1 - cerr / true if true else (1.0 if cerr == 0 else 0.0)
        flagged = acc < threshold or cacc < threshold
        lines[lid] = {
            "accuracy": acc, "class_accuracy": cacc, "true": true,
            "predicted": sum(r["predicted"] for r in result["rows"] if r["line"] == lid),
            "flagged": flagged, "tracks": health.get(lid),
            "causes": _causes(lid, dis, health, err, cerr) if flagged else [],
        }
    report = {"clip": str(video), "truth": str(truth_path), "model": counts.model, "threshold": threshold,
              "replay": str(out) + (" (reused)" if reused else ""),
              "accuracy": result["accuracy"], "class_accuracy": result["class_accuracy"],
              "true_total": result["true_total"], "predicted_total": result["predicted_total"],
              "rows": result["rows"], "class_rows": result["class_rows"], "lines": lines, "disagreements": dis,
              "flagged": [lid for lid, v in lines.items() if v["flagged"]], "complete": counts.complete}
    return report, tracks


def format_audit(r: dict) -> str:
    out = [f"audit of {r['clip']} ({r['model']}) against the manual count {r['truth']}; replay: {r['replay']}",
           f"{'line':<10}{'direction':<10}{'class':<12}{'counted':>8}{'manual':>8}{'error':>7}"]
    for row in r["rows"] + r["class_rows"]:
        amb = f"+{row['ambiguous']}" if row["ambiguous"] else ""
        out.append(f"{row['line']:<10}{row['direction']:<10}{row['category'] or '(all)':<12}{row['predicted']:>8}"
                   f"{str(row['true']) + amb:>8}{row['error']:>7}")
    out.append(f"overall: count accuracy {r['accuracy'] * 100:.1f}%, class accuracy {r['class_accuracy'] * 100:.1f}% "
               f"({r['predicted_total']} counted, {r['true_total']} in the manual count); threshold "
               f"{r['threshold'] * 100:.0f}%")
    for lid, v in r["lines"].items():
        verdict = "BELOW THRESHOLD" if v["flagged"] else "ok"
        out.append(f"line {lid}: count {v['accuracy'] * 100:.1f}%, class {v['class_accuracy'] * 100:.1f}%: {verdict}")
        for c in v["causes"]:
            out.append(f"  likely cause: {c}")
    kinds = [d["kind"] for d in r["disagreements"]]
    out.append(f"disagreements: {len(kinds)} ({kinds.count('missed')} missed, {kinds.count('extra')} extra, "
               f"{kinds.count('class')} class)")
    return "\n".join(out)


def _jpeg_data_uri(img: np.ndarray, max_width: int = 960) -> str:
    import cv2

    if img.shape[1] > max_width:
        f = max_width / img.shape[1]
        img = cv2.resize(img, (max_width, int(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def write_html(report: dict, tracks: dict[int, Detections], config: VisionConfig, video: str | Path,
               path: str | Path) -> int:
    """Write the audit as a self-contained HTML page with an annotated frame per disagreement; how many."""
    import cv2

    from roadside.core.video import VideoReader
    from roadside.edge.annotate import draw

    dis = report["disagreements"]
    wanted = {d["frame"] for d in dis}
    frames: dict[int, np.ndarray] = {}
    if wanted:
        with VideoReader(video) as reader:
            for fr in reader:
                if fr.index in wanted:
                    frames[fr.index] = fr.image.copy()
                if fr.index >= max(wanted):
                    break
    esc = html.escape
    parts = [f"<!doctype html><meta charset=utf-8><title>audit: {esc(Path(str(video)).name)}</title>",
             "<style>body{font:14px system-ui,sans-serif;margin:1rem;max-width:1000px}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:.2rem .5rem;text-align:right}.bad{color:#b00020;font-weight:bold}"
             "figure{margin:1rem 0;border-top:1px solid #ddd;padding-top:.5rem}img{max-width:100%}</style>",
             f"<h1>Count audit: {esc(Path(str(video)).name)}</h1>",
             f"<p>Model {esc(str(report['model']))}; manual count {esc(report['truth'])}; overall count accuracy "
             f"<b>{report['accuracy'] * 100:.1f}%</b>, class accuracy {report['class_accuracy'] * 100:.1f}% "
             f"(threshold {report['threshold'] * 100:.0f}%).</p>",
             "<table><tr><th>line</th><th>direction</th><th>class</th><th>counted</th><th>manual</th><th>error</th></tr>"]
    for row in report["rows"] + report["class_rows"]:
        parts.append(f"<tr><td>{esc(row['line'])}</td><td>{row['direction']}</td><td>{esc(row['category'] or '(all)')}"
                     f"</td><td>{row['predicted']}</td><td>{row['true']}</td><td>{row['error']}</td></tr>")
    parts.append("</table><h2>Lines</h2><ul>")
    for lid, v in report["lines"].items():
        cls = ' class="bad"' if v["flagged"] else ""
        parts.append(f"<li{cls}>{esc(lid)}: count {v['accuracy'] * 100:.1f}%, class {v['class_accuracy'] * 100:.1f}%"
                     + ("<ul>" + "".join(f"<li>likely cause: {esc(c)}</li>" for c in v["causes"]) + "</ul>"
                        if v["causes"] else "") + "</li>")
    parts.append(f"</ul><h2>Disagreements ({len(dis)})</h2>")
    for k, d in enumerate(dis):
        img = frames.get(d["frame"])
        parts.append(f"<figure id=d{k}><figcaption><b>{d['kind']}</b> on line {esc(d['line'])}: {esc(d['text'])}"
                     "</figcaption>")
        if img is not None:
            dets = tracks.get(d["frame"], Detections.empty())
            ann = draw(img, dets, config.lines, config.zones, None, None, f"frame {d['frame']}: {d['kind']}")
            if d.get("anchor_xy"):  # where the manual count saw the vehicle
                x, y = (int(round(v)) for v in d["anchor_xy"])
                cv2.circle(ann, (x, y), 14, (255, 0, 255), 3)
            if d.get("track_id") is not None and len(dets):
                for box in dets.xyxy[dets.tracker_id == d["track_id"]].astype(int):
                    cv2.rectangle(ann, (box[0] - 4, box[1] - 4), (box[2] + 4, box[3] + 4), (255, 0, 255), 3)
            parts.append(f"<img alt='frame {d['frame']}' src='{_jpeg_data_uri(ann)}'>")
        parts.append("</figure>")
    Path(path).write_text("\n".join(parts) + "\n", encoding="utf-8")
    return len(dis)


__all__ = ["format_audit", "run_audit", "write_html"]
