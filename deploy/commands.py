"""``roadside bundle``: an offline install folder (see bundle.py)."""
from __future__ import annotations

import argparse


def _bundle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from roadside.deploy.bundle import BundleSpec, build_bundle

    build_bundle(BundleSpec(out=Path(args.out), models=args.model or ["picodet_s_416_coco"], models_from=args.models_from,
                            site_config=args.site_config, controller_config=args.controller_config,
                            platform=args.platform, python_version=args.python_version, extras=args.extra or []))
    return 0


def register(cli) -> None:
    p = cli.command(
        "bundle", _bundle, help="build an offline install folder (wheels, models with checksums, site configuration, "
                                "install script) for a box without network",
        description="Write a folder for a USB stick: the product's wheels and its dependencies for the target "
                    "platform, the models (verified, with SHA256SUMS), the site configuration, the systemd units and "
                    "install.sh. On the box: sudo BUNDLE/install.sh (an upgrade keeps the configuration and the outbox).")
    p.add_argument("--out", required=True, help="the folder to write (new or empty)")
    p.add_argument("--model", action="append", help="model to include (repeatable; default picodet_s_416_coco)")
    p.add_argument("--models-from", default="../shared/models", help="mirror folder holding the models "
                                                                     "(default ../shared/models)")
    p.add_argument("--site-config", help="the box's site file (default: the built-in configuration)")
    p.add_argument("--controller-config", help="a controller configuration to install too")
    p.add_argument("--platform", help="wheel platform of the box: arm64 (Raspberry Pi 5, Jetson: manylinux_2_28_aarch64 "
                                      "and the older manylinux tags), x86_64, or a wheel platform tag; default: "
                                      "this machine's")
    p.add_argument("--python-version", help="the box's Python, e.g. 3.11 (default: this one's)")
    p.add_argument("--extra", action="append", help="optional extra of the product to include (repeatable), e.g. demo")
