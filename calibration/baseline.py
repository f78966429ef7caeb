"""Compare our tracker and counter with the off-the-shelf pipeline on the ground-truth clips.

The baseline is what a user could assemble from well-kept libraries: the same detector, Roboflow
``trackers`` ByteTrack and supervision ``LineZone`` on the bottom-centre anchor, in a plain loop. The
comparison runs every combination on the same cached detections, so only tracking and counting differ:

* ``baseline``: trackers.ByteTrackTracker (defaults) + sv.LineZone
* ``their tracker + our counter`` and ``our tracker + sv.LineZone``: where the difference comes from
* ``ours``: edge/tracker.py + edge/counting.py (the product)

It needs the optional packages ``trackers`` and ``supervision``, which the product does not depend on
(they pull in matplotlib, pillow, PyAV and GUI OpenCV). Install them in a separate environment::

    python3 -m venv /tmp/baseline && /tmp/baseline/bin/pip install trackers onnxruntime pydantic pyyaml tqdm
    /tmp/baseline/bin/pip install --no-deps -e .
    /tmp/baseline/bin/python -m roadside.calibration.baseline --model ../shared/models/picodet_s_416_coco.onnx
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np

from roadside.calibration.evaluate import gt_config
from roadside.calibration.score import score
from roadside.edge.config import DetectorConfig, VisionConfig
from roadside.edge.counting import BACKWARD, FORWARD, LineCounter
from roadside.edge.counts_file import CountsFile, CrossingRecord
from roadside.edge.detections import Detections
from roadside.edge.detector import Detector
from roadside.edge.tracker import ByteTracker
from roadside.core.video import VideoReader


def cached_detections(model: str, video: Path, cache: Path, config: DetectorConfig) -> tuple[list[Detections], float]:
    digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]
    key = cache / f"{Path(model).stem}-{video.stem}-{digest}.npz"
    det = Detector(model, config)
    if key.exists():
        z = np.load(key, allow_pickle=True)
        return list(z["dets"]), float(z["fps"])
    out = []
    with VideoReader(video, preprocess=det.preprocess) as r:
        fps = r.info.fps
        for fr in r:
            out.append(det.postprocess(det.infer(fr.tensor), fr.transform, fr.image.shape))
    key.parent.mkdir(parents=True, exist_ok=True)
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    np.savez(key, dets=arr, fps=fps)
    return out, fps


def to_sv(d: Detections):
    import supervision as sv

    tid = d.tracker_id if len(d) and (d.tracker_id >= 0).all() else None
    return sv.Detections(xyxy=d.xyxy.astype(np.float32), confidence=d.confidence, class_id=d.class_id,
                         tracker_id=tid, data={"category": d.category})


class SvLineCounter:
    """supervision LineZone per line, bottom-centre anchor, mapped to our forward/backward convention."""

    def __init__(self, config: VisionConfig):
        import supervision as sv

        self.zones = {ln.id: sv.LineZone(sv.Point(*ln.a), sv.Point(*ln.b), triggering_anchors=[sv.Position.BOTTOM_CENTER])
                      for ln in config.lines}
        self.totals = {ln.id: {FORWARD: {}, BACKWARD: {}} for ln in config.lines}
        self.events: list[CrossingRecord] = []
        # Which of LineZone's in/out is our forward? Probe with a point moving from s<0 to s>0.
        self.in_is_forward = {lid: self._probe(ln) for lid, ln in zip(self.zones, config.lines)}

    @staticmethod
    def _probe(ln) -> bool:
        import supervision as sv

        a, b = np.array(ln.a, float), np.array(ln.b, float)
        mid = (a + b) / 2
        normal = np.array([-(b - a)[1], (b - a)[0]]) / np.linalg.norm(b - a)  # towards s > 0
        z = sv.LineZone(sv.Point(*ln.a), sv.Point(*ln.b), triggering_anchors=[sv.Position.BOTTOM_CENTER])
        for k in (-20, -10, 10, 20):
            p = mid + k * normal
            z.trigger(sv.Detections(xyxy=np.array([[p[0] - 2, p[1] - 4, p[0] + 2, p[1]]], np.float32),
                                    tracker_id=np.array([1])))
        return z.in_count == 1

    def update(self, frame: int, fps: float, tracked) -> None:
        for lid, z in self.zones.items():
            crossed_in, crossed_out = z.trigger(tracked)
            for mask, is_in in ((crossed_in, True), (crossed_out, False)):
                for i in np.flatnonzero(mask):
                    d = FORWARD if is_in == self.in_is_forward[lid] else BACKWARD
                    cat = str(tracked.data["category"][i])
                    self.totals[lid][d][cat] = self.totals[lid][d].get(cat, 0) + 1
                    self.events.append(CrossingRecord(line=lid, direction=d, frame=frame, time_s=frame / fps,
                                                      category=cat, track_id=int(tracked.tracker_id[i])))


def run_combo(dets: list[Detections], fps: float, config: VisionConfig, tracker_kind: str,
              counter_kind: str) -> tuple[CountsFile, float]:
    if tracker_kind == "theirs":
        from trackers import ByteTrackTracker

        theirs = ByteTrackTracker(frame_rate=fps)
    else:
        ours = ByteTracker(config.tracker, fps)
    counter = LineCounter(config.lines, config.counting, fps) if counter_kind == "ours" else SvLineCounter(config)
    events: list[CrossingRecord] = []
    spent = 0.0
    for f, d in enumerate(dets):
        t0 = time.perf_counter()
        if tracker_kind == "theirs":
            tr = theirs.update(to_sv(d))
            tr = tr[tr.tracker_id >= 0] if tr.tracker_id is not None and len(tr) else tr
            confirmed = Detections(tr.xyxy, tr.confidence, tr.class_id, tr.data["category"], tr.tracker_id.astype(np.int64)) \
                if len(tr) else Detections.empty()
            tentative = Detections.empty()
        else:
            out = ours.update(d)
            confirmed, tentative = out.confirmed, out.tentative
        spent += time.perf_counter() - t0
        if counter_kind == "ours":
            events += [CrossingRecord.of(e) for e in counter.update(f, confirmed, tentative)]
        else:
            counter.update(f, fps, to_sv(confirmed))
    if counter_kind == "ours":
        totals = counter.totals_dict()
    else:
        totals, events = counter.totals, counter.events
    return CountsFile(lines=totals, events=events, config=config), spent / max(1, len(dets)) * 1000


COMBOS = [("baseline (trackers ByteTrack + sv.LineZone)", "theirs", "sv"),
          ("trackers ByteTrack + our counter", "theirs", "ours"),
          ("our ByteTrack + sv.LineZone", "ours", "sv"),
          ("ours (product)", "ours", "ours")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m roadside.calibration.baseline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="../shared/models/picodet_s_416_coco.onnx")
    ap.add_argument("--gt-dir", default="../shared/data/gt")
    ap.add_argument("--videos", default="../shared/data/videos")
    ap.add_argument("--cache", default="runs/baseline-cache")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args(argv)
    base = VisionConfig()
    rows = []
    for gt_path in sorted(Path(args.gt_dir).glob("*.json")):
        gt = json.loads(gt_path.read_text())
        config = gt_config(gt, base)
        dets, fps = cached_detections(args.model, Path(args.videos) / gt["clip"], Path(args.cache), config.detector)
        for name, tk, ck in COMBOS:
            counts, ms = run_combo(dets, fps, config, tk, ck)
            r = score(counts, gt)
            rows.append({"clip": gt_path.stem, "pipeline": name, "accuracy": r["accuracy"], "f1": r["events"]["f1"],
                         "predicted": r["predicted_total"], "true": r["true_total"], "track_ms": ms})
    print("| clip | tracking + counting | predicted / true | count accuracy | event F1 | tracker ms/frame |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['pipeline']} | {r['predicted']} / {r['true']} | {r['accuracy'] * 100:.1f}% | "
              f"{r['f1'] * 100:.1f}% | {r['track_ms']:.2f} |")
    for name, _, _ in COMBOS:
        rs = [r for r in rows if r["pipeline"] == name]
        print(f"pooled {name}: {statistics.fmean([r['accuracy'] for r in rs]) * 100:.1f}% mean accuracy")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
