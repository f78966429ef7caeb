"""Saving the calibration page's changes into the site file: validated, atomic, with a backup, and logged.

:func:`save_layout` replaces one camera's ``lines`` and ``zones``; :func:`save_camera` adds a camera or
changes its source; :func:`remove_camera` takes one out. Each edits the site file's own content through
ruamel.yaml's round-trip mode, so everything else stays as written: comments, key order, quoting,
indentation, relative paths. Each checks the whole result as ``roadside edge run`` would load it, writes it
atomically (a temporary file in the same folder, fsync, rename) after copying the previous file to
``<name>.bak``, and returns the change for the change log (``layout_changes.jsonl`` in the service's state
folder) with what it replaced in full, so nothing recorded is lost.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from roadside.core.config import error_message, format_location, parse_yaml, read_yaml
from roadside.core.errors import ConfigError
from roadside.core.redact import redact
from roadside.edge.layout import Layout, LayoutProblem, validate_layout
from roadside.edge.service_config import CameraConfig, EdgeConfig, edge_config_from

CHANGE_LOG = "layout_changes.jsonl"


class LayoutRejected(ConfigError):
    """The layout has problems; nothing was written."""

    def __init__(self, problems: list[LayoutProblem], camera_index: int):
        self.problems = problems
        self.camera_index = camera_index
        super().__init__("; ".join(p.located(camera_index) for p in problems))


class CameraRejected(ConfigError):
    """A camera's settings have problems (each ``{field, message, text}``); nothing was written."""

    def __init__(self, problems: list[dict]):
        self.problems = problems
        super().__init__("; ".join(p["text"] for p in problems))


@dataclass
class SavedLayout:
    config: EdgeConfig
    camera_index: int
    backup: Path
    change: dict = field(default_factory=dict)


def _item_data(item) -> dict:
    return item.model_dump(mode="json", exclude_none=True)


def check_layout(config: EdgeConfig, camera_id: str, lines: list, zones: list,
                 frame_size: tuple[int, int] | None) -> tuple[int, Layout]:
    """The camera's index and the validation of ``lines`` and ``zones`` against ``config`` (its detector's
    categories and the site's phases) and the frame size."""
    ids = [c.id for c in config.cameras]
    if camera_id not in ids:
        raise ConfigError(f"no camera {camera_id!r} (cameras: {', '.join(ids)})")
    cam = config.camera(camera_id)
    return ids.index(camera_id), validate_layout(lines, zones, frame_size=frame_size,
                                                 categories=config.vision(cam).detector.classes, phases=config.phases)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _mapping_indent(text: str) -> int:
    """How far the file indents a mapping inside a mapping (the first key holding one tells; default 2)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for here, nxt in zip(lines, lines[1:]):
        if re.fullmatch(r"(\s*)[^\s#-][^:#]*:\s*(#.*)?", here) and not nxt.lstrip().startswith("-"):
            step = (len(nxt) - len(nxt.lstrip())) - (len(here) - len(here.lstrip()))
            if step > 0:
                return step
    return 2


def _round_trip(text: str):
    """A ruamel.yaml round-trip loader/dumper set to the file's own indentation, and the file's content."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    _, seq_indent, dash_offset = load_yaml_guess_indent(text)
    mapping = _mapping_indent(text)
    rt = YAML()  # round-trip: comments, key order and quoting are kept
    rt.preserve_quotes = True
    rt.width = 120
    rt.indent(mapping=mapping, sequence=seq_indent or mapping + 2, offset=dash_offset if seq_indent else mapping)
    return rt, rt.load(text)


