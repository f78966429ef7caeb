"""Embedding ``roadside.*`` metadata in an ONNX file, so that the detector needs no side files.

Keys (read by ``roadside.edge.model_formats.recognise``): ``roadside.family``, ``roadside.class_names`` (JSON
list), ``roadside.preprocess`` (JSON object with the fields of ``Preprocess`` except the size, which comes
from the input shape), ``roadside.name``. Other keys written here are informative (``roadside.source``,
``roadside.quantization``).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from roadside.edge.model_formats import Preprocess


def preprocess_json(pre: Preprocess) -> str:
    return json.dumps({"color": pre.color, "resize": pre.resize, "pad_value": pre.pad_value,
                       "mean": list(pre.mean), "std": list(pre.std), "scale": pre.scale})


def detector_metadata(name: str, family: str, class_names: list[str] | tuple[str, ...], pre: Preprocess) -> dict[str, str]:
    return {
        "roadside.name": name,
        "roadside.family": family,
        "roadside.class_names": json.dumps(list(class_names)),
        "roadside.preprocess": preprocess_json(pre),
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
