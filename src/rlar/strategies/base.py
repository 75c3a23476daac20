"""The interface every multitask training strategy implements, and what one training step reports.

A strategy owns the *backward* half of a training step: it turns the loss dictionary into gradients in ``.grad``
(of the model's parameters and of its own, e.g. learnable loss weights) and never touches the optimiser. The
trainer adds ``strategy.parameters()`` to the optimiser, zeroes gradients, calls :meth:`Strategy.step`, and then
steps the optimiser.

:meth:`Strategy.step` is a template method: it runs the cut forward (``_cut.CutPass``), calls the one abstract
hook :meth:`Strategy.backward` in which a method writes only its maths, and then builds the :class:`StepReport`
(the loss floats, the total, and THE comparable cosine) in one place for every method. So a number in the report
means the same for every method, and a new method cannot get it wrong.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from rlar.errors import ConfigError, config_error_from
from rlar.tasks import TASK_GROUPS, default_grouping

from ._cut import CutPass, LossFn, comparable_cosine


@dataclass
class StepReport:
    """What one training step measured (plain floats, safe to log); see docs/interfaces.md.

    losses:  every loss term the loss function returned, e.g. {"seg": .., "cls": .., "rad": ..}.
    total:   the scalar objective the gradients descend: sum_k w_k L_k + the method's regulariser (for
             gradient-surgery methods, which descend no single scalar, the plain sum of the loss terms).
    cosine:  THE comparable cosine: batch mean over the samples valid for both tasks by their labels
             (``rlar.tasks.TASKS[..].valid``) of cos(grad_z L_seg, grad_z L_cls) at the representation z, with
             the loss keys "seg" and "cls" only (never "rad"); the same definition for every method. None for a
             single-task model, NaN when no sample of the batch is valid for both.
    extra:   method-specific numbers under the fixed keys of the step report (docs/interfaces.md) where they apply ("cos_space",
             "hinge_active", "penalty", "penalty_share", "lambda") plus method-specific keys; NaN = not measured
             on this step (the trainer averages finite values only).
    """

    losses: dict[str, float]
    total: float
    cosine: float | None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Contribution:
    """What a method's :meth:`Strategy.backward` hook returns besides the gradients it wrote.

    weights:     loss key -> the weight the method applied to that loss this step (absent = 1).
    regulariser: value of everything the method added to the weighted loss sum (e.g. lambda * P), so that
                 ``StepReport.total = sum_k weights[k] L_k + regulariser``.
    extra:       method-specific numbers for ``StepReport.extra``.
    """

    weights: dict[str, float] = field(default_factory=dict)
    regulariser: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class StrategyOptions(BaseModel):
    """Base of every strategy's typed options: unknown keys are refused, values are validated on construction."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=False)


def validate_options(name: str, model: type[BaseModel], raw: Mapping[str, Any]) -> BaseModel:
    """``model(**raw)`` with pydantic errors turned into ConfigError("strategy.options.<name>.<field>", reason)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"strategy.options.{name}", f"must be a mapping of option -> value, got {raw!r}")
    try:
        return model(**raw)
    except ValidationError as err:
        raise config_error_from(err, f"strategy.options.{name}", model=model, what=f"strategy '{name}'") from None


def resolve_tasks(tasks: Mapping[str, list[str]] | None) -> dict[str, list[str]]:
    """Validate a task group -> loss-keys mapping (default ``rlar.tasks.default_grouping()``); a key in one group only."""
    tasks = default_grouping() if tasks is None else tasks
    if not isinstance(tasks, Mapping) or not tasks:
        raise ConfigError("strategy.tasks", f"must be a non-empty mapping task name -> list of loss keys, got {tasks!r}")
    seen: dict[str, str] = {}
    out: dict[str, list[str]] = {}
    for name, keys in tasks.items():
        if isinstance(keys, str) or not keys:
            raise ConfigError(f"strategy.tasks.{name}", f"must be a non-empty list of loss keys, got {keys!r}")
        for key in keys:
            if key in seen:
                raise ConfigError(f"strategy.tasks.{name}", f"loss key '{key}' already belongs to task '{seen[key]}'")
            seen[key] = name
        out[str(name)] = [str(k) for k in keys]
    return out


class Strategy(nn.Module, ABC):
    """Template for every method: ``step`` = cut forward -> :meth:`backward` (the method's maths) -> report.

    Constructor arguments shared by every strategy:

    tasks:          task group -> loss keys (default ``rlar.tasks.default_grouping()``: {"seg": ["seg"],
                    "cls": ["cls", "rad"]}); keys absent from the loss output are ignored (so a single-task model
                    works) and loss keys that belong to no group form a group of their own.
    representation: name of z (one of ``model.representation_names``), where the comparable cosine is measured.
    **options:      the method's options, validated by its :attr:`Options` model (errors name
                    ``strategy.options.<name>.<field>``); defaults live in that model only.

    A subclass sets ``name`` and ``Options``, implements :meth:`backward`, and may override :meth:`layers` when its
    maths needs gradients at more representations than z.
    """

    #: Registry name, set by each subclass (the key it has in ``rlar.strategies.STRATEGIES``).
    name: ClassVar[str] = ""
    #: The method's typed options (pydantic, extra="forbid").
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions

    def __init__(self, tasks: Mapping[str, list[str]] | None = None, representation: str = "bottleneck",
                 **options: Any) -> None:
        super().__init__()
        self.tasks = resolve_tasks(tasks)
        if not isinstance(representation, str) or not representation:
            raise ConfigError("strategy.representation", f"must be a layer name, got {representation!r}")
        self.representation = representation
        self.options = validate_options(self.name or type(self).__name__, type(self).Options, options)

    def layers(self) -> list[str]:
        """Representations the method needs task gradients at (the cut is made at the lowest); default: z only."""
        return [self.representation]

    @abstractmethod
    def backward(self, cp: CutPass, step: int) -> Contribution:
        """The method's maths: fill ``.grad`` from the cut pass ``cp`` (use ``cp.key_grads``/``cp.finish`` or the
        helpers of ``_cut``), and return the weights and regulariser value it applied plus its extra numbers."""

    def step(self, model: nn.Module, batch: Mapping[str, Any], loss_fn: LossFn, step: int) -> StepReport:
        """Forward ``batch["image"]`` through ``model`` (cut at z), fill ``.grad``, report; never calls the optimiser."""
        layers = list(dict.fromkeys([*self.layers(), self.representation]))
        cp = CutPass(model, batch, loss_fn, self.tasks, layers, representation=self.representation)
        contribution = self.backward(cp, step)
        losses = {k: float(v.detach()) for k, v in cp.losses.items()}
        total = sum(contribution.weights.get(k, 1.0) * v for k, v in losses.items()) + contribution.regulariser
        pair = [t for t in TASK_GROUPS if t in cp.losses]
        cosine = comparable_cosine(cp) if len(pair) == 2 else None
        extra = {k: float(v) for k, v in contribution.extra.items()}
        return StepReport(losses, float(total), cosine, extra)

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, representation={self.representation!r}, options={self.options!r}"
