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
