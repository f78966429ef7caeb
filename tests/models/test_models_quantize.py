"""`roadside models quantize`: static int8 QDQ calibrated on real video, loaded by the product's detector."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadside.core.cli import main
from roadside.edge.detector import Detector
from roadside.core.errors import RoadsideError
from roadside.core.video import VideoReader
from roadside.models.fetch import fetch
from roadside.models.inspect_model import describe_model
from roadside.models import quantize as quantize_mod
from roadside.models.quantize import QuantizeError, quantize_model, tail_nodes

SHARED = Path(__file__).resolve().parents[3] / "shared"
CLIP = SHARED / "data" / "videos" / "dual_carriageway.mp4"


@pytest.fixture(scope="module")
def nanodet_int8(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("int8") / "nanodet_int8.onnx"
    res = quantize_model(SHARED / "models" / "nanodet_m_416.onnx", [CLIP], out, frames=8)
    return out, res


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _frame(clip: str, index: int) -> np.ndarray:
    with VideoReader(SHARED / "data" / "videos" / clip) as r:
        return next(np.array(fr.image) for fr in r if fr.index == index)


def test_quantized_model_loads_in_the_detector_and_finds_the_same_vehicles(nanodet_int8):
    path, res = nanodet_int8
    assert res.frames == 8 and res.quantized_nodes > 100 and res.excluded_nodes > 0
    det8 = Detector(path)
    assert det8.family == "nanodet" and det8.format.recognised_by == "roadside metadata"
    det32 = Detector(SHARED / "models" / "nanodet_m_416.onnx")
    assert det8.preprocess == det32.preprocess
    # Traffic-camera frames: the calibrated camera (past the calibration frames) and two other cameras.
    # Dense stock photos are a different matter: see models/README.md (int8 loses small, dense vehicles).
    images = [_frame("dual_carriageway.mp4", 150), _frame("freeway_overpass.mp4", 150),
              _frame("intersection_4way.mp4", 150)]
    found = confident32 = confident8 = 0
    for img in images:
        a, b = det32(img), det8(img)
        sure = a.xyxy[a.confidence >= 0.3]  # what the tracker would start tracks from
        confident32 += len(sure)
        confident8 += int((b.confidence >= 0.3).sum())
        if len(sure) and len(b.xyxy):
            found += int((_iou(sure, b.xyxy).max(axis=1) >= 0.5).sum())
    assert confident32 >= 10
    assert found / confident32 >= 0.8  # the vehicles fp32 is sure of are found by int8 too
    assert 0.5 * confident32 <= confident8 <= 1.5 * confident32


def test_quantized_model_describes_itself(nanodet_int8):
    path, res = nanodet_int8
    d = describe_model(path)
    assert d["precision"].startswith("int8 static (QDQ")
    assert d["opset"]["ai.onnx"] >= 13 and d["name"] == "nanodet_m_416_int8"
    q = json.loads(d["metadata"]["roadside.quantization"])
    assert q["format"] == "QDQ" and q["frames"] == 8 and q["calibration"] == [CLIP.name]
    assert q["agreement_with_fp32"]["f1"] == res.agreement["f1"] and res.agreement["f1"] >= 0.5
    assert res.agreement["reference_detections"] > 0


def test_output_tail_stays_fp32():
    import onnx

    m = onnx.load(str(SHARED / "models" / "yolox_nano_416.onnx"))
    names = {n.name: n for n in m.graph.node}
    sizes = {t.name: int(np.prod(t.dims)) for t in m.graph.initializer}
    tail = tail_nodes(m)
    convs = [names[t] for t in tail if names[t].op_type == "Conv"]
    # YOLOX's 1x1 objectness and box convolutions (64 and 256 weights) are decode-sized: kept fp32;
    # its 80-class convolution and everything before are quantised.
    assert sorted(sizes[c.input[1]] for c in convs) == [64, 64, 64, 256, 256, 256]
    cls_convs = [n for n in m.graph.node if n.op_type == "Conv" and sizes.get(n.input[1]) == 80 * 64]
    assert len(cls_convs) == 3 and not any(c.name in tail for c in cls_convs)
    out = m.graph.output[0].name
    assert any(out in names[t].output for t in tail)  # the node producing the output is in the tail


def test_a_model_that_disagrees_with_fp32_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(quantize_mod, "MIN_AGREEMENT", 1.01)  # no int8 model can pass
    out = tmp_path / "refused.onnx"
    with pytest.raises(QuantizeError, match="agree with fp32 at F1 .* Nothing was written"):
        quantize_model(SHARED / "models" / "nanodet_m_416.onnx", [CLIP], out, frames=4, method="minmax")
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_clear_errors(tmp_path, nanodet_int8):
    bad = SHARED / "data" / "bad_inputs" / "vehicles_no_moov.mp4"
    with pytest.raises(RoadsideError, match="vehicles_no_moov.mp4"):
        quantize_model(SHARED / "models" / "nanodet_m_416.onnx", [bad], tmp_path / "x.onnx", frames=4)
    with pytest.raises(QuantizeError, match="already quantised"):
        quantize_model(nanodet_int8[0], [CLIP], tmp_path / "y.onnx", frames=4)
    with pytest.raises(QuantizeError, match="--frames"):
        quantize_model(SHARED / "models" / "nanodet_m_416.onnx", [CLIP], tmp_path / "z.onnx", frames=0)
    assert list(tmp_path.iterdir()) == []


def test_cli_quantize_of_an_installed_model_writes_beside_not_into_the_store(store, mirror, tmp_path, monkeypatch, capsys):
    fetch("nanodet_m_416", str(mirror))
    before = sorted(p.name for p in store.iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(["models", "quantize", "nanodet_m_416", "--calibration", str(CLIP), "--frames", "6"]) == 0
    out = capsys.readouterr().out
    assert "static int8 QDQ" in out and "agreement with fp32" in out
    assert (tmp_path / "nanodet_m_416_int8.onnx").is_file()
    assert sorted(p.name for p in store.iterdir()) == before
    assert Detector(tmp_path / "nanodet_m_416_int8.onnx").family == "nanodet"


def test_benchmark_reports_latency_and_count_accuracy_for_fp32_and_int8(nanodet_int8, tmp_path):
    import shutil

    from roadside.calibration.model_bench import run_benchmark

    cache = tmp_path / "int8"
    cache.mkdir()
    shutil.copyfile(nanodet_int8[0], cache / "nanodet_m_416_int8.onnx")  # reused, not re-made
    gt = tmp_path / "gt"
    gt.mkdir()
    shutil.copyfile(SHARED / "data" / "gt" / "dual_carriageway_cars.json", gt / "dual_carriageway_cars.json")
    lines: list[str] = []
    rows = run_benchmark([SHARED / "models" / "nanodet_m_416.onnx"], cache, None, 8, 5, [1], gt,
                         SHARED / "data" / "videos", progress=lines.append)
    assert [r["precision"] for r in rows] == ["fp32", "int8"] and len(lines) == 2
    for r in rows:
        lat = r["latency_1t"]
        assert lat["runs"] == 5 and 0 < lat["best_block_median_ms"] <= lat["median_ms"] <= lat["p90_ms"]
        clip = r["counts"]["clips"]["dual_carriageway_cars"]
        assert clip["true"] == 6 and clip["predicted"] >= 3  # the clip's cars are counted
        assert r["counts"]["pooled_accuracy"] == clip["accuracy"]
    assert rows[1]["agreement_f1"] == nanodet_int8[1].agreement["f1"]
    assert rows[0]["size_mb"] > 2.5 * rows[1]["size_mb"]  # int8 weights
    assert "nanodet_m_416 | int8" in lines[1]
