"""The README's developer tour runs as written: its site.yaml, its replay and its score, parsed out of README.md."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

from helpers.data import GT, ROOT, SHARED

from roadside.core.cli import build_parser


def _section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def tour() -> tuple[str, list[str]]:
    """(the site.yaml, the commands) of README.md's "Developers" tour."""
    section = _section((ROOT / "README.md").read_text(), "### Developers")
    commands = [line.split("  #")[0].strip() for block in _blocks(section, "sh") for line in block.splitlines()
                if line.strip()]
    (site,) = _blocks(section, "yaml")
    return site, commands


def test_every_tour_command_is_a_real_command_line():
    _, commands = tour()
    assert commands and all(c.startswith("roadside ") for c in commands), commands
    parser = build_parser()
    for c in commands:
        parser.parse_args(shlex.split(c)[1:])  # exits (SystemExit) on an unknown verb or option


def test_the_tour_replays_and_scores_as_written(tmp_path):
    """In a checkout beside ../shared, with the default model installed as the README's set-up does it."""
    import json

    import yaml

    site, commands = tour()
    replay = next(c for c in commands if c.startswith("roadside edge replay "))
    score = next(c for c in commands if c.startswith("roadside calibrate score "))
    gt = json.loads((GT / shlex.split(score)[-1].rsplit("/", 1)[-1]).read_text())
    lines = yaml.safe_load(site)["lines"]
    assert [(ln["id"], ln["a"], ln["b"]) for ln in lines] == [(ln["id"], ln["a"], ln["b"]) for ln in gt["lines"]], \
        "the tour's site.yaml must draw the ground truth's lines (same ids, same a->b)"

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    (checkout / "site.yaml").write_text(site)
    env = {k: v for k, v in os.environ.items() if k != "ROADSIDE_MODELS_DIR"}
    env["ROADSIDE_HOME"] = str(tmp_path / "home")
    # the README's set-up (its first command block) installs the default model from the offline mirror
    (fetch,) = re.findall(r"roadside models fetch \S+ --from \S+", _blocks((ROOT / "README.md").read_text(), "sh")[0])

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "roadside.core.cli", *shlex.split(command)[1:]],
                              cwd=checkout, env=env, capture_output=True, text=True, timeout=900)

    p = run(fetch)
    assert p.returncode == 0, p.stderr
    p = run(replay)
    assert p.returncode == 0, p.stderr
    assert (checkout / "runs" / "fw" / "annotated.mp4").stat().st_size > 0
    p = run(score)
    assert p.returncode == 0, p.stderr
    accuracy = float(re.search(r"overall count accuracy: ([\d.]+)%", p.stdout).group(1))
    assert accuracy >= 97.0, p.stdout  # the default model's bar on this clip (tests/edge/test_edge_replay.py)
