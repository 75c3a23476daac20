"""The tasks a model learns, as data: the one table that the losses, the strategies, the config and the evaluation read.

A task here is one supervised loss term: its name is also its loss key (``MultitaskLoss`` returns
``{"seg": .., "cls": .., "rad": ..}``), the :class:`~rlar.models.output.MultitaskOutput` field it reads, the batch
keys that carry its targets, and which samples of a batch carry a usable target for it. Tasks are grouped into the
*task groups* a multitask strategy balances: the radiomics guidance ``rad`` acts on the classification embedding
h_tirads, so it belongs to the classification group as in the paper.

This module sits at the bottom layer and imports no torch: the validity rule works on whatever tensor type the
batch holds (it only uses comparison and ``&``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

#: Length of the TI-RADS-aligned radiomics vector and of h_tirads (the names are ``rlar.radiomics.FEATURE_NAMES``).
RADIOMICS_DIM = 13


class Batch(TypedDict, total=False):
    """A collated batch (``rlar.data.dataset.collate``); B samples, network size H x W.

    image:          (B, 1, H, W) float32, grey in [0, 1] before normalisation.
    mask:           (B, 1, H, W) float32 in {0, 1}; all zero where ``has_mask`` is False.
    has_mask:       (B,) bool, the sample has a nodule annotation.
    label:          (B,) int64 class index, -1 where the TI-RADS level is unknown.
    radiomics:      (B, RADIOMICS_DIM) float32 standardised targets; zeros where ``has_radiomics`` is False.
    has_radiomics:  (B,) bool.
    image_id, patient_id: list[str] of length B.
    """

    image: Any
    mask: Any
    has_mask: Any
    label: Any
    radiomics: Any
    has_radiomics: Any
    image_id: list[str]
    patient_id: list[str]


@dataclass(frozen=True)
class TaskSpec:
    """One row of the task table.

    name:        task name and loss key.
    group:       the task group a multitask strategy balances it in ("seg" or "cls").
    output:      the ``MultitaskOutput`` field the loss reads.
    target_keys: batch keys holding the targets.
    headline:    the metric that summarises the task (model selection averages the headlines of the tasks present).
    metrics:     metric keys the evaluation reports for the task (empty for an auxiliary task).
    auxiliary:   True for a task that only shapes a representation (no prediction is reported for it).
    """

    name: str
    group: str
    output: str
    target_keys: tuple[str, ...]
    headline: str | None
    metrics: tuple[str, ...]
    auxiliary: bool = False
    description: str = ""

    def valid(self, batch: Mapping[str, Any]) -> Any:
        """(B,) bool: samples that carry a usable target for this task (defined by labels, never by gradients)."""
        if self.name == "seg":
            return batch["has_mask"].bool()
        if self.name == "cls":
            return batch["label"] >= 0
        if self.name == "rad":
            valid = batch["has_radiomics"].bool()
            return valid & batch["has_mask"].bool() if "has_mask" in batch else valid
        raise KeyError(f"no validity rule for task '{self.name}'")


SEG = TaskSpec(
    name="seg", group="seg", output="mask_logits", target_keys=("mask", "has_mask"), headline="dice",
    metrics=("dice", "iou", "hd95_px"), description="nodule segmentation: Dice + BCE over samples with a mask",
)
CLS = TaskSpec(
    name="cls", group="cls", output="class_logits", target_keys=("label",), headline="macro_f1",
    metrics=("macro_f1", "balanced_accuracy", "accuracy", "auroc", "qwk", "ece"),
    description="TI-RADS category: cross-entropy over samples with a known level",
)
RAD = TaskSpec(
    name="rad", group="cls", output="h_tirads", target_keys=("radiomics", "has_radiomics", "has_mask"),
    headline=None, metrics=(), auxiliary=True,
    description=f"clinical guidance: MSE between h_tirads and the {RADIOMICS_DIM} standardised radiomics targets",
)

#: Every task, by name, in canonical order.
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (SEG, CLS, RAD)}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
#: The task groups a two-task strategy balances, in order (the first two are compared by every cosine).
TASK_GROUPS: tuple[str, ...] = ("seg", "cls")


def default_grouping(present: tuple[str, ...] | list[str] | None = None) -> dict[str, list[str]]:
    """Task group -> loss keys for the tasks in ``present`` (default: all), e.g. {"seg": ["seg"], "cls": ["cls", "rad"]}."""
    names = TASK_NAMES if present is None else tuple(present)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise KeyError(f"unknown task(s) {unknown}; tasks are {list(TASK_NAMES)}")
    groups: dict[str, list[str]] = {}
    for spec in TASKS.values():
        if spec.name in names:
            groups.setdefault(spec.group, []).append(spec.name)
    return groups


__all__ = ["CLS", "RAD", "RADIOMICS_DIM", "SEG", "TASKS", "TASK_GROUPS", "TASK_NAMES", "Batch", "TaskSpec",
           "default_grouping"]
