"""``roadside demo``: the edge service, the controller and a broker on this machine (see runner.py)."""
from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> int:
    import logging

    from roadside.demo.runner import DemoOptions, run_demo

    logging.getLogger("roadside").setLevel(logging.WARNING)  # the terminal is for the summary
    return run_demo(DemoOptions(broker=args.broker, mqtt=args.mqtt, api_port=args.api_port, bin_s=args.bin_s,
                                duration_s=args.duration, video=args.video, model=args.model, workdir=args.workdir,
                                sumo=not args.no_sumo))


def register(cli) -> None:
    p = cli.command(
        "demo", _demo, help="run the whole system here: broker, edge service on a recorded clip, controller, console",
        description="Start an MQTT broker (the configured one when it answers, else a local mosquitto, else the "
                    "embedded Python broker of the 'demo' extra), the edge service replaying the shared intersection "
                    "clip as a live camera, and the signal controller paired with it (timing a SUMO junction driven by the camera's counts when the 'sim' extra is installed, else in shadow mode); print where to "
                    "look and a running summary; Ctrl-C stops everything. Needs the default model: "
                    "`roadside models fetch picodet_s_416_coco --from ../shared/models`.")
    p.add_argument("--broker", choices=("auto", "configured", "mosquitto", "embedded"), default="auto",
                   help="auto (default): the configured broker when it answers, else mosquitto, else embedded")
    p.add_argument("--mqtt", metavar="HOST:PORT", help="the configured broker (default: the edge configuration's, "
                                                       "127.0.0.1:1883)")
    p.add_argument("--api-port", type=int, default=8080, help="port of the health API and console (8080; a free "
                                                              "one when it is taken)")
    p.add_argument("--bin-s", type=float, default=10.0, help="counts bin the summary and the controller use (10 s)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--video", help="clip to replay as the camera (default: ../shared/data/videos/intersection_4way.mp4)")
    p.add_argument("--model", help="ONNX model file or installed model name (default: picodet_s_416_coco)")
    p.add_argument("--no-sumo", action="store_true", help="do not drive a SUMO junction even when the sim extra is "
                                                          "installed (the controller then runs in shadow mode)")
    p.add_argument("--workdir", help="folder for the generated configurations, logs and the outbox (default: a "
                                     "temporary folder)")
