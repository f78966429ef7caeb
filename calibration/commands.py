"""``roadside calibrate ...``: installer and developer checks against ground truth; and ``roadside models bench``,
whose count-accuracy part replays ground-truth clips (so it lives beside ``evaluate``, above the edge)."""
from __future__ import annotations

import argparse
import json


def _score(args: argparse.Namespace) -> int:
    from roadside.calibration.score import format_report, score_files

    result = score_files(args.counts, args.ground_truth)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_report(result))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import sys

    from roadside.calibration.evaluate import evaluate, format_lines, format_table, write_readme
    from roadside.edge.site_file import load_vision_config

    base = load_vision_config(args.config, args.camera) if args.config else None
    cache = None if args.no_cache else args.cache
    results = evaluate([args.gt_dir, *(args.truth_dir or [])], args.videos, args.model or [None], args.out, base,
                       cache_dir=cache, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_table(results))
    print()
    print(format_lines(results))
    if args.readme:
        write_readme(args.readme, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def _need_config(args: argparse.Namespace) -> None:
    from roadside.core.errors import ConfigError

    if not args.config:
        raise ConfigError(f"{args.command_name}: --config SITE.yaml is needed (the site file to use)")


def _audit(args: argparse.Namespace) -> int:
    _need_config(args)
    from roadside.calibration.audit import format_audit, run_audit, write_html
    from roadside.edge.site_file import load_vision_config

    config = load_vision_config(args.config, args.camera)
    report, tracks = run_audit(config, args.video, args.truth, args.out, model=args.model, threshold=args.threshold,
                               fresh=args.fresh)
    print(format_audit(report))
    if args.html:
        n = write_html(report, tracks, config, args.video, args.html)
        print(f"report with {n} annotated disagreement(s): {args.html}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if report["flagged"] else 0


def _frame_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frame {text}: give WIDTHxHEIGHT, e.g. 1280x720") from None
    return w, h


def _check(args: argparse.Namespace) -> int:
    _need_config(args)
    import sys

    from roadside.calibration.site_check import check_site
    from roadside.core.errors import ConfigError

    problems = check_site(args.config, args.camera, _frame_size(args.frame))
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        raise ConfigError(f"{args.config}: {len(problems)} problem(s) in the lines and zones")
    print(f"{args.config}: lines and zones OK", file=sys.stderr)
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    _need_config(args)
    import sys

    from roadside.calibration.site_check import check_site, snapshot

    for p in check_site(args.config, args.camera):
        print(f"warning: {p}", file=sys.stderr)
    print(json.dumps(snapshot(args.config, args.out, args.camera, args.frames, args.model)))
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from roadside.calibration.diagnose import diagnose_clip, format_diagnosis
    from roadside.edge.config import VisionConfig
    from roadside.edge.site_file import load_vision_config

    base = load_vision_config(args.config, args.camera) if args.config else VisionConfig()
    for gt in args.ground_truth:
        d = diagnose_clip(gt, args.videos, base, args.model, args.cache)
        print(format_diagnosis(d))
        if args.json:
            print(json.dumps(d, indent=1))
    return 0


def _shake(args: argparse.Namespace) -> int:
    from roadside.calibration.shake import Sway, shake_clip

    for seed in args.seed or [1]:
        sway = Sway(args.amplitude, args.period, args.rotation, args.zoom, seed)
        video, truth = shake_clip(args.video, args.ground_truth, args.out, sway, frames=args.frames)
        print(f"{video}  {truth}")
    return 0


def _models_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from roadside.calibration.model_bench import format_header, run_benchmark
    from roadside.models.catalog import known_models
    from roadside.models.store import resolve_model

    refs = args.models or [k.name for k in known_models().values() if k.sha256]
    models = [resolve_model(r) for r in refs]
    gt = Path(args.gt) if args.gt else None
    videos = Path(args.videos) if args.videos else (gt.parent / "videos" if gt else None)
    print(format_header(args.threads, gt is not None), flush=True)
    rows = run_benchmark(models, Path(args.int8_dir), [Path(v) for v in args.calibration or []] or None, args.frames,
                         args.runs, args.threads, gt, videos, progress=lambda line: print(line, flush=True))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def register(cli) -> None:
    from roadside.edge.commands import config_args

    cli.group("calibrate", help="check counts against ground truth or a manual count",
              description="Installer and developer checks: score a replay against ground truth, evaluate models "
                          "on every ground-truth clip.")
    p = cli.verb(
        "calibrate", "score", _score, old=("score",),
        help="compare a counts.json with ground truth and print count accuracy",
        description="Compare COUNTS (from `roadside edge replay`) with GROUND_TRUTH (the shared/data/gt format: "
                    "hand-verified crossing events). Prints predicted and true counts per line, direction and "
                    "class, the overall count accuracy (1 - sum of errors / sum of true counts, backward "
                    "included) and event-level precision/recall.",
    )
    p.add_argument("counts", help="counts.json written by roadside edge replay")
    p.add_argument("ground_truth", help="ground-truth JSON (e.g. ../shared/data/gt/freeway_test.json)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")

    p = cli.verb(
        "calibrate", "evaluate", _evaluate, old=("evaluate",),
        help="replay every ground-truth clip with one or more models and print the accuracy table",
        description="For each ground-truth JSON in --gt-dir, replay its clip from --videos with the "
                    "ground truth's own lines and score it. Prints a Markdown table.",
    )
    p.add_argument("--gt-dir", default="../shared/data/gt", help="folder of ground-truth JSON files (default: %(default)s)")
    p.add_argument("--videos", default="../shared/data/videos", help="folder holding the clips (default: %(default)s)")
    p.add_argument("--truth-dir", action="append", metavar="DIR",
                   help="another folder of ground-truth JSON files (clips beside them or in --videos); repeatable")
    p.add_argument("--model", action="append", help="model file or name; repeat for several (default: the product default)")
    config_args(p, "detector/tracker/counting settings (its lines are replaced by the ground truth's)")
    p.add_argument("--out", default="runs/evaluate", help="folder for the replay outputs (default: %(default)s)")
    p.add_argument("--cache", default="runs/detections-cache", metavar="DIR",
                   help="detections cache: the detector's boxes per model and clip, reused while only suppression, "
                        "tracker or counting settings change (default: %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="run the detector on every clip (and measure its time afresh)")
    p.add_argument("--readme", metavar="FILE", help="write the clip table into FILE between its accuracy-table markers")
    p.add_argument("--json", help="also write the results to this JSON file")

    p = cli.verb(
        "calibrate", "audit", _audit,
        help="count a clip with the site's lines and compare with a manual count, line by line",
        description="Replay VIDEO with the site file's lines (the service's pipeline), compare the counts with the "
                    "manual count (TRUTH, the shared/data/gt format, e.g. from the calibration page's manual count) "
                    "per line, direction and class, print the accuracy and flag every line below --threshold with "
                    "its likely cause (few clean tracks, crossings near the line's ends, class confusion, missed or "
                    "extra vehicles). Exit status 1 when a line is flagged.",
    )
    config_args(p, "the site file (or vision file) whose lines are audited")
    p.add_argument("--video", required=True, help="the recorded clip of the camera")
    p.add_argument("--truth", required=True, metavar="MANUAL.json", help="the manual count (shared/data/gt format)")
    p.add_argument("--threshold", type=float, default=0.95, help="flag lines below this accuracy (default %(default)s)")
    p.add_argument("--html", metavar="OUT.html", help="also write a report with an annotated frame per disagreement")
    p.add_argument("--out", default="runs/audit", help="folder for the replay's counts and tracks, reused by the next "
                                                       "audit of the same clip, configuration and model (default: "
                                                       "%(default)s)")
    p.add_argument("--fresh", action="store_true", help="replay the clip even when --out holds a reusable replay")
    p.add_argument("--model", help="ONNX file or installed model name (default: detector.model, else the product default)")
    p.add_argument("--json", metavar="FILE", help="also write the whole audit as JSON")

    p = cli.verb(
        "calibrate", "shake", _shake,
        help="re-render a fixed camera's clip as if its pole swayed, with its ground truth (for robustness tests)",
        description="Write VIDEO moved by a smooth, seeded sway (shift, rotation and zoom; none at the first frame, "
                    "where the lines were drawn) and a copy of GROUND_TRUTH naming it, into --out: the vehicles "
                    "cross the road's lines at the same frames, so the truth stays exact. `roadside calibrate "
                    "evaluate --gt-dir OUT` then scores counting on a moving camera.",
    )
    p.add_argument("video", help="the clip of a fixed camera")
    p.add_argument("ground_truth", help="its ground-truth JSON (the shared/data/gt format)")
    p.add_argument("--out", required=True, help="folder for the swaying clips and their truth")
    p.add_argument("--amplitude", type=float, default=30.0, help="largest shift in x, pixels (y: 0.6 of it; default %(default)s)")
    p.add_argument("--period", type=float, default=8.0, help="period of the slowest sway, seconds (default %(default)s)")
    p.add_argument("--rotation", type=float, default=0.5, help="largest rotation, degrees (default %(default)s)")
    p.add_argument("--zoom", type=float, default=0.01, help="largest zoom change, 0.01 = 1%% (default %(default)s)")
    p.add_argument("--seed", type=int, action="append", help="seed of the sway; repeat for several clips (default 1)")
    p.add_argument("--frames", type=int, help="only the first N frames")

    p = cli.verb(
        "calibrate", "check", _check,
        help="check the lines and zones of a site file, with the calibration page's messages",
        description="Validate every camera's lines and zones item by item: inside the frame (the frame size of the "
                    "camera's video file, or --frame), polygons not self-intersecting, ids unique, classes and "
                    "phases that resolve. Each problem names its key path and item. Exit status 2 on a problem.",
    )
    config_args(p, "the site file (or vision file) to check")
    p.add_argument("--frame", metavar="WxH", help="frame size to check against, for a stream (e.g. 1280x720)")

    p = cli.verb(
        "calibrate", "snapshot", _snapshot,
        help="write a picture of a camera with its lines, zones, boxes and track ids",
        description="Run the camera's pipeline over the first --frames frames of its source and write the last frame "
                    "with the lines (arrow to the forward side), zones, detector boxes and track ids drawn; layout "
                    "problems are printed as warnings.",
    )
    config_args(p, "the site file")
    p.add_argument("--out", default="snapshot.jpg", help="image to write (default: %(default)s)")
    p.add_argument("--frames", type=int, default=30, help="frames to run before the picture (default: %(default)s)")
    p.add_argument("--model", help="ONNX file or installed model name (default: detector.model, else the product default)")

    p = cli.verb(
        "calibrate", "diagnose", _diagnose,
        help="follow every missed and every false crossing through detector, suppression, tracker and counter",
        description="For each GROUND_TRUTH file, replay its clip (from the detections cache, filled on first use) "
                    "with its own lines and print, per missed true crossing, the first stage that lost it (no "
                    "candidate box; removed by suppression; no track; a track that did not count, or counted late) "
                    "and every false count with its track.",
    )
    p.add_argument("ground_truth", nargs="+", help="ground-truth JSON files")
    p.add_argument("--videos", default="../shared/data/videos", help="folder holding the clips (default: %(default)s)")
    p.add_argument("--model", help="model file or name (default: the configuration's, else the product default)")
    config_args(p, "detector/tracker/counting settings (its lines are replaced by the ground truth's)")
    p.add_argument("--cache", default="runs/detections-cache", metavar="DIR", help="detections cache (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="also print the diagnosis as JSON")

    b = cli.verb(
        "models", "bench", _models_bench, old=("models benchmark",),
        help="fp32 versus int8: latency (1 and 2 threads) and count accuracy against ground truth",
        description="For each model, compare the fp32 file with a static int8 copy (made into --int8-dir with "
        "--calibration, or reused from there): session latency (median and p90) with 1 and 2 threads and, "
        "with --gt, the pipeline's count accuracy on every ground-truth clip. Prints a table; --json writes all numbers.",
    )
    b.add_argument("models", nargs="*", metavar="MODEL",
                   help="model files or installed names (default: the four Apache-2.0 models, installed)")
    b.add_argument("--int8-dir", default="bench_int8", metavar="DIR", help="where int8 copies are made/reused")
    b.add_argument("--calibration", nargs="+", metavar="VIDEO", help="calibration video(s) for missing int8 copies")
    b.add_argument("--frames", type=int, default=64, help="calibration frames (default 64)")
    b.add_argument("--runs", type=int, default=50, help="timed runs per measurement (default 50)")
    b.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts (default 1 2)")
    b.add_argument("--gt", metavar="DIR", help="ground-truth folder (../shared/data/gt) for count accuracy")
    b.add_argument("--videos", metavar="DIR", help="clips folder (default: ../videos beside --gt)")
    b.add_argument("--json", metavar="FILE", help="write every number to FILE")
