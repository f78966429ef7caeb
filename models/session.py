"""The one place an onnxruntime session is made, so that every tool runs a model as the product does.

``open_session`` applies the product's settings (intra-op threads, one inter-op thread, full graph
optimisation, onnxruntime worker spinning off unless asked for, quiet logging) and the execution providers
in order of preference, falling back to CPU with a logged warning for the ones this onnxruntime lacks.
The edge detector, ``roadside models info|quantize|bench`` and the benchmarks all call it.
"""
from __future__ import annotations

import logging
from pathlib import Path

from roadside.core.errors import RoadsideError

log = logging.getLogger("roadside.models")

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}


class ModelLoadError(RoadsideError):
    """The file cannot be loaded as an ONNX model."""


def provider_name(name: str) -> str:
    """``cpu`` -> ``CPUExecutionProvider``; full names pass through."""
    return PROVIDER_ALIASES.get(name.lower(), name)


def choose_providers(wanted: list[str]) -> list[str]:
    """Requested providers that this onnxruntime offers, in order, always ending with CPU.

    A provider that is not available is skipped with a logged warning (falling back to CPU).
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen: list[str] = []
    for name in wanted:
        full = provider_name(name)
        if full in available:
            if full not in chosen:
                chosen.append(full)
        else:
            log.warning("execution provider %s is not available in this onnxruntime (has: %s); falling back to CPU",
                        full, ", ".join(available))
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def open_session(path: str | Path, threads: int = 0, spin_wait: bool = False,
                 providers: list[str] | None = None):
    """An onnxruntime ``InferenceSession`` for ``path`` with the product's settings; ModelLoadError otherwise."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # graph clean-up notices of quantised models are noise for users
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), opts, providers=choose_providers(providers or ["CPUExecutionProvider"]))
    except Exception as e:  # onnxruntime raises several exception types for bad files
        raise ModelLoadError(f"{path}: cannot load as an ONNX model: {e}") from None


__all__ = ["PROVIDER_ALIASES", "ModelLoadError", "choose_providers", "open_session", "provider_name"]
