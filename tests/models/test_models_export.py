"""`roadside models export`: a real random-weight YOLO11n, exported at two sizes, read by the product's detector.

Needs the `export` extra (ultralytics-opencv-headless + CPU torch). Without it these tests skip on a
developer's machine but fail in CI (CI installs `.[test,export]`).
"""
from __future__ import annotations

import json
import os
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pytest

from roadside.core.cli import main
from roadside.edge.config import DetectorConfig
from roadside.edge.detector import Detector
from roadside.models.coco import COCO80
from roadside.models.export import ExportError, export_ultralytics, parse_classes
from roadside.models.fetch import fetch
from roadside.models.store import resolve_model

VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "videos"

SIZES = [(320, 320), (256, 416)]  # square, and a non-square H x W for 16:9 cameras


def _need_export_extra():
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:
        if os.environ.get("CI"):
            pytest.fail("the export extra is not installed in CI: pip install -e '.[test,export]'")
        pytest.skip("needs the export extra: pip install -e '.[test,export]'")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A real Ultralytics .pt file: the YOLO11n architecture with seeded random weights (offline).

    Ultralytics' own initialisation gives features that vanish with depth, so every anchor has the same
    score and box; re-initialised as below, scores and boxes depend on the image and differ between
    anchors, so that decoding can be compared meaningfully."""
    _need_export_extra()
    os.environ["YOLO_OFFLINE"] = "1"
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("weights")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        model = YOLO("yolo11n.yaml")
        for m in model.model.modules():  # signal-preserving init (the fixed DFL conv has no gradient: kept)
            if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad:
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        head = model.model.model[-1]
        with torch.no_grad():
            for branch in head.cv2:  # box distributions favouring small distances: boxes of 10-70 px
                torch.nn.init.normal_(branch[-1].weight, std=0.01)
                torch.nn.init.normal_(branch[-1].bias, std=0.5)
                branch[-1].bias -= 0.6 * torch.arange(head.reg_max).repeat(4)
            for branch in head.cv3:
                torch.nn.init.normal_(branch[-1].weight, std=0.01)
                torch.nn.init.normal_(branch[-1].bias, std=1.0)
        model.save(d / "yolo11n_random.pt")
    return d / "yolo11n_random.pt"


@pytest.fixture(scope="module")
def exported(weights, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("exported")
    return {size: export_ultralytics(weights, size, out, classes=list(COCO80)) for size in SIZES}


def frame_from(video: str, index: int = 30) -> np.ndarray:
    from roadside.core.video import VideoReader

    with VideoReader(VIDEOS / video) as r:
        for fr in r:
            if fr.index == index:
                return fr.image.copy()
    raise AssertionError("clip too short")


def test_export_extra_keeps_headless_opencv_and_cpu_torch():
    _need_export_extra()
    import cv2
    import torch

    with pytest.raises(importlib_metadata.PackageNotFoundError):
        importlib_metadata.distribution("opencv-python")  # the GUI build would clobber cv2
    assert importlib_metadata.version("opencv-python-headless")
    assert cv2.imdecode(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1], cv2.IMREAD_COLOR).shape == (4, 4, 3)
    assert torch.version.cuda is None and torch.__version__.startswith("2.13.0")


@pytest.mark.parametrize("size", SIZES)
def test_exported_file_is_self_describing(exported, size):
    res = exported[size]
    det = Detector(res.path)
    assert det.family == "ultralytics" and det.format.recognised_by == "roadside metadata"
    assert (det.preprocess.height, det.preprocess.width) == size
    assert det.preprocess.color == "rgb" and det.preprocess.resize == "letterbox" and det.preprocess.pad_value == 114
    assert det.preprocess.scale == pytest.approx(1 / 255)
    assert det.format.class_names == COCO80
    assert det.name == res.name == f"yolo11n_random_{size[0]}" + ("" if size[0] == size[1] else f"x{size[1]}")
    n_anchors = sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32))
    assert det.session.get_outputs()[0].shape == [1, 84, n_anchors]
    src = json.loads(det.metadata["roadside.source"])
    assert src["weights"] == "yolo11n_random.pt" and len(src["weights_sha256"]) == 64
    # no side files: only the models and the mirror manifest in the output folder
    assert sorted(p.name for p in res.path.parent.iterdir()) == ["MANIFEST.json"] + sorted(f"{r.name}.onnx" for r in exported.values())


@pytest.mark.parametrize("size", SIZES)
def test_exported_model_matches_pytorch_and_decodes_like_ultralytics(weights, exported, size):
    """The ONNX file computes what the PyTorch model computes on our pre-processed frame, our pre-processing
    equals Ultralytics' letterbox, and our decoding + suppression gives the boxes Ultralytics' own NMS gives."""
    import torch
    from ultralytics import YOLO
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.nms import non_max_suppression

    res = exported[size]
    frame = frame_from("freeway_overpass.mp4")
    det = Detector(res.path, DetectorConfig(confidence=0.0))
    tensor, transform = det.preprocess(frame)

    ref = LetterBox(new_shape=size, auto=False, stride=32)(image=frame)
    ref = np.ascontiguousarray(ref[:, :, ::-1].transpose(2, 0, 1)[None]).astype(np.float32) / 255
    assert np.abs(ref - tensor).max() < 1e-6

    onnx_out = det.infer(tensor)[0]
    torch_model = YOLO(str(weights)).model.float().eval()
    with torch.no_grad():
        torch_out = torch_model(torch.from_numpy(tensor))[0].numpy()
    assert onnx_out.shape == torch_out.shape
    assert np.abs(onnx_out[:, :4] - torch_out[:, :4]).max() < 0.05  # box pixels
    assert np.abs(onnx_out[:, 4:] - torch_out[:, 4:]).max() < 1e-4  # class scores

    # Random weights give tiny scores: pick the threshold that leaves a few dozen vehicle candidates.
    cols = det._cols
    vehicle_scores = onnx_out[0, 4 + cols].max(axis=0)
    conf = float(np.sort(vehicle_scores)[-80])
    det.config = DetectorConfig(confidence=conf, nms_iou=0.5)
    ours = det.postprocess([onnx_out], transform, frame.shape)
    # Ultralytics' NMS on the same candidates, mapped to the frame and clipped first as the detector does
    # (suppression runs in frame pixels; boxes under 2 px are dropped).
    sx, sy, ox, oy = transform
    h, w = frame.shape[:2]
    cx, cy, bw, bh = onnx_out[0, :4]
    x1 = np.clip((cx - bw / 2 - ox) / sx, 0, w)
    x2 = np.clip((cx + bw / 2 - ox) / sx, 0, w)
    y1 = np.clip((cy - bh / 2 - oy) / sy, 0, h)
    y2 = np.clip((cy + bh / 2 - oy) / sy, 0, h)
    big = (x2 - x1 >= 2) & (y2 - y1 >= 2)
    pred = np.concatenate([np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]), onnx_out[0, 4 + cols]])[:, big]
    (theirs,) = non_max_suppression(torch.from_numpy(pred[None]), conf_thres=conf - 1e-9, iou_thres=0.5, agnostic=True,
                                    max_det=1000)
    theirs = theirs.numpy()
    boxes = theirs[:, :4]
    assert len(ours.xyxy) > 5
    assert len(ours.xyxy) == pytest.approx(len(boxes), abs=2)
    their_class = cols[theirs[:, 5].astype(int)]  # column among the vehicle classes -> model class id
    matched = 0
    for b, c, k in zip(ours.xyxy, ours.confidence, ours.class_id):
        d = np.abs(boxes - b).max(axis=1)
        j = int(d.argmin())
        if d[j] < 0.5 and abs(theirs[j, 4] - c) < 1e-6 and their_class[j] == k:
            matched += 1
    assert matched >= len(ours.xyxy) - 2
    assert set(ours.category) <= {"car", "bus", "truck", "motorcycle", "bicycle"}
    assert {COCO80[int(k)] for k in ours.class_id} <= {"car", "bus", "truck", "motorcycle", "bicycle"}


def test_export_folder_is_a_mirror_for_fetch(store, exported):
    res = exported[SIZES[1]]
    got = fetch(res.name, str(res.path.parent))
    assert got.checksum_from == "mirror MANIFEST.json" and got.model.record["family"] == "ultralytics"
    det = Detector(resolve_model(res.name))
    assert det.name == res.name and det.family == "ultralytics"


def test_cli_export_and_its_errors(weights, tmp_path, capsys):
    classes = tmp_path / "names.txt"
    classes.write_text("\n".join(f"vehicle_{i}" for i in range(80)))
    assert main(["models", "export", str(weights), "--imgsz", "224", "--classes", str(classes), "--name", "site_y11",
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "roadside models fetch site_y11 --from" in out
    det = Detector(tmp_path / "o" / "site_y11.onnx", DetectorConfig(classes={"car": ["vehicle_2"]}))
    assert det.format.class_names[2] == "vehicle_2" and det.preprocess.height == 224
    manifest = json.loads((tmp_path / "o" / "MANIFEST.json").read_text())
    assert [m["name"] for m in manifest["models"]] == ["site_y11"]

    assert main(["models", "export", str(tmp_path / "missing.pt"), "--imgsz", "320"]) == 2
    assert "weights file not found" in capsys.readouterr().err
    with pytest.raises(ExportError, match="multiple of 32"):
        export_ultralytics(weights, (300, 300), tmp_path)
    with pytest.raises(ExportError, match="--classes gives 3 names but .* has 80 classes"):
        export_ultralytics(weights, (320, 320), tmp_path, classes=["car", "bus", "truck"])
    assert parse_classes(["coco80"]) == list(COCO80)
