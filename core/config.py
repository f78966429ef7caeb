"""The configuration base of every package: strict pydantic models and a YAML loader with key-path errors.

Every model derives from :class:`Strict`, which forbids unknown keys, so a typo such as ``confidnce: 0.3``
is rejected with its key path instead of being silently ignored. :func:`load_config` turns pydantic's errors
into one readable message that names the file, the key path (``lines[1].a``) and the problem.
"""
from __future__ import annotations

import functools
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from roadside.core.errors import ConfigError, RoadsideError

#: Names of sites, devices, cameras, lines, zones, phases, stages: safe in MQTT topics and file names.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]

#: A configuration file larger than this is not a configuration (a wrong file, or an attack on the parser).
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def bool_where_number(value: Any, annotation: Any) -> bool:
    """True when ``value`` holds a YAML/JSON true/false where ``annotation`` wants a number (pydantic's lax
    mode would silently read ``port: true`` as port 1)."""
    return bool_location(value, annotation) is not None


def bool_location(value: Any, annotation: Any) -> str | None:
    """Where inside ``value`` a true/false stands for a number (``""``: the value itself, ``"[0][1]"``,
    ``"[car]"``), or None when there is none."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return bool_location(value, args[0])
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, bool):
            return "" if not any(_admits_bool(a) for a in args) and any(_is_number(a) for a in args) else None
        for a in args:
            if typing.get_origin(a) in (list, tuple, dict):
                loc = bool_location(value, a)
                if loc is not None:
                    return loc
        return None
    if isinstance(value, bool):
        return "" if _is_number(annotation) and not _admits_bool(annotation) else None
    if origin in (list, tuple, set, frozenset) and isinstance(value, (list, tuple)):
        items = args if origin is tuple and args and args[-1] is not Ellipsis else (args[:1] * len(value))
        for i, (v, a) in enumerate(zip(value, items)):
            loc = bool_location(v, a)
            if loc is not None:
                return f"[{i}]{loc}"
        return None
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        for k, v in value.items():
            loc = bool_location(v, args[1])
            if loc is not None:
                return f"[{k}]{loc}"
    return None


@functools.lru_cache(maxsize=1024)
def _may_hold_number(tp: Any) -> bool:
    """Whether a value of type ``tp`` can hold a number anywhere (if not, nothing needs checking)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _may_hold_number(args[0])
    if args and origin is not Literal:
        return any(_may_hold_number(a) for a in args if a is not Ellipsis)
    return _is_number(tp)


def _is_number(tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _is_number(args[0])
    if origin is Literal:
        return any(type(a) in (int, float) for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_is_number(a) for a in args)
    return tp in (int, float)


def _admits_bool(tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _admits_bool(args[0])
    if origin is Literal:
        return any(isinstance(a, bool) for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_admits_bool(a) for a in args)
    return tp in (bool, Any, object)


class NumbersNotBooleans(BaseModel):
    """A model where true/false is never read as a number (configuration and payloads)."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, (bool, list, tuple, dict)):
            return value  # the common case, kept cheap: payloads are parsed at the input rate
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return value
        try:
            relevant = _may_hold_number(field.annotation)
        except TypeError:  # an unhashable annotation: check it the long way
            relevant = True
        loc = bool_location(value, field.annotation) if relevant else None
        if loc is not None:
            raise ValueError(f"item {loc}: expected a number, got true/false" if loc else
                             "expected a number, got true/false")
        return value


class Strict(NumbersNotBooleans):
    """Base of every configuration model: unknown keys are errors, values are immutable, and true/false is
    never read as a number."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


def check_ordered(model: BaseModel, *pairs: tuple[str, str]) -> None:
    """For a model validator: each ``(low, high)`` pair of fields must have low <= high, or a ValueError
    names the first pair that does not."""
    for low, high in pairs:
        if getattr(model, low) > getattr(model, high):
            raise ValueError(f"{low} must not exceed {high}")


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


def error_message(e: dict) -> str:
    """The message of one error of a ValidationError, as configuration errors say it."""
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        return "unknown key (not part of the configuration schema; check the spelling)"
    if e["type"] == "string_pattern_mismatch" and (e.get("ctx") or {}).get("pattern") == IDENTIFIER_PATTERN:
        return (f"{e.get('input')!r} is not a valid name: use letters, digits, `_`, `.` and `-` (starting with a "
                "letter or digit, at most 64 characters)")
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration ({err.error_count()} problem(s)):"]
    for e in err.errors():
        lines.append(f"  - {format_location(e['loc'])}: {error_message(e)}")
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
    except RecursionError:
        raise ConfigError(f"{source}: the data is nested too deeply to be a configuration") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last
    one silently, so a pasted second ``detector:`` block would quietly replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        self.flatten_mapping(node)
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                seen = first.get(key)
            except TypeError:  # an unhashable key: let the base class report it
                break
            if seen is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping (first on line {seen.start_mark.line + 1})",
                    key_node.start_mark)
            first[key] = key_node
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML (or JSON) text; ConfigError naming ``source`` (and the line) for anything wrong with it."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {len(text)} bytes is too large for a configuration file "
                          f"(at most {MAX_CONFIG_BYTES}); is it the right file?")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506  (a safe loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{source}:{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the data is nested too deeply to be a configuration") from None
    except ValueError as e:  # e.g. an integer of thousands of digits
        raise ConfigError(f"{source}: a value cannot be read: {e}") from None


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
    if p.is_file() and p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: {p.stat().st_size} bytes is too large for a configuration file "
                          f"(at most {MAX_CONFIG_BYTES}); is it the right file?")
    return parse_yaml(read_text(p), str(p))


def load_config(path: str | Path, model: type[M]) -> M:
    """Read a YAML (or JSON) file into ``model``; raise ConfigError naming the file, key and problem."""
    return parse_config(read_yaml(path), model, str(Path(path)))


__all__ = ["ConfigError", "error_message", "Identifier", "MAX_CONFIG_BYTES", "NumbersNotBooleans", "Strict", "bool_where_number",
           "format_location", "format_validation_error", "load_config", "parse_config", "parse_yaml", "read_text",
           "read_yaml"]
