"""``roadside bundle``: a folder for a USB stick that installs the product on a box with no network.

    BUNDLE/
      install.sh           one command: sudo ./install.sh (or PREFIX=... ETC=... STATE=... ./install.sh --no-systemd)
      wheels/              the product's wheel and every dependency, for the target platform and Python
      models/              the models, their MANIFEST.json (mirror format) and SHA256SUMS
      config/edge.yaml     the site configuration (installed only where none is: an upgrade keeps the box's)
      config/controller.yaml   (optional)
      systemd/             the units and the sysusers file
      BUNDLE.json          what is in it: version, platform, Python, models and checksums, files

The wheels come from ``pip wheel`` (the product, from this checkout) and ``pip download --only-binary=:all:``
(its dependencies) for ``--platform``/``--python-version`` (default: this machine's), so the box never
builds anything. Models are copied from a mirror folder and verified against the product's manifest, as
``roadside models fetch`` does; the install script checks them again (``sha256sum -c``) and installs them
into the box's model store with ``roadside models fetch`` (verified a third time).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from roadside.core.config import read_yaml
from roadside.core.errors import RoadsideError

#: the wheel-tag platform of this machine (pip's --platform spelling)
HOST_PLATFORM = sysconfig.get_platform().replace("-", "_").replace(".", "_")
#: common targets, for --help


class BundleError(RoadsideError):
    pass


#: --platform shorthands: a Raspberry Pi 5 or Jetson (arm64) and an x86-64 box, both glibc 2.28 or newer
PLATFORM_ALIASES = {"arm64": "manylinux_2_28_aarch64", "aarch64": "manylinux_2_28_aarch64",
                    "x86_64": "manylinux_2_28_x86_64"}


def platform_tags(platform: str) -> list[str]:
    """The wheel platform tags a box of ``platform`` accepts. pip's ``--platform`` takes each tag literally, so a
    ``manylinux_2_28_aarch64`` box's older-glibc wheels (``manylinux_2_17`` = ``manylinux2014``, which many
    packages still ship) are added explicitly."""
    import re

    platform = PLATFORM_ALIASES.get(platform, platform)
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    glibc, arch = int(m.group(1)), m.group(2)
    return [f"manylinux_2_{k}_{arch}" for k in range(glibc, 16, -1)] + [f"manylinux2014_{arch}"]


@dataclass
class BundleSpec:
    out: Path
    models: list[str]
    models_from: str
    site_config: str | None = None
    controller_config: str | None = None
    platform: str | None = None          # None: this machine's
    python_version: str | None = None    # e.g. "3.11"; None: this interpreter's
    extras: list[str] = field(default_factory=list)


def checkout_root() -> Path:
    """The source checkout the product runs from (the bundle builds the product's wheel from it)."""
    import roadside.core

    root = Path(roadside.core.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise BundleError(f"roadside bundle builds the product's wheel from its source checkout; {root} has no "
                          "pyproject.toml (install from a checkout: pip install -e .)")
    return root


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _pip(args: list[str], what: str) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n  ".join((r.stderr or r.stdout).strip().splitlines()[-8:])
        raise BundleError(f"{what} failed (pip {' '.join(args[:2])} ...):\n  {tail}")


def _wheels(spec: BundleSpec, dest: Path) -> list[Path]:
    root = checkout_root()
    _pip(["wheel", "--no-deps", "-q", "--wheel-dir", str(dest), str(root)],
         "building the product's wheel")
    product = sorted(dest.glob("roadside-*.whl"))
    if not product:
        raise BundleError("pip wheel wrote no roadside wheel")
    target = [f"{product[-1]}[{','.join(spec.extras)}]" if spec.extras else str(product[-1])]
    args = ["download", "-q", "--only-binary=:all:", "--dest", str(dest)]
    if spec.platform:
        args += [a for tag in platform_tags(spec.platform) for a in ("--platform", tag)] + ["--implementation", "cp"]
    if spec.python_version or spec.platform:
        args += ["--python-version", spec.python_version or f"{sys.version_info.major}.{sys.version_info.minor}"]
    _pip(args + target, f"downloading the dependencies for {spec.platform or HOST_PLATFORM}")
    return sorted(dest.glob("*.whl"))


def _models(spec: BundleSpec, dest: Path) -> list[dict]:
    from roadside.models.fetch import locate

    entries = []
    for name in spec.models:
        loc = locate(name, spec.models_from)
        src = Path(loc.location)
        if not src.is_file():
            raise BundleError(f"model {name}: {loc.location} is not a local file (give --models-from a folder)")
        target = dest / f"{name}.onnx"
        shutil.copyfile(src, target)
        digest = _sha256(target)
        if loc.accepted and digest not in loc.accepted:
            target.unlink()
            raise BundleError(f"model {name}: {src} has sha256 {digest}, which the {loc.checksum_from} does not accept")
        entries.append({"name": name, "file": target.name, "sha256": digest, "checksum_from": loc.checksum_from,
                        "bytes": target.stat().st_size})
    (dest / "MANIFEST.json").write_text(json.dumps({"models": entries}, indent=1) + "\n")
    (dest / "SHA256SUMS").write_text("".join(f"{e['sha256']}  {e['file']}\n" for e in entries))
    return entries


def _configs(spec: BundleSpec, dest: Path) -> list[str]:
    from roadside.edge.service_config import default_config_text, edge_config_from

    out = []
    if spec.site_config:
        edge_config_from(read_yaml(spec.site_config), spec.site_config)  # a bad site file fails now, not on the box
        shutil.copyfile(spec.site_config, dest / "edge.yaml")
    else:
        (dest / "edge.yaml").write_text(default_config_text())
    out.append("edge.yaml")
    if spec.controller_config:
        from roadside.controller.config import load_controller_config

        load_controller_config(spec.controller_config)
        shutil.copyfile(spec.controller_config, dest / "controller.yaml")
        out.append("controller.yaml")
    return out


def build_bundle(spec: BundleSpec, say=print) -> dict:
    out = spec.out
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} exists and is not empty: give a new folder")
    if not spec.models:
        raise BundleError("give at least one model (--model NAME); the box cannot count without one")
    for d in ("wheels", "models", "config", "systemd"):
        (out / d).mkdir(parents=True, exist_ok=True)
    say(f"roadside bundle: models from {spec.models_from} ...")
    models = _models(spec, out / "models")
    say(f"roadside bundle: wheels for {spec.platform or HOST_PLATFORM}, Python "
        f"{spec.python_version or '%d.%d' % sys.version_info[:2]} ...")
    wheels = _wheels(spec, out / "wheels")
    configs = _configs(spec, out / "config")
    pkg = resources.files("roadside.deploy")
    for name in ("roadside-edge.service", "roadside-controller.service", "roadside.sysusers.conf"):
        (out / "systemd" / name).write_text(pkg.joinpath("systemd", name).read_text(encoding="utf-8"))
    install = out / "install.sh"
    install.write_text(pkg.joinpath("install.sh").read_text(encoding="utf-8"))
    install.chmod(0o755)
    product = next(w.name for w in wheels if w.name.startswith("roadside-"))
    meta = {
        "product_wheel": product, "platform": PLATFORM_ALIASES.get(spec.platform, spec.platform) if spec.platform
        else HOST_PLATFORM,
        "python": spec.python_version or "%d.%d" % sys.version_info[:2], "extras": spec.extras,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": models, "configs": configs,
        "wheels": [{"file": w.name, "sha256": _sha256(w)} for w in wheels],
    }
    (out / "BUNDLE.json").write_text(json.dumps(meta, indent=1) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    say(f"roadside bundle: {out}: {len(wheels)} wheels, {len(models)} model(s), {size / 1e6:.0f} MB. On the box: "
        f"sudo {out.name}/install.sh")
    return meta


__all__ = ["BundleError", "BundleSpec", "HOST_PLATFORM", "build_bundle", "checkout_root", "platform_tags"]
