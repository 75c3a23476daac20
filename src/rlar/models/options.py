"""Options every network takes whatever its backbone (decoder, classification branch, padding), and the errors
raised for a bad ``model.options`` entry.

``model.options`` in a config is one flat mapping: the keys below plus the backbone's own keys (its
:class:`~rlar.models.spec.BackboneOptions`). :func:`rlar.models.registry.validate_backbone_options` splits and
checks them; every error names ``model.options.<key>``.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from rlar.errors import ConfigError
from rlar.tasks import check_extra_tasks

from .spec import BackboneOptions

#: How an input whose size is not a multiple of the network stride is padded ("error" refuses it).
PadMode = Literal["reflect", "constant", "replicate", "error"]
PAD_MODES: tuple[str, ...] = get_args(PadMode)

#: What the classification branch pools from each map: the whole map ("global"), or the whole map and, beside it,
#: the map weighted by the predicted nodule probability ("nodule"; needs the segmentation decoder).
ClsPooling = Literal["global", "nodule"]
CLS_POOLINGS: tuple[str, ...] = get_args(ClsPooling)

#: A MONAI layer spec: a name ("batch", "relu") or (name, {keyword: value}) such as ("group", {"num_groups": 8}).
LayerSpec = str | tuple[str, dict[str, Any]]


class BackboneOptionError(ConfigError):
    """A ``model.options`` value or ``model.backbone`` is invalid (raised by ``validate_backbone_options``).

    Deliberately not a ValueError: a config loader that validates inside a pydantic validator then sees this error
    itself, key included, instead of pydantic rewrapping it as a generic validation error.
    """


class UnknownOptionError(BackboneOptionError, TypeError):
    """A model option is not known to the network or its backbone (a TypeError, like an unexpected keyword)."""


class NetworkOptions(BackboneOptions):
    """Options of the parts around the encoder, shared by every backbone.

    cls_levels: encoder maps pooled by the classification branch, e.g. ("enc4", "bottleneck") to add mid-level
        features (names from ``model.representation_names``; checked against the encoder when the model is built).
    cls_pooling: "global" averages each pooled map over the whole image; "nodule" also averages it weighted by
        the network's own predicted nodule probability (detached, so the TI-RADS loss never reshapes the contour)
        and concatenates both, so a small nodule is not drowned by the surrounding gland.
    head_hidden: hidden width of an MLP TI-RADS head (None: linear head).
    cls_dropout: dropout in the classification branch.
    decoder_channels: channels of each decoder step, deepest first (default derived from the encoder).
    deep_supervision: extra nodule logits from this many coarser decoder steps, upsampled to the input size and
        trained with the main ones (weights halving per step, nnU-Net style; training only, 0: off).
    pad_mode: how inputs that are not a multiple of the network stride are padded ("error" refuses them).
    norm, act: MONAI normalisation and activation of the decoder (and of the compact encoder).
    extra_tasks: optional tasks of the task table (``rlar.tasks.optional_task_names()``: the ACR descriptors
        composition, echogenicity, shape, margin, echogenic_foci) the network gets a classification head for and
        the run trains (off by default; docs/descriptors.md). Needs the classification branch.
    """

    cls_levels: tuple[str, ...] = Field(("bottleneck",), min_length=1)
    cls_pooling: ClsPooling = "global"
    head_hidden: int | None = Field(None, ge=1)
    cls_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    decoder_channels: tuple[int, ...] | None = None
    deep_supervision: int = Field(0, ge=0)
    pad_mode: PadMode = "reflect"
    norm: LayerSpec = "batch"
    act: LayerSpec = "relu"
    # The field name is rlar.tasks.EXTRA_TASKS_OPTION (the config reads the list under that key; a test checks).
    extra_tasks: tuple[str, ...] = ()

    @field_validator("extra_tasks")
    @classmethod
    def _known_tasks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_extra_tasks(value)

    @field_validator("decoder_channels")
    @classmethod
    def _positive(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(c <= 0 for c in value):
            raise ValueError(f"channels must be positive, got {list(value)}")
        return value
