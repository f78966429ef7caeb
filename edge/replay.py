"""``roadside edge replay``: run the vision pipeline over a recorded video and write counts (and a video).

Output ``DIR/counts.json`` is deterministic for the same video, configuration and model: it holds no
wall-clock values. Timing of the run goes to ``DIR/run.json``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from roadside.core.errors import RoadsideError
from roadside.core.video import FILE_DECODER_NICE, Frame, VideoError, VideoReader
from roadside.edge.config import VisionConfig
from roadside.edge.counting import IntervalBin
from roadside.edge.counts_file import CountsFile, CrossingRecord, ZoneChange, ZoneLog
from roadside.edge.detector import Detector
from roadside.edge.pipeline import CameraPipeline, FrameResult, config_hash


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def run_replay(video: str | Path, config: VisionConfig, out_dir: str | Path, model: str | Path | None = None,
               annotate: bool = False, realtime: bool = False, progress: bool | None = None,
               on_frame: Callable[[Frame, FrameResult], None] | None = None,
               cache_dir: str | Path | None = None) -> CountsFile:
    """Replay ``video``; write ``counts.json`` (and ``annotated.mp4`` and one ``slitscan_<line>.png`` per line)
    into ``out_dir``; return the counts. ``on_frame(frame, result)`` sees each processed frame (its image is
    valid during the call only).

    If decoding fails part-way, everything counted up to that frame is still written (with ``complete``
    false and the error), and the VideoError is raised afterwards. With ``cache_dir`` the detector's
    candidate boxes are read from (or, after a complete run, written to) a detections cache
    (edge/detection_cache.py); a cached replay decodes no video unless it annotates.
    """
    from roadside.models.store import resolve_model

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RoadsideError(f"{out}: cannot create the output folder: {e}") from None
    model_path = resolve_model(str(model) if model is not None else config.detector.model)
    detector = Detector(model_path, config.detector)
    cache = cache_key = cached = None
    if cache_dir is not None and not realtime:
        from roadside.edge.detection_cache import DetectionCache, cache_extra

        cache = DetectionCache(cache_dir)
        cache_key = cache.key(detector, video, cache_extra(config))
        cached = None if annotate else cache.load(cache_key, detector)
    if cached is not None:
        return _replay_cached(video, config, out, detector, model_path, cached)
    wall0 = time.perf_counter()
    reader = VideoReader(video, preprocess=detector.preprocess, decoder_nice=FILE_DECODER_NICE)
    info = reader.info
    pipe = CameraPipeline(config, detector, info.fps)
    events: list[CrossingRecord] = []
    bins: list[IntervalBin] = []
    zone_log: list[ZoneChange] = []
    writer = None
    scans = []
    if annotate:
        from roadside.edge.slitscan import SlitScan

        scans = [SlitScan(ln, info.fps) for ln in config.lines]
        import cv2

        from roadside.edge.annotate import draw

        ann_path = out / "annotated.mp4"
        writer = cv2.VideoWriter(str(ann_path), cv2.VideoWriter_fourcc(*"mp4v"), info.fps, (info.width, info.height))
        if not writer.isOpened():
            reader.close()
            raise RoadsideError(f"{ann_path}: cannot open a video writer (mp4v) for the annotated video")
    bar = None
    show = sys.stderr.isatty() if progress is None else progress
    if show:
        from tqdm import tqdm

        bar = tqdm(total=info.frame_count_hint or None, unit="frame", desc=Path(str(video)).name, file=sys.stderr)
    error: VideoError | None = None
    frames = 0
    det_ms = 0.0
    recorded = [] if cache is not None else None
    scenes: list = []
    try:
        for fr in reader:
            if realtime:
                delay = wall0 + fr.time_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            res = pipe.process(fr.index, fr.time_s, fr.image, fr.tensor, fr.transform)
            frames += 1
            if on_frame is not None:
                on_frame(fr, res)
            det_ms += res.detector_ms
            if recorded is not None:
                cands = res.candidates
                if cands is None:  # a frame the detector skips: the cache holds every frame's boxes all the same
                    cands = pipe.candidates(fr.image, fr.tensor, fr.transform)
                recorded.append(cands)
                scenes.append(res.scene)
            for scan in scans:
                scan.add(fr.image)
            events += [CrossingRecord.of(e) for e in res.events]
            bins += res.closed_bins
            for zid, st in res.zone_changes.items():
                zone_log.append(ZoneChange(zone=zid, frame=fr.index, time_s=round(fr.time_s, 3), occupied=st.occupied,
                                           count=st.count))
            if writer is not None:
                occ = {z: s.count for z, s in pipe.zones.status.items()}
                writer.write(draw(fr.image, res.tracks, *pipe.layout_in_view(), pipe.counter.totals_dict(), occ,
                                  f"frame {fr.index}  t={fr.time_s:.2f}s"))
            if bar is not None:
                bar.update(1)
    except VideoError as e:
        error = e
    finally:
        reader.close()
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.release()
    for scan in scans:
        scan.write(out / f"slitscan_{scan.line.id}.png", events)
    if cache is not None and error is None and recorded:
        from roadside.edge.detection_cache import CachedClip

        cache.save(cache_key, CachedClip(info.fps, info.width, info.height, det_ms / frames * pipe.stride, recorded,
                                         scenes))
    counts = _finish(video, config, out, detector, model_path, pipe, frames, info.fps, info.width, info.height,
                     events, bins, zone_log, error, time.perf_counter() - wall0, det_ms, realtime)
    if error is not None:
        raise error
    return counts


def _replay_cached(video, config: VisionConfig, out: Path, detector: Detector, model_path, cached) -> CountsFile:
    """The replay loop fed from a detections cache (no decoding, no inference)."""
    wall0 = time.perf_counter()
    pipe = CameraPipeline(config, detector, cached.fps)
    events: list[CrossingRecord] = []
    bins: list[IntervalBin] = []
    zone_log: list[ZoneChange] = []
    det_ms = 0.0
    for i, cands in enumerate(cached.frames):
        t = i / cached.fps
        res = pipe.process_candidates(i, t, cands, detector_ms=cached.detector_ms, scene=cached.scenes[i])
        det_ms += res.detector_ms
        events += [CrossingRecord.of(e) for e in res.events]
        bins += res.closed_bins
        for zid, st in res.zone_changes.items():
            zone_log.append(ZoneChange(zone=zid, frame=i, time_s=round(t, 3), occupied=st.occupied, count=st.count))
    n = len(cached.frames)
    return _finish(video, config, out, detector, model_path, pipe, n, cached.fps, cached.width, cached.height,
                   events, bins, zone_log, None, time.perf_counter() - wall0, det_ms, False, cached=True)


def _finish(video, config, out, detector, model_path, pipe, frames, fps, width, height, events, bins, zone_log,
            error, wall, det_ms, realtime, cached=False) -> CountsFile:
    duration = frames / fps
    bins += pipe.bins.close_until(duration, final=True)
    counts = CountsFile(
        video=str(video), frames=frames, fps=fps, width=width, height=height,
        duration_s=round(duration, 3), model=detector.name, model_family=detector.family,
        config_hash=config_hash(config), complete=error is None, error=str(error) if error else None,
        lines=pipe.counter.totals_dict(),
        events=sorted(events, key=lambda e: (e.frame, e.line, e.track_id)),
        bins=bins,
        zones={zid: ZoneLog(changes=[z for z in zone_log if z.zone == zid],
                            completed_dwell_s=[round(d, 3) for d in pipe.zones.completed_dwells[zid]])
               for zid in pipe.zones.zones},
        config=config,
    )
    _write_json(out / "counts.json", counts.to_json_data())
    _write_json(out / "run.json", {
        "frames": frames, "wall_s": round(wall, 3), "fps_processed": round(frames / wall, 2) if wall else None,
        "detector_ms_mean": round(det_ms / frames, 2) if frames else None, "realtime": realtime,
        "providers": detector.providers, "model_path": str(model_path), "detections_cache": cached,
    })
    return counts
