"""`roadside models ...`: fetch, list, info, export, quantize and benchmark detector models.

Heavy imports (onnx, onnxruntime, ultralytics) happen inside the handlers so that ``roadside --help`` stays
instant on a small box.
"""
from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``models`` command group to the root parser."""
    p = sub.add_parser(
        "models",
        help="install, inspect, export and quantise detector models",
        description="Manage the detector models of this box: a local store of verified ONNX files "
        "(under $ROADSIDE_HOME/models), filled from offline mirrors.",
    )
    msub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)

    f = msub.add_parser(
        "fetch",
        help="install a model into the local store, verifying its sha256",
        description="Install a model into the local store. The file must match the checksum of the known model "
        "(see `roadside models list`), or --sha256, or the mirror's MANIFEST.json entry. On any error the store is "
        "left as it was.",
    )
    f.add_argument("name", help="model name (e.g. picodet_s_416_coco, or your own model's name)")
    f.add_argument("--from", dest="source", metavar="SOURCE",
                   help="offline mirror folder (USB stick, internal share; ../shared/models in development), an "
                   "http(s) mirror base URL, or one .onnx file")
    f.add_argument("--sha256", metavar="HEX", help="expected sha256 of the file (for models the product does not know)")
    f.set_defaults(func=_cmd_fetch)

    ls = msub.add_parser("list", help="show installed and known models",
                         description="Show the models installed in the local store (checksums re-verified) and the models "
                         "the product knows how to get.")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=_cmd_list)

    i = msub.add_parser("info", help="print a model's family, inputs, outputs, metadata and providers",
                        description="Describe a model file or installed model: family and how it was recognised, input, "
                        "outputs, embedded metadata, precision and the execution providers it would run on.")
    i.add_argument("model", help="path to an .onnx file or an installed model name")
    i.add_argument("--providers", metavar="LIST", default="cpu",
                   help="comma-separated execution providers in order of preference (cpu, cuda, tensorrt, openvino); "
                   "unavailable ones fall back to CPU with a warning (default: cpu)")
    i.add_argument("--family", default="auto", choices=["auto", "ultralytics", "yolox", "picodet", "nanodet"],
                   help="override family recognition")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_cmd_info)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from roadside.models.fetch import fetch

    res = fetch(args.name, args.source, args.sha256)
    m = res.model
    print(f"{args.name}: {res.action} at {m.path}")
    print(f"  sha256 {m.recorded_sha256} (verified against the {res.checksum_from})")
    if m.record.get("family"):
        print(f"  family {m.record['family']}, input {m.record.get('input_size')}, {m.record.get('classes')} classes, "
              f"{m.record.get('precision')}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from roadside.models.listing import list_models

    rows = list_models()
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    from roadside.models.store import DEFAULT_MODEL, store_dir

    print(f"model store: {store_dir()}  (default model: {DEFAULT_MODEL})")
    header = ("NAME", "STATE", "FAMILY", "INPUT", "LICENCE")
    table = [header] + [
        (r["name"] + (" *" if r["name"] == DEFAULT_MODEL else ""), r["state"], r["family"] or "?",
         "x".join(map(str, r["input"])) if r["input"] else "?", (r["license"] or "-").split(" (")[0])
        for r in rows
    ]
    widths = [max(len(str(row[c])) for row in table) for c in range(len(header))]
    for row in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from roadside.models.inspect_model import describe_model
    from roadside.models.store import resolve_model

    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    d = describe_model(resolve_model(args.model), providers, args.family)
    if args.json:
        json.dump(d, sys.stdout, indent=1)
        print()
        return 0
    names = d["class_names"]
    print(f"{d['name']}  ({d['path']})")
    print(f"  family      {d['family']} (recognised by {d['recognised_by']})")
    print(f"  known as    {d['known_as'] or '-'}    sha256 {d['sha256']}")
    print(f"  precision   {d['precision']}; {d['nodes']} nodes, opset {d['opset']}, producer {d['producer']}")
    for x in d["inputs"]:
        print(f"  input       {x['name']} {x['shape']} {x['type']}")
    for x in d["outputs"]:
        print(f"  output      {x['name']} {x['shape']} {x['type']}")
    print(f"  preprocess  {json.dumps(d['preprocess'])}")
    print(f"  classes     {len(names)}: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}")
    for k, v in sorted(d["metadata"].items()):
        print(f"  metadata    {k} = {v if len(v) <= 100 else v[:97] + '...'}")
    print(f"  providers   used {', '.join(d['providers']['used'])}; available {', '.join(d['providers']['available'])}")
    return 0
