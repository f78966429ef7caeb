"""``roadside models quantize``: static int8 (QDQ) quantisation calibrated on frames of real video.

Calibration frames are decoded in the crash-isolated decoder (``VideoReader``) and pre-processed exactly as
the detector will see them. Weights are int8 per channel, activations uint8 per tensor (onnxruntime's
recommended U8S8 QDQ format for CPUs).

The *tail* of each output (the nodes after the last real convolution: sigmoid, reshape, concat, the
Distribution-Focal-Loss decode of Ultralytics heads) stays fp32 by default. Those nodes cost almost nothing,
but quantising them puts box coordinates (0..640 px) and class scores (0..1) under one 8-bit scale where the
outputs are concatenated, which wipes out the scores.

Dynamic quantisation is deliberately not offered: on these CPUs it is slower than fp32 (activations are
quantised at run time for every frame).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadside.core.errors import RoadsideError

log = logging.getLogger("roadside.models")

#: Ops that carry the model's learned weights; the output tail is what comes after them.
HEAVY_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: A heavy op with fewer weights than this is part of the decode tail: Ultralytics' fixed 16-bin DFL conv,
#: YOLOX's 1x1 objectness and box convolutions. They cost nothing and their outputs need full precision.
MIN_HEAVY_WEIGHTS = 1024
METHODS = ("minmax", "percentile", "entropy")
MIN_OPSET = 13


class QuantizeError(RoadsideError):
    """The model or the calibration video cannot be used for quantisation."""


#: Held-out frames (not used for calibration) on which int8 detections are compared with fp32.
CHECK_FRAMES = 6
#: Below this detection agreement (F1 against fp32) the int8 model is refused unless allowed explicitly.
MIN_AGREEMENT = 0.5


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    frames: int
    method: str
    excluded_nodes: int
    quantized_nodes: int
    #: detection agreement with the fp32 model on held-out frames (see models/agreement.py)
    agreement: dict


def collect_calibration_frames(videos: list[str | Path], preprocess, frames: int) -> list[np.ndarray]:
    """Up to ``frames`` pre-processed tensors spread evenly over ``videos`` (decoded in a child process)."""
    from roadside.core.video import VideoReader

    per_video = max(1, -(-frames // len(videos)))
    out: list[np.ndarray] = []
    for v in videos:
        with VideoReader(v, preprocess=preprocess) as reader:
            hint = reader.info.frame_count_hint
            step = max(1, hint // per_video) if hint > 0 else 10
            taken = 0
            for fr in reader:
                if fr.index % step == 0:
                    out.append(np.array(fr.tensor, copy=True))  # the reader reuses its buffers
                    taken += 1
                    if taken >= per_video:
                        break
    if not out:
        raise QuantizeError(f"no calibration frames could be read from {', '.join(map(str, videos))}")
    return out[:frames]


def tail_nodes(model) -> list[str]:
    """Names of the nodes between the last weight-carrying layer and each graph output (kept fp32)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    tail: list[str] = []
    seen: set[str] = set()
    stack = [o.name for o in model.graph.output]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in HEAVY_OPS and max((sizes.get(i, 0) for i in node.input), default=0) >= MIN_HEAVY_WEIGHTS:
            continue
        tail.append(node.name)
        stack.extend(node.input)
    return tail


def _name_unnamed_nodes(model) -> None:
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)


class _FramesReader:
    """onnxruntime CalibrationDataReader over in-memory tensors."""

    def __init__(self, input_name: str, tensors: list[np.ndarray]):
        self._it = iter(tensors)
        self._name = input_name

    def get_next(self):
        t = next(self._it, None)
        return None if t is None else {self._name: t}

    def rewind(self) -> None:  # part of the interface in newer onnxruntime
        pass


