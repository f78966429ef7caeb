"""``roadside calibrate check`` and ``roadside calibrate snapshot``: the calibration page's checks and picture
from the command line, with the page's messages (edge/layout.py is the one validation of both).

``check`` validates every camera's lines and zones item by item, even when the file as a whole does not
load (so every bad item is named at once), against the frame size of the camera's video file (or
``--frame WxH`` for a stream), the detector's categories and the site's phases. ``snapshot`` runs the
pipeline on the first frames of the camera's source and writes the last one with the lines (forward
arrows), zones, boxes and track ids drawn, as the page shows them.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from roadside.core.config import read_yaml
from roadside.core.errors import ConfigError, RoadsideError
from roadside.edge.config import DetectorConfig
from roadside.edge.layout import probe_frame_size, validate_layout
from roadside.edge.site_file import is_site_file


def _categories(*detectors: object) -> list[str]:
    for d in detectors:
        if isinstance(d, dict):
            try:
                return list(DetectorConfig.model_validate(d).classes)
            except ValidationError:
                continue  # the file's own error names it
    return list(DetectorConfig().classes)


def _source_path(base: Path, source: object) -> str | None:
    if not isinstance(source, str) or "://" in source or source.isdigit():
        return None
    p = Path(source).expanduser()
    return str(p if p.is_absolute() else base / p)


def check_site(path: str | Path, camera: str | None = None, frame: tuple[int, int] | None = None) -> list[str]:
    """Every problem of the layouts in ``path`` (a site file or a vision file) as the page words it, with the
    key path; then the file's other problems. Empty: all is well."""
    from roadside.edge.service_config import edge_config_from

    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    site = is_site_file(data)
    cams = data.get("cameras") if site else [data]
    if not isinstance(cams, list):
        raise ConfigError(f"{path}: cameras: must be a list")
    problems: list[str] = []
    found = False
    for ci, cam in enumerate(cams):
        if not isinstance(cam, dict) or (camera is not None and site and cam.get("id") != camera):
            continue
        found = True
        size = frame
        src = _source_path(path.resolve().parent, cam.get("source")) if site else None
        if size is None and src is not None and Path(src).is_file():
            try:
                size = probe_frame_size(src)
            except RoadsideError as e:
                problems.append(f"cameras[{ci}].source: {e} (the frame size is unknown: lines and zones are not "
                                "checked against it)")
        layout = validate_layout(cam.get("lines") or [], cam.get("zones") or [], frame_size=size,
                                 categories=_categories(cam.get("detector"), data.get("detector")),
                                 phases=(data.get("phases") or []) if site else None)
        problems += [p.located(ci if site else None) for p in layout.problems]
    if camera is not None and not found:
        raise ConfigError(f"{path}: no camera {camera!r}")
    if not problems and site:
        edge_config_from(data, path)  # the rest of the file, as the service loads it (ConfigError)
    return problems


def snapshot(path: str | Path, out: str | Path, camera: str | None = None, frames: int = 30,
             model: str | None = None) -> dict:
    """Run the camera's pipeline over its first ``frames`` frames and write the last, annotated, to ``out``."""
    import cv2

    from roadside.core.video import VideoReader
    from roadside.edge.annotate import draw
    from roadside.edge.detector import Detector
    from roadside.edge.pipeline import CameraPipeline
    from roadside.edge.service_config import edge_config_from
    from roadside.models.store import resolve_model

    data = read_yaml(path)
    if not is_site_file(data):
        raise ConfigError(f"{path}: a snapshot needs a site file (with cameras and their sources)")
    site = edge_config_from(data, path)
    ids = [c.id for c in site.cameras]
    if camera is None and len(ids) > 1:
        raise ConfigError(f"{path}: the site file has {len(ids)} cameras ({', '.join(ids)}); choose one with --camera")
    if (camera or ids[0]) not in ids:
        raise ConfigError(f"{path}: no camera {camera!r} (cameras: {', '.join(ids)})")
    cam = site.camera(camera or ids[0])
    vision = site.vision(cam)
    detector = Detector(resolve_model(model or vision.detector.model), vision.detector)
    last = None
    with VideoReader(cam.source, preprocess=detector.preprocess, assume_fps=cam.fps) as reader:
        pipe = CameraPipeline(vision, detector, reader.info.fps)
        for fr in reader:
            res = pipe.process(fr.index, fr.time_s, fr.image, fr.tensor, fr.transform)
            last = (fr.image.copy(), res.tracks, fr.index)
            if fr.index + 1 >= frames:
                break
    if last is None:
        raise RoadsideError(f"{cam.source}: no frame could be read")
    image, tracks, index = last
    occ = {z: s.count for z, s in pipe.zones.status.items()}
    img = draw(image, tracks, vision.lines, vision.zones, pipe.counter.totals_dict(), occ,
               f"{cam.id}: frame {index}, {len(tracks)} tracks")
    if not cv2.imwrite(str(out), img):
        raise RoadsideError(f"{out}: cannot write the snapshot (a .jpg or .png path?)")
    return {"camera": cam.id, "frame": index, "width": image.shape[1], "height": image.shape[0],
            "tracks": len(tracks), "out": str(out)}


__all__ = ["check_site", "snapshot"]
