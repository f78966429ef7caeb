"""Issue 11, items 9 and 10: every number of every configuration has physical bounds, and extreme values are
one clear error naming the key path, never a traceback or a value that breaks the service at run time.

* structurally: every numeric leaf of the edge's site file and of the controller's file (nested models,
  lists, tuples and dict values included) declares a finite lower and upper bound;
* by fuzzing: every numeric key of a complete real configuration (the built-in edge configuration with
  every default written out, the controller example) gets an extreme value (inf, NaN, +-1e308, 10**30, an
  integer of 5000 digits, true) in a YAML file, and the product loader refuses it naming that key;
* through the command line: ``counting.bins_s: [1e-9]`` (which once never advanced the bin clock and ate
  2.4 GB) is exit status 2 with one line naming the key.
"""
from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import types
import typing
from pathlib import Path

import annotated_types as at
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from helpers.controller import EXAMPLE
from roadside.controller.config import ControllerConfig, load_controller_config
from roadside.core.config import format_location
from roadside.core.errors import ConfigError
from roadside.edge.service_config import EdgeConfig, load_edge_config


# -- every number is bounded -----------------------------------------------------------------------------
def _bounds(metadata) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in metadata:
        if isinstance(m, (at.Ge, at.Gt)):
            lo = m.ge if isinstance(m, at.Ge) else m.gt
        elif isinstance(m, (at.Le, at.Lt)):
            hi = m.le if isinstance(m, at.Le) else m.lt
        elif isinstance(m, at.Interval):
            lo, hi = (m.ge if m.ge is not None else m.gt), (m.le if m.le is not None else m.lt)
    return lo, hi


def unbounded_numbers(model: type[BaseModel], where: str = "", seen: set | None = None) -> list[str]:
    """Numeric leaves of ``model`` (recursively) without a finite lower and upper bound."""
    seen = set() if seen is None else seen
    if model in seen:
        return []
    seen.add(model)
    out: list[str] = []

    def leaf(tp, metadata, path):
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            return leaf(args[0], [*metadata, *args[1:], *[m for a in args[1:] for m in getattr(a, "metadata", [])]],
                        path)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out.extend(unbounded_numbers(tp, path, seen))
            return
        if tp in (int, float):
            lo, hi = _bounds(metadata)
            if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
                out.append(f"{path} ({tp.__name__}, bounds {lo}..{hi})")
            return
        if origin in (typing.Union, types.UnionType):  # Optional[...]: the field's bounds apply to the number
            for a in args:
                if a is not type(None):
                    leaf(a, metadata, path)
            return
        items = args[1:] if origin is dict else args
        for a in items:
            if a is not Ellipsis and a is not type(None):
                leaf(a, [], f"{path}[]" if origin in (list, tuple, dict) else path)

    for name, f in model.model_fields.items():
        leaf(f.annotation, f.metadata, f"{where}.{name}" if where else name)
    return out


@pytest.mark.parametrize("model", [EdgeConfig, ControllerConfig])
def test_every_number_of_every_configuration_has_physical_bounds(model):
    assert unbounded_numbers(model) == []


# -- extreme values are one clear error naming the key -------------------------------------------------------
EXTREMES = [math.inf, -math.inf, math.nan, 1e308, -1e308, 10**30, -(10**30), "__HUGE__", True]
HUGE = "1" * 5000  # an integer of 5000 digits (beyond Python's 4300-digit conversion limit)


def _numeric_paths(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numeric_paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numeric_paths(v, path + (i,))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path


def _complete(loaded: BaseModel) -> dict:
    """A configuration with every default written out, as a user could write it."""
    data = loaded.model_dump(mode="json", exclude_none=True)
    data.get("mqtt", {}).pop("password", None)
    data.get("api", {}).pop("token", None)
    return data


EDGE = _complete(load_edge_config())
CONTROLLER = _complete(load_controller_config(EXAMPLE))
CASES = [("edge", p) for p in _numeric_paths(EDGE)] + [("controller", p) for p in _numeric_paths(CONTROLLER)]
WORK = Path(tempfile.mkdtemp(prefix="roadside-config-fuzz-"))


def _load(kind: str, data: dict):
    f = WORK / f"{kind}.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False).replace("__HUGE__", HUGE))
    return load_edge_config(f) if kind == "edge" else load_controller_config(f)


def test_the_complete_configurations_load_as_written():
    assert _load("edge", EDGE) and _load("controller", CONTROLLER)
    assert len(CASES) > 60  # every numeric key of both files takes part


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), value=st.sampled_from(EXTREMES))
def test_an_extreme_value_anywhere_is_one_error_naming_its_key(case, value):
    kind, path = case
    import copy

    data = copy.deepcopy(EDGE if kind == "edge" else CONTROLLER)
    d = data
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        _load(kind, data)
    msg = str(err.value)
    # the key path (for an item of a list of numbers: at least the list's), or for an integer too long
    # to parse, the line it is on
    # (true/false inside a list or mapping of numbers: the field's path, then the item in it)
    named = format_location(path) in msg or any(
        f"{format_location(path[:n])}: item {''.join(f'[{p}]' for p in path[n:])}:" in msg for n in range(1, len(path)))
    assert named or "digits" in msg, msg


def test_a_bin_of_a_nanosecond_is_refused_by_check_config(tmp_path):
    site = dict(EDGE)
    site["counting"] = {"bins_s": [1e-9]}
    f = tmp_path / "site.yaml"
    f.write_text(yaml.safe_dump(site, sort_keys=False))
    r = subprocess.run([sys.executable, "-m", "roadside.core.cli", "edge", "check", "--config", str(f)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "counting.bins_s[0]" in r.stderr and "Traceback" not in r.stderr
