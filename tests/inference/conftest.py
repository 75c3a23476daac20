"""Fixtures of the inference tests: the session's trained model, and a deterministic 'oracle' network.

The oracle segments every pixel brighter than 0.5 (logit 40 * (x - 0.5)) and has fixed class logits, so the
geometry, measurements and report can be checked against exact expectations without a well-trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from torch import nn

from rlar.models import MultitaskOutput

if TYPE_CHECKING:
    from rlar.inference import Predictor

torch.set_num_threads(1)


class OracleNet(nn.Module):
    """mask = input > 0.5; class logits fixed (class 2 most likely); h_tirads zeros."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> MultitaskOutput:
        logits = torch.arange(self.num_classes, dtype=x.dtype).neg().add(2.0).abs().neg().expand(x.shape[0], -1)
        return MultitaskOutput(mask_logits=40.0 * (x - 0.5), class_logits=logits.contiguous(),
                               h_tirads=torch.zeros(x.shape[0], 13))


@pytest.fixture
def oracle_predictor(trained_run: Path) -> Predictor:
    """A Predictor over the trained run's checkpoint with its network replaced by :class:`OracleNet`."""
    from rlar.inference import Predictor
    from rlar.inference.loading import load_trained_model

    member = load_trained_model(trained_run)
    member.model = OracleNet(member.label_space.num_classes).eval()
    return Predictor([member])
