"""The ``roadside`` command: one noun group per package, the same verbs in each.

    roadside edge       run | check | default-config | schema | replay | bench | soak
    roadside models     list | fetch | info | export | quantize | bench
    roadside calibrate  score | evaluate
    roadside controller run | check
    roadside sim        run | scenarios | bench | generate
    roadside demo       (the whole system on one machine)
    roadside bundle     (an offline install folder)
    roadside fleet      collect | report | load

Each package's ``commands`` module registers its verbs through :class:`CommandLine`; heavy imports happen
only inside the handlers, so ``roadside --help`` is instant on a small box. Old spellings (``roadside
replay``, ``roadside edge check-config``, ``roadside models benchmark``, ...) still work for one release and
print a deprecation note naming the new one.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Callable

from roadside.core.errors import RoadsideError
from roadside.core.redact import install_log_redaction, redact

#: Modules that each provide ``register(cli: CommandLine)``, in the order their groups appear in --help.
COMMAND_MODULES = (
    "roadside.edge.commands",
    "roadside.models.commands",
    "roadside.calibration.commands",
    "roadside.controller.commands",
    "roadside.demo.commands",
    "roadside.deploy.commands",
    "roadside.fleet.commands",
)


class _Fan:
    """Forwards argument definitions to a parser and its deprecated twins, so they take the same arguments."""

    def __init__(self, targets: list[Any]):
        self._targets = targets

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            results = [getattr(t, name)(*args, **kwargs) for t in self._targets]
            return _Fan(results) if name in ("add_argument_group", "add_mutually_exclusive_group") else results[0]

        return call


class CommandLine:
    """The root parser; packages add their group and its verbs."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(
            prog="roadside",
            description="Edge traffic vision: count vehicles from cameras and feed a signal controller.",
        )
        self.parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
        self._top = self.parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        self._groups: dict[str, argparse._SubParsersAction] = {}
        self._deprecated: list[tuple[str, str, argparse.ArgumentParser]] = []

    def group(self, name: str, help: str, description: str | None = None) -> None:
        """Add the command group ``roadside NAME`` (once)."""
        if name in self._groups:
            return
        g = self._top.add_parser(name, help=help, description=description or help)
        self._groups[name] = g.add_subparsers(dest="action", metavar="ACTION", required=True)

    def command(self, name: str, func: Callable[[argparse.Namespace], int | None], *, help: str,
                description: str | None = None) -> argparse.ArgumentParser:
        """Add the single command ``roadside NAME`` (no verbs below it); returns its parser."""
        p = self._top.add_parser(name, help=help, description=description or help)
        p.set_defaults(func=func, command_name=name, deprecated_as=None)
        return p

    def verb(self, group: str, name: str, func: Callable[[argparse.Namespace], int | None], *, help: str,
             description: str | None = None, old: tuple[str, ...] = ()) -> Any:
        """Add ``roadside GROUP NAME``; ``old`` are deprecated spellings (``"replay"`` or ``"edge check-config"``)
        that keep working. Returns something to add the arguments to (they go to every spelling)."""
        new = f"{group} {name}"
        main = self._groups[group].add_parser(name, help=help, description=description or help)
        main.set_defaults(func=func, command_name=new, deprecated_as=None)
        parsers = [main]
        for spelling in old:
            words = spelling.split()
            where = self._top if len(words) == 1 else self._groups[words[0]]
            p = where.add_parser(words[-1], help=f"deprecated spelling of `roadside {new}`",
                                 description=f"Deprecated: use `roadside {new}`. " + (description or help))
            p.set_defaults(func=func, command_name=new, deprecated_as=spelling)
            parsers.append(p)
        return _Fan(parsers)


def build_parser() -> argparse.ArgumentParser:
    cli = CommandLine()
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(cli)
    return cli.parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()
    name = getattr(args, "command_name", args.command)
    if getattr(args, "deprecated_as", None):
        print(f"roadside: note: `roadside {args.deprecated_as}` is deprecated and goes in the next release; "
              f"use `roadside {name}`", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except RoadsideError as e:
        print(f"roadside {name}: error: {redact(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"roadside {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `roadside ... | head`: the reader went away; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush fails quietly
        return 0


if __name__ == "__main__":
    sys.exit(main())
