"""`roadside bundle` builds an offline install folder; its install.sh installs the product into a fresh virtual
environment from the bundle's wheels alone (pip --no-index, no pip configuration, no find-links), puts the
verified models into the box's store and the site configuration in place; an upgrade keeps the box's
configuration and outbox; a damaged model stops the install before anything changes."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from helpers.data import MODELS, ROOT


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _offline_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "ROADSIDE_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_COMPILE="1", PREFIX=str(tmp_path / "opt"), ETC=str(tmp_path / "etc"),
               STATE=str(tmp_path / "state"), PYTHON="python3")
    return env


@pytest.mark.slow
def test_bundle_installs_offline_into_a_fresh_venv_and_an_upgrade_keeps_config_and_outbox(tmp_path):
    bundle = tmp_path / "usb" / "roadside-bundle"
    r = subprocess.run([sys.executable, "-m", "roadside.core.cli", "bundle", "--out", str(bundle), "--model",
                        "picodet_s_416_coco", "--models-from", str(MODELS), "--controller-config",
                        str(ROOT / "controller" / "examples" / "demo.yaml")],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    meta = json.loads((bundle / "BUNDLE.json").read_text())
    wheels = {w["file"].split("-")[0].lower() for w in meta["wheels"]}
    assert {"roadside", "onnxruntime", "numpy", "paho_mqtt", "fastapi", "pydantic"} <= wheels
    for w in meta["wheels"]:
        assert _sha(bundle / "wheels" / w["file"]) == w["sha256"]
    (model,) = meta["models"]
    assert model["sha256"] == _sha(MODELS / "picodet_s_416_coco.onnx") == _sha(bundle / "models" / model["file"])
    assert (bundle / "models" / "SHA256SUMS").read_text() == f"{model['sha256']}  picodet_s_416_coco.onnx\n"
    assert sorted(p.name for p in (bundle / "config").iterdir()) == ["controller.yaml", "edge.yaml"]

    env = _offline_env(tmp_path)
    install = [str(bundle / "install.sh"), "--no-systemd"]
    r = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    roadside = tmp_path / "opt" / "venv" / "bin" / "roadside"
    home = dict(env, ROADSIDE_HOME=str(tmp_path / "state"))
    r = subprocess.run([str(roadside), "models", "list"], env=home, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "picodet_s_416_coco" in r.stdout, r.stdout + r.stderr
    # the installed edge service accepts the installed configuration with the installed model (the clip is the
    # development checkout's, relative to the working directory)
    r = subprocess.run([str(roadside), "edge", "check", "--config", str(tmp_path / "etc" / "edge.yaml")], env=home,
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "detector.model" not in r.stderr, r.stderr
    first = os.readlink(tmp_path / "opt" / "venv")

    # the operator edits the configuration; the service has an outbox with messages waiting
    conf = tmp_path / "etc" / "edge.yaml"
    conf.write_text(conf.read_text().replace("device: edge-1", "device: edge-7"))
    outbox = tmp_path / "state" / "edge" / "demo-edge-7" / "outbox.sqlite"
    outbox.parent.mkdir(parents=True)
    from roadside.edge.outbox import Outbox

    ob = Outbox(outbox, 1 << 20, 3600)
    ob.add("cam1", "roadside/demo/edge-7/cam1/counts", lambda seq: b'{"seq": %d}' % seq)
    ob.close()
    before = (conf.read_text(), outbox.read_bytes())

    r = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "edge.yaml kept" in r.stdout and (tmp_path / "etc" / "edge.yaml.bundle").is_file()
    assert (conf.read_text(), outbox.read_bytes()) == before
    second = os.readlink(tmp_path / "opt" / "venv")
    assert second != first and (tmp_path / "opt" / first).is_dir()  # the previous one stays for a rollback
    ob = Outbox(outbox, 1 << 20, 3600)
    assert ob.stats().depth == 1
    ob.close()

    # a damaged model on the stick: refused before anything changes
    damaged = bundle / "models" / "picodet_s_416_coco.onnx"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    r = subprocess.run(install, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "does not match models/SHA256SUMS" in r.stderr, r.stdout + r.stderr
    assert os.readlink(tmp_path / "opt" / "venv") == second


def test_an_arm64_box_accepts_the_older_manylinux_wheels_too():
    """pip's --platform takes tags literally; many packages ship aarch64 wheels only as manylinux2014 (glibc 2.17),
    others only as manylinux_2_28: the bundle asks for every tag a glibc-2.28 box accepts."""
    from roadside.deploy.bundle import platform_tags

    tags = platform_tags("arm64")
    assert tags[0] == "manylinux_2_28_aarch64" and "manylinux_2_17_aarch64" in tags and tags[-1] == "manylinux2014_aarch64"
    assert platform_tags("linux_x86_64") == ["linux_x86_64"]
