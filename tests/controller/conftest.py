"""Fixtures of the controller tests; the helpers live in controller_helpers.py."""
from __future__ import annotations

import pytest

from controller_helpers import Broker, make_config
from roadside.controller.config import ControllerConfig


@pytest.fixture
def config() -> ControllerConfig:
    return make_config()


@pytest.fixture
def broker():
    b = Broker()
    b.start()
    yield b
    b.stop()
