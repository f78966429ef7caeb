"""``roadside models export``: Ultralytics YOLO weights (.pt, or an architecture .yaml) to a self-describing ONNX.

The ONNX file carries ``roadside.*`` metadata (family, class names, pre-processing, name), so the detector
needs no side files. The output folder gets a ``MANIFEST.json`` entry with the file's sha256, which makes the
folder an offline mirror for ``roadside models fetch NAME --from DIR``.

Needs the optional ``export`` extra (ultralytics-opencv-headless and a CPU build of torch). Runs offline:
``YOLO_OFFLINE=1``, settings in a temporary folder, and a ``.pt`` path that does not exist is an error here,
never a download.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path

from roadside.core.errors import RoadsideError
from roadside.models.formats import default_preprocess
from roadside.models.catalog import NAME_PATTERN


class ExportError(RoadsideError):
    """The weights cannot be exported (missing extra, file, unsupported task, bad class names)."""


INSTALL_HINT = (
    "install the export extra: pip install -e '.[export]' (pins torch==2.13.0, the CPU build; "
    "see models/README.md)"
)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    name: str
    sha256: str
    imgsz: tuple[int, int]
    class_names: tuple[str, ...]
    manifest: Path


def parse_classes(spec: list[str] | None) -> list[str] | None:
    """``--classes``: the keyword ``coco80``, a .txt/.json/.yaml file of names, or the names themselves."""
    if not spec:
        return None
    if len(spec) == 1 and spec[0].lower() == "coco80":
        from roadside.models.coco import COCO80

        return list(COCO80)
    if len(spec) == 1 and Path(spec[0]).suffix.lower() in (".txt", ".json", ".yaml", ".yml"):
        p = Path(spec[0])
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ExportError(f"--classes {p}: cannot read: {e}") from None
        if p.suffix.lower() == ".txt":
            names = [ln.strip() for ln in text.splitlines() if ln.strip()]
        else:
            import yaml

            try:
                data = yaml.safe_load(text)  # JSON is YAML
            except yaml.YAMLError as e:
                raise ExportError(f"--classes {p}: not valid YAML/JSON: {e}") from None
            if isinstance(data, dict) and "names" in data:  # an Ultralytics dataset yaml
                data = data["names"]
            if isinstance(data, dict):
                data = [data[k] for k in sorted(data, key=int)]
            if not isinstance(data, list):
                raise ExportError(f"--classes {p}: expected a list of names (or a dataset yaml with 'names')")
            names = [str(x) for x in data]
        if not names:
            raise ExportError(f"--classes {p}: the file lists no class names")
        return names
    return [s.strip() for s in spec]


def _placeholder_names(names: list[str]) -> bool:
    return all(re.fullmatch(r"(class)?\d+", n) for n in names)


def _load_yolo(weights: str):
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "roadside-ultralytics"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    try:
        from ultralytics import YOLO
    except ImportError as e:
        raise ExportError(f"ultralytics is not installed ({e}); {INSTALL_HINT}") from None
    try:
        return YOLO(weights)
    except Exception as e:  # ultralytics raises many kinds for a bad file
        raise ExportError(f"{weights}: ultralytics cannot load it: {type(e).__name__}: {e}") from None


def update_manifest(folder: Path, entry: dict) -> Path:
    """Add or replace ``entry`` (keyed by its file) in ``folder/MANIFEST.json``, atomically."""
    path = folder / "MANIFEST.json"
    doc: dict = {"models": []}
    if path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ExportError(f"{path}: exists but is not valid JSON ({e}); move it away first") from None
    doc.setdefault("models", [])
    doc["models"] = [m for m in doc["models"] if m.get("file") != entry["file"]] + [entry]
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def export_ultralytics(
    weights: str | Path,
    imgsz: tuple[int, int],
    out_dir: str | Path = ".",
    name: str | None = None,
    classes: list[str] | None = None,
    opset: int | None = None,
) -> ExportResult:
    """Export Ultralytics detection weights to ``out_dir/NAME.onnx`` with roadside metadata."""
    import onnx

    from roadside.models.inspect_model import describe_model
    from roadside.models.metadata import SOURCE_KEY, detector_metadata, save_atomically, set_metadata
    from roadside.models.store import sha256_file

    weights = str(weights)
    h, w = imgsz
    if h % 32 or w % 32 or h < 32 or w < 32:
        raise ExportError(f"--imgsz {h} {w}: each side must be a positive multiple of 32 (the model's largest stride)")
    is_yaml = weights.endswith((".yaml", ".yml"))
    if not is_yaml:
        if not weights.endswith(".pt"):
            raise ExportError(f"{weights}: expected Ultralytics weights (.pt) or an architecture (.yaml)")
        if not Path(weights).is_file():
            raise ExportError(f"weights file not found: {weights} (nothing is downloaded: copy the .pt file here first)")
    stem = Path(weights).stem
    name = name or (f"{stem}_{h}" if h == w else f"{stem}_{h}x{w}")
    if not NAME_PATTERN.match(name):
        raise ExportError(f"--name {name!r}: use letters, digits, '_', '.', '-' (at most 64 characters)")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{out}: cannot create the output folder: {e}") from None

    with tempfile.TemporaryDirectory(prefix="roadside-export-") as tmp:
        src = weights
        if not is_yaml:  # ultralytics writes the .onnx next to the weights: work on a copy
            src = str(Path(tmp) / Path(weights).name)
            Path(src).write_bytes(Path(weights).read_bytes())
        with chdir(tmp):
            model = _load_yolo(src)
            if model.task != "detect":
                raise ExportError(f"{weights}: a {model.task} model; only detection models (task=detect) can be used")
            model_names = [str(model.names[i]) for i in sorted(model.names)]
            if classes is not None and len(classes) != len(model_names):
                raise ExportError(
                    f"--classes gives {len(classes)} names but {weights} has {len(model_names)} classes "
                    f"({', '.join(model_names[:10])}{', ...' if len(model_names) > 10 else ''})"
                )
            names = classes or model_names
            if _placeholder_names(names):
                import logging

                logging.getLogger("roadside.models").warning(
                    "%s carries no class names (%s, ...); pass --classes (e.g. --classes coco80) or map class ids in "
                    "detector.classes", weights, ", ".join(names[:3]))
            try:
                produced = model.export(format="onnx", imgsz=[h, w], dynamic=False, simplify=True, half=False,
                                        batch=1, device="cpu", nms=False, opset=opset)
            except Exception as e:
                raise ExportError(f"{weights}: ultralytics export failed: {type(e).__name__}: {e}") from None
            proto = onnx.load(str(Path(tmp) / produced))
        pre = default_preprocess("ultralytics", h, w)
        meta = detector_metadata(name, "ultralytics", names, pre)
        meta[SOURCE_KEY] = json.dumps({
            "weights": Path(weights).name, "weights_sha256": None if is_yaml else sha256_file(weights),
            "exporter": f"ultralytics {_ultralytics_version()}, torch {_version('torch')}",
        })
        if classes is not None:  # keep Ultralytics' own key consistent with ours
            meta["names"] = repr({i: n for i, n in enumerate(names)})
        set_metadata(proto, meta)
        target = save_atomically(proto, out / f"{name}.onnx")

    desc = describe_model(target)  # refuse to hand over a file the detector would not read as intended
    if desc["family"] != "ultralytics" or desc["input_size"] != [h, w] or desc["class_names"] != names:
        target.unlink(missing_ok=True)
        raise ExportError(f"{target}: the exported model reads back as {desc['family']} {desc['input_size']}; not written")
    digest = sha256_file(target)
    manifest = update_manifest(out, {
        "name": name, "file": target.name, "sha256": digest, "family": "ultralytics", "input": [h, w],
        "classes": len(names), "source": Path(weights).name,
    })
    return ExportResult(target, name, digest, (h, w), tuple(names), manifest)


def _ultralytics_version() -> str:
    import ultralytics

    return getattr(ultralytics, "__version__", "?")


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "?"