def quantize_model(
    model: str | Path,
    calibration: list[str | Path],
    out: str | Path | None = None,
    frames: int = 64,
    method: str = "percentile",
    per_channel: bool = True,
    keep_tail_fp32: bool = True,
    allow_degraded: bool = False,
) -> QuantizeResult:
    """Write a static int8 QDQ copy of ``model`` calibrated on ``calibration`` videos; return where and how.

    The int8 model is checked against the fp32 one on held-out frames of the same videos; if its detections
    agree less than :data:`MIN_AGREEMENT` (F1), nothing is written and QuantizeError says so, unless
    ``allow_degraded``.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from roadside.models.agreement import detection_agreement
    from roadside.models.inspect_model import recognise_file
    from roadside.models.metadata import NAME_KEY, QUANTIZATION_KEY, detector_metadata, save_atomically, set_metadata
    from roadside.models.session import open_session

    src = Path(model)
    if method not in METHODS:
        raise QuantizeError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if frames < 1:
        raise QuantizeError("--frames must be at least 1")
    session, fmt = recognise_file(src)
    input_name = session.get_inputs()[0].name
    original = onnx.load(str(src))
    if any(n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv") for n in original.graph.node):
        raise QuantizeError(f"{src}: already quantised; quantise the fp32 model")
    target = Path(out) if out else src.with_name(f"{src.stem}_int8.onnx")
    if target.resolve() == src.resolve():
        raise QuantizeError(f"{target}: the output would overwrite the input model")
    collected = collect_calibration_frames(calibration, fmt.preprocess, frames + CHECK_FRAMES)
    every = max(2, len(collected) // CHECK_FRAMES)
    check = collected[every // 2::every][:CHECK_FRAMES] if len(collected) > CHECK_FRAMES else collected
    tensors = [t for i, t in enumerate(collected) if not (i >= every // 2 and (i - every // 2) % every == 0
                                                            and (i - every // 2) // every < CHECK_FRAMES)] or collected
    ort.set_default_logger_severity(3)  # the quantiser's graph clean-up warnings are noise here
    old_meta = {p.key: p.value for p in original.metadata_props}

    with tempfile.TemporaryDirectory(prefix="roadside-quant-") as tmp:
        start = src
        opset = next((o.version for o in original.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < MIN_OPSET:  # per-channel DequantizeLinear (its `axis`) needs opset 13
            from onnx import version_converter

            try:
                converted = version_converter.convert_version(original, MIN_OPSET)
            except Exception as e:
                raise QuantizeError(f"{src}: cannot convert from opset {opset} to {MIN_OPSET} for quantisation: {e}") from None
            start = Path(tmp) / "opset.onnx"
            onnx.save(converted, str(start))
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(start), str(prepared), skip_symbolic_shape=True)
        except Exception as e:
            raise QuantizeError(f"{src}: onnxruntime's pre-processing for quantisation failed: {e}") from None
        prepared_model = onnx.load(str(prepared))
        _name_unnamed_nodes(prepared_model)
        onnx.save(prepared_model, str(prepared))
        exclude = tail_nodes(prepared_model) if keep_tail_fp32 else []
        quantized = Path(tmp) / "quantized.onnx"
        calib = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
                quantize_static(
                    str(prepared), str(quantized), _FramesReader(input_name, tensors),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=per_channel, calibrate_method=calib, nodes_to_exclude=exclude,
                )
        except Exception as e:
            raise QuantizeError(f"{src}: static quantisation failed: {type(e).__name__}: {e}") from None
        result = onnx.load(str(quantized))
        agreement = detection_agreement(session, open_session(quantized), input_name, check, fmt)

    if agreement["f1"] is None:
        log.warning("%s: the fp32 model detects nothing on the held-out frames; the int8 model could not be checked", src)
    elif agreement["f1"] < MIN_AGREEMENT and not allow_degraded:
        raise QuantizeError(
            f"{src}: the int8 model's detections agree with fp32 at F1 {agreement['f1']} on {agreement['frames']} held-out "
            f"frames (int8 found {agreement['candidate_detections']} objects, fp32 {agreement['reference_detections']}): static "
            "int8 does not work for this model (try another --method or more frames; or keep fp32). Nothing was "
            "written; --allow-degraded writes it anyway"
        )
    # The quantiser rewrites the producer name (PicoDet is recognised by it) and drops metadata: write
    # everything the detector needs explicitly, keeping the original keys.
    name = old_meta.get(NAME_KEY) or src.stem
    meta = dict(old_meta)
    meta.update(detector_metadata(f"{name}_int8", fmt.family, fmt.class_names, fmt.preprocess))
    meta[QUANTIZATION_KEY] = json.dumps({
        "format": "QDQ", "weights": "int8 per-channel" if per_channel else "int8 per-tensor", "activations": "uint8",
        "method": method, "frames": len(tensors), "calibration": [Path(v).name for v in calibration],
        "fp32_tail_nodes": len(exclude), "source_model": src.name, "agreement_with_fp32": agreement,
    })
    set_metadata(result, meta)
    result.producer_name = f"roadside quantize (from {original.producer_name or 'unknown'})"
    save_atomically(result, target)
    nq = sum(1 for n in result.graph.node if n.op_type == "QuantizeLinear")
    return QuantizeResult(target, len(tensors), method, len(exclude), nq, agreement)
