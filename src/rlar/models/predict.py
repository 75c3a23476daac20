"""The one path from images to probabilities, shared by the evaluation and the inference predictor (docs/interfaces.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .output import MultitaskOutput


@dataclass
class Prediction:
    """Probabilities for a batch of B images.

    mask_prob:  (B, 1, H, W) float, sigmoid of the nodule logits; None for a classification-only model.
    class_prob: (B, C) float, softmax of the TI-RADS logits; None for a segmentation-only model.
    h_tirads:   (B, RADIOMICS_DIM) float, the clinically guided embedding; None when the model has none.
    task_prob:  (B, K) float softmax of each optional classification task the model has (the ACR descriptors),
                keyed by task name; empty when it has none.
    """

    mask_prob: torch.Tensor | None
    class_prob: torch.Tensor | None
    h_tirads: torch.Tensor | None
    task_prob: dict[str, torch.Tensor] = field(default_factory=dict)


def _probabilities(out: MultitaskOutput) -> Prediction:
    if not isinstance(out, MultitaskOutput):
        raise TypeError(f"the model must return a MultitaskOutput, got {type(out).__name__}")
    return Prediction(
        mask_prob=None if out.mask_logits is None else torch.sigmoid(out.mask_logits.float()),
        class_prob=None if out.class_logits is None else torch.softmax(out.class_logits.float(), dim=1),
        h_tirads=None if out.h_tirads is None else out.h_tirads.float(),
        task_prob={name: torch.softmax(logits.float(), dim=1) for name, logits in out.task_logits.items()},
    )


def _mean(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return None if a is None or b is None else (a + b) / 2


def predict_batch(model: nn.Module, images: torch.Tensor, tta: bool = False) -> Prediction:
    """Run ``model`` on ``images`` (B, C, H, W) and return probabilities.

    ``tta=True`` adds horizontal-flip test-time augmentation: the model also sees the mirrored images, its mask
    probabilities are flipped back, and each output is the mean of the two passes (probabilities, not logits, so
    the result stays a calibrated mean; h_tirads is averaged the same way). Flip TTA makes the prediction exactly
    mirror-equivariant. Putting the model in eval mode and disabling gradients are the caller's job, so the same
    function serves validation inside training and inference.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {shape}")
    plain = _probabilities(model(images))
    if not tta:
        return plain
    mirrored = _probabilities(model(images.flip(-1)))
    mirrored_mask = None if mirrored.mask_prob is None else mirrored.mask_prob.flip(-1)
    return Prediction(
        mask_prob=_mean(plain.mask_prob, mirrored_mask),
        class_prob=_mean(plain.class_prob, mirrored.class_prob),
        h_tirads=_mean(plain.h_tirads, mirrored.h_tirads),
        task_prob={name: (prob + mirrored.task_prob[name]) / 2 for name, prob in plain.task_prob.items()},
    )
