"""Installer and developer checks: ``roadside score`` and ``roadside evaluate``."""
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
    from roadside.calibration.evaluate import evaluate, format_table
    from roadside.edge.config import VisionConfig, load_config

    base = load_config(args.config, VisionConfig) if args.config else None
    results = evaluate(args.gt_dir, args.videos, args.model or [None], args.out, base)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="compare a counts.json with ground truth and print count accuracy",
        description="Compare COUNTS (from `roadside replay`) with GROUND_TRUTH (the shared/data/gt format: "
                    "hand-verified crossing events). Prints predicted and true counts per line, direction and "
                    "class, the overall count accuracy (1 - sum of errors / sum of true counts, backward "
                    "included) and event-level precision/recall.",
    )
    p.add_argument("counts", help="counts.json written by roadside replay")
    p.add_argument("ground_truth", help="ground-truth JSON (e.g. ../shared/data/gt/freeway_test.json)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=_score)

    p = sub.add_parser(
        "evaluate",
        help="replay every ground-truth clip with one or more models and print the accuracy table",
        description="For each ground-truth JSON in --gt-dir, replay its clip from --videos with the "
                    "ground truth's own lines and score it. Prints a Markdown table.",
    )
    p.add_argument("--gt-dir", default="../shared/data/gt", help="folder of ground-truth JSON files (default: %(default)s)")
    p.add_argument("--videos", default="../shared/data/videos", help="folder holding the clips (default: %(default)s)")
    p.add_argument("--model", action="append", help="model file or name; repeat for several (default: the product default)")
    p.add_argument("--config", help="base site YAML for detector/tracker/counting settings (its lines are replaced)")
    p.add_argument("--out", default="runs/evaluate", help="folder for the replay outputs (default: %(default)s)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=_evaluate)
