"""What every rlar network returns, and how it exposes the shared representations regularisers act on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlar.tasks import TASK_LOGITS, TASKS

#: Output field -> the field holding its deep-supervision copies from coarser decoder steps (finest first).
DEEP_SUPERVISION_FIELDS: dict[str, str] = {"mask_logits": "aux_mask_logits"}


def _output_field(task: str) -> str:
    """The output field task ``task`` reads (its ``TaskSpec.output``); KeyError naming the tasks otherwise."""
    if task not in TASKS:
        raise KeyError(f"unknown task '{task}'; tasks are {list(TASKS)}")
    return TASKS[task].output


@dataclass
class MultitaskOutput:
    """Forward result of a multitask (or single-task) network.

    mask_logits:  (B, 1, H, W) nodule logits, or None for a classification-only model.
    class_logits: (B, C) TI-RADS logits, or None for a segmentation-only model.
    h_tirads:     (B, RADIOMICS_DIM) clinically guided part of the embedding (None when the model has none).
    h_deep:       (B, D) free part of the embedding (None when the model has none).
    features:     named intermediate representations, e.g. "enc1".."enc4", "bottleneck"; the tensors the
                  task heads actually consumed (so gradients of task losses flow to them).
    cut:          filled only when the forward was called with ``cut_at=<name>``: the boundary between the
                  shared trunk and the task heads at that layer, as (trunk_tensor, head_leaf) pairs. The heads
                  were computed from ``head_leaf`` (a detached copy with requires_grad=True), so
                  ``torch.autograd.grad(loss, leaves)`` gives the partial derivatives at the boundary using the
                  heads' backward only, and ``torch.autograd.backward(trunk_tensors, leaf_grads)`` finishes the
                  trunk's backward exactly once. ``cut_layer`` names which leaf is the representation z.
    aux_mask_logits: deep-supervision nodule logits (B, 1, H, W) from coarser decoder steps, finest first,
                  upsampled to the input size; filled only in training mode with ``deep_supervision`` > 0.
    task_logits:  logits (B, K) of the optional classification tasks the network has a head for (the ACR
                  descriptors, ``model.options.extra_tasks``), keyed by task name; K = ``len(TaskSpec.classes)``.
    """

    mask_logits: torch.Tensor | None
    class_logits: torch.Tensor | None
    h_tirads: torch.Tensor | None = None
    h_deep: torch.Tensor | None = None
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    cut: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    cut_layer: str | None = None
    aux_mask_logits: list[torch.Tensor] = field(default_factory=list)
    task_logits: dict[str, torch.Tensor] = field(default_factory=dict)

    def for_task(self, name: str) -> torch.Tensor | None:
        """The output task ``name`` of :data:`rlar.tasks.TASKS` reads (its ``TaskSpec.output`` field; for
        ``task_logits``, its entry ``name``), or None when the network does not produce it."""
        field_name = _output_field(name)
        if field_name == TASK_LOGITS:
            return self.task_logits.get(name)
        value: torch.Tensor | None = getattr(self, field_name)
        return value

    def auxiliary_for_task(self, name: str) -> list[torch.Tensor]:
        """Deep-supervision copies of task ``name``'s output (see :data:`DEEP_SUPERVISION_FIELDS`); often empty."""
        field_name = DEEP_SUPERVISION_FIELDS.get(_output_field(name))
        auxiliary: list[torch.Tensor] = getattr(self, field_name) if field_name else []
        return auxiliary

    def z(self) -> torch.Tensor:
        """The head-side leaf of the representation named by ``cut_layer`` (requires a cut forward)."""
        if self.cut_layer is None:
            raise RuntimeError("forward was not called with cut_at=...; no representation leaf to return")
        return self.features[self.cut_layer]
