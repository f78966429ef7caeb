"""`roadside models info` and execution-provider choice."""
from __future__ import annotations

import json
import logging

import pytest

from roadside.core.cli import main
from roadside.models.catalog import known_models
from roadside.models.inspect_model import ModelInspectError, describe_model


@pytest.mark.parametrize("name", ["picodet_s_416_coco", "picodet_s_320_coco", "yolox_nano_416", "nanodet_m_416"])
def test_info_recognises_each_mirror_model(mirror, name):
    k = known_models()[name]
    d = describe_model(mirror / k.file)
    assert d["family"] == k.family
    assert d["input_size"] == list(k.input)
    assert d["inputs"][0]["shape"] == [1, 3, *k.input]
    assert d["known_as"] == name and d["sha256"] == k.sha256[0]
    assert d["precision"] == "fp32"
    assert d["class_names"][2] == "car" and len(d["class_names"]) == 80
    n_out = {"picodet": 8, "nanodet": 6, "yolox": 1}[k.family]
    assert len(d["outputs"]) == n_out
    assert d["providers"]["used"] == ["CPUExecutionProvider"]


def test_unavailable_provider_falls_back_to_cpu_with_a_warning(mirror, caplog):
    import onnxruntime as ort

    missing = [p for p in ("cuda", "tensorrt", "openvino") if
               {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
                "openvino": "OpenVINOExecutionProvider"}[p] not in ort.get_available_providers()]
    if not missing:
        pytest.skip("this onnxruntime offers CUDA, TensorRT and OpenVINO: nothing to fall back from")
    with caplog.at_level(logging.WARNING, logger="roadside.detector"):
        d = describe_model(mirror / "yolox_nano_416.onnx", providers=[missing[0], "cpu"])
    assert d["providers"]["used"] == ["CPUExecutionProvider"]
    assert any("not available" in r.getMessage() and "falling back to CPU" in r.getMessage() for r in caplog.records)


def test_cli_info_text_and_json(store, mirror, capsys):
    assert main(["models", "info", str(mirror / "nanodet_m_416.onnx")]) == 0
    out = capsys.readouterr().out
    assert "family      nanodet" in out and "input       input.1 [1, 3, 416, 416]" in out
    assert out.count("output      ") == 6 and "providers   used CPUExecutionProvider" in out
    assert main(["models", "info", str(mirror / "yolox_nano_416.onnx"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["family"] == "yolox" and d["outputs"][0]["shape"] == [1, 3549, 85]


def test_info_on_a_missing_or_broken_model_is_a_clear_error(store, tmp_path, capsys):
    assert main(["models", "info", "picodet_s_416_coco"]) == 2
    assert "roadside models fetch picodet_s_416_coco --from DIR" in capsys.readouterr().err
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelInspectError, match="cannot load as an ONNX model"):
        describe_model(bad)
