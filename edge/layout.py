"""The one validation of a camera's layout (its count lines and zones), for ``roadside edge check``,
``roadside calibrate check``, the service's start-up and the calibration page's save.

Each problem names its item (``line 'L1'``), the field (``a``, ``polygon[2]``, ``phase``) and, through
:meth:`LayoutProblem.path`, the key path in the site file (``cameras[0].lines[1].a``), so that the page can
show it next to the offending item and the command line can print it. Checked:

* the schema of each item (as in the site file: ids, finite coordinates, a segment with a length, a polygon
  with an area) -- item by item, so one bad item does not hide the others' problems;
* ids unique per camera (per kind: lines, zones);
* every point inside the frame, when the frame size is known;
* polygons not self-intersecting (no two non-adjacent edges meet, no repeated corner);
* references resolve: ``classes`` are vehicle categories of the detector (``detector.classes``), ``phase``
  one of the site's ``phases``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Literal

from pydantic import ValidationError

from roadside.core.config import error_message, format_location
from roadside.edge.config import LineConfig, ZoneConfig

Kind = Literal["line", "zone"]


@dataclass(frozen=True)
class LayoutProblem:
    """One problem of one line or zone."""

    kind: Kind
    index: int  # position in the camera's lines / zones
    item: str | None  # its id (None when the id itself is missing or not a string)
    field: str  # "a", "b", "polygon[2]", "id", "classes", "phase", "" (the item as a whole)
    message: str

    def path(self, camera_index: int | None = None) -> str:
        """The key path in the site file (``cameras[0].lines[1].a``), or in the camera (``lines[1].a``)."""
        p = f"{self.kind}s[{self.index}]" + (f".{self.field}" if self.field else "")
        return p if camera_index is None else f"cameras[{camera_index}].{p}"

    def __str__(self) -> str:
        what = f"{self.kind} {self.item!r}" if self.item is not None else f"{self.kind} #{self.index + 1}"
        return f"{what}" + (f" {self.field}" if self.field else "") + f": {self.message}"

    def located(self, camera_index: int | None = None) -> str:
        """``cameras[0].lines[1].a (line 'L1'): ...``: the key path, the item and the problem."""
        what = f"{self.kind} {self.item!r}" if self.item is not None else f"{self.kind} #{self.index + 1}"
        return f"{self.path(camera_index)} ({what}): {self.message}"

    def to_json(self, camera_index: int | None = None) -> dict:
        return {**asdict(self), "path": self.path(camera_index), "text": str(self)}


@dataclass
class Layout:
    """The valid items of a layout and the problems of the others."""

    lines: list[LineConfig]
    zones: list[ZoneConfig]
    problems: list[LayoutProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _item_id(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        return raw["id"]
    if isinstance(raw, (LineConfig, ZoneConfig)):
        return raw.id
    return None


def _parse(kind: Kind, index: int, raw: Any, problems: list[LayoutProblem]):
    model = LineConfig if kind == "line" else ZoneConfig
    if isinstance(raw, model):
        return raw
    if not isinstance(raw, dict):
        problems.append(LayoutProblem(kind, index, None, "", f"must be a mapping of keys, not {type(raw).__name__}"))
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        for e in err.errors():
            msg = error_message(e)
            loc = format_location(e["loc"])
            if loc == "(top level)":  # the item's own checks: a segment with a length, a polygon with an area
                loc = "polygon" if kind == "zone" else ""
            problems.append(LayoutProblem(kind, index, _item_id(raw), loc, msg))
        return None


def _orient(p, q, r) -> float:
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def _on_segment(p, q, r) -> bool:
    """r (collinear with p-q) lies on the segment p-q."""
    return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])


def segments_intersect(p1, p2, q1, q2) -> bool:
    """The closed segments p1-p2 and q1-q2 share at least one point."""
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and d1 != 0 and d2 != 0 and ((d3 > 0) != (d4 > 0)) and d3 != 0 and d4 != 0:
        return True
    return ((d1 == 0 and _on_segment(q1, q2, p1)) or (d2 == 0 and _on_segment(q1, q2, p2))
            or (d3 == 0 and _on_segment(p1, p2, q1)) or (d4 == 0 and _on_segment(p1, p2, q2)))


def self_intersection(polygon: list[tuple[float, float]]) -> str | None:
    """Why the closed polygon is not simple (two edges cross, a corner repeats), or None when it is simple."""
    n = len(polygon)
    for i in range(n):
        for j in range(i + 1, n):
            if tuple(polygon[i]) == tuple(polygon[j]):
                return f"corners {i} and {j} are the same point {list(polygon[i])}"
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a corner
            if segments_intersect(polygon[i], polygon[(i + 1) % n], polygon[j], polygon[(j + 1) % n]):
                return (f"the polygon crosses itself: edge {i}-{(i + 1) % n} meets edge {j}-{(j + 1) % n} "
                        "(move a corner so that no two edges cross)")
    return None


def _outside(p, frame: tuple[int, int]) -> bool:
    w, h = frame
    return not (0 <= p[0] <= w and 0 <= p[1] <= h)


def validate_layout(lines: Iterable[Any], zones: Iterable[Any], *, frame_size: tuple[int, int] | None = None,
                    categories: Iterable[str] | None = None, phases: Iterable[str] | None = None) -> Layout:
    """Check a camera's ``lines`` and ``zones`` (raw mappings as in the site file, or parsed configs).

    ``frame_size`` (width, height): every point must be inside it (unknown: not checked). ``categories``:
    the vehicle categories of the detector (``detector.classes`` keys; None: not checked). ``phases``: the
    site's phase names (a ``phase`` naming none of them is a problem; an empty list means none are declared).
    """
    problems: list[LayoutProblem] = []
    cats = None if categories is None else sorted(categories)
    phase_names = None if phases is None else list(phases)
    parsed: dict[str, list] = {"line": [], "zone": []}
    for kind, items in (("line", list(lines)), ("zone", list(zones))):
        seen: dict[str, int] = {}
        for i, raw in enumerate(items):
            item = _parse(kind, i, raw, problems)
            if item is None:
                continue
            before = len(problems)
            if item.id in seen:
                problems.append(LayoutProblem(kind, i, item.id, "id", f"the id {item.id!r} is already used by "
                                              f"{kind} #{seen[item.id] + 1}; ids must be unique"))
            else:
                seen[item.id] = i
            points = [("a", item.a), ("b", item.b)] if kind == "line" else [
                (f"polygon[{k}]", p) for k, p in enumerate(item.polygon)]
            if frame_size is not None:
                for field, p in points:
                    if _outside(p, frame_size):
                        problems.append(LayoutProblem(kind, i, item.id, field, f"{[round(v, 1) for v in p]} is outside "
                                                      f"the {frame_size[0]}x{frame_size[1]} frame"))
            if kind == "zone":
                why = self_intersection(item.polygon)
                if why:
                    problems.append(LayoutProblem(kind, i, item.id, "polygon", why))
            if cats is not None and item.classes is not None:
                if not item.classes:
                    problems.append(LayoutProblem(kind, i, item.id, "classes", "an empty list counts nothing; "
                                                  "leave it out (null) to count every category"))
                for k, c in enumerate(item.classes):
                    if c not in cats:
                        problems.append(LayoutProblem(kind, i, item.id, f"classes[{k}]", f"{c!r} is not a vehicle "
                                                      f"category of the detector ({', '.join(cats)})"))
            if phase_names is not None and item.phase is not None and item.phase not in phase_names:
                known = ", ".join(phase_names) if phase_names else "none are declared: list them under `phases:`"
                problems.append(LayoutProblem(kind, i, item.id, "phase", f"{item.phase!r} is not one of the site's "
                                              f"phases ({known})"))
            if len(problems) == before:
                parsed[kind].append(item)
    return Layout(parsed["line"], parsed["zone"], problems)


def probe_frame_size(source: str, *, streams: bool = False, open_timeout_s: float = 30.0,
                     capture_options: str | None = None, assume_fps: float | None = None) -> tuple[int, int] | None:
    """The frame size of a video source, opened in the crash-isolated decoder; VideoError when it cannot be
    opened. Streams and devices are probed only with ``streams`` (else None): they may simply be off."""
    if not streams and ("://" in source or source.isdigit()):
        return None
    from roadside.core.video import VideoReader

    reader = VideoReader(source, slots=1, open_timeout_s=open_timeout_s,
                         stall_timeout_s=min(open_timeout_s, 20.0), capture_options=capture_options,
                         assume_fps=assume_fps)
    try:
        return reader.info.width, reader.info.height
    finally:
        reader.close(wait_s=1.0)


__all__ = ["Layout", "LayoutProblem", "probe_frame_size", "segments_intersect", "self_intersection", "validate_layout"]
