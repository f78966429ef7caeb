"""The running edge service as the calibration page sees it: each camera's frame, tracks, counts and layout;
validation of an edited layout; and the actions, saving a layout and adding a camera, changing its source or
removing it, each of which writes the site file (atomically, with a backup, keeping its comments), applies
the change to the running service without a restart and logs who changed what and when."""
from __future__ import annotations

import copy
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from roadside.core.errors import ConfigError, RoadsideError
from roadside.core.redact import redact
from roadside.edge.layout import probe_frame_size, validate_layout
from roadside.edge.layout_store import (SOURCE_KEYS, CameraRejected, camera_problem, check_camera, check_layout,
                                        log_change, read_changes, remove_camera, save_camera, save_layout)
from roadside.edge.service_config import startup_problems

if TYPE_CHECKING:
    from roadside.edge.service import EdgeService

log = logging.getLogger("roadside.edge.calibrate")

#: how long a save waits for the camera's worker to switch to the new layout (s)
_APPLY_WAIT_S = 10.0
#: how long a probe of a new source may take to deliver its first frame (s; at most the sources' open timeout)
_PROBE_TIMEOUT_S = 15.0


class CalibrationView:
    def __init__(self, service: "EdgeService"):
        self.service = service
        self._lock = threading.Lock()
        self._clip = None  # the clip open for a manual count (ClipFrames)
        self._live_counts: dict[str, dict] = {}  # camera -> the live manual count going on

    # -- reading -----------------------------------------------------------------------------------
    def _worker(self, camera: str):
        return self.service.workers[camera]  # KeyError: unknown camera

    def cameras(self) -> list[str]:
        return list(self.service.workers)

    def frame_size(self, camera: str) -> tuple[int, int] | None:
        st = self._worker(camera).source.status()
        return (st.width, st.height) if st.width and st.height else None

    def camera(self, camera: str) -> dict:
        """The camera's layout and what an edit may refer to."""
        w = self._worker(camera)
        cfg = self.service.config
        size = self.frame_size(camera)
        return {
            "camera": camera, "width": size[0] if size else None, "height": size[1] if size else None,
            "lines": [ln.model_dump(mode="json", exclude_none=True) for ln in w.vision.lines],
            "zones": [z.model_dump(mode="json", exclude_none=True) for z in w.vision.zones],
            "categories": sorted(w.vision.detector.classes), "phases": list(cfg.phases),
            "config_hash": w.hash, "anchor": w.vision.counting.anchor,
            "saving": self.saving_refused(),
            "source": _source_settings(w.cam),
        }

    def device(self) -> dict:
        """What the page needs before any camera: the cameras and whether saving works (and why not)."""
        return {"site": self.service.config.site, "device": self.service.config.device, "cameras": self.cameras(),
                "saving": self.saving_refused()}

    def saving_refused(self) -> str | None:
        """Why a save would be refused whatever the layout (None: saving works)."""
        if self.service.config.api.token is None:
            return "the API is read-only: no api.token is configured"
        if self.service.config_path is None:
            return "the service runs on the built-in configuration: start it with --config SITE.yaml to save"
        return None

    def live(self, camera: str, paths: bool = True, heat_minutes: float = 10.0) -> dict:
        """The latest processed frame's confirmed tracks, the counts since the layout was applied and zone
        occupancy, and (``paths``) recent track paths with the lines' verdicts and the heat map of the paths
        of the last ``heat_minutes``."""
        for _ in range(2):  # the camera's thread updates these while we read them: read again
            try:
                return self._live(camera, paths, heat_minutes)
            except RuntimeError:
                continue
        return self._live(camera, paths, heat_minutes)

    def _live(self, camera: str, paths: bool, heat_minutes: float) -> dict:
        w = self._worker(camera)
        snap, pipe = w._snapshot, w.pipeline
        tracks = []
        wall = None
        if snap is not None:
            _, dets, wall = snap
            for box, tid, cat, conf in zip(dets.xyxy.tolist(), dets.tracker_id.tolist(), dets.category.tolist(),
                                           dets.confidence.tolist()):
                tracks.append({"id": int(tid), "box": [round(v, 1) for v in box], "category": str(cat),
                               "confidence": round(float(conf), 3)})
        out = {
            "camera": camera, "time": wall, "config_hash": w.hash, "frames_processed": w.frames_processed,
            "tracks": tracks,
            "counts": pipe.counter.totals_dict() if pipe is not None else {},
            "zones": {z: {"occupied": s.occupied, "count": s.count} for z, s in list(pipe.zones.status.items())}
            if pipe is not None else {},
            "preview": w.preview_status(),
        }
        if paths:
            out["paths"] = w.paths.recent()
            out["line_health"] = w.paths.line_health(w.vision.lines)
            out["heatmap"] = w.paths.heatmap(heat_minutes * 60.0)
        return out

    def frame_jpeg(self, camera: str, quality: int = 85) -> bytes | None:
        """The latest processed frame as it came from the camera (no drawing), JPEG."""
        import cv2

        snap = self._worker(camera)._snapshot
        if snap is None:
            return None
        ok, buf = cv2.imencode(".jpg", snap[0], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return buf.tobytes() if ok else None

    def validate(self, camera: str, lines: list, zones: list) -> list[dict]:
        index, layout = check_layout(self.service.config, camera, lines, zones, self.frame_size(camera))
        return [p.to_json(index) for p in layout.problems]

    def preview(self, camera: str, lines: list, zones: list) -> list[dict]:
        """Count the valid items of an unsaved layout on the camera's live tracks (beside the real counts);
        the problems of the others."""
        index, layout = check_layout(self.service.config, camera, lines, zones, self.frame_size(camera))
        self._worker(camera).set_preview(layout.lines, layout.zones)
        return [p.to_json(index) for p in layout.problems]

    # -- manual count of a recorded clip -----------------------------------------------------------
    def clips(self, camera: str) -> list[str]:
        from roadside.edge.clip_frames import clips_beside

        return list(clips_beside(self._worker(camera).cam.source))

    def clip(self, camera: str, name: str):
        """The open clip ``name`` (one at a time); KeyError when it is not one of the camera's clips."""
        from roadside.edge.clip_frames import ClipFrames, clips_beside

        path = clips_beside(self._worker(camera).cam.source)[name]
        with self._lock:
            current = self._clip
            if current is None or current.path != path:
                if current is not None:
                    current.close()
                self._clip = ClipFrames(path)
            return self._clip

    def save_manual_count(self, camera: str, body) -> dict:
        """Write a manual count (ManualCountBody) in the ground-truth format into the state folder."""
        from roadside.edge.manual_count import manual_count_document, write_manual_count

        w = self._worker(camera)
        clip = self.clip(camera, body.clip)
        doc = manual_count_document(body, list(w.vision.lines), sorted(w.vision.detector.classes), clip.info.fps,
                                    clip.info.width, clip.info.height, clip.frames, camera)
        path = write_manual_count(self.service.config.state_path() / "manual_counts", doc)
        log.info("camera %s: manual count of %s by %s (%d vehicles) written to %s", camera, body.clip,
                 body.by or "installer", len(doc["events"]), path)
        return {"path": str(path), "document": doc}

    # -- manual count of the live camera ------------------------------------------------------------
    def start_live_count(self, camera: str, minutes: float) -> dict:
        """Begin a manual count of the live camera: the service's running totals now, to compare with at the end."""
        w = self._worker(camera)
        pipe = w.pipeline
        if pipe is None:
            raise ConfigError(f"camera {camera!r} has not processed a frame yet: wait for its live frame")
        if not w.vision.lines:
            raise ConfigError(f"camera {camera!r} has no count line: draw and save one first")
        session = {"start": time.time(), "minutes": minutes, "config_hash": w.hash,
                   "totals": copy.deepcopy(pipe.counter.totals_dict())}
        self._live_counts[camera] = session
        log.info("camera %s: live manual count of %g min started", camera, minutes)
        return {"camera": camera, "start": session["start"], "minutes": minutes, "config_hash": w.hash}

    def finish_live_count(self, camera: str, body) -> dict:
        """End the camera's live manual count (LiveCountBody): the document, beside what the service counted
        over the same time, written into the state folder."""
        from roadside.edge.manual_count import counted_between, live_count_document, write_manual_count

        w = self._worker(camera)
        session = self._live_counts.pop(camera, None)
        if session is None:
            raise ConfigError(f"no live count of camera {camera!r} is going on: start one")
        if w.hash != session["config_hash"] or w.pipeline is None:
            raise ConfigError(f"camera {camera!r}'s layout changed during the count (config hash "
                              f"{session['config_hash']} -> {w.hash}): its counts do not compare; count again")
        end = time.time()
        counted = counted_between(session["totals"], w.pipeline.counter.totals_dict())
        doc = live_count_document(body, list(w.vision.lines), sorted(w.vision.detector.classes), camera,
                                  start=session["start"], end=end, minutes=session["minutes"],
                                  config_hash=w.hash, counted=counted)
        path = write_manual_count(self.service.config.state_path() / "manual_counts", doc)
        log.info("camera %s: live manual count by %s (%d vehicles in %.0f s) written to %s", camera,
                 body.by or "installer", len(doc["events"]), doc["duration_s"], path)
        return {"path": str(path), "document": doc}

    def changes(self) -> list[dict]:
        return [{k: v for k, v in c.items() if k != "previous"} for c in read_changes(self.service.config.state_path())]

    # -- the one action ----------------------------------------------------------------------------
    def save(self, camera: str, lines: list, zones: list, by: str, client: str | None) -> dict:
        """Validate, write the site file, apply to the running camera, log. LayoutRejected (with every problem)
        or ConfigError; the running camera is untouched unless the file was written."""
        refused = self.saving_refused()
        if refused:
            raise ConfigError(refused)
        svc = self.service
        with self._lock:
            w = self._worker(camera)
            old = w.hash
            saved = save_layout(svc.config_path, svc.config, camera, lines, zones, frame_size=self.frame_size(camera),
                                by=by, client=client, old_hash=old)
            new_cfg = saved.config
            svc.replace_config(new_cfg)
            w.set_preview([], [])  # the preview was of this edit: it is the real layout now
            done = w.apply(new_cfg.vision(new_cfg.camera(camera)))
            applied = done.wait(_APPLY_WAIT_S)
            change = {**saved.change, "new_config_hash": w.hash if applied else None, "applied": applied}
            log_change(new_cfg.state_path(), change)
        log.info("camera %s: layout saved by %s from %s into %s (backup %s); config hash %s -> %s%s", camera, by,
                 client or "?", svc.config_path, saved.backup, old, change["new_config_hash"],
                 "" if applied else " (not applied yet: the camera's worker did not answer)")
        return {k: v for k, v in change.items() if k != "previous"}

    # -- the cameras themselves ------------------------------------------------------------------
    def _resolved(self, cam):
        """``cam`` with a relative file source made relative to the site file's folder (as the service loads it)."""
        if cam.kind != "file" or Path(cam.source).expanduser().is_absolute():
            return cam
        base = Path(self.service.config_path).resolve().parent if self.service.config_path else Path.cwd()
        return cam.model_copy(update={"source": str(base / cam.source)})

    def probe(self, settings: dict) -> dict:
        """Open a source as the camera would (the crash-isolated decoder) and read its frame size:
        ``{width, height}``; CameraRejected naming the field (a bad setting, a missing file, a source that does
        not open or sends no frame)."""
        return self._probe(settings)[1]

    def _probe(self, settings: dict):
        """:meth:`probe`, and the checked camera (CameraConfig) it opened."""
        from roadside.edge.sources import capture_options

        cam, problems = check_camera(settings)
        if cam is None:
            raise CameraRejected(problems)
        run = self._resolved(cam)
        if run.kind == "file" and not Path(run.source).is_file():
            raise CameraRejected([camera_problem("source", f"no such file: {run.source}")])
        if cam.loop and run.kind != "file":
            raise CameraRejected([camera_problem("loop", f"only video files can loop (the source is a {cam.kind} source)")])
        timeout = min(_PROBE_TIMEOUT_S, self.service.config.sources.open_timeout_s)
        try:
            size = probe_frame_size(run.source, streams=True, open_timeout_s=timeout,
                                    capture_options=capture_options(cam.rtsp_transport), assume_fps=cam.fps)
        except RoadsideError as e:
            raise CameraRejected([camera_problem("source", f"cannot open it: {e}")]) from None
        if size is None:
            raise CameraRejected([camera_problem("source", "it delivered no frame")])
        return cam, {"width": size[0], "height": size[1]}

    def add_camera(self, settings: dict, by: str, client: str | None) -> dict:
        """Probe the source, add the camera (no lines or zones yet) to the site file, start it, log."""
        if self._known(settings.get("id")):
            raise ConfigError(f"camera {settings['id']!r} exists already: change its source instead")
        return self._save_camera(settings, by, client)

    def change_source(self, camera: str, settings: dict, by: str, client: str | None) -> dict:
        """Probe the new source, check the camera's lines and zones against its frame, save, restart the camera
        on it (its bins so far close as partial bins; its ``seq`` goes on), log. A source given as the page
        shows it (its password masked) is the camera's current one."""
        current = self._worker(camera).cam.source  # KeyError: unknown camera
        if settings.get("source") == redact(current) != current:
            settings = {**settings, "source": current}
        return self._save_camera({**settings, "id": camera}, by, client, changed=True)

    def _known(self, camera) -> bool:
        return isinstance(camera, str) and camera in self.service.workers

    def _save_camera(self, settings: dict, by: str, client: str | None, changed: bool = False) -> dict:
        refused = self.saving_refused()
        if refused:
            raise ConfigError(refused)
        cam, size = self._probe(settings)
        svc = self.service
        # what would keep the camera (and, after a restart, the service) from running: a model not installed
        problems = startup_problems(svc.config.model_copy(update={"cameras": [self._resolved(cam)]}), svc.model_override)
        if problems:
            raise CameraRejected([camera_problem("detector", p) for p in problems])
        with self._lock:
            old = None
            if changed:
                w = self._worker(cam.id)
                old = w.hash
                layout = validate_layout(w.vision.lines, w.vision.zones, frame_size=(size["width"], size["height"]))
                if layout.problems:
                    raise CameraRejected([camera_problem("source", f"the new source's frame does not fit the camera's "
                                                             f"layout: {p}") for p in layout.problems])
            new_cfg, change = save_camera(svc.config_path, cam, by=by, client=client, old_hash=old)
            svc.replace_config(new_cfg)
            svc.sync_cameras({cam.id} if changed else set())
            change = {**change, "frame": size, "new_config_hash": svc.workers[cam.id].hash}
            log_change(new_cfg.state_path(), change)
        log.info("camera %s: %s by %s from %s into %s (backup %s)", cam.id, change["action"], by, client or "?",
                 svc.config_path, change["backup"])
        return {k: v for k, v in change.items() if k != "previous"}

    def remove_camera(self, camera: str, by: str, client: str | None) -> dict:
        """Take the camera out of the site file and stop it (its open bins close into the outbox), log."""
        refused = self.saving_refused()
        if refused:
            raise ConfigError(refused)
        svc = self.service
        with self._lock:
            old = self._worker(camera).hash
            new_cfg, change = remove_camera(svc.config_path, camera, by=by, client=client, old_hash=old)
            svc.replace_config(new_cfg)
            svc.sync_cameras()
            log_change(new_cfg.state_path(), change)
        log.info("camera %s removed by %s from %s from %s (backup %s)", camera, by, client or "?", svc.config_path,
                 change["backup"])
        return {k: v for k, v in change.items() if k != "previous"}


def _source_settings(cam) -> dict:
    """A camera's source settings as the page shows them (a password in the URL masked: reading needs no token)."""
    out = {k: v for k, v in cam.model_dump(mode="json").items() if k in SOURCE_KEYS}
    return {**out, "source": redact(out["source"])}


__all__ = ["CalibrationView"]
