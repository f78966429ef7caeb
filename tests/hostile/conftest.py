"""Fixtures of the hostile-input suite; the helpers live in helpers.hostile, helpers.controller and helpers.broker."""
from __future__ import annotations

import pytest

from helpers.broker import Mosquitto


@pytest.fixture
def broker():
    """A private mosquitto on a free port (no persistence)."""
    b = Mosquitto(persistence=False).start()
    yield b
    b.close()
