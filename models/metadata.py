"""The ``roadside.*`` metadata of an ONNX file (so that the detector needs no side files): its keys, and
writing them. Every reader and writer of these keys uses the constants below.

Read by :func:`roadside.models.formats.recognise`: ``roadside.family``, ``roadside.class_names`` (JSON list),
``roadside.preprocess`` (JSON object with the fields of ``Preprocess`` except the size, which comes from the
input shape); by the detector and ``models info``: ``roadside.name``. Informative: ``roadside.source`` (what
it was exported from) and ``roadside.quantization`` (how it was quantised, and its agreement with fp32).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roadside.models.formats import Preprocess

NAME_KEY = "roadside.name"
FAMILY_KEY = "roadside.family"
CLASS_NAMES_KEY = "roadside.class_names"
PREPROCESS_KEY = "roadside.preprocess"
SOURCE_KEY = "roadside.source"
QUANTIZATION_KEY = "roadside.quantization"


def preprocess_json(pre: "Preprocess") -> str:
    return json.dumps({"color": pre.color, "resize": pre.resize, "pad_value": pre.pad_value,
                       "mean": list(pre.mean), "std": list(pre.std), "scale": pre.scale})


def detector_metadata(name: str, family: str, class_names: list[str] | tuple[str, ...], pre: "Preprocess") -> dict[str, str]:
    return {
        NAME_KEY: name,
        FAMILY_KEY: family,
        CLASS_NAMES_KEY: json.dumps(list(class_names)),
        PREPROCESS_KEY: preprocess_json(pre),
    }


def set_metadata(model, values: dict[str, str]) -> None:
    """Add or replace ``metadata_props`` entries of an ``onnx.ModelProto`` in place."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update(values)
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)


def save_atomically(model, path: str | Path) -> Path:
    """Save an ``onnx.ModelProto`` via a temporary file in the same folder and a rename."""
    import onnx

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
