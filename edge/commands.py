"""``roadside edge replay`` and ``roadside edge bench`` (the service's verbs are in service_commands.py)."""
from __future__ import annotations

import argparse
import json
import sys


def _replay(args: argparse.Namespace) -> int:
    from roadside.edge.replay import run_replay
    from roadside.edge.site_file import load_vision_config

    config = load_vision_config(args.config, args.camera)
    if not config.lines and not config.zones:
        print("roadside edge replay: warning: the configuration has no count lines or zones; only tracks will be recorded",
              file=sys.stderr)
    counts = run_replay(args.video, config, args.out, model=args.model, annotate=args.annotate, realtime=args.realtime,
                        progress=False if args.no_progress else None, cache_dir=args.cache)
    summary = {lid: {d: sum(c.values()) for d, c in dirs.model_dump().items()} for lid, dirs in counts.lines.items()}
    print(json.dumps({"frames": counts.frames, "model": counts.model, "lines": summary,
                      "counts": f"{args.out}/counts.json"}))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from roadside.edge.bench import main_bench

    return main_bench(args)


def config_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--config`` (a vision file or the edge service's site file) and ``--camera`` (which camera of a site file)."""
    p.add_argument("--config", metavar="YAML", help=f"vision file or the edge service's site file: {what}")
    p.add_argument("--camera", metavar="ID", help="with a site file: the camera whose lines, zones and settings to use "
                                                  "(default: its only camera)")


def register(cli) -> None:
    from roadside.edge import service_commands

    service_commands.register(cli)
    p = cli.verb(
        "edge", "replay", _replay, old=("replay",),
        help="count vehicles in a recorded video (developers: test and tune)",
        description="Run detector, tracker and counter over VIDEO; write OUT/counts.json "
                    "(totals per line, direction and class, every crossing event, interval bins, zone changes) "
                    "and, with --annotate, OUT/annotated.mp4.",
    )
    p.add_argument("video", help="video file to replay")
    config_args(p, "count lines, zones, detector/tracker/counting settings (a file holding only `lines:` is enough)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--model", help="ONNX model file or installed model name (default: detector.model, else the product default)")
    p.add_argument("--annotate", action="store_true", help="also write OUT/annotated.mp4 with boxes, ids, lines and counts, "
                                                            "and OUT/slitscan_<line>.png per line (the pixels under the "
                                                            "line over time, the counted crossings marked)")
    p.add_argument("--cache", metavar="DIR", help="detections cache folder: reuse the detector's boxes of an earlier "
                                                  "replay of the same clip and model (see calibrate evaluate)")
    p.add_argument("--realtime", action="store_true", help="pace processing to the video's frame rate (default: as fast as possible)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    p = cli.verb(
        "edge", "bench", _bench, old=("bench",),
        help="measure raw detector vs whole-pipeline throughput on a video (median of several runs)",
        description="Prints session.run-only, raw detector and full pipeline frames/s for MODEL on VIDEO, "
                    "and their ratio. Run it on an otherwise idle machine.",
    )
    p.add_argument("video")
    p.add_argument("--model", help="ONNX file or installed model name (default: the product default)")
    config_args(p, "lines and detector settings; default: two lines across the frame")
    p.add_argument("--frames", type=int, default=300, help="frames per run (default: %(default)s)")
    p.add_argument("--runs", type=int, default=5, help="runs; medians are reported (default: %(default)s)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: from the config)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--cameras", type=int, metavar="N",
                   help="capacity: run 1..N cameras at once (the service's camera workers, VIDEO looped at its real "
                        "frame rate each) and print frames/s processed and delivered per camera, drops and CPU")
    p.add_argument("--modes", default="default,every-frame",
                   help="with --cameras: detection modes, comma-separated: default (the config's detect_fps), "
                        "every-frame, detect-fps-X (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=20.0, help="with --cameras: measured seconds per row (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=5.0, help="with --cameras: seconds before measuring (default: %(default)s)")
