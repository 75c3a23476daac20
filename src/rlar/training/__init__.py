"""Training: validated configs, method presets, the one model builder, one-run orchestration under the held-out
protocol (docs/protocol.md), the trainer, checkpoints and data-parallel helpers.

Attributes are imported lazily (module ``__getattr__``): the config parser and the presets are torch-free, and
``import rlar.training.config`` (the CLI's ``--option`` parser) must not pull torch in through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlar.training.builders import build_model_from_config
    from rlar.training.config import RlarConfig, load_config, parse_value
    from rlar.training.presets import METHOD_NAMES, PRESETS
    from rlar.training.run import run_training

_LAZY = {
    "METHOD_NAMES": "rlar.training.presets",
    "PRESETS": "rlar.training.presets",
    "RlarConfig": "rlar.training.config",
    "build_model_from_config": "rlar.training.builders",
    "load_config": "rlar.training.config",
    "parse_value": "rlar.training.config",
    "run_training": "rlar.training.run",
}

__all__ = ["METHOD_NAMES", "PRESETS", "RlarConfig", "build_model_from_config", "load_config", "parse_value",
           "run_training"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
