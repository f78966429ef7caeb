"""The shared data beside the checkout (``../shared``: models, videos, ground truth, bad inputs; read-only)
and tiny synthetic models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]  # the checkout
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models"
VIDEOS = SHARED / "data" / "videos"
GT = SHARED / "data" / "gt"
IMAGES = SHARED / "data" / "images"
BAD = SHARED / "data" / "bad_inputs"

REAL_MODELS = ["picodet_s_416_coco", "picodet_s_320_coco", "yolox_nano_416", "nanodet_m_416"]


def gt(name: str) -> dict:
    return json.loads((GT / f"{name}.json").read_text())


def make_constant_model(path: Path, input_hw: tuple[int, int], outputs: list[np.ndarray], producer: str = "pytorch",
                        metadata: dict[str, str] | None = None, input_name: str = "images") -> Path:
    """Write an ONNX model whose outputs are the given constant tensors, whatever the image input.

    Used to check output decoding and the mapping of boxes back to source pixels exactly."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = input_hw
    inp = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, h, w])
    nodes, outs = [], []
    # consume the input so the graph is a real function of it (0 * mean(input) + constant)
    nodes.append(helper.make_node("ReduceMean", [input_name], ["m"], keepdims=0))
    nodes.append(helper.make_node("Mul", ["m", "zero"], ["z"]))
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    for i, arr in enumerate(outputs):
        arr = arr.astype(np.float32)
        inits.append(numpy_helper.from_array(arr, f"c{i}"))
        nodes.append(helper.make_node("Add", [f"c{i}", "z"], [f"out{i}"]))
        outs.append(helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, list(arr.shape)))
    graph = helper.make_graph(nodes, "constant_detector", [inp], outs, inits)
    model = helper.make_model(graph, producer_name=producer, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(model, str(path))
    return path
