"""The manifest of models known to roadside (``known_models.json``, shipped with the package).

Each entry names a model, its family, input size, class names, licence, upstream source and the sha256
checksums accepted when the model is fetched into the local store. Entries with no checksum (Ultralytics
exports, whose bytes depend on the exporter) need one from whoever produced the file.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

#: what a model name may look like: it becomes a file name in the store
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class KnownModel:
    name: str
    file: str
    family: str
    input: tuple[int, int]  # height, width
    class_names: tuple[str, ...]
    license: str
    upstream: dict
    sha256: tuple[str, ...]
    description: str = ""
    #: how to produce the file when it is not distributed as ONNX (Ultralytics weights)
    export: str | None = None
    #: where the exact accepted bytes can be downloaded, if anywhere
    url: str | None = None


def parse_catalog(doc: dict) -> dict[str, KnownModel]:
    """Validate the manifest document and return its models by name (a broken manifest is a bug: ValueError)."""
    sets = doc.get("class_sets", {})
    out: dict[str, KnownModel] = {}
    for entry in doc["models"]:
        names = entry["class_names"]
        if isinstance(names, str):
            names = sets[names]
        sums = tuple(s.lower() for s in entry.get("sha256", []))
        if not NAME_PATTERN.match(entry["name"]) or any(not SHA256_PATTERN.match(s) for s in sums):
            raise ValueError(f"known_models.json: bad name or checksum in entry {entry['name']!r}")
        if entry["name"] in out:
            raise ValueError(f"known_models.json: {entry['name']!r} is listed twice")
        out[entry["name"]] = KnownModel(
            name=entry["name"], file=entry["file"], family=entry["family"], input=tuple(entry["input"]),
            class_names=tuple(names), license=entry["license"], upstream=dict(entry.get("upstream", {})),
            sha256=sums, description=entry.get("description", ""), export=entry.get("export"), url=entry.get("url"),
        )
    return out


@lru_cache(maxsize=1)
def known_models() -> dict[str, KnownModel]:
    text = resources.files("roadside.models").joinpath("known_models.json").read_text(encoding="utf-8")
    return parse_catalog(json.loads(text))


def known_by_checksum(sha256: str) -> KnownModel | None:
    for m in known_models().values():
        if sha256 in m.sha256:
            return m
    return None
