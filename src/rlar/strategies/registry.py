"""The one table of multitask strategies: name -> class. Adding a method is one file plus one line here.

The config validation, the CLI choices, the docs table (checked by a test) and the benchmark all read
:data:`STRATEGIES`; every class carries its typed ``Options`` (pydantic, extra="forbid"), whose defaults are the
shipped ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from rlar.errors import ConfigError

from .base import Strategy, validate_options
from .cagrad import CAGrad
from .nashmtl import NashMTL
from .pcgrad import PCGrad
from .repmtl import RepMTL
from .rlar import RLAR
from .uncertainty import UncertaintyWeighting
from .weighted_sum import WeightedSum

STRATEGIES: dict[str, type[Strategy]] = {
    "sum": WeightedSum,
    "rlar": RLAR,
    "repmtl": RepMTL,
    "pcgrad": PCGrad,
    "cagrad": CAGrad,
    "nashmtl": NashMTL,
    "uncertainty": UncertaintyWeighting,
}


def strategy_class(name: str) -> type[Strategy]:
    """The registered class of ``name``; ConfigError("strategy.name", ...) for an unknown one."""
    if name not in STRATEGIES:
        raise ConfigError("strategy.name", f"unknown strategy '{name}' (choose from {', '.join(STRATEGIES)})")
    return STRATEGIES[name]


def validate_strategy_options(name: str, raw: Mapping[str, Any]) -> BaseModel:
    """Typed options of strategy ``name`` from a raw mapping (e.g. ``strategy.options.<name>`` of a config).

    Raises ConfigError("strategy.options.<name>.<field>", reason) for a bad or unknown option and
    ConfigError("strategy.name", ...) for an unknown strategy. Needs no model: call it while the config loads.
    """
    cls = strategy_class(name)
    return validate_options(name, cls.Options, raw)


def get_strategy(name: str, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 **options: Any) -> Strategy:
    """Build the strategy ``name`` with its options; unknown names/options raise ConfigError naming them."""
    return strategy_class(name)(tasks=tasks, representation=representation, **options)
