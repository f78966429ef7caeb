"""Where the product keeps its state on a box: everything under ``ROADSIDE_HOME``.

``ROADSIDE_HOME`` defaults to ``~/.local/share/roadside``. Below it: ``models/`` (the verified model store;
``ROADSIDE_MODELS_DIR`` overrides it) and ``edge/<site>-<device>/`` (an edge service's outbox and state,
unless its configuration sets ``state_dir``).
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "~/.local/share/roadside"


def roadside_home() -> Path:
    return Path(os.environ.get("ROADSIDE_HOME") or DEFAULT_HOME).expanduser()


def models_dir() -> Path:
    """The model store: ``$ROADSIDE_MODELS_DIR``, else ``$ROADSIDE_HOME/models``."""
    explicit = os.environ.get("ROADSIDE_MODELS_DIR")
    return Path(explicit).expanduser() if explicit else roadside_home() / "models"


def edge_state_dir(site: str, device: str) -> Path:
    """Default state folder (outbox) of the edge service of ``site``/``device``."""
    return roadside_home() / "edge" / f"{site}-{device}"


__all__ = ["DEFAULT_HOME", "edge_state_dir", "models_dir", "roadside_home"]
