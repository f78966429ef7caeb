"""``roadside edge ...``: run the edge service, check a site configuration, print schemas, soak test."""
from __future__ import annotations

import argparse
import json
import sys


def _load(args: argparse.Namespace):
    from roadside.edge.service_config import load_edge_config

    return load_edge_config(args.config)


def _run(args: argparse.Namespace) -> int:
    import logging

    from roadside.edge.service import run_service

    config = _load(args)
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("roadside").setLevel(logging.INFO)  # a service says what it does
    return run_service(config, model_override=args.model, config_path=args.config)


def check_config(config, model_override: str | None = None) -> list[str]:
    """Problems the service would meet at start-up beyond the schema (see ``startup_problems``)."""
    from roadside.edge.service_config import startup_problems

    return startup_problems(config, model_override)


def frame_problems(config, open_timeout_s: float = 8.0) -> list[str]:
    """Lines and zones outside their camera's frame (edge/layout.py, the same check as the calibration page),
    for every source that can be opened now: files and streams (a source that cannot be opened is noted on
    stderr, not an error: a camera may simply be off; a missing file is a start-up problem of its own)."""
    from pathlib import Path

    from roadside.core.redact import redact
    from roadside.core.video import VideoError
    from roadside.edge.layout import probe_frame_size, validate_layout
    from roadside.edge.roi import check_roi
    from roadside.edge.sources import capture_options

    problems = []
    for ci, cam in enumerate(config.cameras):
        if cam.kind == "file" and not Path(cam.source).is_file():
            continue  # already reported (no such file)
        try:
            w, h = probe_frame_size(cam.source, streams=True, open_timeout_s=open_timeout_s,
                                    capture_options=capture_options(cam.rtsp_transport), assume_fps=cam.fps or 25.0)
        except VideoError as e:  # not a configuration problem: the service reports it at run time, and retries
            print(f"note: cameras[{cam.id}]: lines and zones not checked against the frame "
                  f"(cannot open {redact(cam.source)} now: {e})", file=sys.stderr)
            continue
        layout = validate_layout(cam.lines, cam.zones, frame_size=(w, h))
        problems += [pr.located(ci) for pr in layout.problems]
        roi = check_roi(config.vision(cam).detector, (w, h))
        if roi:
            problems.append(f"cameras[{ci}] (camera {cam.id!r}): {roi}")
    return problems


def _check(args: argparse.Namespace) -> int:
    from roadside.core.errors import RoadsideError

    config = _load(args)
    problems = check_config(config, args.model)
    problems += frame_problems(config)
    summary = {
        "site": config.site, "device": config.device, "topic_prefix": config.topic_prefix,
        "broker": f"{config.mqtt.host}:{config.mqtt.port}" + (" (TLS)" if config.mqtt.tls else ""),
        "api": f"http://{config.api.host}:{config.api.port}" if config.api.enabled else None,
        "api_writable": config.api.token is not None, "state_dir": str(config.state_path()),
        "cameras": {c.id: {"source": c.kind, "lines": [ln.id for ln in c.lines], "zones": [z.id for z in c.zones],
                           "bins_s": config.vision(c).counting.bins_s} for c in config.cameras},
    }
    print(json.dumps(summary, indent=1))
    if not config.cameras:
        where = f"{summary['api']}/calibrate" if summary["api"] else "the calibration page (enable the API)"
        print(f"note: no camera yet: the service counts nothing until one is added on {where}"
              + ("" if config.api.token else " (set api.token first: without it the page cannot save)"),
              file=sys.stderr)
    if problems:
        raise RoadsideError(f"{args.config or 'built-in default configuration'}: " + "; ".join(problems))
    print("configuration OK", file=sys.stderr)
    return 0


def _default_config(args: argparse.Namespace) -> int:
    from roadside.edge.service_config import default_config_text

    sys.stdout.write(default_config_text())
    return 0


def payload_schemas() -> dict:
    from roadside.core.payloads import CountsMessage, HealthMessage, PresenceMessage
    from roadside.edge.config_reference import config_schema

    return {"counts": CountsMessage.model_json_schema(), "presence": PresenceMessage.model_json_schema(),
            "health": HealthMessage.model_json_schema(), "config": config_schema()}


