"""A manual count made on the calibration page, written in the ground-truth format of shared/data/gt
(README there): the clip, its frame rate and size, the camera's lines with their ``a`` and ``b`` (so that
``forward`` means the same), and one event per key press: ``id``, ``line``, ``direction``, ``frame`` (the
0-based index of the frame shown when the key was pressed), ``class``.

A key is pressed a little after the vehicle reaches the line; ``frame_tolerance_frames`` covers that
reaction at the slowest of the speeds used (at least the ground truth's 3 frames), so that
``roadside calibrate audit`` matches the pressed events to the pipeline's crossings.

A manual count of the live camera (:class:`LiveCount`) has no frames to refer to: each event has the
seconds since the count started (``t_s``), and the document holds, beside the manual totals, what the
service counted on the same lines over the same minutes (``counted``: its running totals at the end less
those at the start), in the same shape, for a side-by-side comparison. It is valid only if the layout did
not change during the count.
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


class LivePressedEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line: str
    direction: Literal["forward", "backward"]
    t_s: float = Field(ge=0, le=24 * 3600, description="seconds since the live count started")
    category: str = Field(alias="class")


class LiveCountStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: float = Field(gt=0, le=60, description="how long the count lasts")


class LiveCountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[LivePressedEvent]
    by: str | None = Field(None, max_length=80)


class BadEvent(ConfigError):
    """An event of a manual count names a line or class the camera does not have (or a frame past the end)."""


def _check_events(events: list, lines: list[LineConfig], categories: list[str], camera: str) -> None:
    """BadEvent naming the first event whose line or class the camera does not have."""
    ids = {ln.id for ln in lines}
    for k, e in enumerate(events):
        if e.line not in ids:
            raise BadEvent(f"events[{k}].line: {e.line!r} is not a line of camera {camera!r} ({', '.join(sorted(ids))})")
        if e.category not in categories:
            raise BadEvent(f"events[{k}].class: {e.category!r} is not a vehicle category ({', '.join(categories)})")


def _totals(events: list) -> dict:
    """``{line: {direction: {total, by_class}}}`` of the events (the ground truth's ``totals``)."""
    totals: dict = {}
    for e in events:
        d = totals.setdefault(e.line, {}).setdefault(e.direction, {"total": 0, "by_class": {}})
        d["total"] += 1
        d["by_class"][e.category] = d["by_class"].get(e.category, 0) + 1
    return totals


def counted_between(start: dict, end: dict) -> dict:
    """What a line counter counted between two of its running totals (``{line: {direction: {class: n}}}``),
    in the shape of :func:`_totals`."""
    out: dict = {}
    for line, dirs in end.items():
        for direction, by_class in dirs.items():
            before = start.get(line, {}).get(direction, {})
            diff = {c: n - before.get(c, 0) for c, n in by_class.items() if n - before.get(c, 0)}
            out.setdefault(line, {})[direction] = {"total": sum(diff.values()), "by_class": dict(sorted(diff.items()))}
    return out


def live_count_document(body: LiveCountBody, lines: list[LineConfig], categories: list[str], camera: str, *,
                        start: float, end: float, minutes: float, config_hash: str, counted: dict) -> dict:
    """A manual count of the live camera from ``start`` to ``end`` (epoch s) beside what the service counted
    (``counted``, :func:`counted_between`); BadEvent naming the first bad event."""
    _check_events(body.events, lines, categories, camera)
    events = sorted(body.events, key=lambda e: (e.t_s, e.line))
    stamp = datetime.fromtimestamp(start, timezone.utc)
    return {
        "kind": "live manual count", "clip": f"live-{camera}-{stamp.strftime('%Y%m%dT%H%M%SZ')}", "camera": camera,
        "start": stamp.isoformat(timespec="seconds"), "duration_s": round(end - start, 1), "minutes": minutes,
        "complete": end - start >= minutes * 60 - 1.0, "config_hash": config_hash,
        "lines": [{"id": ln.id, "a": list(ln.a), "b": list(ln.b)} for ln in lines],
        "events": [{"id": f"M{k:03d}", "line": e.line, "direction": e.direction, "t_s": round(e.t_s, 2),
                    "class": e.category, "ambiguous": False} for k, e in enumerate(events)],
        "totals": _totals(events), "n_events": len(events), "counted": counted,
        "method_notes": [f"manual count of the live camera on the calibration page by {body.by or 'installer'}; "
                         "`counted` is what the service counted on the same lines over the same time (its "
                         f"running totals at the end less those at the start, config hash {config_hash})"],
    }


def manual_count_document(body: ManualCountBody, lines: list[LineConfig], categories: list[str], fps: float,
                          width: int, height: int, frames: int | None, camera: str) -> dict:
    """The manual count in the ground-truth format; BadEvent naming the first bad event."""
    _check_events(body.events, lines, categories, camera)
    for k, e in enumerate(body.events):
        if frames is not None and e.frame >= frames:
            raise BadEvent(f"events[{k}].frame: {e.frame} is past the clip's end ({frames} frames)")
    slowest = max((e.speed for e in body.events), default=1.0)
    tolerance = max(3, math.ceil(REACTION_S * fps * slowest))
    events = sorted(body.events, key=lambda e: (e.frame, e.line))
    totals = _totals(events)
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


__all__ = ["BadEvent", "LiveCountBody", "LiveCountStart", "LivePressedEvent", "ManualCountBody", "PressedEvent", "counted_between",
           "live_count_document", "manual_count_document", "write_manual_count"]
