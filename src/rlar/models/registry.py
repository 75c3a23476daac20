"""The backbone table: name -> :class:`~rlar.models.spec.BackboneSpec`, defined once.

Adding a backbone is one new file (an :class:`~rlar.models.base.Encoder`, its options model and its spec(s)) plus
one line in :data:`BACKBONES` below. The config validation (:func:`validate_backbone_options`), the model builder,
docs/models.md and the tests all read this table.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from rlar.errors import config_error_from

from . import compact, convnext, efficientnet, efficientnet_lite, resnet
from .base import Encoder
from .options import BackboneOptionError, NetworkOptions, UnknownOptionError
from .spec import BackboneSpec

#: Every backbone, by the name used as ``model.backbone``.
BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        *compact.SPECS,
        *resnet.SPECS,
        *efficientnet.SPECS,
        *efficientnet_lite.SPECS,
        *convnext.SPECS,
    )
}

_COMBINED: dict[tuple[str, type[BaseModel]], type[BaseModel]] = {}


def get_backbone(name: str) -> BackboneSpec:
    """The spec of ``name``; BackboneOptionError naming ``model.backbone`` when it is unknown."""
    spec = BACKBONES.get(name)
    if spec is None:
        raise BackboneOptionError("model.backbone", f"unknown backbone '{name}'; choose from {list(BACKBONES)}")
    return spec


def model_options_class(name: str) -> type[BaseModel]:
    """The flat ``model.options`` model of backbone ``name``: :class:`NetworkOptions` plus the backbone's options."""
    spec = get_backbone(name)
    key = (spec.name, spec.options)
    if key not in _COMBINED:
        title = "".join(part.capitalize() for part in spec.name.replace("-", "_").split("_")) + "ModelOptions"
        _COMBINED[key] = create_model(title, __base__=(spec.options, NetworkOptions))
    return _COMBINED[key]


def validate_backbone_options(backbone: str, raw: dict[str, Any]) -> BaseModel:
    """Validate the flat ``model.options`` mapping for ``backbone``; the result's ``model_dump()`` feeds
    :func:`rlar.models.build_model`.

    Raises :class:`~rlar.models.options.BackboneOptionError` (a ConfigError) naming ``model.options.<field>`` (an
    ``UnknownOptionError``, also a TypeError, for a key neither the network nor the backbone knows) or
    ``model.backbone`` for an unknown backbone.
    """
    cls = model_options_class(backbone)
    try:
        return cls(**raw)
    except ValidationError as exc:
        raise config_error_from(exc, "model.options", model=cls, what=f"backbone '{backbone}'",
                                error_type=BackboneOptionError, unknown_type=UnknownOptionError) from None


def split_options(backbone: str, options: BaseModel) -> tuple[BaseModel, NetworkOptions]:
    """(backbone options, network options) of a validated flat options model."""
    spec = get_backbone(backbone)
    values = options.model_dump()
    own = spec.options(**{k: values[k] for k in spec.options.model_fields})
    network = NetworkOptions(**{k: values[k] for k in NetworkOptions.model_fields})
    return own, network


def build_encoder(backbone: str, in_channels: int = 1, **options: Any) -> Encoder:
    """Construct the staged encoder named ``backbone`` from its (flat, unvalidated) options; errors as
    :func:`rlar.models.build_model`'s."""
    own, network = split_options(backbone, validate_backbone_options(backbone, options))
    return get_backbone(backbone).build(in_channels, own, network)
