"""MultitaskLoss: the weighted per-task losses a network's output supports, as a dict for the strategies.

The tasks come from the task table :data:`rlar.tasks.TASKS`: each row names the model output its loss reads, the
batch key of its target (the first of ``target_keys``), which samples carry a usable target (``TaskSpec.valid``)
and the kind of loss it is trained with (``TaskSpec.loss``). This module only knows how to build each kind of loss
(:data:`LOSS_KINDS`); a new task of an existing kind is a row there and nothing here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rlar.tasks import TASKS, TaskSpec

from ._common import as_bool_vector, batch_tensor
from .classification import ClassificationLoss
from .guidance import RadiomicsGuidanceLoss
from .segmentation import SegmentationLoss

if TYPE_CHECKING:  # annotation only: keeps importing the losses free of the network code
    from rlar.models.output import MultitaskOutput



@dataclass(frozen=True)
class LossSettings:
    """The loss options of a run, which a loss kind picks from (``loss.*`` and ``radiomics.*`` config keys)."""

    class_weights: Sequence[float] | torch.Tensor | None = None
    label_smoothing: float = 0.0
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    rad_feature_mask: Sequence[bool] | torch.Tensor | None = None


def _classification(spec: TaskSpec, settings: LossSettings) -> nn.Module:
    # The run's class weights and smoothing are the TI-RADS label space's; an optional task has its own classes
    # (TaskSpec.classes) and is trained with plain cross-entropy over its labelled samples.
    if spec.optional:
        return ClassificationLoss(target_key=spec.target_keys[0])
    return ClassificationLoss(class_weights=settings.class_weights, label_smoothing=settings.label_smoothing,
                              target_key=spec.target_keys[0])


#: Loss kind (``TaskSpec.loss``) -> builder of its module, called as ``module(prediction, target, valid)``.
LOSS_KINDS: dict[str, Callable[[TaskSpec, LossSettings], nn.Module]] = {
    "segmentation": lambda spec, s: SegmentationLoss(dice_weight=s.dice_weight, bce_weight=s.bce_weight),
    "classification": _classification,
    "guidance": lambda spec, s: RadiomicsGuidanceLoss(feature_mask=s.rad_feature_mask),
}


def loss_attribute(name: str) -> str:
    """The attribute of :class:`MultitaskLoss` holding task ``name``'s loss module (``seg_loss``, ``cls_loss``...)."""
    return f"{name}_loss"


def weight_keyword(name: str) -> str:
    """The keyword argument of :class:`MultitaskLoss` that sets task ``name``'s weight (``seg_weight``...)."""
    return f"{name}_weight"


def deep_supervised(main: torch.Tensor, auxiliary: Sequence[torch.Tensor]) -> torch.Tensor:
    """Weighted mean of the main loss and the deep-supervision losses (finest first): weights 1, 1/2, 1/4, ...
    normalised to sum to 1 (nnU-Net's scheme), so the task's loss keeps its scale."""
    weights = [0.5**k for k in range(len(auxiliary) + 1)]
    total = main * weights[0]
    for weight, loss in zip(weights[1:], auxiliary):
        total = total + weight * loss
    return total / sum(weights)


