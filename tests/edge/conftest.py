"""Fixtures for the vision-core tests; the shared data and helpers live in helpers.data."""
from __future__ import annotations

import pytest

from helpers.data import MODELS, SHARED, VIDEOS


@pytest.fixture(scope="session", autouse=True)
def _shared_present():
    if not (MODELS / "MANIFEST.json").is_file() or not VIDEOS.is_dir():
        pytest.fail(f"the shared data folder {SHARED} (models, videos, ground truth) is missing beside the checkout")
