"""The ``rlar`` command: a thin dispatcher over one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys

from rlar import __version__
from rlar.errors import RlarError

# Subcommand modules, each exposing add_parser(subparsers); imported here, in the order shown by --help.
_COMMANDS = ("demo", "data", "radiomics", "train", "evaluate", "plot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlar",
        description="Clinically aligned multitask thyroid ultrasound assessment (segmentation + TI-RADS, RLAR).",
    )
    parser.add_argument("--version", action="version", version=f"rlar {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"rlar.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"rlar.cli.{name}":
                continue  # command not built into this version
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RlarError as err:
        print(f"rlar {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
