"""``counts.json``: what ``roadside edge replay`` writes and ``roadside calibrate score`` / ``evaluate`` read.

:class:`CountsFile` is the one description of that file. Replay fills every field; counts made elsewhere
(the baseline comparison, a hand-written test case) may hold only ``lines`` and ``events``, which is all
that scoring needs. Reading validates the file and names it, with the key path, when something is wrong.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roadside.core.config import format_location, read_text
from roadside.core.errors import RoadsideError
from roadside.core.payloads import Direction, DirectionCounts
from roadside.edge.config import VisionConfig
from roadside.edge.counting import CrossingEvent, IntervalBin

#: validation problems named in the one-line message of a bad file
_SHOWN_PROBLEMS = 3


class CountsFileError(RoadsideError):
    """A counts file that cannot be read or is not in the format ``roadside edge replay`` writes."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CrossingRecord(_Record):
    """One counted crossing of a count line."""

    line: str = Field(description="count line id")
    direction: Direction = Field(description="forward or backward (see edge/counting.py)")
    frame: int = Field(ge=0, description="first frame at or after the moment the anchor reached the line")
    time_s: float | None = Field(None, description="media time of that frame (s)")
    category: str = Field(alias="class", description="vehicle category")
    track_id: int | None = Field(None, description="the tracker's id of the vehicle")
    t_along_line: float | None = Field(None, description="where it crossed: 0 at the line's a, 1 at its b")
    detected_frame: int | None = Field(None, description="frame at which the counter counted it (>= frame)")

    @classmethod
    def of(cls, ev: CrossingEvent) -> "CrossingRecord":
        return cls(line=ev.line, direction=ev.direction, frame=ev.frame, time_s=round(ev.time_s, 3),
                   category=ev.category, track_id=ev.track_id, t_along_line=round(ev.t_along_line, 4),
                   detected_frame=ev.detected_frame)


class ZoneChange(_Record):
    """A zone's occupancy changed at this frame."""

    zone: str
    frame: int = Field(ge=0)
    time_s: float
    occupied: bool
    count: int = Field(ge=0, description="vehicles in the zone after the change")


class ZoneLog(_Record):
    changes: list[ZoneChange] = Field(default_factory=list)
    completed_dwell_s: list[float] = Field(default_factory=list, description="dwell time of every vehicle that "
                                                                            "left the zone (s)")


class CountsFile(_Record):
    """The counts of one replay. Deterministic for the same video, configuration and model (no wall-clock
    values: the run's timing goes to ``run.json``)."""

    video: str | None = Field(None, description="the replayed video, as given")
    frames: int | None = Field(None, ge=0, description="frames decoded and processed")
    fps: float | None = Field(None, gt=0, description="the video's frame rate")
    width: int | None = Field(None, ge=0)
    height: int | None = Field(None, ge=0)
    duration_s: float | None = Field(None, ge=0, description="frames / fps")
    model: str | None = Field(None, description="the detector's name")
    model_family: str | None = Field(None, description="the detector's family (ultralytics, yolox, ...)")
    config_hash: str | None = Field(None, description="hash of the vision configuration (as in counts messages)")
    complete: bool = Field(True, description="false when decoding failed part-way: the counts cover the frames "
                                             "up to the failure")
    error: str | None = Field(None, description="the decoding error of an incomplete run")
    lines: dict[str, DirectionCounts] = Field(description="totals: count line -> vehicles per direction and "
                                                          "category")
    events: list[CrossingRecord] = Field(default_factory=list, description="every counted crossing, in frame order")
    bins: list[IntervalBin] = Field(default_factory=list, description="interval bins on media time")
    zones: dict[str, ZoneLog] = Field(default_factory=dict, description="zone id -> occupancy changes and dwells")
    config: VisionConfig | None = Field(None, description="the vision configuration the counts were made with")

    def to_json_data(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def parse(cls, data: object, source: str) -> "CountsFile":
        """Validate JSON data (already parsed); CountsFileError naming ``source`` and the key paths."""
        if isinstance(data, CountsFile):
            return data
        if not isinstance(data, dict):
            raise CountsFileError(f"{source}: counts must be a JSON object, not {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise CountsFileError(_problems(err, source)) from None

    @classmethod
    def read(cls, path: str | Path) -> "CountsFile":
        p = Path(path)
        text = read_text(p, "counts", CountsFileError)
        try:
            return cls.model_validate_json(text)
        except ValidationError as err:
            raise CountsFileError(_problems(err, str(p))) from None


def _problems(err: ValidationError, source: str) -> str:
    errors = err.errors()
    if errors and errors[0]["type"] == "json_invalid":
        return f"{source}: cannot read the counts as JSON: {errors[0]['msg']}"
    shown = "; ".join(f"{format_location(e['loc'])}: "
                      + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"]) for e in errors[:_SHOWN_PROBLEMS])
    more = f" (and {len(errors) - _SHOWN_PROBLEMS} more)" if len(errors) > _SHOWN_PROBLEMS else ""
    return f"{source}: not a counts file of `roadside edge replay`: {shown}{more}"


__all__ = ["CountsFile", "CountsFileError", "CrossingRecord", "ZoneChange", "ZoneLog"]
