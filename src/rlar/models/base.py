"""The staged-encoder contract every backbone implements.

Every encoder is split into named *stages*: stage ``i`` maps the output of stage ``i - 1`` (or the image) to the
feature map named ``names[i]``. The last stage is always ``"bottleneck"``; the earlier ones are ``"enc1"``,
``"enc2"``, ... from fine to coarse. Splitting the encoder this way (instead of calling a library's all-in-one
``forward`` that returns a list) is what lets :class:`rlar.models.multitask.RlarNet` cut the graph at any named
representation: the stages after the cut are re-run from a detached leaf and their parameters count as head
parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch
from torch import nn


def stage_names(n_stages: int) -> tuple[str, ...]:
    """``("enc1", ..., "enc{n-1}", "bottleneck")`` for an encoder with ``n_stages`` stages."""
    return tuple(f"enc{i + 1}" for i in range(n_stages - 1)) + ("bottleneck",)


class Encoder(nn.Module, ABC):
    """Base class: an encoder made of sequential named stages.

    Subclasses set ``names``, ``channels`` (output channels per stage) and ``strides`` (total stride of each
    stage's output w.r.t. the input; each twice the previous, as the U-Net decoder requires), and implement
    :meth:`run_stage` and :meth:`stage_modules`.
    """

    names: tuple[str, ...]
    channels: tuple[int, ...]
    strides: tuple[int, ...]

    @abstractmethod
    def run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Apply stage ``index`` to ``x`` (the previous stage's output, or the image for stage 0)."""

    @abstractmethod
    def stage_modules(self, index: int) -> list[nn.Module]:
        """Modules whose parameters belong to stage ``index`` (used to split trunk and head parameters)."""

    def weights_module(self) -> nn.Module:
        """The module a backbone state dict (e.g. ImageNet weights) is loaded into; its keys are the library's."""
        return self

    def adapt_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename a backbone file's keys to :meth:`weights_module`'s (identity unless the layouts differ)."""
        return dict(state)

    def stage_parameters(self, index: int) -> list[nn.Parameter]:
        """Parameters of stage ``index``."""
        return [p for m in self.stage_modules(index) for p in m.parameters()]

    @property
    def stride(self) -> int:
        """Total stride of the deepest feature map: inputs must be a multiple of it (RlarNet pads for you)."""
        return self.strides[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All stage outputs, fine to coarse (the encoder used on its own, without a cut)."""
        feats = []
        for i in range(len(self.names)):
            x = self.run_stage(i, x)
            feats.append(x)
        return feats
