"""What an ONNX detector file is: family, inputs, outputs, metadata, precision and execution providers.

Used by ``roadside models info`` and to check a file before it enters the store.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from roadside.core.errors import RoadsideError
from roadside.models.metadata import NAME_KEY
from roadside.models.session import ModelLoadError, open_session


class ModelInspectError(RoadsideError):
    """The file is not an ONNX model the product can run."""


def precision_of(op_counts: Counter, has_fp16_weights: bool = False) -> str:
    """fp32, or which kind of int8 quantisation the graph carries."""
    if op_counts.get("DynamicQuantizeLinear"):
        return "int8 dynamic (weights int8, activations quantised at run time)"
    if op_counts.get("QLinearConv") or op_counts.get("QLinearMatMul"):
        return "int8 static (QOperator)"
    if op_counts.get("QuantizeLinear") and op_counts.get("DequantizeLinear"):
        return f"int8 static (QDQ, {op_counts['QuantizeLinear']} quantise nodes)"
    if has_fp16_weights:
        return "fp16"
    return "fp32"


def recognise_file(path: str | Path, providers: list[str] | None = None, family: str = "auto", threads: int = 0):
    """Open ``path`` and recognise its detector format: (session, ModelFormat). Raises ModelInspectError."""
    from roadside.models.formats import ModelFormatError, recognise

    path = Path(path)
    if not path.is_file():
        raise ModelInspectError(f"model file not found: {path}")
    try:
        session = open_session(path, threads, providers=providers)
    except ModelLoadError as e:
        raise ModelInspectError(str(e)) from None
    meta = session.get_modelmeta()
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelInspectError(f"{path}: expected one image input, the model has {len(inputs)}: {[i.name for i in inputs]}")
    try:
        fmt = recognise(inputs[0].shape, [o.shape for o in session.get_outputs()], dict(meta.custom_metadata_map),
                        meta.producer_name or "", family, str(path))
    except ModelFormatError as e:
        raise ModelInspectError(str(e)) from None
    return session, fmt


def describe_model(path: str | Path, providers: list[str] | None = None, family: str = "auto") -> dict:
    """Everything ``roadside models info`` prints, as a JSON-able dict. Raises ModelInspectError."""
    import onnx
    import onnxruntime as ort

    from roadside.models.catalog import known_by_checksum
    from roadside.models.metadata import preprocess_json
    from roadside.models.store import sha256_file

    path = Path(path)
    session, fmt = recognise_file(path, providers, family)
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    try:
        proto = onnx.load(str(path), load_external_data=False)
        ops = Counter(n.op_type for n in proto.graph.node)
        fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
        opset = {imp.domain or "ai.onnx": imp.version for imp in proto.opset_import}
    except Exception as e:
        raise ModelInspectError(f"{path}: onnxruntime loads it but the onnx package cannot parse it: {e}") from None
    desc: dict = {
        "path": str(path),
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip() or "unknown",
        "opset": opset,
        "precision": precision_of(ops, fp16),
        "nodes": sum(ops.values()),
        "inputs": [{"name": i.name, "shape": i.shape, "type": i.type} for i in inputs],
        "outputs": [{"name": o.name, "shape": o.shape, "type": o.type} for o in outputs],
        "metadata": metadata,
        "providers": {"available": ort.get_available_providers(), "used": session.get_providers()},
    }
    known = known_by_checksum(desc["sha256"])
    desc["known_as"] = known.name if known else None
    pre = fmt.preprocess
    desc.update({
        "name": metadata.get(NAME_KEY) or (known.name if known else path.stem),
        "family": fmt.family,
        "recognised_by": fmt.recognised_by,
        "input_size": [pre.height, pre.width],
        "class_names": list(fmt.class_names),
        "preprocess": json.loads(preprocess_json(pre)),
    })
    return desc


def validate_for_store(path: Path) -> dict:
    """Refuse a file the detector cannot use; return the fields recorded in the store."""
    d = describe_model(path)
    return {"family": d["family"], "input_size": d["input_size"], "classes": len(d["class_names"]), "precision": d["precision"]}
