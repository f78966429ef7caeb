"""Suite-wide hooks: a failed test's report carries the tails of the logs its processes wrote in its
``tmp_path`` (services, brokers, controllers), so a failure in CI can be diagnosed from CI's output alone."""
from __future__ import annotations

from pathlib import Path

import pytest

_LOG_LINES = 60
_LOG_FILES = 6


def _tail(path: Path, lines: int = _LOG_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(cannot read: {e})"
    return "\n".join(text[-lines:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if tmp is None:
        return
    logs = sorted(Path(tmp).rglob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)[:_LOG_FILES]
    for log in logs:
        rep.sections.append((f"log {log.relative_to(tmp)} (last {_LOG_LINES} lines)", _tail(log)))
