"""The ``rlar`` command: a thin dispatcher over one module per subcommand.

Subcommand modules (``rlar.cli.<name>``, each exposing ``add_parser(subparsers)``) are imported only for the
command being run, so ``rlar --help`` stays fast (no torch, no scikit-image). The one-line help of each command
in ``rlar --help`` is the first sentence of its module docstring (``"``rlar train``: train one fold ..."``), read
from the source file without importing it: the module stays the one place that describes its command.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
from pathlib import Path

from rlar import __version__
from rlar.errors import RlarError

# Subcommands in the order shown by --help; a name whose module is absent is left out (not built in).
COMMANDS: tuple[str, ...] = (
    "demo", "data", "radiomics", "train", "evaluate", "predict", "export", "serve", "experiment", "report", "plot",
)
_FILE_ERRORS = (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)


def available_commands() -> list[str]:
    """The commands whose module exists in this installation (found without importing them)."""
    return [name for name in COMMANDS if importlib.util.find_spec(f"rlar.cli.{name}") is not None]


def command_summary(name: str) -> str:
    """First sentence of ``rlar.cli.<name>``'s docstring, without its ``"``rlar name``: "`` prefix."""
    spec = importlib.util.find_spec(f"rlar.cli.{name}")
    if spec is None or spec.origin is None:
        return ""
    try:
        doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, ValueError):
        return ""
    first = " ".join(doc.split("\n\n", 1)[0].split())
    if first.startswith("``") and ":" in first:
        first = first.split(":", 1)[1].strip()
    return first.rstrip(".")


def build_parser(command: str | None = None, full: bool = False) -> argparse.ArgumentParser:
    """The ``rlar`` parser. Only ``command``'s module (or every module with ``full=True``) is imported and
    adds its arguments; the other commands appear in ``--help`` with their one-line summary."""
    parser = argparse.ArgumentParser(
        prog="rlar",
        description="Clinically aligned multitask thyroid ultrasound assessment (segmentation + TI-RADS, RLAR).",
    )
    parser.add_argument("--version", action="version", version=f"rlar {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in available_commands():
        if full or name == command:
            importlib.import_module(f"rlar.cli.{name}").add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=command_summary(name))
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: its first token that is not an option (the top level has no values)."""
    for token in argv:
        if not token.startswith("-"):
            return token
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RlarError as err:
        print(f"rlar {args.command}: error: {err}", file=sys.stderr)
        return 2
    except _FILE_ERRORS as err:
        # A file that cannot be read or written: name it instead of a traceback (exit 2, like bad input).
        where = f"{err.filename}: " if err.filename else ""
        print(f"rlar {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
