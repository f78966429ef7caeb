"""The command line: one noun group per package, every verb with --help, old spellings still working."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def roadside(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roadside.core.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def _commands() -> list[tuple[str, ...]]:
    from roadside.core.cli import build_parser

    def sub(p: argparse.ArgumentParser):
        return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)

    out = []
    for name, group in sub(build_parser()).choices.items():
        verbs = sub(group)
        out += [(name,)] if verbs is None else [(name, v) for v in verbs.choices]
    return out


def test_groups_are_the_packages_and_share_their_verbs():
    cmds = _commands()
    groups = {c[0] for c in cmds if len(c) == 2}
    assert {"edge", "models", "calibrate", "controller", "sim"} <= groups
    verbs = {g: {c[1] for c in cmds if len(c) == 2 and c[0] == g} for g in groups}
    assert {"run", "check", "replay", "bench"} <= verbs["edge"]
    assert {"run", "check"} <= verbs["controller"]
    assert {"run", "bench", "compare"} <= verbs["sim"]
    assert "bench" in verbs["models"]


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c))
def test_every_command_has_help(cmd):
    p = roadside(*cmd, "--help")
    assert p.returncode == 0 and "usage: roadside" in p.stdout, (cmd, p.stderr)


@pytest.mark.parametrize("old,new", [
    (("replay",), "edge replay"), (("bench",), "edge bench"), (("score",), "calibrate score"),
    (("evaluate",), "calibrate evaluate"), (("edge", "check-config"), "edge check"),
    (("models", "benchmark"), "models bench"),
])
def test_old_spellings_still_run_and_say_what_replaces_them(old, new, tmp_path):
    from roadside.core.cli import build_parser

    args = build_parser().parse_args([*old, *_required_args(old, tmp_path)])
    assert args.command_name == new and args.deprecated_as == " ".join(old)
    # and on the real command line: the note names the new spelling; the command itself runs (here it fails
    # on a missing input, as the new spelling would)
    p = roadside(*old, *_required_args(old, tmp_path))
    assert f"`roadside {' '.join(old)}` is deprecated" in p.stderr and f"use `roadside {new}`" in p.stderr
    q = roadside(*new.split(), *_required_args(old, tmp_path))
    assert p.returncode == q.returncode
    assert "deprecated" not in q.stderr


def _required_args(old: tuple[str, ...], tmp_path: Path) -> list[str]:
    missing = str(tmp_path / "missing")
    return {
        ("replay",): [missing, "--out", str(tmp_path / "o")],
        ("bench",): [missing, "--runs", "1"],
        ("score",): [missing, missing],
        ("evaluate",): ["--gt-dir", missing, "--out", str(tmp_path / "o")],
        ("edge", "check-config"): ["--config", missing],
        ("models", "benchmark"): [missing],
    }[old]


def test_a_broken_pipe_is_not_a_traceback():
    p = subprocess.run(f"{sys.executable} -m roadside.core.cli edge schema counts | head -1", shell=True, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "{" and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
