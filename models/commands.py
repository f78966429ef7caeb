"""`roadside models ...`: fetch, list, info, export, quantize and benchmark detector models.

Heavy imports (onnx, onnxruntime, ultralytics) happen inside the handlers so that ``roadside --help`` stays
instant on a small box.
"""
from __future__ import annotations

import argparse
import json
import sys


def register(cli) -> None:
    """Add the ``models`` command group (``models bench`` is registered by roadside.calibration.commands)."""
    cli.group("models", help="install, inspect, export, quantise and benchmark detector models",
              description="Manage the detector models of this box: a local store of verified ONNX files "
                          "(under $ROADSIDE_HOME/models), filled from offline mirrors.")

    f = cli.verb(
        "models", "fetch", _cmd_fetch,
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

    ls = cli.verb("models", "list", _cmd_list, help="show installed and known models",
                         description="Show the models installed in the local store (checksums re-verified) and the models "
                         "the product knows how to get.")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    i = cli.verb("models", "info", _cmd_info, help="print a model's family, inputs, outputs, metadata and providers",
                        description="Describe a model file or installed model: family and how it was recognised, input, "
                        "outputs, embedded metadata, precision and the execution providers it would run on.")
    i.add_argument("model", help="path to an .onnx file or an installed model name")
    i.add_argument("--providers", metavar="LIST", default="cpu",
                   help="comma-separated execution providers in order of preference (cpu, cuda, tensorrt, openvino); "
                   "unavailable ones fall back to CPU with a warning (default: cpu)")
    i.add_argument("--family", default="auto", choices=["auto", "ultralytics", "yolox", "picodet", "nanodet"],
                   help="override family recognition")
    i.add_argument("--json", action="store_true", help="print JSON")

    e = cli.verb(
        "models", "export", _cmd_export,
        help="export Ultralytics YOLO weights to ONNX with embedded metadata (needs the 'export' extra)",
        description="Export Ultralytics detection weights (.pt, or an architecture .yaml such as yolo11n.yaml for "
        "random weights) to OUT/NAME.onnx with roadside metadata (family, input size, class names, "
        "pre-processing), and record its sha256 in OUT/MANIFEST.json so that OUT works as a mirror for "
        "`roadside models fetch NAME --from OUT`. Runs offline; never downloads weights.",
    )
    e.add_argument("weights", help="Ultralytics weights file (.pt) or architecture (.yaml)")
    e.add_argument("--imgsz", type=int, nargs="+", required=True, metavar="N",
                   help="input size: N for NxN, or H W (multiples of 32)")
    e.add_argument("--classes", nargs="+", metavar="NAME",
                   help="class names to embed instead of the weights' own: names, 'coco80', or a .txt/.json/.yaml file")
    e.add_argument("--name", help="model name (default: weights name and size, e.g. yolo11n_640)")
    e.add_argument("--out", default=".", metavar="DIR", help="output folder (default: current folder)")
    e.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's choice)")
    e.add_argument("--int8", action="store_true", help="also write a static int8 model (needs --calibration)")
    e.add_argument("--calibration", nargs="+", metavar="VIDEO", help="video(s) for int8 calibration")

    q = cli.verb(
        "models", "quantize", _cmd_quantize,
        help="static int8 (QDQ) quantisation calibrated on real video",
        description="Write a static int8 QDQ copy of MODEL, calibrated on frames decoded from VIDEO(s) and "
        "pre-processed exactly as the detector does. The result is checked against the fp32 model on held-out "
        "frames; a model whose detections disagree is refused. Dynamic quantisation is not offered: it is "
        "slower than fp32 on these CPUs.",
    )
    q.add_argument("model", help="fp32 .onnx file or installed model name")
    q.add_argument("--calibration", nargs="+", required=True, metavar="VIDEO", help="video(s) from the site or similar")
    q.add_argument("--out", metavar="FILE", help="output file (default: MODEL_int8.onnx beside the input, or in the "
                   "current folder for an installed model)")
    q.add_argument("--frames", type=int, default=64, help="calibration frames, spread over the videos (default 64)")
    q.add_argument("--method", default="percentile", choices=["minmax", "percentile", "entropy"],
                   help="activation range calibration (default percentile: clips rare outliers; minmax was "
                   "worse on YOLOX and no better on NanoDet here)")
    q.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weight scales")
    q.add_argument("--quantize-tail", action="store_true",
                   help="also quantise the output tail (decode ops after the last convolution); usually harmful")
    q.add_argument("--allow-degraded", action="store_true",
                   help="write the int8 model even if its detections disagree with fp32")


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


def _print_quantized(res) -> None:
    a = res.agreement
    f1 = "not measurable (fp32 detects nothing)" if a["f1"] is None else f"F1 {a['f1']}"
    print(f"wrote {res.path} (static int8 QDQ, {res.quantized_nodes} quantised tensors, {res.excluded_nodes} tail nodes "
          f"kept fp32, {res.method} calibration on {res.frames} frames)")
    print(f"  agreement with fp32 on {a['frames']} held-out frames: {f1} (int8 {a['candidate_detections']} "
          f"detections, fp32 {a['reference_detections']}, {a['matched']} matched)")


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from roadside.models.export import ExportError, export_ultralytics, parse_classes

    if len(args.imgsz) not in (1, 2):
        raise ExportError("--imgsz takes N or H W")
    if args.int8 and not args.calibration:
        raise ExportError("--int8 needs --calibration VIDEO (static int8 is calibrated on real frames)")
    imgsz = (args.imgsz[0], args.imgsz[-1])
    res = export_ultralytics(args.weights, imgsz, args.out, args.name, parse_classes(args.classes), args.opset)
    names = res.class_names
    print(f"wrote {res.path} (ultralytics, input {imgsz[0]}x{imgsz[1]}, {len(names)} classes: "
          f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''})")
    print(f"  sha256 {res.sha256} (recorded in {res.manifest})")
    fetch_names = [res.name]
    if args.int8:
        from roadside.models.quantize import quantize_model

        qres = quantize_model(res.path, args.calibration, Path(args.out) / f"{res.name}_int8.onnx")
        _print_quantized(qres)
        from roadside.models.export import update_manifest
        from roadside.models.store import sha256_file

        update_manifest(Path(args.out), {"name": f"{res.name}_int8", "file": qres.path.name, "sha256": sha256_file(qres.path),
                                         "family": "ultralytics", "input": list(imgsz), "classes": len(names),
                                         "source": res.path.name})
        fetch_names.append(f"{res.name}_int8")
    for n in fetch_names:
        print(f"  install with: roadside models fetch {n} --from {args.out}")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from roadside.models.quantize import quantize_model
    from roadside.models.store import resolve_model, store_dir

    src = resolve_model(args.model)
    out = args.out
    if out is None and src.parent == store_dir():  # never write into the verified store
        out = Path.cwd() / f"{src.stem}_int8.onnx"
    res = quantize_model(src, args.calibration, out, frames=args.frames, method=args.method,
                         per_channel=not args.per_tensor, keep_tail_fp32=not args.quantize_tail,
                         allow_degraded=args.allow_degraded)
    _print_quantized(res)
    return 0
