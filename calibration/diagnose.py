"""Miss-by-miss diagnosis: follow every missed true crossing through detector, suppression, tracker and counter.

For each ground-truth event that the pipeline did not match, this replays the clip from the detections cache
(the detector's own boxes, see edge/detection_cache.py) with the same configuration, and looks, in the
frames around the event, near the point where the vehicle crossed the line (``anchor_xy``), for:

1. ``detector``: the best candidate box (before suppression) whose anchor is near: its score and class;
2. ``suppression``: whether a box there survived cross-class NMS and the part-box (containment) filter;
3. ``tracker``: whether a tentative or confirmed track held a box there, and which;
4. ``counter``: whether that track counted this line (when, which direction), or why not.

The first stage that lost the vehicle is its verdict. ``roadside calibrate diagnose`` prints one line per
miss and per false count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadside.calibration.score import score
from roadside.edge.config import VisionConfig
from roadside.edge.detections import Detections
from roadside.edge.pipeline import CameraPipeline


@dataclass
class _Frame:
    cands: Detections
    kept: Detections
    confirmed: Detections
    tentative: Detections


def _near(dets: Detections, xy: np.ndarray, radius: float, anchor: str) -> np.ndarray:
    if len(dets) == 0:
        return np.zeros(0, np.int64)
    d = np.linalg.norm(dets.anchors(anchor) - xy[None], axis=1)
    return np.flatnonzero(d <= radius)


def trace(config: VisionConfig, detector, frames: list[Detections], fps: float, scenes: list | None = None
          ) -> tuple[list[_Frame], list]:
    """Run the pipeline over cached candidates (as a cached replay does), keeping every stage's boxes per frame.
    On frames the detector skips, the candidates and kept boxes are empty (the tracker predicted)."""
    pipe = CameraPipeline(config, detector, fps)
    out, events = [], []
    for i, cands in enumerate(frames):
        res = pipe.process_candidates(i, i / fps, cands, scene=scenes[i] if scenes else None)
        events += res.events
        kept = pipe.last_kept if pipe.last_kept is not None else Detections.empty()
        seen = cands if pipe.last_kept is not None else Detections.empty()
        out.append(_Frame(seen, kept, pipe.last_tracks.confirmed, pipe.last_tracks.tentative))
    return out, events


def diagnose(config: VisionConfig, detector, frames: list[Detections], fps: float, width: int, gt: dict,
             window: int | None = None, scenes: list | None = None) -> dict:
    from roadside.edge.counts_file import CountsFile, CrossingRecord

    tol = int(gt.get("frame_tolerance_frames", 3))
    window = tol if window is None else window
    radius = max(12.0, 0.05 * width)
    anchor = config.counting.anchor
    trail, events = trace(config, detector, frames, fps, scenes)
    records = [CrossingRecord.of(e) for e in events]
    totals: dict = {ln.id: {"forward": {}, "backward": {}} for ln in config.lines}
    for e in events:
        totals[e.line][e.direction][e.category] = totals[e.line][e.direction].get(e.category, 0) + 1
    counts = CountsFile(video=gt["clip"], frames=len(frames), fps=fps, width=width, height=0, duration_s=len(frames) / fps,
                        model=detector.name, model_family=detector.family, config_hash="", complete=True, lines=totals,
                        events=records, bins=[], zones={}, config=config)
    result = score(counts, gt)
    by_id = {e["id"]: e for e in gt["events"]}
    false_counts = {(e.get("track_id"), e["frame"], e["line"]) for e in result["events"]["false_positives"]}
    misses = []
    for eid in result["events"]["missed"]:
        g = by_id[eid]
        xy = np.asarray(g["anchor_xy"], float)
        f0, f1 = max(0, g["frame"] - window), min(len(trail) - 1, g["frame"] + window)
        best = (0.0, None)
        kept_any, tracks = False, {}
        for f in range(f0, f1 + 1):
            fr = trail[f]
            for k in _near(fr.cands, xy, radius, anchor):
                if fr.cands.confidence[k] > best[0]:
                    best = (float(fr.cands.confidence[k]), str(fr.cands.category[k]))
            kept_any |= len(_near(fr.kept, xy, radius, anchor)) > 0
            for dets, state in ((fr.confirmed, "confirmed"), (fr.tentative, "tentative")):
                for k in _near(dets, xy, radius, anchor):
                    tid = int(dets.tracker_id[k])
                    if tracks.get(tid) != "confirmed":
                        tracks[tid] = state
        counted = [e for e in events if e.track_id in tracks and e.line == g["line"]]
        if best[1] is None:
            verdict = "detector: no candidate box near the crossing"
        elif not kept_any:
            verdict = f"suppression: best candidate {best[0]:.2f} {best[1]} removed by NMS/containment"
        elif not tracks:
            verdict = (f"tracker: boxes kept (best {best[0]:.2f}) but no track held one (new_track_threshold "
                       f"{config.tracker.new_track_threshold})")
        elif not any(s == "confirmed" for s in tracks.values()) and not counted:
            verdict = f"tracker: only tentative tracks {sorted(tracks)} (never confirmed there)"
        elif counted:
            c = min(counted, key=lambda e: abs(e.frame - g["frame"]))
            if c.direction != g["direction"]:
                verdict = f"counter: track #{c.track_id} counted {c.direction} at frame {c.frame} (the wrong direction)"
            elif abs(c.frame - g["frame"]) <= tol:
                verdict = (f"counter: track #{c.track_id} counted at frame {c.frame} but at t={c.t_along_line:.2f} along the "
                           f"line (truth t={g.get('t_along_line')}): another vehicle's position, or matched elsewhere")
            elif c.frame < g["frame"] and (c.track_id, c.frame, c.line) not in false_counts:
                verdict = (f"counter: track #{c.track_id} had already counted this line at frame {c.frame} (truth "
                           f"{g['frame']}), a true crossing of another vehicle: this one had no track of its own "
                           f"(hidden behind that vehicle, or one box for both?)")
            elif c.frame < g["frame"]:
                verdict = (f"counter: track #{c.track_id} had already counted this line at frame {c.frame} (truth "
                           f"{g['frame']}): its one count went to another vehicle or to jitter (identity switch?)")
            else:
                verdict = f"counter: track #{c.track_id} counted late, at frame {c.frame} (truth {g['frame']}, tolerance {tol})"
        else:
            verdict = f"counter: track(s) {sorted(tracks)} near the crossing never counted this line"
        misses.append({"id": eid, "frame": g["frame"], "class": g["class"], "best_score": round(best[0], 3),
                       "tracks": tracks, "verdict": verdict})
    fps_ = [{"frame": e["frame"], "line": e["line"], "direction": e["direction"], "class": e.get("class"),
             "track_id": e.get("track_id"), "t_along_line": e.get("t_along_line")} for e in result["events"]["false_positives"]]
    return {"clip": gt["clip"], "accuracy": result["accuracy"], "f1": result["events"]["f1"], "misses": misses,
            "false_positives": fps_}


def diagnose_clip(gt_path: str | Path, video_dir: str | Path, config: VisionConfig, model: str | None,
                  cache_dir: str | Path) -> dict:
    import json
    import tempfile

    from roadside.calibration.evaluate import find_truth, gt_config
    from roadside.edge.detection_cache import DetectionCache, cache_extra
    from roadside.edge.detector import Detector
    from roadside.edge.replay import run_replay
    from roadside.models.store import resolve_model

    gt_path = Path(gt_path)
    gt = json.loads(gt_path.read_text())
    video = next(v for p, _, v in find_truth([gt_path.parent], video_dir) if p == gt_path)
    cfg = gt_config(gt, config)
    detector = Detector(resolve_model(model or cfg.detector.model), cfg.detector)
    cache = DetectionCache(cache_dir)
    key = cache.key(detector, video, cache_extra(cfg))
    clip = cache.load(key, detector)
    if clip is None:  # fill the cache with one ordinary replay
        with tempfile.TemporaryDirectory() as tmp:
            run_replay(video, cfg, tmp, model=model, progress=False, cache_dir=cache_dir)
        clip = cache.load(key, detector)
    return diagnose(cfg, detector, clip.frames, clip.fps, clip.width, gt, scenes=clip.scenes)


def format_diagnosis(d: dict) -> str:
    out = [f"{d['clip']}: accuracy {d['accuracy'] * 100:.1f}%  F1 {d['f1'] * 100:.1f}%"]
    for m in d["misses"]:
        out.append(f"  MISS {m['id']} frame {m['frame']} {m['class']}: {m['verdict']}")
    for f in d["false_positives"]:
        t = f["t_along_line"]
        out.append(f"  FALSE {f['line']} {f['direction']} frame {f['frame']} {f['class']} track #{f['track_id']}"
                   + (f" at t={t:.2f}" if t is not None and not math.isnan(t) else ""))
    return "\n".join(out)
