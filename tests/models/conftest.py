"""Shared fixtures for the model-management tests: an empty temporary store and the offline mirror."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers.data import MODELS as MIRROR


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """An empty model store in a temp dir; returns the store folder (not created yet)."""
    monkeypatch.delenv("ROADSIDE_MODELS_DIR", raising=False)
    monkeypatch.setenv("ROADSIDE_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "models"


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (MIRROR / "MANIFEST.json").is_file():
        pytest.fail(f"the offline model mirror {MIRROR} is missing (../shared/models beside the checkout)")
    return MIRROR


@pytest.fixture(scope="session")
def mirror_manifest(mirror) -> dict[str, str]:
    """file name -> sha256, from the mirror's own MANIFEST.json."""
    doc = json.loads((mirror / "MANIFEST.json").read_text())
    return {m["file"]: m["sha256"] for m in doc["models"]}


@pytest.fixture
def snapshot(store):
    """snapshot(): every file in the store (hidden ones included) with its bytes, to prove a failed fetch
    changed nothing."""

    def take() -> dict[str, bytes]:
        if not store.exists():
            return {}
        return {p.name: p.read_bytes() for p in sorted(store.iterdir())}

    return take


@pytest.fixture
def make_mirror(tmp_path):
    """make_mirror(*files, manifest=None) -> a fresh mirror folder holding copies of ``files``."""
    count = [0]

    def make(*files: Path, manifest: dict | None = None) -> Path:
        count[0] += 1
        d = tmp_path / f"mirror{count[0]}"
        d.mkdir()
        for f in files:
            shutil.copyfile(f, d / f.name)
        if manifest is not None:
            (d / "MANIFEST.json").write_text(json.dumps(manifest))
        return d

    return make
