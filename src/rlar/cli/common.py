"""Argument helpers shared by the CLI commands: source arguments, device and thread options, ``key=value`` options,
output checks."""

from __future__ import annotations

import argparse
import math
import os
import warnings
from pathlib import Path
from typing import Any

from rlar.data.files import probe_folder
from rlar.data.sources import Source, open_source, source_names
from rlar.environment import DEVICES, Device
from rlar.errors import ConfigError

__all__ = ["add_device_argument", "add_source_arguments", "add_threads_argument", "check_output_file", "finite_number", "parse_key_values", "probe_folder",
           "source_from_args", "write_curves"]


def add_device_argument(parser: argparse.ArgumentParser, default: Device | None,
                        help: str | None = None) -> None:
    """``--device``, one of :data:`rlar.environment.DEVICES` (the package's one device list); ``default`` is the
    command's (a named constant of :mod:`rlar.environment`, or None where the config's value applies)."""
    parser.add_argument("--device", choices=DEVICES, default=default,
                        help=help or f"auto: cuda, else mps, else cpu (default: {default})")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads``: torch's CPU threads for the network (:func:`rlar.environment.set_cpu_threads`)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the network (default: torch's; 1 is much faster on a busy machine)")


def parse_key_values(pairs: list[str] | None, what: str = "--option") -> dict[str, Any]:
    """Parse ``key=value`` strings with rlar's one value parser (YAML scalars, ``1e-4`` read as a float)."""
    if not pairs:
        return {}
    from rlar.training.config import parse_value  # imported here: the parser of --set, shared by --option

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(pair, f"{what} expects key=value")
        try:
            out[key.strip()] = parse_value(value)
        except ValueError as exc:
            raise ConfigError(f"{what} {key.strip()}", str(exc)) from None
    return out


def finite_number(value: float, flag: str) -> float:
    """``value`` of a numeric option, or ConfigError naming ``flag`` when it is NaN or infinite.

    argparse's ``type=float`` accepts "nan" and "inf"; the limits built from them would end in a traceback
    (``int(nan)``) or in no limit at all. The range itself is checked where the value is used.
    """
    if not math.isfinite(value):
        raise ConfigError(flag, f"must be a finite number, got {value}")
    return value


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=source_names(), help="dataset layout (see docs/data-formats.md)")
    parser.add_argument("--root", default=None, help="dataset folder (not needed for the phantom)")
    parser.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="source option, e.g. n_cases=50 (repeatable)"
    )


# How the source's config keys are spelled on the command line, for error messages.
_CLI_SPELLING = {"data.root": "--root", "data.source": "source"}
_OPTION_PREFIX = "data.options."


def source_from_args(args: argparse.Namespace) -> Source:
    """Open the source named by ``add_source_arguments``; errors name the command-line flag (``--option scal``)."""
    options = parse_key_values(args.option)
    try:
        return open_source(args.source, args.root, **options)
    except ConfigError as err:
        key = _CLI_SPELLING.get(err.key, err.key)
        if key.startswith(_OPTION_PREFIX):
            key = f"--option {key[len(_OPTION_PREFIX):]}"
        raise ConfigError(key, err.reason) from None


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """Fail early, naming ``path``, if an output file cannot be written there (before any long work).

    A missing parent folder is created (as the commands did before they checked); it must then accept a new file
    (probed by creating and removing a temporary file, which also catches read-only file systems); an existing
    target must be a writable file, not a folder.
    """
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ConfigError(what, f"{out} is a folder; give a file name")
    if parent.exists() and not parent.is_dir():
        raise ConfigError(what, f"cannot write {out}: {parent} is not a folder")
    probe_folder(parent, what, target=out)
    if out.exists() and not os.access(out, os.W_OK):
        raise ConfigError(what, f"cannot write {out}: the file is read-only")
    return out


def write_curves(run_dirs: list[Path], out: Path, labels: list[str] | None = None) -> Path | None:
    """Draw training curves to ``out`` after a run; a plotting failure only warns (the run itself succeeded)."""
    try:
        from rlar.reporting.curves import plot_runs

        return plot_runs(run_dirs, out, labels=labels)
    except Exception as exc:  # noqa: BLE001 - matplotlib, fonts, disk: never fail a finished training run
        warnings.warn(f"could not draw {out}: {type(exc).__name__}: {exc}", stacklevel=2)
        return None
