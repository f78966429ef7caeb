"""The configuration reference of the edge service, generated from the JSON Schema of its models.

Every field of :class:`~roadside.edge.service_config.EdgeConfig` (and of the vision models it holds) has a
``Field(description=...)``; :func:`reference_table` turns the schema into the Markdown table that
``edge/README_SERVICE.md`` holds between ``<!-- reference:config -->`` markers (``roadside edge schema
--update-doc`` rewrites it), so the document cannot drift from the code.
"""
from __future__ import annotations

import json
import math
import yaml
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from roadside.core.config import Identifier

_IDENTIFIER = TypeAdapter(Identifier).json_schema()["pattern"]


class _WithFactoryDefaults(GenerateJsonSchema):
    """pydantic leaves out defaults made by a ``default_factory``; a reference wants them."""

    def get_default_value(self, schema):
        if "default_factory" in schema and not schema.get("default_factory_takes_data"):
            return schema["default_factory"]()
        return super().get_default_value(schema)


def config_schema() -> dict:
    """JSON Schema of the site configuration, defaults included."""
    from roadside.edge.service_config import EdgeConfig

    return EdgeConfig.model_json_schema(schema_generator=_WithFactoryDefaults)


def _deref(schema: dict, spec: dict) -> tuple[str | None, dict]:
    """(name of the model, its schema) when ``spec`` is a model or an optional model; (None, spec) otherwise."""
    options = [s for s in spec.get("anyOf", [spec]) if s.get("type") != "null"]
    if len(options) == 1 and "$ref" in options[0]:
        name = options[0]["$ref"].rsplit("/", 1)[-1]
        return name, schema["$defs"][name]
    return None, spec


def _number(v: float) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() and not math.isinf(v) else str(v)


def _values(schema: dict, spec: dict) -> str:
    """What a leaf may hold, from its JSON Schema: type, range, choices."""
    options = [s for s in spec.get("anyOf", [spec]) if s.get("type") != "null"]
    if len(options) > 1:
        return " or ".join(_values(schema, o) for o in options)
    s = options[0] if options else spec
    if "enum" in s:
        return ", ".join(f"`{json.dumps(v) if not isinstance(v, str) else v}`" for v in s["enum"])
    if "const" in s:
        return f"`{s['const']}`"
    kind = s.get("type")
    if kind == "array" and "prefixItems" in s:
        return "`[x, y]`" if len(s["prefixItems"]) == 2 else f"list of {len(s['prefixItems'])}"
    if kind == "array":
        inner = s.get("items", {})
        text = f"list of {_values(schema, inner) if inner else 'values'}"
        if "minItems" in s:
            text += f" ({s['minItems']} or more)"
        return text
    if kind == "object":
        pattern = s.get("patternProperties") or {}
        inner = next(iter(pattern.values()), s.get("additionalProperties"))
        return f"mapping to {_values(schema, inner)}" if isinstance(inner, dict) and inner else "mapping"
    if kind == "string" and s.get("format") == "password":
        return "string (secret)"
    if kind == "string" and "pattern" in s:
        return "identifier" if s["pattern"] == _IDENTIFIER else f"string matching `{s['pattern']}`"
    bounds = []
    if "minimum" in s:
        bounds.append(f"≥ {_number(s['minimum'])}")
    if "exclusiveMinimum" in s:
        bounds.append(f"> {_number(s['exclusiveMinimum'])}")
    if "maximum" in s:
        bounds.append(f"≤ {_number(s['maximum'])}")
    if "exclusiveMaximum" in s:
        bounds.append(f"< {_number(s['exclusiveMaximum'])}")
    if kind == "string" and "minLength" in s:
        bounds.append("not empty")
    return " ".join([kind or "value", ", ".join(bounds)]).strip()


def _default(spec: dict, required: bool) -> str:
    if required:
        return "required"
    if "default" not in spec:
        return ""
    v = spec["default"]
    if v is None:
        return "none"
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, (int, float)):
        return f"`{_number(v)}`"
    if isinstance(v, str):
        return f"`{v}`"
    return f"`{yaml.safe_dump(v, default_flow_style=True, sort_keys=False, width=10_000).strip()}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference_rows(schema: dict) -> list[tuple[str, str, str, str]]:
    """(key, values, default, meaning) for every setting, depth first in the models' field order. A model met
    a second time (a camera's own ``detector``) is one row pointing at the first."""
    rows: list[tuple[str, str, str, str]] = []
    expanded: dict[str, str] = {}

    def walk(model: dict, prefix: str) -> None:
        required = set(model.get("required", []))
        for name, spec in model.get("properties", {}).items():
            key = f"{prefix}{name}"
            meaning = spec.get("description", "")
            ref, sub = _deref(schema, spec)
            items_ref, items = (None, None)
            if spec.get("type") == "array" and "$ref" in spec.get("items", {}):
                items_ref, items = _deref(schema, spec["items"])
            if ref is not None:
                default = _default(spec, name in required) if ("anyOf" in spec or name in required) else ""
                if ref in expanded:
                    rows.append((f"`{key}`", "mapping", default, f"{meaning} (the keys of `{expanded[ref]}`)"))
                    continue
                expanded[ref] = key
                rows.append((f"`{key}`", "mapping", default, meaning))
                walk(sub, f"{key}.")
            elif items_ref is not None:
                values = "list" + (f" ({spec['minItems']} or more)" if "minItems" in spec else "")
                default = _default(spec, name in required)
                rows.append((f"`{key}[]`", values, default, meaning))
                if items_ref in expanded:
                    continue
                expanded[items_ref] = f"{key}[]"
                walk(items, f"{key}[].")
            else:
                rows.append((f"`{key}`", _values(schema, spec), _default(spec, name in required), meaning))

    walk(schema, "")
    return rows


def reference_table(schema: dict | None = None) -> str:
    rows = reference_rows(schema or config_schema())
    out = ["| key | values | default | meaning |", "| --- | --- | --- | --- |"]
    out += [f"| {' | '.join(_cell(c) for c in row)} |" for row in rows]
    return "\n".join(out)


__all__ = ["config_schema", "reference_rows", "reference_table"]
