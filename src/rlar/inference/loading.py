"""Rebuild a trained network from a checkpoint file, ready for prediction (no data, radiomics or mask needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlar.data.labels import LabelSpace
from rlar.errors import DataError
from rlar.models import build_model
from rlar.training.checkpoint import load_checkpoint
from rlar.training.config import RlarConfig, validate_config


@dataclass
class TrainedModel:
    """A network in eval mode with what is needed to interpret its outputs."""

    model: nn.Module
    config: RlarConfig
    label_space: LabelSpace
    checkpoint: dict[str, Any]


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Load ``path`` (``best.pt`` / ``last.pt``) with ``weights_only=True`` and rebuild its network.

    Raises rlar.errors.DataError naming the file when it is not an rlar checkpoint.
    """
    ckpt = load_checkpoint(path, map_location=device)
    cfg = validate_config(ckpt["config"])
    if not ckpt.get("label_space"):
        raise DataError(path, "checkpoint records no label space (written by an older rlar?)")
    label_space = LabelSpace(**ckpt["label_space"])
    model = build_model(
        arch=cfg.model.arch, backbone=cfg.model.backbone, num_classes=label_space.num_classes, in_channels=1,
        tirads_dim=cfg.model.tirads_dim, deep_dim=cfg.model.deep_dim, **cfg.model.options,
    )
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return TrainedModel(model=model, config=cfg, label_space=label_space, checkpoint=ckpt)