def fill_schema_blocks(text: str) -> str:
    """Replace each ``<!-- schema:NAME -->...<!-- /schema:NAME -->`` block of a Markdown text with the
    current JSON Schema of that payload, the ``<!-- reference:config -->...<!-- /reference:config -->``
    block with the configuration reference generated from the configuration's JSON Schema, and the
    ``<!-- reference:metrics -->`` block with the table of the ``/metrics`` collectors."""
    import re

    from roadside.edge.config_reference import reference_table

    schemas = payload_schemas()
    for name in ("counts", "presence", "health"):
        block = (f"<!-- schema:{name} -->\n<details><summary>JSON Schema ({name})</summary>\n\n```json\n"
                 f"{json.dumps(schemas[name], indent=1)}\n```\n\n</details>\n<!-- /schema:{name} -->")
        text = re.sub(rf"<!-- schema:{name} -->.*?<!-- /schema:{name} -->", lambda m: block, text, flags=re.S)
    block = ("<!-- reference:config -->\n<!-- generated from the configuration models: "
             "`roadside edge schema --update-doc edge/README_SERVICE.md` -->\n"
             f"{reference_table(schemas['config'])}\n<!-- /reference:config -->")
    text = re.sub(r"<!-- reference:config -->.*?<!-- /reference:config -->", lambda m: block, text, flags=re.S)
    from roadside.edge.metrics_reference import metrics_table

    block = f"<!-- reference:metrics -->\n{metrics_table()}\n<!-- /reference:metrics -->"
    return re.sub(r"<!-- reference:metrics -->.*?<!-- /reference:metrics -->", lambda m: block, text, flags=re.S)


def _schema(args: argparse.Namespace) -> int:
    if args.update_doc:
        from pathlib import Path

        doc = Path(args.update_doc)
        doc.write_text(fill_schema_blocks(doc.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"updated the schema blocks and the configuration reference of {doc}", file=sys.stderr)
        return 0
    schemas = payload_schemas()
    print(json.dumps(schemas if args.which == "all" else schemas[args.which], indent=1))
    return 0


def _soak(args: argparse.Namespace) -> int:
    from roadside.edge.soak import main_soak

    return main_soak(args)


def register(cli) -> None:
    cli.group("edge", help="the edge service: run it, check its configuration, replay and benchmark video",
              description="The roadside edge service: cameras -> counts, presence and health over MQTT, with a "
                          "durable outbox and a local health API; and the developer's replay and benchmark.")

    def config_arg(p) -> None:
        p.add_argument("--config", help="site YAML (default: the built-in demo configuration, see "
                                        "`roadside edge default-config`)")
        p.add_argument("--model", help="ONNX model file or installed model name for every camera "
                                       "(default: detector.model, else the product default)")

    p = cli.verb("edge", "run", _run, help="run the service until SIGTERM/SIGINT",
                 description="Run every configured camera, publish counts (through the durable outbox), presence "
                             "and health over MQTT and serve the health API. SIGTERM or SIGINT flushes and exits.")
    config_arg(p)

    p = cli.verb("edge", "check", _check, old=("edge check-config",),
                 help="validate a site configuration and the files and model it names",
                 description="Print a summary of the configuration; exit 2 naming every problem found "
                             "(schema, missing video/TLS files, model not installed).")
    config_arg(p)

    cli.verb("edge", "default-config", _default_config, help="print the built-in configuration (a starting point for a site)",
             description="Print the YAML used by `roadside edge run` without --config.")

    p = cli.verb("edge", "schema", _schema, help="print the JSON Schema of the MQTT payloads or of the configuration",
                 description="JSON Schema generated from the pydantic models the edge and the controller share.")
    p.add_argument("which", nargs="?", default="all", choices=["all", "counts", "presence", "health", "config"])
    p.add_argument("--update-doc", metavar="MD", help="instead, rewrite the schema blocks and the configuration "
                                                      "reference of a Markdown file (edge/README_SERVICE.md)")

    p = cli.verb("edge", "soak", _soak, help="run the service against looped clips for a long time; report memory, "
                                             "threads and message accounting",
                 description="Start `roadside edge run` with fake live cameras (the clips of --videos looped at real "
                             "time) and a private broker, subscribe to its counts, and print RSS, thread counts and "
                             "message accounting over time; fails if a counts message was lost or memory grew.")
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default: %(default)s)")
    p.add_argument("--cameras", type=int, default=2, help="fake live cameras (default: %(default)s)")
    p.add_argument("--model", help="ONNX model file or installed model name (default: the product's default model, "
                                   "installed with `roadside models fetch`)")
    p.add_argument("--videos", default=None, metavar="DIR",
                   help="folder of video clips to loop as fake live cameras (default: ../shared/data/videos, the "
                        "development checkout's shared clips, relative to the current directory)")
    p.add_argument("--bin-s", type=float, default=5.0, help="counts interval (default: %(default)s s)")
    p.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples (default: %(default)s)")
    p.add_argument("--broker-outage-s", type=float, default=20.0,
                   help="stop the private broker this long at mid-run (0: none; default: %(default)s)")
    p.add_argument("--out", help="write the samples and the summary as JSON here")
