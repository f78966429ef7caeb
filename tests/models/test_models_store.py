"""The known-model manifest, the store location and resolve_model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadside.core.errors import RoadsideError
from roadside.models.catalog import known_models, parse_catalog
from roadside.models.coco import COCO80
from roadside.models.fetch import fetch
from roadside.models.store import DEFAULT_MODEL, ModelNotFound, installed_models, resolve_model, store_dir


def test_manifest_lists_the_four_mirror_models_with_the_mirror_checksums(mirror_manifest):
    known = known_models()
    by_file = {m.file: m for m in known.values()}
    assert set(mirror_manifest) <= set(by_file)
    for file, sha in mirror_manifest.items():
        m = by_file[file]
        assert m.sha256 == (sha,)
        assert m.license.startswith("Apache-2.0")
        assert m.class_names == COCO80
        assert m.upstream.get("url", "").startswith("https://")
    assert DEFAULT_MODEL in known


def test_manifest_knows_the_ultralytics_exports_and_how_to_make_them():
    known = known_models()
    for name in ("yolo11n", "yolov8n"):
        m = known[name]
        assert m.family == "ultralytics" and m.input == (640, 640) and len(m.class_names) == 80
        assert m.sha256 == ()  # exporter-dependent bytes: the checksum comes from whoever exported it
        assert m.export.startswith(f"roadside models export {name}.pt")
        assert "AGPL" in m.license


def test_a_broken_manifest_entry_is_rejected():
    doc = {"models": [{"name": "x", "file": "x.onnx", "family": "yolox", "input": [1, 1], "class_names": ["a"],
                       "license": "MIT", "sha256": ["not-a-checksum"]}]}
    with pytest.raises(ValueError, match="bad name or checksum"):
        parse_catalog(doc)


def test_store_location_follows_roadside_home(monkeypatch, tmp_path):
    monkeypatch.delenv("ROADSIDE_MODELS_DIR", raising=False)
    monkeypatch.delenv("ROADSIDE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store_dir() == tmp_path / ".local/share/roadside/models"
    monkeypatch.setenv("ROADSIDE_HOME", str(tmp_path / "rh"))
    assert store_dir() == tmp_path / "rh" / "models"
    monkeypatch.setenv("ROADSIDE_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert store_dir() == tmp_path / "elsewhere"


def test_default_model_missing_says_how_to_fetch_it(store):
    with pytest.raises(ModelNotFound) as e:
        resolve_model(None)
    msg = str(e.value)
    assert isinstance(e.value, RoadsideError)
    assert f"roadside models fetch {DEFAULT_MODEL} --from DIR" in msg
    assert "../shared/models" in msg and str(store) in msg


def test_known_ultralytics_model_missing_says_how_to_export_it(store):
    with pytest.raises(ModelNotFound, match=r"roadside models export yolo11n\.pt .*roadside models fetch yolo11n --from DIR"):
        resolve_model("yolo11n")


def test_unknown_name_and_missing_path_are_clear_errors(store, tmp_path):
    with pytest.raises(ModelNotFound, match="not a known model.*picodet_s_416_coco"):
        resolve_model("no_such_model")
    with pytest.raises(ModelNotFound, match="model file not found: .*nothere.onnx"):
        resolve_model(str(tmp_path / "nothere.onnx"))
    with pytest.raises(ModelNotFound, match="is not a file"):
        resolve_model(str(tmp_path))


def test_existing_path_is_returned_as_is(store, mirror):
    p = mirror / "yolox_nano_416.onnx"
    assert resolve_model(str(p)) == p
    assert resolve_model(p) == p
    assert not store.exists()  # resolving a path never touches the store


def test_default_and_names_resolve_to_the_store_after_fetch(store, mirror, monkeypatch, tmp_path):
    fetch(DEFAULT_MODEL, str(mirror))
    assert resolve_model(None) == store / f"{DEFAULT_MODEL}.onnx"
    assert resolve_model(DEFAULT_MODEL) == store / f"{DEFAULT_MODEL}.onnx"
    monkeypatch.chdir(tmp_path)  # "NAME.onnx" that is not in the working folder: the installed model
    assert resolve_model(f"{DEFAULT_MODEL}.onnx") == store / f"{DEFAULT_MODEL}.onnx"
    (rec,) = installed_models()
    assert rec.name == DEFAULT_MODEL and rec.record["sha256"] == known_models()[DEFAULT_MODEL].sha256[0]
    assert json.loads((store / f"{DEFAULT_MODEL}.json").read_text())["family"] == "picodet"
    assert (store / f"{DEFAULT_MODEL}.onnx").stat().st_mode & 0o444 == 0o444


def test_resolved_default_model_runs_in_the_detector(store, mirror):
    import cv2

    from roadside.edge.detector import Detector

    fetch(DEFAULT_MODEL, str(mirror))
    det = Detector(resolve_model(None))
    img = cv2.imread(str(Path(mirror).parent / "data/images/dense_traffic_stock.jpg"))
    assert img is not None
    dets = det(img)
    assert det.family == "picodet"
    assert len(dets.xyxy) > 0  # a street photo full of cars
