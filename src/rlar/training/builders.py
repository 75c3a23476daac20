"""Build the run's components from a validated config: the one model builder, the strategy, the loss.

Training (:mod:`rlar.training.run`) and inference loading (``rlar.inference``) both call
:func:`build_model_from_config`, so a checkpoint is always rebuilt exactly as it was trained. Option errors were
already reported under their config keys when the config loaded (``rlar.training.config``); what can still fail
here is reported under the section's key.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rlar.errors import ConfigError, RlarError
from rlar.tasks import TASK_NAMES
from rlar.training.config import RlarConfig, loss_weights


def build_model_from_config(cfg: RlarConfig, num_classes: int, *, load_weights: bool = True) -> nn.Module:
    """The network of ``cfg`` (architecture, backbone and its options, embedding sizes) for ``num_classes``.

    ``load_weights=False`` rebuilds the network only to receive a checkpoint's state dict (inference, resume): the
    initial weights are not loaded, so neither ``model.pretrained_path`` nor the ImageNet-weights package of a
    ``pretrained: true`` backbone is needed.
    """
    from rlar.models import build_model

    try:
        return build_model(
            arch=str(cfg.model.arch), backbone=str(cfg.model.backbone), num_classes=num_classes, in_channels=1,
            tirads_dim=cfg.model.tirads_dim, deep_dim=cfg.model.deep_dim,
            pretrained_path=cfg.model.pretrained_path if load_weights else None, load_weights=load_weights,
            **cfg.model.options,
        )
    except RlarError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError("model", str(exc)) from None


def build_strategy_from_config(cfg: RlarConfig) -> nn.Module:
    """The gradient strategy of ``cfg`` with its (already validated) options."""
    from rlar.strategies import get_strategy

    name = str(cfg.strategy.name)
    options = {"representation": cfg.strategy.representation, **cfg.strategy.selected_options}
    try:
        return get_strategy(name, tasks=cfg.strategy.tasks, **options)
    except RlarError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"strategy.options.{name}", str(exc)) from None


def rad_feature_mask(cfg: RlarConfig) -> list[bool] | None:
    """Which of the 13 radiomics features L_rad supervises, for ``radiomics.exclude_feature`` (None: all)."""
    if cfg.radiomics.exclude_feature is None:
        return None
    from rlar.radiomics import feature_mask

    try:
        return feature_mask(cfg.radiomics.exclude_feature)
    except (KeyError, ValueError) as exc:
        raise ConfigError("radiomics.exclude_feature", str(exc)) from None


def build_loss_from_config(cfg: RlarConfig, class_weights: torch.Tensor | None) -> nn.Module:
    """``MultitaskLoss`` with one weight per task of the task table (``loss.weights.<task>``)."""
    from rlar.losses import MultitaskLoss

    weights: dict[str, Any] = {f"{name}_weight": value for name, value in loss_weights(cfg).items()
                               if name in TASK_NAMES}
    return MultitaskLoss(**weights, class_weights=class_weights, label_smoothing=cfg.loss.label_smoothing,
                         rad_feature_mask=rad_feature_mask(cfg))


def build_components(cfg: RlarConfig, num_classes: int, class_weights: torch.Tensor | None
                     ) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Model, strategy and loss of a run."""
    model = build_model_from_config(cfg, num_classes)
    return model, build_strategy_from_config(cfg), build_loss_from_config(cfg, class_weights)


__all__ = ["build_components", "build_loss_from_config", "build_model_from_config", "build_strategy_from_config",
           "rad_feature_mask"]
