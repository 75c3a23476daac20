"""Multitask training strategies: how a step turns the task losses into gradients.

``get_strategy(name, tasks=None, **options)`` builds one; ``STRATEGY_NAMES`` lists them. Adding a method
is one file defining a :class:`Strategy` subclass plus one line in ``_REGISTRY`` (see docs/strategies.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from rlar.errors import ConfigError

from .base import DEFAULT_TASKS, StepReport, Strategy
from .cagrad import CAGrad
from .nashmtl import NashMTL
from .pcgrad import PCGrad
from .repmtl import RepMTL
from .rlar import RLAR, rlar_penalty
from .uncertainty import UncertaintyWeighting
from .weighted_sum import WeightedSum

_REGISTRY: dict[str, type[Strategy]] = {
    "sum": WeightedSum,
    "rlar": RLAR,
    "repmtl": RepMTL,
    "pcgrad": PCGrad,
    "cagrad": CAGrad,
    "nashmtl": NashMTL,
    "uncertainty": UncertaintyWeighting,
}
STRATEGY_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_strategy(name: str, tasks: Mapping[str, list[str]] | None = None, **options: Any) -> Strategy:
    """Build the strategy ``name`` with its options; unknown names/options raise ConfigError naming them."""
    if name not in _REGISTRY:
        raise ConfigError("strategy", f"unknown strategy '{name}' (choose from {', '.join(STRATEGY_NAMES)})")
    cls = _REGISTRY[name]
    for alias, real in getattr(cls, "option_aliases", {}).items():
        if alias in options:
            if real in options:
                raise ConfigError(f"strategy.{alias}", f"given together with its synonym '{real}'")
            options[real] = options.pop(alias)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "tasks"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"strategy.{unknown[0]}",
                          f"not an option of '{name}' (options: {', '.join(sorted(accepted))})")
    return cls(tasks=tasks, **options)


__all__ = ["DEFAULT_TASKS", "STRATEGY_NAMES", "Strategy", "StepReport", "get_strategy", "rlar_penalty",
           "WeightedSum", "RLAR", "RepMTL", "PCGrad", "CAGrad", "NashMTL", "UncertaintyWeighting"]
