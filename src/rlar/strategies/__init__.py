"""Multitask training strategies: how a step turns the task losses into gradients.

``STRATEGIES`` is the one registry (name -> class); ``get_strategy(name, tasks=None, representation="bottleneck",
**options)`` builds one and ``validate_strategy_options(name, raw)`` checks options while a config loads. Adding a
method is one file defining a :class:`Strategy` subclass plus one line in ``registry.STRATEGIES`` (see
docs/strategies.md).
"""

from __future__ import annotations

from .base import Contribution, StepReport, Strategy, StrategyOptions
from .cagrad import CAGrad
from .nashmtl import NashMTL
from .pcgrad import PCGrad
from .registry import STRATEGIES, get_strategy, strategy_class, validate_strategy_options
from .repmtl import RepMTL
from .rlar import RLAR, rlar_penalty
from .uncertainty import UncertaintyWeighting
from .weighted_sum import WeightedSum

__all__ = ["CAGrad", "Contribution", "NashMTL", "PCGrad", "RLAR", "RepMTL", "STRATEGIES", "StepReport", "Strategy", "StrategyOptions", "UncertaintyWeighting", "WeightedSum",
           "get_strategy", "rlar_penalty", "strategy_class", "validate_strategy_options"]
