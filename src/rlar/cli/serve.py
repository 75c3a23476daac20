"""``rlar serve``: a local web page to upload an ultrasound image and see the prediction and its evidence.

Example::

    rlar serve --model runs/ddti/rlar/fold_0          # then open http://127.0.0.1:8000

Listens on 127.0.0.1 (this machine only) unless ``--host`` says otherwise, and answers only requests addressed
to the loopback names, ``--host`` itself and each ``--allow-host`` name (a page elsewhere that points its own
host name at this machine -- DNS rebinding -- gets 403, as does any cross-origin upload). Every request is
logged on stderr, one line each. Research use only, not for diagnosis.
"""

from __future__ import annotations

import argparse
import sys

from rlar.cli.common import add_device_argument, add_threads_argument
from rlar.environment import INFERENCE_DEVICE

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ALL_INTERFACES = ("0.0.0.0", "::", "")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="local web viewer: upload an image, see mask, category, evidence",
                                   description="Serve a web page for predictions with a trained model.")
    parser.add_argument("--model", default=None, metavar="RUN_OR_CHECKPOINT",
                        help="run folder, fold_* folder of 'rlar train --fold all' or grid arm (ensembled), or a .pt "
                             "checkpoint (default: the model shipped with rlar, docs/model-card.md)")
    parser.add_argument("--folds", default=None, help="comma-separated folds of an experiment folder (default: all)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="horizontal-flip test-time augmentation (default: as the run's config, section prediction)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this "
                                                             "machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default: 8000)")
    parser.add_argument("--allow-host", action="append", default=None, metavar="NAME",
                        help="another host name or address browsers may use to reach the viewer (repeatable); "
                             "requests for any other name get 403 (default: loopback names and --host)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0,
                        help="largest accepted upload in MB (default: 20)")
    parser.add_argument("--max-megapixels", type=float, default=25.0,
                        help="largest image in megapixels, every frame counted from its own header before "
                             "decoding (default: 25)")
    add_device_argument(parser, INFERENCE_DEVICE)
    add_threads_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rlar._optional import require
    from rlar.cli.common import finite_number
    from rlar.cli.predict import parse_folds
    from rlar.environment import resolve_device, set_cpu_threads
    from rlar.errors import ConfigError
    from rlar.inference.predictor import PHANTOM_NOTICE, Predictor
    from rlar.serving.limits import validate_limits

    try:
        uvicorn = require("uvicorn", extra="serve", purpose="the web viewer")
        from rlar.serving.app import create_app, log_requests
    except ImportError as exc:
        raise ConfigError("serve", str(exc)) from None
    if not 0 < args.port < 65536:
        raise ConfigError("--port", f"must be in 1..65535, got {args.port}")
    upload_mb = finite_number(args.max_upload_mb, "--max-upload-mb")
    megapixels = finite_number(args.max_megapixels, "--max-megapixels")
    set_cpu_threads(args.threads, "--threads")
    limits = validate_limits(max_upload_bytes=int(upload_mb * 1024 * 1024), max_pixels=int(megapixels * 1e6))
    allowed = allowed_hosts(args.host, args.allow_host)
    predictor = Predictor.from_run(args.model, folds=parse_folds(args.folds), tta=args.tta,
                                   device=resolve_device(args.device, "--device"), max_pixels=limits.max_pixels)
    print(f"model: {predictor.describe()}", file=sys.stderr)
    if predictor.trained_on_phantom:
        print(f"warning: {PHANTOM_NOTICE}", file=sys.stderr)
    if args.host not in _LOOPBACK:
        print(f"warning: listening on {args.host}: other machines can reach this research viewer; it has no "
              "authentication", file=sys.stderr)
    app = create_app(predictor, limits, {"tta": predictor.tta, "folds": args.folds}, allowed_hosts=allowed)
    log_requests(sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"rlar viewer on http://{shown}:{args.port}  (Ctrl+C to stop); answers host names: "
          f"{', '.join(allowed)}; one line per request below", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def allowed_hosts(host: str, extra: list[str] | None) -> list[str]:
    """Host names the viewer answers: loopback names, the address it listens on (unless all interfaces), and
    ``--allow-host`` names; ConfigError for an empty or malformed name."""
    from rlar.errors import ConfigError

    names = list(_LOOPBACK)
    if host not in _ALL_INTERFACES:
        names.append(host)
    for name in extra or []:
        cleaned = name.strip().lower()
        if not cleaned or any(c in cleaned for c in "/@ ?#"):
            raise ConfigError("--allow-host", f"expected a host name or address such as viewer.lan, got {name!r}")
        names.append(cleaned)
    return list(dict.fromkeys(names))
