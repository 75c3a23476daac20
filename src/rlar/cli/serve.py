"""``rlar serve``: a local web page to upload an ultrasound image and see the prediction and its evidence.

Example::

    rlar serve --model runs/ddti/rlar/fold_0          # then open http://127.0.0.1:8000

Listens on 127.0.0.1 (this machine only) unless ``--host`` says otherwise. Research use only, not for diagnosis.
"""

from __future__ import annotations

import argparse
import sys

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="local web viewer: upload an image, see mask, category, evidence",
                                   description="Serve a web page for predictions with a trained model.")
    parser.add_argument("--model", required=True, metavar="RUN_OR_CHECKPOINT",
                        help="run folder, experiment folder of fold_* runs (ensembled), or a .pt checkpoint")
    parser.add_argument("--folds", default=None, help="comma-separated folds of an experiment folder (default: all)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="horizontal-flip test-time augmentation (default: as the run's config, section prediction)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload")
    parser.add_argument("--max-megapixels", type=float, default=25.0,
                        help="largest image (all frames), checked from its header before decoding")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the network (default: torch's; 1 is much faster on a busy machine)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlar._optional import require
    from rlar.cli.predict import parse_folds, set_threads
    from rlar.errors import ConfigError
    from rlar.inference.predictor import PHANTOM_NOTICE, Predictor
    from rlar.serving.limits import validate_limits
    from rlar.training.trainer import resolve_device

    try:
        uvicorn = require("uvicorn", extra="serve", purpose="the web viewer")
        from rlar.serving.app import create_app
    except ImportError as exc:
        raise ConfigError("serve", str(exc)) from None
    if not 0 < args.port < 65536:
        raise ConfigError("--port", f"must be in 1..65535, got {args.port}")
    set_threads(args.threads)
    limits = validate_limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                             max_pixels=int(args.max_megapixels * 1e6))
    predictor = Predictor.from_run(args.model, folds=parse_folds(args.folds), tta=args.tta,
                                   device=resolve_device(args.device), max_pixels=limits.max_pixels)
    if predictor.trained_on_phantom:
        print(f"warning: {PHANTOM_NOTICE}", file=sys.stderr)
    if args.host not in _LOOPBACK:
        print(f"warning: listening on {args.host}: other machines can reach this research viewer; it has no "
              "authentication", file=sys.stderr)
    app = create_app(predictor, limits, {"model": args.model, "tta": predictor.tta, "folds": args.folds})
    print(f"rlar viewer on http://{args.host}:{args.port}  (Ctrl+C to stop)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
