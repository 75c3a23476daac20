"""The interface every multitask training strategy implements, and what one training step reports.

A strategy owns the *backward* half of a training step: it runs the forward pass, turns the loss
dictionary into gradients in ``.grad`` (of the model's parameters and of its own, e.g. learnable
loss weights) and never touches the optimiser. The trainer adds ``strategy.parameters()`` to the
optimiser, zeroes gradients, calls :meth:`Strategy.step`, and then steps the optimiser.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rlar.errors import ConfigError

#: Which loss keys define each task when the caller does not say. "rad" (the radiomics guidance of
#: h_tirads) belongs to the classification task because it acts on the classification embedding.
DEFAULT_TASKS: dict[str, list[str]] = {"seg": ["seg"], "cls": ["cls", "rad"]}

LossFn = Callable[[Any, Mapping[str, Any]], dict[str, torch.Tensor]]


@dataclass
class StepReport:
    """What one training step measured (plain floats, safe to log).

    losses:  every loss term the loss function returned, e.g. {"seg": .., "cls": .., "rad": ..}.
    total:   the scalar objective the gradients descend (for gradient-surgery methods, the plain sum
             of the task losses, since no single scalar defines their update).
    cosine:  batch mean over samples of cos(grad_z L_seg, grad_z L_cls) at the strategy's
             representation z; None for a single-task model; NaN when no sample in the batch had a
             non-zero gradient for both tasks (e.g. no sample with a mask).
    extra:   method-specific numbers (penalty value, current lambda, task weights, ...).
    """

    losses: dict[str, float]
    total: float
    cosine: float | None
    extra: dict[str, float] = field(default_factory=dict)


def resolve_tasks(tasks: Mapping[str, list[str]] | None) -> dict[str, list[str]]:
    """Validate a task -> loss-keys mapping (default :data:`DEFAULT_TASKS`); a key may belong to one task only."""
    tasks = DEFAULT_TASKS if tasks is None else tasks
    if not isinstance(tasks, Mapping) or not tasks:
        raise ConfigError("tasks", f"must be a non-empty mapping task name -> list of loss keys, got {tasks!r}")
    seen: dict[str, str] = {}
    out: dict[str, list[str]] = {}
    for name, keys in tasks.items():
        if isinstance(keys, str) or not keys:
            raise ConfigError(f"tasks.{name}", f"must be a non-empty list of loss keys, got {keys!r}")
        for key in keys:
            if key in seen:
                raise ConfigError(f"tasks.{name}", f"loss key '{key}' already belongs to task '{seen[key]}'")
            seen[key] = name
        out[str(name)] = [str(k) for k in keys]
    return out


class Strategy(nn.Module, ABC):
    """Base class: holds the task definition and the representation z where task gradients are compared.

    Subclasses implement :meth:`step`. Options shared by every strategy:

    tasks:          task name -> loss keys; keys absent from the loss output are ignored (so a
                    single-task model works) and loss keys that belong to no task form a task of
                    their own, named after the key.
    representation: name of z (one of ``model.representation_names``), where the per-sample cosine
                    between the first two tasks' gradients is measured and logged.
    """

    #: Registry name, set by each subclass.
    name: str = ""

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck") -> None:
        super().__init__()
        self.tasks = resolve_tasks(tasks)
        if not isinstance(representation, str) or not representation:
            raise ConfigError("representation", f"must be a layer name, got {representation!r}")
        self.representation = representation

    @abstractmethod
    def step(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, step: int) -> StepReport:
        """Forward ``batch["image"]`` through ``model``, fill ``.grad``; never call the optimiser."""

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, representation={self.representation!r}"
