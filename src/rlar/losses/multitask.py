"""MultitaskLoss: the weighted per-task losses a network's output supports, as a dict for the strategies.

The tasks come from the task table :data:`rlar.tasks.TASKS`: each row names the model output its loss reads, the
batch key of its target (the first of ``target_keys``) and which samples carry a usable target
(``TaskSpec.valid``). This module only adds the loss function of each task; a new task is a row there plus its
loss module in :data:`TASK_LOSSES` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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

#: Task name -> attribute of :class:`MultitaskLoss` holding its loss module, called as ``loss(pred, target, valid)``.
TASK_LOSSES: dict[str, str] = {"seg": "seg_loss", "cls": "cls_loss", "rad": "rad_loss"}


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

    A task's key is present only when the model produces its output (``out.<TaskSpec.output>`` is not None) and,
    for an auxiliary task (the radiomics guidance ``rad``), when its weight is positive (a zero weight switches
    guidance off). Values are scalar tensors, already weighted; a loss with no valid sample in the batch is an
    exact 0 that is still part of the graph. Targets and validity follow the task table: ``mask`` and
    ``has_mask`` (seg); ``label``, -1 unknown (cls); ``radiomics`` where ``has_radiomics`` and, when the batch
    carries it, ``has_mask`` (rad, since radiomics are only defined from a mask).

    Args:
        seg_weight, cls_weight, rad_weight: task weights (>= 0).
        class_weights: optional per-class cross-entropy weights.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        dice_weight, bce_weight: mix of Dice and BCE inside the segmentation loss.
        rad_feature_mask: (RADIOMICS_DIM,) bool, features supervised by L_rad (leave-one-feature-out studies).
        weights: task weights keyed by task name, e.g. ``{"seg": 1.0, "rad": 0.5}``; overrides the ``*_weight``
            arguments for the tasks it names.
    """

    def __init__(
        self,
        seg_weight: float = 1.0,
        cls_weight: float = 1.0,
        rad_weight: float = 1.0,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        rad_feature_mask: Sequence[bool] | torch.Tensor | None = None,
        *,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        merged = {"seg": seg_weight, "cls": cls_weight, "rad": rad_weight}
        unknown = sorted(set(weights or {}) - set(TASKS))
        if unknown:
            raise ValueError(f"weights names unknown task(s) {unknown}; tasks are {list(TASKS)}")
        merged.update(weights or {})
        for name, value in merged.items():
            if value is None or not value >= 0:  # also rejects NaN
                raise ValueError(f"{name}_weight must be >= 0, got {value}")
        self.weights: dict[str, float] = {name: float(merged[name]) for name in TASKS}
        self.seg_loss = SegmentationLoss(dice_weight=dice_weight, bce_weight=bce_weight)
        self.cls_loss = ClassificationLoss(class_weights=class_weights, label_smoothing=label_smoothing)
        self.rad_loss = RadiomicsGuidanceLoss(feature_mask=rad_feature_mask)
        missing = [name for name in TASKS if name not in TASK_LOSSES]
        if missing:
            raise RuntimeError(f"task(s) {missing} of rlar.tasks.TASKS have no loss in rlar.losses.TASK_LOSSES")

    def task_loss(self, name: str) -> Callable[..., torch.Tensor]:
        """The loss module of task ``name``, called as ``loss(prediction, target, valid)``."""
        module: Callable[..., torch.Tensor] = getattr(self, TASK_LOSSES[name])
        return module

    def _active(self, spec: TaskSpec, out: MultitaskOutput) -> torch.Tensor | None:
        prediction = out.for_task(spec.name)
        if prediction is None or (spec.auxiliary and self.weights[spec.name] <= 0):
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
        return ", ".join(f"{name}_weight={value}" for name, value in self.weights.items())