class MultitaskLoss(nn.Module):
    """Compute ``{task: weight[task] * L_task}`` for one batch, over the tasks of :data:`rlar.tasks.TASKS`.

    A task's key is present only when the model produces its output (``out.for_task(name)`` is not None: an
    optional task only where the network has its head) and, for an auxiliary or optional task (the radiomics
    guidance ``rad``, the ACR descriptors), when its weight is positive (a zero weight switches it off). Values are
    scalar tensors, already weighted; a loss with no valid sample in the batch is an exact 0 that is still part of
    the graph (never NaN). Targets and validity follow the task table: ``mask`` and ``has_mask`` (seg); ``label``,
    -1 unknown (cls); ``radiomics`` where ``has_radiomics`` and, when the batch carries it, ``has_mask`` (rad, since
    radiomics are only defined from a mask); ``<descriptor>``, -1 unknown (the optional descriptor tasks).

    Args:
        <task>_weight: the weight of task ``<task>`` (>= 0; default 1), e.g. ``seg_weight=2.0``; one keyword per
            task of the table.
        class_weights: optional per-class cross-entropy weights of the TI-RADS task.
        label_smoothing: TI-RADS cross-entropy label smoothing in [0, 1).
        dice_weight, bce_weight: mix of Dice and BCE inside the segmentation loss.
        rad_feature_mask: (RADIOMICS_DIM,) bool, features supervised by L_rad (leave-one-feature-out studies).
        weights: task weights keyed by task name, e.g. ``{"seg": 1.0, "rad": 0.5}``; overrides the ``<task>_weight``
            arguments for the tasks it names.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        rad_feature_mask: Sequence[bool] | torch.Tensor | None = None,
        *,
        weights: Mapping[str, float] | None = None,
        **task_weights: float,
    ) -> None:
        super().__init__()
        by_keyword = {weight_keyword(name): name for name in TASKS}
        stray = sorted(set(task_weights) - set(by_keyword))
        if stray:
            raise TypeError(f"unexpected keyword(s) {stray}; task weights are {sorted(by_keyword)}")
        unknown = sorted(set(weights or {}) - set(TASKS))
        if unknown:
            raise ValueError(f"weights names unknown task(s) {unknown}; tasks are {list(TASKS)}")
        merged: dict[str, Any] = dict.fromkeys(TASKS, 1.0)
        merged.update({by_keyword[key]: value for key, value in task_weights.items()})
        merged.update(weights or {})
        for name, value in merged.items():
            if value is None or not value >= 0:  # also rejects NaN
                raise ValueError(f"{weight_keyword(name)} must be >= 0, got {value}")
        self.weights: dict[str, float] = {name: float(merged[name]) for name in TASKS}
        settings = LossSettings(class_weights=class_weights, label_smoothing=label_smoothing, dice_weight=dice_weight,
                                bce_weight=bce_weight, rad_feature_mask=rad_feature_mask)
        for spec in TASKS.values():
            if spec.loss not in LOSS_KINDS:
                raise RuntimeError(f"task '{spec.name}' asks for loss kind '{spec.loss}'; kinds are {list(LOSS_KINDS)}")
            # setattr registers the module (its buffers move with .to(device)): seg_loss, cls_loss, rad_loss, ...
            setattr(self, loss_attribute(spec.name), LOSS_KINDS[spec.loss](spec, settings))

    def task_loss(self, name: str) -> Callable[..., torch.Tensor]:
        """The loss module of task ``name``, called as ``loss(prediction, target, valid)``."""
        module: Callable[..., torch.Tensor] = getattr(self, loss_attribute(name))
        return module

    def _active(self, spec: TaskSpec, out: MultitaskOutput) -> torch.Tensor | None:
        prediction = out.for_task(spec.name)
        if prediction is None or ((spec.auxiliary or spec.optional) and self.weights[spec.name] <= 0):
            return None
        return prediction

    def forward(self, out: MultitaskOutput, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Weighted losses for the tasks ``out`` supports (see class docstring)."""
        losses: dict[str, torch.Tensor] = {}
        for spec in TASKS.values():
            prediction = self._active(spec, out)
            if prediction is None:
                continue
            purpose = f"'{spec.name}' loss ({spec.description})"
            target = batch_tensor(batch, spec.target_keys[0], purpose, prediction.device)
            try:
                valid = spec.valid(batch)
            except KeyError as exc:
                raise KeyError(
                    f"batch has no {exc.args[0]!r} entry, needed for the {purpose} (batch keys: {sorted(batch)})"
                ) from None
            flag_keys = "/".join(spec.target_keys[1:]) or spec.target_keys[0]
            valid = as_bool_vector(torch.as_tensor(valid, device=prediction.device), prediction.shape[0], flag_keys)
            loss_fn = self.task_loss(spec.name)
            value = loss_fn(prediction, target, valid)
            aux = out.auxiliary_for_task(spec.name)
            if aux:
                value = deep_supervised(value, [loss_fn(a, target, valid) for a in aux])
            losses[spec.name] = self.weights[spec.name] * value
        return losses

    def extra_repr(self) -> str:
        return ", ".join(f"{weight_keyword(name)}={value}" for name, value in self.weights.items())
