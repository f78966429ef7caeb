"""Fixtures of the controller tests; the helpers live in helpers.controller and helpers.broker."""
from __future__ import annotations

import pytest

from helpers.broker import Mosquitto
from helpers.controller import make_config
from roadside.controller.config import ControllerConfig


@pytest.fixture
def config() -> ControllerConfig:
    return make_config()


@pytest.fixture
def broker():
    """A private mosquitto on a free port (no persistence), for tests that stop and restart it."""
    b = Mosquitto(persistence=False).start()
    yield b
    b.close()
