"""``rlar export``: the trained network alone, as ONNX or TorchScript, or a trained model in the shipped format.

Examples::

    rlar export --model runs/ddti/rlar/fold_0 --format onnx --out model.onnx
    rlar export --model runs/ddti/rlar --format shipped --out my_model/     # every fold run, safetensors float16

The ONNX/TorchScript input is ``image`` (B, 1, H, W) preprocessed as the model's stored preprocessing says (recorded
in ``model.onnx.json``); outputs ``mask_prob``, ``class_prob`` and ``h_tirads`` (those the network has).
``--format shipped`` writes ``model.json`` + ``weights.safetensors`` (:mod:`rlar.inference.shipped`), at most
40 MB, usable as ``rlar predict --model DIR`` and loaded without pickle.
"""

from __future__ import annotations

import argparse

from rlar.errors import RlarError

FORMATS: tuple[str, ...] = ("onnx", "torchscript", "shipped")


class OptionError(RlarError):
    """A bad command-line option of ``rlar export`` (names the option, not a config key)."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a trained network to ONNX, TorchScript or the shipped format",
                                   description="Export the bare network of one checkpoint (no pre/post-processing), "
                                               "or a run / fold runs / grid arm as a shipped model.")
    parser.add_argument("--model", required=True, metavar="MODEL",
                        help="run folder or .pt checkpoint (shipped: also a folder of fold runs or a grid arm)")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--out", default=None,
                        help="output file (default: model.onnx / model.pt in the current folder; a folder for shipped)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 7-20 (TorchScript-based exporter)")
    parser.add_argument("--dynamo", action="store_true", help="use torch's torch.export-based ONNX exporter")
    parser.add_argument("--model-id", default=None, help="shipped format: the model's id (default: derived)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlar._optional import require
    from rlar.inference.export import OPSETS, export_model
    from rlar.inference.loading import load_trained_model

    if args.format == "shipped":
        from rlar.inference.shipped import MODEL_JSON, WEIGHTS_FILE, convert_run

        folder = convert_run(args.model, args.out or "shipped_model", model_id=args.model_id)
        total = sum((folder / name).stat().st_size for name in (MODEL_JSON, WEIGHTS_FILE)) / 1e6
        print(f"wrote the shipped model {folder} ({total:.1f} MB: {MODEL_JSON}, {WEIGHTS_FILE}); use it with "
              f"`rlar predict --model {folder}`")
        return 0
    if args.format == "onnx":
        try:
            require("onnx", extra="export", purpose="exporting to ONNX")
        except ImportError as exc:
            raise OptionError("--format onnx", str(exc)) from None
        if not args.dynamo and args.opset not in OPSETS:
            raise OptionError("--opset", f"{args.opset} is not an ONNX opset this exporter writes; choose "
                                         f"{OPSETS.start} to {OPSETS.stop - 1} (default 17)")
    out = args.out or ("model.onnx" if args.format == "onnx" else "model.pt")
    trained = load_trained_model(args.model)
    path = export_model(trained, out, args.format, opset=args.opset, dynamo=args.dynamo)
    print(f"exported {trained.path} ({trained.config.model.arch}/{trained.config.model.backbone}, classes "
          f"{', '.join(trained.label_space.class_names)}; input: {trained.prep.describe()}) to {path} "
          f"({args.format}); metadata: {path}.json")
    return 0
