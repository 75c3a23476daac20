"""``rlar export``: the trained network alone, as ONNX or TorchScript, with named inputs and outputs.

Example::

    rlar export --model runs/ddti/rlar/fold_0 --format onnx --out model.onnx

The input is ``image`` (B, 1, H, W) preprocessed as in training; outputs ``mask_prob``, ``class_prob`` and
``h_tirads`` (those the network has). ``model.onnx.json`` beside it records class names, sizes and provenance.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a trained network to ONNX or TorchScript",
                                   description="Export the bare network of one checkpoint (no pre/post-processing).")
    parser.add_argument("--model", required=True, metavar="RUN_OR_CHECKPOINT", help="run folder or .pt checkpoint")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("--out", default=None, help="output file (default: model.onnx / model.pt in the current folder)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (TorchScript-based exporter)")
    parser.add_argument("--dynamo", action="store_true", help="use torch's torch.export-based ONNX exporter")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlar._optional import require
    from rlar.errors import ConfigError
    from rlar.inference.export import export_model
    from rlar.inference.loading import load_trained_model

    if args.format == "onnx":
        try:
            require("onnx", extra="export", purpose="exporting to ONNX")
        except ImportError as exc:
            raise ConfigError("--format", str(exc)) from None
    out = args.out or ("model.onnx" if args.format == "onnx" else "model.pt")
    trained = load_trained_model(args.model)
    path = export_model(trained, out, args.format, opset=args.opset, dynamo=args.dynamo)
    print(f"exported {trained.path} ({trained.config.model.arch}/{trained.config.model.backbone}, classes "
          f"{', '.join(trained.label_space.class_names)}) to {path} ({args.format}); metadata: {path}.json")
    return 0
