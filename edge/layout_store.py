"""Saving a camera's lines and zones into the site file: validated, atomic, with a backup, and logged.

:func:`save_layout` replaces one camera's ``lines`` and ``zones`` in the site file's own content (everything
else, relative paths included, stays as written; YAML comments are not kept, the backup keeps them), checks
the whole result as ``roadside edge run`` would load it, writes it atomically (a temporary file in the same
folder, fsync, rename) after copying the previous file to ``<name>.bak``, and appends who changed what and
when to the change log (``layout_changes.jsonl`` in the service's state folder), with the previous layout
in full, so nothing recorded is lost.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from roadside.core.config import read_yaml
from roadside.core.errors import ConfigError
from roadside.edge.layout import Layout, LayoutProblem, validate_layout
from roadside.edge.service_config import EdgeConfig, edge_config_from

CHANGE_LOG = "layout_changes.jsonl"


class LayoutRejected(ConfigError):
    """The layout has problems; nothing was written."""

    def __init__(self, problems: list[LayoutProblem], camera_index: int):
        self.problems = problems
        self.camera_index = camera_index
        super().__init__("; ".join(p.located(camera_index) for p in problems))


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
    data = read_yaml(path)
    cams = data.get("cameras") if isinstance(data, dict) else None
    raw_cam = next((c for c in cams or [] if isinstance(c, dict) and c.get("id") == camera_id), None)
    if raw_cam is None:
        raise ConfigError(f"{path}: the file on disk has no camera {camera_id!r} any more (edited by hand?); "
                          "nothing was saved")
    previous = {"lines": raw_cam.get("lines", []), "zones": raw_cam.get("zones", [])}
    raw_cam["lines"] = [_item_data(x) for x in layout.lines]
    raw_cam["zones"] = [_item_data(x) for x in layout.zones]
    new_config = edge_config_from(data, path)  # the whole file as the service would load it
    text = ("# roadside site configuration; lines and zones last saved by the calibration page\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120))
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    _write_atomic(path, text)
    change = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "by": by, "client": client,
        "camera": camera_id, "file": str(path), "backup": str(backup), "old_config_hash": old_hash,
        "lines": [x.id for x in layout.lines], "zones": [x.id for x in layout.zones], "previous": previous,
    }
    return SavedLayout(new_config, index, backup, change)


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


__all__ = ["CHANGE_LOG", "LayoutRejected", "SavedLayout", "check_layout", "log_change", "read_changes", "save_layout"]
