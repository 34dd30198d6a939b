"""`mespot export`: a bundle's scorer as ONNX or a TensorRT engine."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.export import EXPORT_FORMATS, export
from engine.runtime.contract import PRECISIONS
from stream.errors import ConfigError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``mespot export`` to a CLI's subparsers (handler: `cmd_export`)."""
    formats = ", ".join(f"{f.name} ({f.description})" for f in EXPORT_FORMATS.values())
    p = subparsers.add_parser(
        "export",
        help="export a model bundle's scorer (ONNX, TensorRT)",
        description=f"Export a bundle's causal window scorer. Formats: {formats}. Without --out the "
        "artifact is written into the bundle and listed in its bundle.json.",
    )
    p.add_argument("bundle", help="the model bundle folder (NAME.mespot)")
    p.add_argument("--format", dest="fmt", default="onnx", choices=sorted(EXPORT_FORMATS))
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32 (default), fp16, or int8 (tensorrt with --onnx: a Q/DQ graph)",
    )
    p.add_argument("--window", type=int, help="W, the largest window in snippets (default: the bundle's)")
    p.add_argument("--out", help="artifact path (default: inside the bundle)")
    p.add_argument("--onnx", help="tensorrt: build from this ONNX graph (e.g. the INT8 Q/DQ graph)")
    p.add_argument("--max-batch", type=int, default=8, help="tensorrt: the largest batch (default 8)")
    p.add_argument("--workspace-mb", type=int, default=1024, help="tensorrt: builder workspace MiB")
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Handler of ``mespot export``."""
    opts: dict[str, Any] = {"precision": args.precision, "window": args.window}
    if args.fmt == "tensorrt":
        opts.update(onnx=args.onnx, max_batch=args.max_batch, workspace_mb=args.workspace_mb)
    elif args.onnx is not None:
        raise ConfigError("--onnx is a tensorrt option (the graph to build the engine from)")
    path = export(args.bundle, args.fmt, args.out, **opts)
    print(f"exported {args.fmt} ({args.precision}) -> {path}", file=sys.stderr)
    return 0
