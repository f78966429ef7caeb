"""The names of the timing policies: the one list read by the configuration schema (``timing.policy``), the
registry of policy classes (``policies/__init__.py``, which checks that it has exactly these) and the
command line. A module of its own, free of imports, so that building the command line stays fast."""
from __future__ import annotations

POLICY_NAMES = ("fixed", "webster", "actuated", "adaptive")
