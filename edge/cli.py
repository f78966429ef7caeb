"""The ``roadside`` command. Each package registers its own subcommands; heavy imports happen only when a
subcommand runs, so ``roadside --help`` is instant on a small box."""
from __future__ import annotations

import argparse
import logging
import sys

from roadside.edge.errors import RoadsideError

# Modules that each provide ``register(subparsers)``; one per package, in the order shown in --help.
COMMAND_MODULES = (
    "roadside.edge.commands",
    "roadside.edge.service_commands",
    "roadside.calibration.commands",
    "roadside.models.commands",
    "roadside.controller.commands",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="roadside",
        description="Edge traffic vision: count vehicles from cameras and feed a signal controller.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except RoadsideError as e:
        print(f"roadside {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"roadside {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
