"""What a backbone is to rlar: a named spec with typed options and a builder, listed once in the registry.

A backbone family (one file: ``compact.py``, ``resnet.py``, ...) defines an :class:`~rlar.models.base.Encoder`, a
pydantic options model derived from :class:`BackboneOptions` holding only *its* options, and one
:class:`BackboneSpec` per name. :mod:`rlar.models.registry` lists the specs; the config validation, the docs table
(docs/models.md) and the tests all read that table, so adding a backbone is one file plus one registry line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .base import Encoder
    from .options import NetworkOptions


class BackboneOptions(BaseModel):
    """Base of every backbone's options: unknown keys are errors, and validated options are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: ``build(in_channels, backbone_options, network_options) -> Encoder``; network options carry norm/act.
EncoderBuilder = Callable[[int, Any, "NetworkOptions"], "Encoder"]


@dataclass(frozen=True)
class BackboneSpec:
    """One row of the backbone table.

    name:        the config value ``model.backbone``.
    options:     pydantic model of the backbone's own options (``model.options.<field>``).
    build:       builds the randomly initialised (or, if its options say so, pretrained) encoder.
    family:      the file/family it comes from (docs).
    description: one line for the docs table.
    pretrained:  where pretrained weights come from ("none": train from scratch or name ``model.pretrained_path``).
    licence:     licence of the code (and of the weights where shipped).
    pooled_norm: LayerNorm on the pooled vector of the classification branch (ConvNeXt's final norm).
    init_options: options that only choose the initial weights (e.g. ``pretrained``); reset to their defaults when
                  a trained network is rebuilt to receive a checkpoint (``build_model(..., load_weights=False)``).
    """

    name: str
    options: type[BackboneOptions]
    build: EncoderBuilder
    family: str
    description: str
    pretrained: str = "none"
    licence: str = "Apache-2.0"
    pooled_norm: bool = False
    init_options: tuple[str, ...] = ()


class NoOptions(BackboneOptions):
    """A backbone without options of its own (its size is in its name)."""


def _build_named(make: Callable[[str, int], Encoder], name: str, in_channels: int, options: NoOptions,
                 network: NetworkOptions) -> Encoder:
    return make(name, in_channels)


def named_specs(
    names: Sequence[str],
    make: Callable[[str, int], Encoder],
    family: str,
    describe: Callable[[str], str],
    licence: str,
) -> tuple[BackboneSpec, ...]:
    """Specs of an option-less family whose members differ only by name (``make(name, in_channels)``)."""
    return tuple(
        BackboneSpec(name=name, options=NoOptions, build=partial(_build_named, make, name), family=family,
                     description=describe(name), licence=licence)
        for name in names
    )
