"""Argument helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import yaml

from rlar.data.sources import SOURCE_NAMES, Source, open_source
from rlar.errors import ConfigError


def parse_key_values(pairs: list[str] | None, what: str = "--option") -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``3`` -> int, ``[1,2]`` -> list)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(pair, f"{what} expects key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=SOURCE_NAMES, help="dataset layout")
    parser.add_argument("--root", default=None, help="dataset folder (not needed for the phantom)")
    parser.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="source option, e.g. n_cases=50 (repeatable)"
    )


def source_from_args(args: argparse.Namespace) -> Source:
    return open_source(args.source, args.root, **parse_key_values(args.option))


def write_curves(run_dirs: list[Path], out: Path, labels: list[str] | None = None) -> Path | None:
    """Draw training curves to ``out`` after a run; a plotting failure only warns (the run itself succeeded)."""
    try:
        from rlar.reporting.curves import plot_runs

        return plot_runs(run_dirs, out, labels=labels)
    except Exception as exc:  # noqa: BLE001 - matplotlib, fonts, disk: never fail a finished training run
        warnings.warn(f"could not draw {out}: {type(exc).__name__}: {exc}", stacklevel=2)
        return None