def _flow_leaves(value: Any) -> Any:
    """``value`` (plain JSON-like data) for the round-trip dumper: lists of numbers or strings (points,
    classes) in flow style, ``[330, 95]``, as a person writes them."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        return CommentedMap((k, _flow_leaves(v)) for k, v in value.items())
    if isinstance(value, list):
        seq = CommentedSeq(_flow_leaves(v) for v in value)
        if all(not isinstance(v, (dict, list)) for v in value) or all(
                isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v) for v in value):
            seq.fa.set_flow_style()
        return seq
    return value


def _merge_items(seq: Any, items: list[dict]) -> Any:
    """The round-trip list ``seq`` (a camera's lines or zones) holding ``items`` (plain data): an item whose id
    it had is updated in place, so that the comments beside it and its unchanged values stay as written;
    new items are added, removed ones go (with their comments)."""
    if not isinstance(seq, list):
        return _flow_leaves(items)
    old = {m.get("id"): m for m in seq if isinstance(m, dict)}
    # the comment lines above an item (but the first's, which belong to the list's key) go by position
    above = {m.get("id"): seq.ca.items[i] for i, m in enumerate(seq) if isinstance(m, dict) and i in seq.ca.items}
    kept = []
    for item in items:
        raw = old.get(item["id"])
        if raw is None:
            kept.append(_flow_leaves(item))
            continue
        for k in [k for k in raw if k not in item]:
            del raw[k]
        for k, v in item.items():
            if k not in raw or _plain(raw[k]) != v:
                raw[k] = _flow_leaves(v)
        kept.append(raw)
    while seq:
        seq.pop()
    seq.ca.items.clear()
    seq.extend(kept)
    for i, m in enumerate(kept):
        if isinstance(m, dict) and m.get("id") in above:
            seq.ca.items[i] = above[m["id"]]
    if not seq:
        seq.fa.set_flow_style()  # `zones: []`
    return seq


def edit_site_file(path: str | Path, edit: Callable[[Any], dict]) -> tuple[EdgeConfig, Path, dict]:
    """Apply ``edit`` to the site file's round-trip content (a mapping; it returns what it replaced, for the
    change log, or raises ConfigError), check the result as the service would load it, back the file up to
    ``<name>.bak`` and write the result atomically. The new configuration, the backup and ``edit``'s answer."""
    path = Path(path)
    read_yaml(path)  # the file as the service reads it (one error for a duplicate key, a bad line, ...)
    rt, data = _round_trip(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys; nothing was saved")
    replaced = edit(data)
    out = io.StringIO()
    rt.dump(data, out)
    text = out.getvalue()
    new_config = edge_config_from(parse_yaml(text, str(path)), path)  # the whole file as the service would load it
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    _write_atomic(path, text)
    return new_config, backup, replaced


def _cameras_of(data: Any, path: Path) -> list:
    cams = data.get("cameras")
    if cams is None:
        from ruamel.yaml.comments import CommentedSeq

        cams = data["cameras"] = CommentedSeq()
    if not isinstance(cams, list):
        raise ConfigError(f"{path}: cameras: must be a list, not {type(cams).__name__}; nothing was saved")
    return cams


def _find_camera(cams: list, camera_id: str):
    """The round-trip entry of camera ``camera_id`` in the site file's camera list, or None."""
    return next((c for c in cams if isinstance(c, dict) and c.get("id") == camera_id), None)


def _raw_camera(cams: list, camera_id: str, path: Path):
    raw = _find_camera(cams, camera_id)
    if raw is None:
        raise ConfigError(f"{path}: the file on disk has no camera {camera_id!r} any more (edited by hand?); "
                          "nothing was saved")
    return raw


def _plain(value: Any) -> Any:
    """Round-trip data as plain JSON data (for the change log)."""
    return json.loads(json.dumps(value, default=str))


def _change(by: str, client: str | None, camera_id: str, path: Path, backup: Path, old_hash: str | None,
            **what) -> dict:
    return {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "by": by, "client": client,
            "camera": camera_id, "file": str(path), "backup": str(backup), "old_config_hash": old_hash, **what}


def save_layout(path: str | Path, config: EdgeConfig, camera_id: str, lines: list, zones: list, *,
                frame_size: tuple[int, int] | None, by: str, client: str | None = None,
                old_hash: str | None = None) -> SavedLayout:
    """Validate and write ``camera_id``'s ``lines`` and ``zones`` (raw mappings) into the site file ``path``.

    LayoutRejected (each problem with its item and field) when the layout is invalid; ConfigError when the
    site file changed on disk into something invalid. Nothing is written unless everything is valid.
    """
    path = Path(path)
    index, layout = check_layout(config, camera_id, lines, zones, frame_size)
    if layout.problems:
        raise LayoutRejected(layout.problems, index)

    def edit(data) -> dict:
        raw_cam = _raw_camera(_cameras_of(data, path), camera_id, path)
        previous = _plain({"lines": raw_cam.get("lines", []), "zones": raw_cam.get("zones", [])})
        raw_cam["lines"] = _merge_items(raw_cam.get("lines"), [_item_data(x) for x in layout.lines])
        raw_cam["zones"] = _merge_items(raw_cam.get("zones"), [_item_data(x) for x in layout.zones])
        return previous

    new_config, backup, previous = edit_site_file(path, edit)
    change = _change(by, client, camera_id, path, backup, old_hash, action="layout",
                     lines=[x.id for x in layout.lines], zones=[x.id for x in layout.zones], previous=previous)
    return SavedLayout(new_config, index, backup, change)


#: the camera settings the calibration page sets (the rest of a camera's entry stays as written)
SOURCE_KEYS = ("source", "loop", "realtime", "rtsp_transport", "fps")


def camera_problem(field: str, message: str) -> dict:
    """One problem of a camera's settings, as the page shows it next to the field."""
    return {"field": field, "message": message, "text": f"{field}: {message}"}


def check_camera(settings: dict) -> tuple[CameraConfig | None, list[dict]]:
    """A camera's ``id`` and source settings (:data:`SOURCE_KEYS`) checked as the site file's schema checks
    them: the camera, or each problem with its field."""
    unknown = sorted(set(settings) - {"id", *SOURCE_KEYS})
    problems = [camera_problem(k, f"not a camera setting the page sets ({', '.join(('id',) + SOURCE_KEYS)})")
                for k in unknown]
    try:
        cam = CameraConfig.model_validate({k: v for k, v in settings.items() if k not in unknown})
    except ValidationError as err:
        for e in err.errors():
            problems.append(camera_problem(format_location(e["loc"]), error_message(e)))
        return None, problems
    return (cam if not problems else None), problems


def save_camera(path: str | Path, camera: CameraConfig, *, by: str, client: str | None = None,
                old_hash: str | None = None) -> tuple[EdgeConfig, dict]:
    """Add ``camera`` (no lines or zones yet) to the site file, or, when the file has a camera of its id,
    change that camera's source settings (its lines, zones and own settings stay). The new configuration and
    the change (with the previous source settings in full)."""
    path = Path(path)
    settings = camera.model_dump(mode="json", include={"id", *SOURCE_KEYS}, exclude_defaults=True)
    settings["id"] = camera.id

    def edit(data) -> dict:
        cams = _cameras_of(data, path)
        raw = _find_camera(cams, camera.id)
        if raw is None:
            cams.append(_flow_leaves({**settings, "lines": [], "zones": []}))
            return {"added": True}
        previous = _plain({k: raw[k] for k in SOURCE_KEYS if k in raw})
        for k in SOURCE_KEYS:
            if k in settings:
                raw[k] = settings[k]
            elif k in raw:
                del raw[k]
        return {"added": False, "source": previous}

    new_config, backup, replaced = edit_site_file(path, edit)
    change = _change(by, client, camera.id, path, backup, old_hash,  # the log is read without the token
                     action="camera added" if replaced["added"] else "camera source changed",
                     source={**settings, "source": redact(settings["source"])}, previous=replaced.get("source"))
    return new_config, change


def remove_camera(path: str | Path, camera_id: str, *, by: str, client: str | None = None,
                  old_hash: str | None = None) -> tuple[EdgeConfig, dict]:
    """Take camera ``camera_id`` out of the site file; the new configuration and the change (with the camera's
    whole entry, lines and zones included, as it was)."""
    path = Path(path)

    def edit(data) -> dict:
        cams = _cameras_of(data, path)
        raw = _raw_camera(cams, camera_id, path)
        previous = _plain(raw)
        cams.remove(raw)
        if not cams:
            cams.fa.set_flow_style()  # `cameras: []`
        return previous

    new_config, backup, previous = edit_site_file(path, edit)
    return new_config, _change(by, client, camera_id, path, backup, old_hash, action="camera removed",
                               previous=previous)


def log_change(state_dir: Path, change: dict) -> None:
    """Append one change to the change log (JSON lines) in ``state_dir``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / CHANGE_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(change, sort_keys=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_changes(state_dir: Path, last: int = 50) -> list[dict]:
    p = state_dir / CHANGE_LOG
    if not p.exists():
        return []
    rows = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
    return rows[-last:]


__all__ = ["CHANGE_LOG", "CameraRejected", "LayoutRejected", "SOURCE_KEYS", "SavedLayout", "camera_problem", "check_camera", "check_layout",
           "edit_site_file", "log_change", "read_changes", "remove_camera", "save_camera", "save_layout"]
