"""The configuration base of every package: strict pydantic models and a YAML loader with key-path errors.

Every model derives from :class:`Strict`, which forbids unknown keys, so a typo such as ``confidnce: 0.3``
is rejected with its key path instead of being silently ignored. :func:`load_config` turns pydantic's errors
into one readable message that names the file, the key path (``lines[1].a``) and the problem.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roadside.core.errors import ConfigError, RoadsideError

#: Names of sites, devices, cameras, lines, zones, phases, stages: safe in MQTT topics and file names.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Strict(BaseModel):
    """Base of every configuration model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


def format_location(loc: tuple[Any, ...]) -> str:
    """``("cameras", 0, "lines", 1, "a")`` -> ``cameras[0].lines[1].a``."""
    out = ""
    for part in loc:
        if isinstance(part, str) and re.match(r"^[a-z-]+\[", part):
            continue  # pydantic adds the validator kind (e.g. "function-after[...]") to locations
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration ({err.error_count()} problem(s)):"]
    for e in err.errors():
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the configuration schema; check the spelling)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        lines.append(f"  - {format_location(e['loc'])}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, model: type[M], source: str = "configuration") -> M:
    """Validate already-parsed data (a mapping) into ``model``; ConfigError naming key paths."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def read_text(path: str | Path, what: str = "configuration", error: type[RoadsideError] = ConfigError) -> str:
    """The text (UTF-8) of a ``what`` file; ``error`` naming the file when it is missing or unreadable."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{p}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{p}: cannot read {what} file: {e}") from None


def read_yaml(path: str | Path) -> Any:
    """The parsed content of a YAML (or JSON) file; ConfigError naming the file (and line) otherwise."""
    p = Path(path)
    text = read_text(p)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{p}:{where}: not valid YAML: {problem}") from None


def load_config(path: str | Path, model: type[M]) -> M:
    """Read a YAML (or JSON) file into ``model``; raise ConfigError naming the file, key and problem."""
    return parse_config(read_yaml(path), model, str(Path(path)))


__all__ = ["ConfigError", "Identifier", "Strict", "format_location", "format_validation_error", "load_config",
           "parse_config", "read_text", "read_yaml"]
