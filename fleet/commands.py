"""``roadside fleet collect | report | load``: the city's central collector, its report and its load test."""
from __future__ import annotations

import argparse
import sys


def _config(path: str | None):
    from roadside.core.config import load_config
    from roadside.fleet.config import FleetConfig

    return load_config(path, FleetConfig) if path else FleetConfig()


def _collect(args: argparse.Namespace) -> int:
    from roadside.fleet.collector import run_collector

    return run_collector(_config(args.config))


def _report(args: argparse.Namespace) -> int:
    from roadside.core.errors import ConfigError
    from roadside.fleet.report import build_report, format_report
    from roadside.fleet.store import connect, utc

    cfg = _config(args.config)
    try:
        t1, t2 = utc(args.from_), utc(args.to)
    except ValueError as e:
        raise ConfigError(f"--from/--to: not an ISO-8601 time ({e})") from None
    if t2 <= t1:
        raise ConfigError(f"--to ({args.to}) must be after --from ({args.from_})")
    with connect(args.dsn or cfg.database.dsn.get_secret_value()) as db:
        sys.stdout.write(format_report(build_report(db, args.site, t1, t2), args.format))
    return 0


def _load(args: argparse.Namespace) -> int:
    from roadside.fleet.load import main_load

    return main_load(args)


def register(cli) -> None:
    cli.group("fleet", "the city's fleet: collector, report, load test",
              "A city's fleet of edge devices on a clustered broker (RabbitMQ), one count store (PostgreSQL). "
              "See fleet/README.md.")
    p = cli.verb("fleet", "collect", _collect, help="consume every device's counts, health, status and the controllers' "
                 "plans and events from the clustered broker into PostgreSQL (run several: they share the load)")
    p.add_argument("--config", metavar="FLEET.yaml", help="the collector's configuration (fleet/README.md)")
    p = cli.verb("fleet", "report", _report, help="15-minute counts per line, direction and class with coverage, "
                 "device health and offline periods, controller fail-safe periods")
    p.add_argument("--config", metavar="FLEET.yaml", help="for the database (or --dsn)")
    p.add_argument("--dsn", help="PostgreSQL connection string (instead of the configuration's)")
    p.add_argument("--site", required=True, help="the site")
    p.add_argument("--from", dest="from_", required=True, metavar="T1", help="start (ISO-8601; naive means UTC)")
    p.add_argument("--to", required=True, metavar="T2", help="end (exclusive)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="table (default), csv (the counts table), json (everything)")
    p = cli.verb("fleet", "load", _load, help="load and failure test: N simulated devices on a private 3-node cluster "
                 "with two collectors; kills a node and a collector mid-run; reports rate, latency, loss, duplicates")
    p.add_argument("--devices", type=int, default=500, help="simulated devices (1..2000, default 500)")
    p.add_argument("--minutes", type=float, default=2.0, help="how long they publish (0.1..30, default 2)")
    p.add_argument("--nodes", type=int, default=3, help="cluster nodes (1..5, default 3)")
    p.add_argument("--collectors", type=int, default=2, help="collectors (1..8, default 2)")
    p.add_argument("--no-kill", action="store_true", help="do not kill a node and a collector mid-run")
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL server (loopback) where the test creates and drops its own database")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
