"""A manual count made on the calibration page, written in the ground-truth format of shared/data/gt
(README there): the clip, its frame rate and size, the camera's lines with their ``a`` and ``b`` (so that
``forward`` means the same), and one event per key press: ``id``, ``line``, ``direction``, ``frame`` (the
0-based index of the frame shown when the key was pressed), ``class``.

A key is pressed a little after the vehicle reaches the line; ``frame_tolerance_frames`` covers that
reaction at the slowest of the speeds used (at least the ground truth's 3 frames), so that
``roadside calibrate audit`` matches the pressed events to the pipeline's crossings.
"""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from roadside.core.errors import ConfigError
from roadside.edge.config import LineConfig

#: seconds between a vehicle reaching the line and the installer's key press, at 1x
REACTION_S = 0.6


class PressedEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line: str
    direction: Literal["forward", "backward"]
    frame: int = Field(ge=0)
    category: str = Field(alias="class")
    speed: float = Field(1.0, gt=0, le=16, description="playback speed when the key was pressed")


class ManualCountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clip: str
    events: list[PressedEvent]
    by: str | None = Field(None, max_length=80)
    complete: bool = Field(True, description="the whole clip was watched")


def manual_count_document(body: ManualCountBody, lines: list[LineConfig], categories: list[str], fps: float,
                          width: int, height: int, frames: int | None, camera: str) -> dict:
    """The manual count in the ground-truth format; ConfigError naming the first bad event."""
    ids = {ln.id for ln in lines}
    for k, e in enumerate(body.events):
        if e.line not in ids:
            raise ConfigError(f"events[{k}].line: {e.line!r} is not a line of camera {camera!r} ({', '.join(sorted(ids))})")
        if e.category not in categories:
            raise ConfigError(f"events[{k}].class: {e.category!r} is not a vehicle category ({', '.join(categories)})")
        if frames is not None and e.frame >= frames:
            raise ConfigError(f"events[{k}].frame: {e.frame} is past the clip's end ({frames} frames)")
    slowest = max((e.speed for e in body.events), default=1.0)
    tolerance = max(3, math.ceil(REACTION_S * fps * slowest))
    events = sorted(body.events, key=lambda e: (e.frame, e.line))
    totals: dict = {}
    for e in events:
        d = totals.setdefault(e.line, {}).setdefault(e.direction, {"total": 0, "by_class": {}})
        d["total"] += 1
        d["by_class"][e.category] = d["by_class"].get(e.category, 0) + 1
    return {
        "clip": body.clip, "camera": camera, "fps": fps, "frame_size": [width, height],
        **({"decoded_frame_count": frames} if frames is not None else {}),
        "frame_index_convention": "0-based index of the frame as decoded sequentially (the frame shown when the "
                                  "key was pressed)",
        "lines": [{"id": ln.id, "a": list(ln.a), "b": list(ln.b)} for ln in lines],
        "frame_tolerance_frames": tolerance,
        "events": [{"id": f"M{k:03d}", "line": e.line, "direction": e.direction, "frame": e.frame, "class": e.category,
                    "ambiguous": False} for k, e in enumerate(events)],
        "totals": totals, "n_events": len(events), "n_ambiguous": 0, "complete": body.complete,
        "method_notes": [f"manual count on the calibration page by {body.by or 'installer'} at "
                         f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}; speeds used: "
                         f"{sorted({e.speed for e in body.events})}; frame tolerance covers a {REACTION_S} s "
                         "reaction at the slowest speed"],
    }


def write_manual_count(folder: Path, doc: dict) -> Path:
    """Write the document as ``<clip stem>-<UTC time>.json`` in ``folder`` (atomically); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{Path(doc['clip']).stem}-{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


__all__ = ["ManualCountBody", "PressedEvent", "manual_count_document", "write_manual_count"]
